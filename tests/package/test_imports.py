"""Imports run one way: contracts and registries at the bottom, stages above them, the stages' declarations
(`<stage>/stage.py`, the command-line wiring), the CLI and workflow on top."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import vlm_rationality

PACKAGE = Path(vlm_rationality.__file__).parent
# (importing part, what it must not import): `data`, `models` and `metrics` sit below `explain` and `finetune`
# (`data` and `metrics` side by side: what both read, `masks`, `imagenet16` and `visual_factors`, sits below them),
# `explain` below `finetune`, `predict` beside `explain` (neither imports the other); the contracts and helpers at
# the bottom import no stage at all; the planning package reads the dataset and model adapters' declarations (of
# `models`, only the torch-free `models.adapter` and, through its registry, the adapter files), nothing above.
STAGES = ("data", "models", "metrics", "explain", "finetune", "predict", "discover", "report")
FORBIDDEN = {
    "data": ("metrics", "explain", "finetune", "predict", "discover"),
    "models": ("explain", "finetune", "predict", "discover"),
    "metrics": ("data", "explain", "finetune", "predict", "discover"),
    "explain": ("finetune", "predict"),
    "predict": ("explain", "finetune"),
    "discover": ("explain", "finetune", "predict", "report"),
    "plan": ("models", "metrics", "explain", "finetune", "predict", "discover", "report"),
    "artefacts": STAGES,
    "io": STAGES,
    "registry": STAGES,
    "stages": STAGES,
    "device": STAGES,
    "masks": STAGES,
    "imagenet16": STAGES,
    "visual_factors": STAGES,
}
ALLOWED = {"plan": ("vlm_rationality.models.adapter",)}  # the exceptions to FORBIDDEN
LIGHT = ("artefacts", "io", "registry", "masks", "imagenet16", "visual_factors")  # readable without the ML stack


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def upward_imports(package: Path, name: str = "vlm_rationality") -> list[str]:
    """'importer -> imported' for every import that runs against FORBIDDEN, pulls torch into a LIGHT module, or
    names a stage's declaration (only stages.py reads those, by folder). A declaration (`stage.py`) wires its
    stage's library to the command line: like the CLI, it sits above FORBIDDEN."""
    bad = []
    for path in sorted(package.rglob("*.py")):
        part = path.relative_to(package).parts[0].removesuffix(".py")
        for module in sorted(imported_modules(path)):
            parts = module.split(".")
            if parts[0] == name and len(parts) > 2 and parts[2] == "stage":
                bad.append(f"{path.relative_to(package)} -> {module}")
            allowed = path.name == "stage.py" or any(module.startswith(prefix) for prefix in ALLOWED.get(part, ()))
            if parts[0] == name and len(parts) > 1 and parts[1] in FORBIDDEN.get(part, ()) and not allowed:
                bad.append(f"{path.relative_to(package)} -> {module}")
            if part in LIGHT and parts[0] == "torch":
                bad.append(f"{path.relative_to(package)} -> {module}")
    return bad


def test_the_package_imports_only_downward():
    assert upward_imports(PACKAGE) == []


def test_an_upward_import_is_found(tmp_path):
    for folder, source in (
        ("metrics", "from vlm_rationality.explain.base import Explanation\n"),
        ("explain", "import vlm_rationality.finetune.run\n"),
        ("data", "import os\n"),
        ("plan", "from vlm_rationality.models.adapter import model_adapter\nimport vlm_rationality.models.base\n"),
    ):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "x.py").write_text(source)
    (tmp_path / "artefacts.py").write_text("import torch\nfrom vlm_rationality.data import shards\n")
    (tmp_path / "metrics" / "stage.py").write_text("from vlm_rationality.report import validity\n")  # wiring: fine
    (tmp_path / "data" / "stage.py").write_text("from vlm_rationality.explain.stage import STAGES\n")
    assert upward_imports(tmp_path) == [
        "artefacts.py -> torch",
        "artefacts.py -> vlm_rationality.data",
        "artefacts.py -> vlm_rationality.data.shards",
        "data/stage.py -> vlm_rationality.explain.stage",
        "data/stage.py -> vlm_rationality.explain.stage.STAGES",
        "explain/x.py -> vlm_rationality.finetune.run",
        "metrics/x.py -> vlm_rationality.explain.base",
        "metrics/x.py -> vlm_rationality.explain.base.Explanation",
        "plan/x.py -> vlm_rationality.models.base",
    ]


def test_the_architecture_document_names_the_layers_this_test_enforces():
    text = (PACKAGE.parents[1] / "docs" / "architecture.md").read_text()
    section = text.split("## Imports run one way", 1)[1].split("\n## ", 1)[0]
    documented = {}
    for part, forbidden in re.findall(r"^\| `(\w+)` \| (.+) \|$", section, re.M):
        documented[part] = STAGES if forbidden == "any stage" else tuple(re.findall(r"`(\w+)`", forbidden))
    assert documented == FORBIDDEN
