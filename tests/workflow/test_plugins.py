"""A new model adapter, dataset adapter, fine-tuning method or heatmap method is one file, and a new stage is its
declaration and its rule: written into a copy of the repository, with no other file touched, they are checked,
planned and run by the real workflow."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from tests.snakemake_runs import REPO, TEST_CONFIG

pytestmark = pytest.mark.slow

PLUGINS = {
    "models/cold_clip.py": '''
import math

from vlm_rationality.models.adapter import MODEL_ADAPTERS
from vlm_rationality.models.open_clip_adapter import OpenCLIPAdapter


@MODEL_ADAPTERS.register("cold_clip")
class ColdCLIP(OpenCLIPAdapter):
    """An open_clip model whose temperature is an option of its own, set after its weights load."""

    options = {"logit_scale": {"type": "number", "exclusiveMinimum": 0}}

    def __init__(self, arch, pretrained=None, *, logit_scale):
        super().__init__(arch, pretrained)
        self.logit_scale = logit_scale

    def build(self):
        model = super().build()
        model.model.logit_scale.data.fill_(math.log(self.logit_scale))
        return model
''',
    "data/shapes.py": '''
from vlm_rationality.data.base import DATASET_ADAPTERS
from vlm_rationality.data.synthetic import SyntheticDataset


@DATASET_ADAPTERS.register("shapes")
class Shapes(SyntheticDataset):
    """The synthetic generator under a name of its own."""
''',
    "finetune/ft_again.py": '''
from vlm_rationality.finetune.base import FINETUNE_METHODS
from vlm_rationality.finetune.ft import FullFineTune


@FINETUNE_METHODS.register("ft_again", trains=True, head="linear")
class FullFineTuneAgain(FullFineTune):
    """Full fine-tuning under a name of its own."""
''',
    "explain/centre.py": '''
import torch

from vlm_rationality.explain.base import HEATMAP_METHODS, HeatmapMethod


@HEATMAP_METHODS.register("centre")
class Centre(HeatmapMethod):
    """All relevance on the patches nearest the image centre, whatever the model: a map known in advance."""

    uses_gradients = False

    def record(self, model):
        return model.capture_attention(self.compiled)  # read only for the batch size

    def relevance(self, model, selected, recorded):
        gh, gw = model.grid_size
        y, x = torch.meshgrid(torch.arange(gh) - (gh - 1) / 2, torch.arange(gw) - (gw - 1) / 2, indexing="ij")
        bump = ((x.abs() <= 0.5) & (y.abs() <= 0.5)).float().flatten()
        return bump.to(recorded[0].device).expand(recorded[0].shape[0], -1).clone()
''',
}

# A toy stage: its declaration (the folder's stage.py; an empty __init__.py makes the folder a package) and its rule.
STAGE = {
    "src/vlm_rationality/tally/__init__.py": "",
    "src/vlm_rationality/tally/stage.py": """
import argparse
import json
from collections import Counter

from vlm_rationality.stages import Stage


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--metrics", required=True)
    p.add_argument("--out", required=True)


def run(args: argparse.Namespace) -> None:
    import pyarrow.parquet as pq

    methods = pq.read_table(args.metrics, columns=["method"]).column("method").to_pylist()
    with open(args.out, "w") as out:
        json.dump({"device": args.device, "rows": Counter(methods)}, out)


STAGES = (Stage("tally", "the score table's rows per method", arguments, run, gpu=True),)
""",
    "workflow/rules/tally.smk": """
rule tally:
    input:
        lambda wc: rules.score.output.parquet,
    output:
        "results/tally.json",
    resources:
        **dag.sized("tally"),
    params:
        device=config["device"],
    shell:
        "python -m vlm_rationality tally --device {params.device} --metrics {input} --out {output}"
""",
}


def test_a_model_a_dataset_a_fine_tuning_method_and_a_heatmap_method_are_one_file_each_and_a_stage_one_declaration(
    tmp_path,
):
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copy2(REPO / "Snakefile", repo / "Snakefile")
    for part in ("workflow", "src", "envs"):
        shutil.copytree(REPO / part, repo / part, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    package = repo / "src" / "vlm_rationality"
    for path, source in PLUGINS.items():
        (package / path).write_text(source.lstrip())
    for path, source in STAGE.items():
        (repo / path).parent.mkdir(exist_ok=True)
        (repo / path).write_text(source.lstrip())
    config = copy.deepcopy(TEST_CONFIG)
    config["datasets"]["tiny-synthetic"]["adapter"] = "shapes"
    config["models"]["tiny-clip"].update(adapter="cold_clip", logit_scale=0.01)
    config["methods"] = {"zs": {"kind": "zs"}, "again": {**TEST_CONFIG["methods"]["ft"], "kind": "ft_again"}}
    config["heatmaps"]["methods"] = ["centre"]
    work = tmp_path / "work"
    work.mkdir()
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    env = {**os.environ, "PYTHONPATH": str(repo / "src"), "HF_HUB_OFFLINE": "1"}
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env["PATH"]])

    def run(*command: str) -> str:
        result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=repo, timeout=900)
        assert result.returncode == 0, result.stderr[-3000:]
        return result.stdout

    planned = run(sys.executable, "-m", "vlm_rationality", "plan", "--configfile", str(work / "config.yaml"))
    assert re.search(r"^\| finetune \| 1 \|", planned, re.M)
    assert re.search(r"^\| explain \| 4 \|", planned, re.M)  # 2 test shards x 2 methods
    assert "tally  " in run(sys.executable, "-m", "vlm_rationality", "--help")
    workflow = ("-m", "snakemake", "--snakefile", str(repo / "Snakefile"), "--directory", str(work))
    workflow += ("--configfile", str(work / "config.yaml"), "--cores", "2")
    # the declaration's gpu=True is what the job asks for, where the config does not run on the CPU
    on_gpu = run(sys.executable, *workflow, "results/tally.json", "--dry-run", "--config", "device=auto")
    assert re.search(r"^rule tally:\n(?:    .*\n)*?    resources: .*\bgpu=1\b", on_gpu, re.M)
    run(sys.executable, *workflow, "all", "results/tally.json")
    rows = pq.read_table(work / "results" / "metrics" / "rationality.parquet").to_pylist()
    assert sorted((r["method"], r["heatmap_method"]) for r in rows) == [("again", "centre"), ("zs", "centre")]
    tally = json.loads((work / "results" / "tally.json").read_text())
    assert tally == {"device": "cpu", "rows": {"again": 1, "zs": 1}}
    maps = {method: [] for method in config["methods"]}
    logits = {method: [] for method in config["methods"]}
    for path in sorted((work / "results" / "heatmaps").rglob("*.parquet")):
        method = path.relative_to(work / "results" / "heatmaps").parts[3]
        table = pq.read_table(path)
        maps[method] += table.column("heatmap").to_pylist()
        logits[method] += table.column("logits").to_pylist()
    # zero-shot logits are the model's temperature times cosines: the plugin's 0.01 bounds them (CLIP's is ~14-100)
    zero_shot = np.abs(np.array(logits["zs"], dtype=np.float32))
    assert 0 < zero_shot.max() <= 0.0101  # float16 rounds 0.01 up by 2e-6
    for method, heatmaps in maps.items():
        grid = np.array(heatmaps, dtype=np.float32)
        assert len(grid) == 48 and (grid == grid[0]).all() and grid[0].sum() > 0, method  # the plugin's own map
