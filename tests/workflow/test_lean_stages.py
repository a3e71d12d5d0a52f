"""Cheap stage commands start only what they use: preparing synthetic shards imports no ML stack."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HEAVY = ("torch", "open_clip", "timm", "transformers", "matplotlib", "scipy")
# Runs the CLI as `python -m vlm_rationality` does, then names the heavy packages that ended up imported.
PROBE = """
import json, sys
from vlm_rationality.cli import main
code = main(sys.argv[1:])
print(json.dumps(sorted({name.split('.')[0] for name in sys.modules} & set(HEAVY))))
sys.exit(code)
"""


def heavy_imports(*args: str, cwd, prelude: str = "") -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", f"{prelude}\nHEAVY = {HEAVY!r}\n{PROBE}", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_synthetic_items_and_prepare_import_no_ml_stack(tmp_path):
    spec = json.dumps(
        {
            "adapter": "synthetic",
            "image_size": 32,
            "num_classes": 3,
            "num_textures": 3,
            "seed": 0,
            "shard_size": 8,
            "splits": {"test": {"size": 10, "rho": 0.0}},
        }
    )
    items = ("items", "--spec", spec, "--split", "test", "--out", "items.parquet")
    assert heavy_imports(*items, cwd=tmp_path) == []
    assert heavy_imports(*items, cwd=tmp_path, prelude="import torch") == ["torch"]  # the probe does see imports
    assert (
        heavy_imports(
            "prepare",
            "--spec",
            spec,
            "--split",
            "test",
            "--shard",
            "1",
            "--items",
            "items.parquet",
            "--out",
            "shard.parquet",
            cwd=tmp_path,
        )
        == []
    )
    assert (tmp_path / "shard.parquet").stat().st_size > 0


def test_the_planning_package_imports_no_ml_stack(tmp_path):
    """What every Snakemake start reads: the config check, sweeps, protocol switches, sizing and the cost plan, with
    every model adapter's declaration (checking a model entry reads its facts, never the model)."""
    from vlm_rationality import plan

    modules = sorted(path.stem for path in Path(plan.__file__).parent.glob("*.py") if path.stem != "__init__")
    script = f"""
import json, sys
for name in {modules!r}:
    __import__("vlm_rationality.plan." + name)
from vlm_rationality.models.adapter import MODEL_ADAPTERS
adapters = [MODEL_ADAPTERS.get(name) for name in MODEL_ADAPTERS]
assert len(adapters) >= 3, adapters
print(json.dumps(sorted({{name.split('.')[0] for name in sys.modules}} & set({HEAVY!r}))))
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert len(modules) >= 6 and json.loads(done.stdout.strip().splitlines()[-1]) == []
