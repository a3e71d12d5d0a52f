"""The hostile user's replay (issue 48): what a config can get wrong, given to the real `snakemake` at once.

Each case below once ran to a silent wrong number or failed after minutes of work; now each is refused by the config
check, naming its key, before any job starts, and all of them in one pass. The cases that need data on disk are
tests of their own: a shard copied over another (test_faults.py, test_workflow.py), stickers that do not fit, an
index entry outside its root, damage in a column nobody reads (test_faults.py), a deleted sidecar and a split that
lists no item (test_workflow.py).
"""

from __future__ import annotations

import copy
import time

from tests.snakemake_runs import TEST_CONFIG, snakemake

DATASET = "tiny-synthetic"


def hostile(config: dict) -> dict[str, str]:
    """Every case that a config alone can carry, written into `config`; returns case -> the message it must get."""
    data = config["datasets"][DATASET]
    data["mask"] = "dilate-99999999"  # grew every mask to the whole image (PT 100), or allocated 238 GiB
    data["splits"]["test"]["kind"] = "texture_only"  # a scored split with no object: PT NaN for every method
    data["splits"].update(val={"size": 40, "rho": 0.9}, **{"folder-inat": {"size": 4}})
    config["twins"] = {"masks": ["exact", "dilate-9999"]}
    config["prompt_template"] = "{name:>300000000}"  # formatting it filled 23 GB
    config["score"]["bootstrap_iterations"] = 5  # intervals from 5 replicates
    config["robustness"] = {"validation": "val", "ood_folders": {"disk": "/", "inat": "/nonexistent-ood"}}
    methods = config["methods"]
    methods["ft"]["seed"] = [10**120, 0]  # trained, then failed in torch.manual_seed
    methods["ft"]["augment"] = False
    methods["ravl"] = {"kind": "ravl", "mitigates": "lp", "lr": 1e-4, "epochs": 1, "batch_size": 20, "augment": True}
    methods["m" * 97] = {"kind": "lp", "lr": [0.1, 0.2], "epochs": 1, "batch_size": 20}  # a file name too long
    config["discovery"] = {"methods": ["lp"], "max_regions": 2}  # failed in the discover job
    return {
        "dilation": f"datasets.{DATASET}.mask: dilate-99999999 on 32-px images grows a centred object",
        "twins-dilation": f"twins.masks ({DATASET}): dilate-9999 on 32-px images",
        "no-masks": f"datasets.{DATASET}.splits.test: the scored split has no object masks",
        "template": "prompt_template: '{name:>300000000}' cannot be filled in",
        "bootstrap": "score.bootstrap_iterations: 5 replicates leave fewer than 3 a side",
        "filesystem-root": "robustness.ood_folders.disk: / is a filesystem root",
        "folder-split": f"datasets.{DATASET}.splits.folder-inat: robustness prepares a folder as the split",
        "seed": "methods.ft.seed: 100000000000... (121 digits) is not a seed",
        "ravl-augment": "methods.ravl.augment: ravl cuts each region at the box its discovery assigned",
        "max-regions": "discovery.max_regions: 2 regions cannot form the",
        "file-name": f"methods: the name {'m' * 24}... is 97 characters",
    }


def test_a_hostile_config_is_refused_whole_before_any_job(tmp_path):
    config = copy.deepcopy(TEST_CONFIG)
    expected = hostile(config)
    start = time.perf_counter()
    result = snakemake(tmp_path, config, "--dry-run", check=False, env={"VLM_RATIONALITY_JOBS_PER_GPU": "abc"})
    elapsed = time.perf_counter() - start
    output = result.stdout + result.stderr
    assert result.returncode != 0
    missed = {case: message for case, message in expected.items() if message not in output}
    assert not missed, f"not refused: {missed}\n{output[-6000:]}"
    assert "environment: VLM_RATIONALITY_JOBS_PER_GPU='abc': give a whole number" in output
    assert not (tmp_path / "results").exists()  # refused before any job: nothing was written
    assert elapsed < 60, elapsed  # the check itself, with Snakemake's start (about 3 s idle)


def test_nested_yaml_aliases_are_refused_at_once(tmp_path):
    """A billion laughs: nine lines that expand to 10⁹ values took 220 s and 3.3 GB before a MemoryError."""
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]" for i in range(8)]
    (tmp_path / "laughs.yaml").write_text("\n".join(lines + ["prompt_template: *i", ""]))
    start = time.perf_counter()
    result = snakemake(tmp_path, TEST_CONFIG, "--dry-run", "--configfile", str(tmp_path / "laughs.yaml"), check=False)
    assert result.returncode != 0 and time.perf_counter() - start < 60
    assert "config: more than 100,000 values" in result.stdout + result.stderr
