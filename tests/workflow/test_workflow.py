"""The real workflow on the tiny .test config, in a temporary directory."""

from __future__ import annotations

import contextlib
import copy
import html
import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F
import yaml
from PIL import Image
from safetensors.torch import save_file

from tests.metrics.test_signals import assert_quantus_parity
from tests.snakemake_runs import REPO, TEST_CONFIG, planned_jobs, snakemake
from vlm_rationality.artefacts import PreparedShard
from vlm_rationality.io import read_metadata
from vlm_rationality.metrics.validity import stored_evidence
from vlm_rationality.models import build_model
from vlm_rationality.models.checkpoint import load_state_dict
from vlm_rationality.provenance import made_by_lines, provenance

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(local_run) -> Path:
    return local_run


def test_outputs_exist_with_their_schemas(run):
    results = run / "results"
    metrics = pq.read_table(results / "metrics" / "rationality.parquet")
    assert read_metadata(results / "metrics" / "rationality.parquet")["schema"] == "rationality-metrics/2"
    rows = metrics.to_pylist()
    assert sorted((r["method"], r["heatmap_method"]) for r in rows) == [
        (method, heatmap) for method in ("flcp", "ft", "lp", "zs") for heatmap in ("chefer", "gradcam")
    ]
    for row in rows:
        assert row["dataset"] == "tiny-synthetic" and row["shift"] == "clean" and row["model"] == "tiny-clip"
        assert row["n"] == 48 and row["n_skipped"] == 0 and row["threshold"] == 0.5
        assert row["n_RR"] + row["n_RW"] + row["n_WR"] + row["n_WW"] + row["n_undefined"] == 48
        assert 0 <= row["accuracy"] <= 1
        assert row["accuracy_ci_low"] <= row["accuracy"] <= row["accuracy_ci_high"]
        # worst group over class x (the class's own background present/absent): 8 classes, some groups empty at 48
        assert 8 <= row["n_groups"] <= 16 and 1 <= row["n_worst_group"] and row["acc_worst_group"] <= row["accuracy"]
    assert (results / "metrics" / "rationality.csv").read_text().startswith('"dataset","shift"')

    prepared = sorted((results / "data" / "tiny-synthetic" / "test").glob("shard-*.parquet"))
    assert [p.name for p in prepared] == ["shard-0000.parquet", "shard-0001.parquet"]
    assert read_metadata(prepared[0])["schema"] == "prepared-samples/1"
    heatmaps = sorted((results / "heatmaps").rglob("shards-*.parquet"))
    assert len(heatmaps) == 16 and heatmaps[0].name == "shards-0000-0000.parquet"  # one file per shard group
    assert heatmaps[0].parent.name == "chefer" and heatmaps[2].parent.name == "gradcam"
    meta = read_metadata(heatmaps[0])
    assert meta["schema"] == "heatmaps/3" and meta["grid_size"] == [4, 4]
    assert meta["keys"] == {
        "dataset": "tiny-synthetic",
        "shift": "clean",
        "model": "tiny-clip",
        "method": "flcp",
        "heatmap_method": "chefer",
    }
    assert pq.read_schema(heatmaps[0]).names[:5] == ["sample_id", "label", "pred", "logits", "heatmap"]

    assert (results / "models" / "tiny-clip" / "base.safetensors").is_file()
    checkpoints = sorted(
        p.stem for p in (results / "checkpoints" / "tiny-synthetic" / "tiny-clip").glob("*.safetensors")
    )
    assert checkpoints == ["flcp", "ft", "lp"]  # zero-shot writes none
    sidecar = yaml.safe_load((results / "checkpoints" / "tiny-synthetic" / "tiny-clip" / "ft.json").read_text())
    assert sidecar["method"]["kind"] == "ft" and "train_loss" in sidecar["metrics"] and sidecar["inputs"]

    table = (results / "tables" / "pt_ir.md").read_text()
    assert "Prediction trustworthiness" in table and "Inference reliability" in table
    made = read_metadata(heatmaps[0])["provenance"]  # every artefact and the report name the code that made them
    assert made == read_metadata(results / "metrics" / "rationality.parquet")["provenance"] == provenance()
    assert table.rstrip().endswith(f"_Made by {made_by_lines([made])[0]}._")
    assert f"Made by {html.escape(made_by_lines([made])[0])}" in (results / "tables" / "pt_ir.html").read_text()
    assert "## Heatmap method: chefer" in table and "## Heatmap method: gradcam" in table
    assert table.count("| ZS | tiny-clip |") == 6  # 3 blocks x 2 heatmap methods
    assert 'answers "right for the right reasons?"**: none here is validated' in table  # no twins in this run
    ablation = (results / "tables" / "heatmap_ablation.md").read_text()
    by_row = {(r["method"], r["heatmap_method"]): r for r in rows}
    for method in ("zs", "lp", "flcp", "ft"):
        for heatmap in ("chefer", "gradcam"):
            row = by_row[(method, heatmap)]
            pt = (
                "–"
                if row["prediction_trustworthiness"] != row["prediction_trustworthiness"]
                else f"{100 * row['prediction_trustworthiness']:.1f}"
            )
            line = next(x for x in ablation.splitlines() if x.startswith(f"| {method.upper()} | {heatmap} |"))
            assert line.split(" | ")[3].startswith(pt)  # method | heatmap | accuracy | PT | IR
        assert by_row[(method, "chefer")]["accuracy"] == by_row[(method, "gradcam")]["accuracy"]
    ablations = (results / "tables" / "ablations.md").read_text()  # Table 3's layout: no sweep here
    family = ablations.split("## tiny-synthetic · tiny-clip · clean: fine-tuning family", 1)[1].split("##", 1)[0]
    assert sorted(x.split(" | ")[0] for x in family.splitlines() if x.startswith("| ") and "accuracy" not in x) == [
        "| FLCP",
        "| FT",
        "| LP",
        "| ZS",
    ]  # in the config's order (the test writes its YAML with sorted keys)
    assert ": explanation method" in ablations and " sweep" not in ablations
    assert (results / "figures" / "pt_ir.png").read_bytes()[:4] == b"\x89PNG"
    # PT and IR on the threshold grid: at the configured threshold they are Table 2's, to the bootstrap's seed
    curves = pq.read_table(results / "metrics" / "thresholds.parquet").to_pylist()
    assert len(curves) == len(rows) * 19 and read_metadata(results / "metrics" / "thresholds.parquet")["schema"] == (
        "threshold-curves/1"
    )
    for curve in (c for c in curves if c["threshold"] == 0.5):
        row = by_row[(curve["method"], curve["heatmap_method"])]
        for metric in ("prediction_trustworthiness", "inference_reliability", "inference_reliability_ci_low"):
            assert curve[metric] == pytest.approx(row[metric], nan_ok=True), metric
        assert curve["rma_q25"] <= curve["rma_median"] <= curve["rma_q75"]
    per_class = pq.read_table(results / "metrics" / "per_class.parquet").to_pylist()
    for (method, heatmap), row in by_row.items():  # the classes' counts add up to the row's
        mine = [c for c in per_class if (c["method"], c["heatmap_method"]) == (method, heatmap)]
        assert sum(c["n"] for c in mine) == row["n"] - row["n_nonfinite_logits"]
        assert sum(c["n"] * c["accuracy"] for c in mine) == pytest.approx(row["n"] * row["accuracy"])
        names = {c["label"]: c["class_name"] for c in mine}  # named, not numbered
        assert len(set(names.values())) == len(names) and not any(name.isdigit() for name in names.values())
    for name in ("pt_ir_threshold.png", "rma_distribution.png", "per_class.png"):
        assert (results / "figures" / name).read_bytes()[:4] == b"\x89PNG"
    assert (results / "logs" / "score.log").is_file() and (results / "benchmarks" / "score.tsv").is_file()

    assert r"\toprule" in (results / "tables" / "pt_ir.tex").read_text()
    long_form = pacsv.read_csv(results / "tables" / "pt_ir.csv").to_pylist()
    zs = next(r for r in rows if (r["method"], r["heatmap_method"]) == ("zs", "chefer"))
    cell = next(
        r
        for r in long_form
        if (r["method"], r["heatmap_method"], r["metric"], r["dataset"])
        == ("zs", "chefer", "accuracy", "tiny-synthetic")
    )
    assert cell["value"] == pytest.approx(100 * zs["accuracy"], abs=0.006)
    assert "<table>" in (results / "tables" / "pt_ir.html").read_text()
    for heatmap in ("chefer", "gradcam"):
        drawn = results / "figures" / "gallery" / "tiny-synthetic" / "clean" / "tiny-clip" / heatmap
        assert {p.name for p in drawn.glob("*.png")} == {"all_right.png", "rw.png"}
    # Progress lines in the job logs: the first and the last step at least, with rate and ETA.
    for log in (
        "pretrain_base/tiny-clip.log",
        "finetune/tiny-synthetic/tiny-clip/ft.log",
        "explain/tiny-synthetic/clean/tiny-clip/ft/chefer/shards-0000-0000.log",
    ):
        lines = [x for x in (results / "logs" / log).read_text().splitlines() if "vlm_rationality.progress" in x]
        assert len(lines) >= 2 and all("img/s" in x and "ETA" in x for x in lines), log
        assert "(100%)" in lines[-1], log
    assert "epoch 1/1" in (results / "logs" / "finetune/tiny-synthetic/tiny-clip/ft.log").read_text()


def test_a_second_run_does_nothing(run, tmp_path):
    assert planned_jobs(snakemake(run, TEST_CONFIG, "--dry-run")) == {}
    config = copy.deepcopy(TEST_CONFIG)
    config["heatmaps"]["threads"] = 2  # how many threads an explain job uses changes no result
    config["heatmaps"]["workers"] = 1  # nor how many processes corrupt ahead
    config["threads"] = 2  # nor how many threads train
    config["methods"]["ft"]["processes"] = 2  # nor over how many data-parallel processes
    config["methods"]["ft"]["threads"] = 1  # nor a method's own thread count
    assert planned_jobs(snakemake(run, config, "--dry-run")) == {}
    shutil.copytree(run, tmp_path, dirs_exist_ok=True)  # a copy: the shared run stays as the other tests expect it
    shutil.rmtree(tmp_path / "results" / "figures" / "gallery")  # figures come from the shards alone
    assert planned_jobs(snakemake(tmp_path, TEST_CONFIG, "--dry-run")) == {"gallery": 2, "all": 1}


def test_a_threshold_change_reruns_only_what_reads_the_threshold(run, tmp_path):
    shutil.copytree(run, tmp_path, dirs_exist_ok=True)
    config = copy.deepcopy(TEST_CONFIG)
    config["score"]["threshold"] = 0.3
    heatmaps = sorted((tmp_path / "results" / "heatmaps").rglob("*.parquet"))
    before = {p: p.stat().st_mtime_ns for p in heatmaps}
    # the galleries colour RMA against the threshold and draw RW samples below it: redrawn, from the same shards; the
    # threshold curves mark it
    assert planned_jobs(snakemake(tmp_path, config, "--dry-run")) == {
        "score": 1,
        "report": 1,
        "breakdowns": 1,
        "gallery": 2,
        "all": 1,
    }
    snakemake(tmp_path, config)
    assert {p: p.stat().st_mtime_ns for p in heatmaps} == before
    rows = pq.read_table(tmp_path / "results" / "metrics" / "rationality.parquet").to_pylist()
    assert {r["threshold"] for r in rows} == {0.3}


def test_adding_a_heatmap_method_reruns_no_training_and_no_existing_heatmap(run, tmp_path):
    shutil.copytree(run, tmp_path, dirs_exist_ok=True)
    heatmaps = sorted((tmp_path / "results" / "heatmaps").rglob("*.parquet"))
    before = {p: p.stat().st_mtime_ns for p in heatmaps}
    config = copy.deepcopy(TEST_CONFIG)
    config["heatmaps"]["methods"] = ["chefer"]  # dropping one: its files stay, only the tables change
    planned = planned_jobs(snakemake(tmp_path, config, "--dry-run"))
    assert planned == {"score": 1, "report": 1, "breakdowns": 1, "all": 1}
    config["heatmaps"]["methods"] = ["chefer", "gradcam", "rollout"]
    assert planned_jobs(snakemake(tmp_path, config, "--dry-run")) == {
        "explain": 8,
        "score": 1,
        "report": 1,
        "breakdowns": 1,
        "gallery": 1,
        "all": 1,
    }
    snakemake(tmp_path, config)
    assert {p: p.stat().st_mtime_ns for p in heatmaps} == before
    rows = pq.read_table(tmp_path / "results" / "metrics" / "rationality.parquet").to_pylist()
    assert sorted({r["heatmap_method"] for r in rows}) == ["chefer", "gradcam", "rollout"] and len(rows) == 12
    assert "| FT | rollout |" in (tmp_path / "results" / "tables" / "heatmap_ablation.md").read_text()


def _heatmap_rows(workdir: Path, method: str, groups: list[str]) -> pa.Table:
    folder = workdir / "results" / "heatmaps" / "tiny-synthetic" / "clean" / "tiny-clip" / method / "chefer"
    return pa.concat_tables(pq.read_table(folder / f"shards-{group}.parquet") for group in groups)


def test_explain_results_do_not_depend_on_how_shards_are_grouped_into_jobs(run, tmp_path):
    shutil.copytree(run, tmp_path, dirs_exist_ok=True)
    config = copy.deepcopy(TEST_CONFIG)
    config["heatmaps"]["shards_per_job"] = 2  # both test shards in one job
    assert planned_jobs(snakemake(tmp_path, config, "--dry-run")) == {
        "explain": 8,
        "score": 1,
        "report": 1,
        "breakdowns": 1,
        "gallery": 2,
        "all": 1,
    }
    snakemake(tmp_path, config)
    grouped = sorted((tmp_path / "results" / "heatmaps").rglob("shards-0000-0001.parquet"))
    assert len(grouped) == 8
    assert read_metadata(grouped[0])["source_shards"] == [
        f"results/data/tiny-synthetic/test/shard-000{k}.parquet" for k in (0, 1)
    ]
    for method in TEST_CONFIG["methods"]:
        grouped_rows = _heatmap_rows(tmp_path, method, ["0000-0001"])
        per_shard_rows = _heatmap_rows(run, method, ["0000-0000", "0001-0001"])
        assert grouped_rows.num_rows == 48 and json.dumps(grouped_rows.to_pylist()) == json.dumps(
            per_shard_rows.to_pylist()
        )
    first = pq.read_table(run / "results" / "metrics" / "rationality.parquet").to_pylist()
    assert json.dumps(
        pq.read_table(tmp_path / "results" / "metrics" / "rationality.parquet").to_pylist()
    ) == json.dumps(first)


def _broken(change) -> dict:
    config = copy.deepcopy(TEST_CONFIG)
    change(config)
    return config


@pytest.mark.parametrize(
    "config, message",
    [
        (
            _broken(lambda c: c["methods"].update(lora={"kind": "lora", "lr": 1e-3, "epochs": 1, "batch_size": 4})),
            r"methods\.lora\.kind: unknown method 'lora'",
        ),
        (_broken(lambda c: c["methods"]["ft"].update(lr=-1e-4)), r"methods.*ft.*lr|-0\.0001"),
        (_broken(lambda c: c["datasets"]["tiny-synthetic"].pop("shard_size")), r"shard_size"),
        (
            _broken(lambda c: c["models"]["tiny-clip"]["pretrain"].update(dataset="imagenet")),
            r"models\.tiny-clip\.pretrain\.dataset: no dataset 'imagenet'",
        ),
        (
            _broken(lambda c: c["datasets"]["tiny-synthetic"].update(num_classes=99)),
            r"datasets\.tiny-synthetic: .*num_classes",
        ),
        (
            _broken(lambda c: c["methods"]["ft"].update(head_int="prompts")),
            r"methods\.ft\.head_int: unknown setting; did you mean head_init\?",
        ),
    ],
    ids=["unknown-method", "negative-lr", "missing-dataset-key", "dangling-reference", "bad-adapter-option", "typo"],
)
def test_an_invalid_config_fails_before_any_job(tmp_path, config, message):
    result = snakemake(tmp_path, config, check=False)
    assert result.returncode != 0
    assert re.search(message, result.stdout + result.stderr), (result.stdout + result.stderr)[-3000:]
    assert not (tmp_path / "results").exists()


def test_a_second_run_killed_and_resumed_gives_identical_metrics(run, tmp_path):
    """Same config and seed, from scratch in another directory, killed during fine-tuning and resumed after
    --unlock: the metric table equals the first run's byte for byte (determinism and resumption at once)."""
    import os
    import signal
    import time

    (tmp_path / "config.yaml").write_text(yaml.safe_dump(TEST_CONFIG))
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(tmp_path),
        "--configfile",
        str(tmp_path / "config.yaml"),
        "--cores",
        "2",
    ]
    process = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not list((tmp_path / "results" / "checkpoints").rglob("*.safetensors")) and time.monotonic() < deadline:
        time.sleep(0.5)
    os.killpg(process.pid, signal.SIGKILL)  # the whole run, jobs included, mid-way through fine-tuning
    process.wait()
    assert not (tmp_path / "results" / "metrics").exists()
    incomplete = snakemake(tmp_path, TEST_CONFIG, check=False)  # what the jobs in flight were writing is named
    assert incomplete.returncode != 0 and "--rerun-incomplete" in incomplete.stderr
    locked = snakemake(tmp_path, TEST_CONFIG, "--rerun-incomplete", check=False)  # and the kill left the lock
    assert locked.returncode != 0 and "cannot be locked" in locked.stderr
    snakemake(tmp_path, TEST_CONFIG, "--unlock")
    snakemake(tmp_path, TEST_CONFIG, "--rerun-incomplete")
    first = pq.read_table(run / "results" / "metrics" / "rationality.parquet").to_pylist()
    assert json.dumps(
        pq.read_table(tmp_path / "results" / "metrics" / "rationality.parquet").to_pylist()
    ) == json.dumps(first)


def test_parsing_the_workflow_imports_no_ml_stack(tmp_path):
    """Checking the config and sizing jobs (every Snakemake start, inside every cluster job too) must not pay for
    torch, open_clip, timm or transformers: here they cannot even be imported, and the dry run still plans."""
    blocked = tmp_path / "blocked"
    for name in ("torch", "open_clip", "timm", "transformers"):
        (blocked / name).mkdir(parents=True)
        (blocked / name / "__init__.py").write_text(
            f"raise ImportError('{name} imported while parsing the workflow')\n"
        )
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(TEST_CONFIG))
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "-n",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(tmp_path),
        "--configfile",
        str(tmp_path / "config.yaml"),
        "--cores",
        "1",
    ]
    env = {**__import__("os").environ, "PYTHONPATH": str(blocked)}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert planned_jobs(result)["explain"] == 16


def test_a_split_is_listed_once_and_the_plan_builds_from_its_index(tmp_path):
    """100,000 files in ImageNet's training layout (empty: listing needs names only). The items job lists the split
    once; shard counts and each prepare job's slice come from the index, so no other job lists it."""
    import time

    from tests import fixtures

    root = fixtures.imagenet(tmp_path / "imagenet").root
    for synset in ("n01440764", "n01443537"):
        for j in range(50_000):
            (root / "train" / synset / f"{synset}_{j:05d}.JPEG").touch()
    config = copy.deepcopy(TEST_CONFIG)
    config.update(train_split="train", eval_split="val")
    config["datasets"] = {
        "big": {
            "adapter": "imagenet",
            "root": str(root),
            "image_size": 32,
            "shard_size": 1000,
            "splits": {"train": {"masks": False}, "val": {}},
        }
    }
    config["models"] = {"tiny-clip": {"adapter": "open_clip", "arch": "tiny-vit-32"}}
    config["methods"] = {name: TEST_CONFIG["methods"][name] for name in ("zs", "ft")}
    assert planned_jobs(snakemake(tmp_path, config, "--dry-run"))["items"] == 2  # the plan waits for the indexes
    indexes = [f"results/data/big/{split}/items.parquet" for split in ("train", "val")]
    snakemake(tmp_path, config, *indexes)
    start = time.monotonic()
    planned = planned_jobs(snakemake(tmp_path, config, "--dry-run"))
    seconds = time.monotonic() - start
    print(f"DAG build of a 100,004-item split: {seconds:.1f} s")
    assert planned["prepare"] == 101 + 1 and "items" not in planned and seconds < 60
    snakemake(tmp_path, config, "results/data/big/train/shard-0100.parquet", "results/data/big/val/shard-0000.parquet")
    logs = tmp_path / "results" / "logs"
    listings = [
        log.name for log in sorted(logs.rglob("*.log")) if re.search(r"listed \d+ items of split", log.read_text())
    ]
    assert listings == ["train.log", "val.log"]  # the two items jobs, and no prepare job
    assert "listed 100004 items of split train" in (logs / "items" / "big" / "train.log").read_text()
    last = tmp_path / "results" / "data" / "big" / "train" / "shard-0100.parquet"  # items 100,000-100,003: empty files
    assert pq.read_table(last).num_rows == 0 and read_metadata(last)["skipped"] == {"unreadable_image": 4}


def test_a_configfile_replaces_the_default_config():
    """`snakemake --configfile FILE` from the repository root plans FILE's grid alone; the default's datasets and
    models would otherwise stay in it (Snakemake merges a --configfile into the Snakefile's configfile)."""
    command = [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--configfile", ".test/config.yaml"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    text = result.stdout + result.stderr
    assert set(re.findall(r"dataset=([^,\s]+)", text)) == {"tiny-synthetic"}
    assert set(re.findall(r"model=([^,\s]+)", text)) == {"tiny-clip"}
    assert "rho_curve" not in planned_jobs(result)  # one training rho: no curve to draw
    merged = subprocess.run(
        [*command[:-2], "--config", "threads=1"], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert set(re.findall(r"dataset=([^,\s]+)", merged.stdout + merged.stderr)) == {
        "synthetic-rho0.9",
        "synthetic-rho0",
    }
    assert planned_jobs(merged)["rho_curve"] == 1
    sweep = subprocess.run(
        [*command[:-1], "config/rho-sweep.yaml"], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert len(set(re.findall(r"dataset=([^,\s]+)", sweep.stdout + sweep.stderr))) == 6
    assert planned_jobs(sweep)["rho_curve"] == 1 and planned_jobs(sweep)["pretrain_base"] == 1


def test_a_partial_configfile_is_told_how_to_overlay_and_overlays_when_given_after_the_default(tmp_path):
    (tmp_path / "mine.yaml").write_text("score:\n  threshold: 0.4\n")
    command = [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--configfile"]
    alone = subprocess.run(
        [*command, str(tmp_path / "mine.yaml")], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert alone.returncode != 0 and "give config.yaml first and yours after it" in alone.stdout + alone.stderr
    overlaid = subprocess.run(
        [*command, "config.yaml", str(tmp_path / "mine.yaml")], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert overlaid.returncode == 0, overlaid.stderr[-3000:]
    assert set(re.findall(r"dataset=([^,\s]+)", overlaid.stdout + overlaid.stderr)) == {
        "synthetic-rho0.9",
        "synthetic-rho0",
    }
    (tmp_path / "twice.yaml").write_text((REPO / ".test" / "config.yaml").read_text() + "threads: 1\nthreads: 2\n")
    twice = subprocess.run(
        [*command, str(tmp_path / "twice.yaml")], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert twice.returncode != 0 and re.search(
        r"twice\.yaml: the key 'threads' is given twice, on lines \d+ and \d+", twice.stdout + twice.stderr
    )


def mini_cub_config(root, methods: list[str]) -> dict:
    """The test config on the CUB fixture: a tiny CLIP of random weights (no pretraining), the given methods."""
    config = copy.deepcopy(TEST_CONFIG)
    config["datasets"] = {
        "mini-cub": {
            "adapter": "cub",
            "root": str(root),
            "image_size": 32,
            "shard_size": 4,
            "splits": {"train": {}, "test": {}},
        }
    }
    config["models"] = {"tiny-clip": {"adapter": "open_clip", "arch": "tiny-vit-32"}}
    config["methods"] = {name: TEST_CONFIG["methods"][name] for name in methods}
    return config


def test_a_split_that_lists_no_item_fails_when_the_dag_is_built_naming_it(tmp_path):
    """CUB's train_test_split.txt marking every image as a test image: the training split is empty. The run stops
    once the split is listed, naming it, instead of each job that reads it ending in a usage message."""
    from tests import fixtures

    cub = fixtures.cub(tmp_path / "cub")
    split = cub.root / "train_test_split.txt"
    split.write_text("".join(line.rsplit(" ", 1)[0] + " 0\n" for line in split.read_text().splitlines()))
    config = mini_cub_config(cub.root, ["ft"])
    result = snakemake(tmp_path, config, check=False)
    assert result.returncode != 0
    assert "config error: datasets.mini-cub.splits.train: the split lists no item" in result.stdout + result.stderr
    assert not (tmp_path / "results" / "logs" / "finetune").exists()  # no job that reads it started


def test_a_fixture_dataset_with_a_corruption_shift_runs_end_to_end(tmp_path):
    from tests import fixtures

    cub = fixtures.cub(tmp_path / "cub")
    config = mini_cub_config(cub.root, ["zs", "ft"])
    config["datasets"]["mini-cub"].update(
        splits={"train": {"masks": False}, "test": {}}, shifts=["clean", "gaussian_noise-3"]
    )
    config["heatmaps"]["methods"] = ["chefer"]
    snakemake(tmp_path, config)
    rows = pq.read_table(tmp_path / "results" / "metrics" / "rationality.parquet").to_pylist()
    assert sorted((r["shift"], r["method"]) for r in rows) == [
        ("clean", "ft"),
        ("clean", "zs"),
        ("gaussian_noise-3", "ft"),
        ("gaussian_noise-3", "zs"),
    ]
    assert {r["n"] for r in rows} == {len(cub.boxes)} and {r["n_skipped"] for r in rows} == {sum(cub.bad.values())}
    report = json.loads((tmp_path / "results" / "data" / "mini-cub" / "test" / "report.json").read_text())
    assert report["skipped"] == cub.bad
    clean = pq.read_table(
        tmp_path
        / "results"
        / "heatmaps"
        / "mini-cub"
        / "clean"
        / "tiny-clip"
        / "zs"
        / "chefer"
        / "shards-0000-0000.parquet"
    )
    noisy = pq.read_table(
        tmp_path
        / "results"
        / "heatmaps"
        / "mini-cub"
        / "gaussian_noise-3"
        / "tiny-clip"
        / "zs"
        / "chefer"
        / "shards-0000-0000.parquet"
    )
    assert clean.column("logits").to_pylist() != noisy.column("logits").to_pylist()
    assert "## Shift: gaussian_noise-3" in (tmp_path / "results" / "tables" / "pt_ir.md").read_text()
    figures = tmp_path / "results" / "figures"
    assert (figures / "shifts" / "mini-cub" / "tiny-clip" / "chefer.png").read_bytes()[:4] == b"\x89PNG"
    assert (figures / "gallery" / "mini-cub" / "clean" / "tiny-clip" / "chefer" / "rw.png").is_file()


def test_tiny_albef_and_blip_run_every_method_end_to_end(tmp_path, tiny_vocab):
    config = copy.deepcopy(TEST_CONFIG)
    pretrain = config["models"].pop("tiny-clip")["pretrain"]
    config["models"] = {
        name: {"adapter": name.split("-")[1], "arch": name, "tokenizer": str(tiny_vocab), "pretrain": pretrain}
        for name in ("tiny-albef", "tiny-blip")
    }
    config["heatmaps"]["methods"] = ["chefer"]  # every heatmap method on ALBEF/BLIP: test_heatmap_methods.py
    config["methods"].update(  # the parameter-efficient families, through the BERT text towers
        clip_adapter={"kind": "clip_adapter", "lr": 1.0e-2, "epochs": 2, "batch_size": 20},
        coop={
            "kind": "coop",
            "context": {"init": "template"},
            "optimizer": "sgd",
            "lr": 2.0e-3,
            "epochs": 2,
            "batch_size": 20,
        },
    )
    snakemake(tmp_path, config)
    rows = pq.read_table(tmp_path / "results" / "metrics" / "rationality.parquet").to_pylist()
    assert sorted((r["model"], r["method"]) for r in rows) == [
        (model, method)
        for model in ("tiny-albef", "tiny-blip")
        for method in ("clip_adapter", "coop", "flcp", "ft", "lp", "zs")
    ]
    assert all(r["n"] == 48 and r["n_undefined"] < 48 for r in rows)
    ft = load_state_dict(tmp_path / "results" / "checkpoints" / "tiny-synthetic" / "tiny-albef" / "ft.safetensors")
    assert "model.text_encoder.bert.embeddings.word_embeddings.weight" in ft and "model.temp" in ft


def test_a_model_taking_each_dataset_at_its_own_size_is_built_at_that_size_by_every_job(tmp_path):
    """`input_size: dataset`: every job that builds the model (pretraining, fine-tuning, explaining) builds it at the
    size of the dataset whose shards it reads, so one base pretrained at 32 px is fine-tuned and explained at 48; a
    second base continues the first's pretraining at 48 (`start_from`), from its file, which it waits for."""
    config = copy.deepcopy(TEST_CONFIG)
    config["datasets"]["tiny-48"] = {**config["datasets"]["tiny-synthetic"], "image_size": 48}
    config["models"]["tiny-clip"]["input_size"] = "dataset"
    continued = {**config["models"]["tiny-clip"]["pretrain"], "dataset": "tiny-48", "start_from": "tiny-clip"}
    config["models"]["tiny-clip-48"] = {**config["models"]["tiny-clip"], "pretrain": continued}
    printed = snakemake(tmp_path, config, "--dry-run", "--printshellcmds").stdout
    built: dict[tuple[str, str], set[str]] = {}
    for stage, model, rest in re.findall(r"python -m vlm_rationality (\w+) --model '(\{.*?\})'(.*)", printed):
        (dataset,) = set(re.findall(r"results/data/([^/]+)/", rest))
        spec = json.loads(model)
        assert spec["image_size"] == config["datasets"][dataset]["image_size"], (stage, dataset)
        built.setdefault((stage, spec.get("pretrained", "")), set()).add(dataset)
    base, both = "results/models/tiny-clip/base.safetensors", {"tiny-synthetic", "tiny-48"}
    assert built[("pretrain", "")] == {"tiny-synthetic"} and built[("pretrain", base)] == {"tiny-48"}
    assert built[("finetune", base)] == built[("explain", base)] == both
    (job,) = [b for b in printed.split("\n\n") if "rule pretrain_base:" in b and "model=tiny-clip-48" in b]
    assert base in re.search(r"input: (.*)", job).group(1)


@pytest.mark.parametrize("grid", ["paper.yaml", "paper-official.yaml"])
def test_the_paper_grid_dry_runs_on_fixture_roots(tmp_path, grid):
    from tests import fixtures

    config = yaml.safe_load((REPO / "config" / grid).read_text())
    for name in config["datasets"]:
        config["datasets"][name]["root"] = str(getattr(fixtures, name)(tmp_path / name).root)
    if "class_names" in config["datasets"]["imagenet"]:  # the official first synonyms of the fixture's two classes
        (tmp_path / "imagenet-classes.txt").write_text("tench, Tinca tinca\ngoldfish, Carassius auratus\n")
        config["datasets"]["imagenet"]["class_names"] = str(tmp_path / "imagenet-classes.txt")
    vocab = fixtures.wordpiece_vocab(tmp_path / "bert-base-uncased", 30_522)
    for model in ("albef-vit-b16", "blip-vit-b16"):  # the paths are checked; a dry run loads no weights
        checkpoint = tmp_path / Path(config["models"][model]["pretrained"]).name
        checkpoint.touch()
        config["models"][model].update(pretrained=str(checkpoint), tokenizer=str(vocab))
    assert planned_jobs(snakemake(tmp_path, config, "--dry-run"))["items"] == 4 * 2  # the plan waits for the indexes
    # `plan` counts the items from the folders now: its jobs are those Snakemake plans once the indexes exist
    priced = subprocess.run(
        [sys.executable, "-m", "vlm_rationality", "plan", "--configfile", str(tmp_path / "config.yaml")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    priced_jobs = {
        row.split("|")[1].strip(): int(row.split("|")[2].replace(",", ""))
        for row in priced.splitlines()
        if row.startswith("| ") and not row.startswith("| stage")
    }
    snakemake(tmp_path, config, "--until", "items")  # lists each split once; builds no model
    jobs = planned_jobs(snakemake(tmp_path, config, "--dry-run"))
    assert priced_jobs["prepare"] == jobs["prepare"] + jobs.get("prepare_shift", 0)
    assert all(priced_jobs[stage] == jobs[stage] for stage in ("finetune", "explain")), (priced, jobs)
    assert "GPU hours" in priced and "TiB" not in priced
    assert jobs["finetune"] == 4 * 4 * 3  # datasets x models x trained methods
    assert jobs["explain"] > 4 * 4 * 4  # ImageNet adds 75 corruption shifts
    assert not (tmp_path / "results" / "models").exists() and not (tmp_path / "results" / "checkpoints").exists()


def test_protocol_sensitivity_switches_one_choice_at_a_time_and_reuses_what_it_does_not_change(run, tmp_path):
    from vlm_rationality.metrics.rationality import category_counts, metrics_from_counts

    shutil.copytree(run, tmp_path, dirs_exist_ok=True)
    config = copy.deepcopy(TEST_CONFIG)
    config["methods"] = {name: config["methods"][name] for name in ("zs", "lp", "flcp")}
    config["heatmaps"]["methods"] = ["chefer"]
    config["protocol_sensitivity"] = {"switches": ["undefined_rma", "rollout_depth", "head", "precision"]}
    results = tmp_path / "results"
    existing = {p: p.stat().st_mtime_ns for p in [*results.rglob("*.parquet"), *results.rglob("*.safetensors")]}
    # lp@head trains; flcp@rollout_depth explains flcp's own checkpoint; undefined_rma re-scores what exists.
    assert planned_jobs(snakemake(tmp_path, config, "protocol_sensitivity", "--dry-run")) == {
        "finetune": 1,
        "explain": 3 * 2,
        "protocol_sensitivity": 1,
    }
    snakemake(tmp_path, config, "protocol_sensitivity")
    assert {p: p.stat().st_mtime_ns for p in existing} == existing
    checkpoints = results / "checkpoints" / "tiny-synthetic" / "tiny-clip"
    assert sorted(p.stem for p in checkpoints.glob("*@*.safetensors")) == ["lp@head"]

    def heatmaps(method):
        folder = results / "heatmaps" / "tiny-synthetic" / "clean" / "tiny-clip" / method / "chefer"
        return pa.concat_tables(pq.read_table(p) for p in sorted(folder.glob("*.parquet")))

    base, last_block = heatmaps("flcp"), heatmaps("flcp@rollout_depth")
    assert base.column("pred").to_pylist() == last_block.column("pred").to_pylist()  # the same checkpoint
    assert base.column("heatmap").to_pylist() != last_block.column("heatmap").to_pylist()

    rows = {
        (r["switch"], r["method"]): r
        for r in pacsv.read_csv(results / "tables" / "protocol_sensitivity.csv").to_pylist()
    }
    assert sorted(rows) == sorted(
        [("undefined_rma", m) for m in ("zs", "lp", "flcp")]
        + [("rollout_depth", "zs"), ("rollout_depth", "flcp"), ("head", "lp")]
    )
    assert rows[("rollout_depth", "flcp")]["accuracy_delta"] == 0
    zs = heatmaps("zs")  # undefined_rma: valid, by hand: a map-undefined RMA is valid, an empty mask invalid
    correct = zs.column("pred").to_numpy() == zs.column("label").to_numpy()
    rma = zs.column("rma").to_numpy(zero_copy_only=False).copy()
    status = zs.column("rma_status").to_pylist()
    rma[[s in ("constant_heatmap", "zero_mass", "nonfinite_heatmap") for s in status]] = 1.0
    rma[[s == "empty_mask" for s in status]] = 0.0
    by_hand = metrics_from_counts(category_counts(correct, rma, 0.5))
    for metric in ("prediction_trustworthiness", "inference_reliability"):
        expected, got = float(by_hand[metric]), rows[("undefined_rma", "zs")][f"{metric}_official"]
        assert (expected != expected and got != got) or got == pytest.approx(expected)
    table = (results / "tables" / "protocol_sensitivity.md").read_text()
    assert "## rollout_depth: every block → ZS/FLCP: the last block only" in table
    assert "Not measured: fp16 heatmaps need CUDA" in table and "normalization" not in table


def test_a_sweep_trains_one_named_variant_per_combination_and_an_edit_reruns_only_its_variants(run, tmp_path):
    shutil.copytree(run, tmp_path, dirs_exist_ok=True)
    config = copy.deepcopy(TEST_CONFIG)
    config["methods"] = {
        "zs": {"kind": "zs"},
        "lp": {**config["methods"]["lp"], "optimizer": ["adamw", "sgd"], "lr": [1.0e-2, 5.0e-2]},
    }
    config["heatmaps"]["methods"] = ["chefer"]
    variants = [
        "lp.lr=0.01.optimizer=adamw",
        "lp.lr=0.01.optimizer=sgd",
        "lp.lr=0.05.optimizer=adamw",
        "lp.lr=0.05.optimizer=sgd",
    ]
    snakemake(tmp_path, config)
    results = tmp_path / "results"
    checkpoints = results / "checkpoints" / "tiny-synthetic" / "tiny-clip"
    assert sorted(p.stem for p in checkpoints.glob("lp.*.safetensors")) == variants
    rows = {r["method"]: r for r in pq.read_table(results / "metrics" / "rationality.parquet").to_pylist()}
    assert sorted(rows) == sorted(["zs", *variants])
    assert (
        rows["lp.lr=0.05.optimizer=sgd"]["setting_optimizer"],
        rows["lp.lr=0.05.optimizer=sgd"]["setting_lr"],
        rows["lp.lr=0.05.optimizer=sgd"]["sweep_of"],
    ) == ("sgd", 0.05, "lp")
    assert (rows["zs"]["setting_lr"], rows["zs"]["sweep_of"]) == (None, None)
    table = (results / "tables" / "ablations.md").read_text()
    assert (
        "## tiny-synthetic · tiny-clip · clean: lp sweep" in table and "| method | lr | optimizer | accuracy |" in table
    )
    assert re.search(r"^\| LP \| 0\.05 \| sgd \| [0-9.]+ \[", table, re.M)
    assert "| ZS | " in table.split("fine-tuning family", 1)[1].split("##", 1)[0]
    ablations = pacsv.read_csv(results / "tables" / "ablations.csv").to_pylist()
    assert {r["settings"] for r in ablations if r["axis"] == "lp"} == {
        "lr=0.01;optimizer=adamw",
        "lr=0.01;optimizer=sgd",
        "lr=0.05;optimizer=adamw",
        "lr=0.05;optimizer=sgd",
    }
    assert "\\begin{tabular}{lllrrr}" in (results / "tables" / "ablations.tex").read_text()

    config["methods"]["lp"]["lr"] = [1.0e-2, 2.0e-2]  # one value edited: its two variants, nothing else
    kept = [p for p in results.rglob("*") if p.is_file() and "lr=0.01" in str(p)]
    dry = snakemake(tmp_path, config, "--dry-run")
    assert planned_jobs(dry) == {
        "finetune": 2,
        "explain": 2 * 2,
        "score": 1,
        "report": 1,
        "breakdowns": 1,
        "gallery": 1,
        "all": 1,
    }
    # the finetune jobs' outputs (`all` lists every checkpoint among its inputs)
    planned = set(re.findall(r"output: results/checkpoints/tiny-synthetic/tiny-clip/(\S+)\.safetensors", dry.stdout))
    assert planned == {"lp.lr=0.02.optimizer=adamw", "lp.lr=0.02.optimizer=sgd"}
    assert kept and all("lr=0.01" in p.name or "lr=0.01" in str(p.parent) for p in kept)


def test_the_paper_ablation_grid_dry_runs_on_a_fixture_imagenet(tmp_path):
    from tests import fixtures

    config = yaml.safe_load((REPO / "config" / "paper-ablations.yaml").read_text())
    config["datasets"]["imagenet"]["root"] = str(fixtures.imagenet(tmp_path / "imagenet").root)
    snakemake(tmp_path, config, "--until", "items")
    jobs = planned_jobs(snakemake(tmp_path, config, "--dry-run"))
    assert jobs["finetune"] == 2 + 6 + 2  # lp, flcp; the six FT variants; clip_adapter, coop
    assert jobs["explain"] == (1 + jobs["finetune"]) * 3  # every method (and zs) by three heatmap methods
    assert not (tmp_path / "results" / "checkpoints").exists()


def test_a_prompt_ensemble_is_a_zero_shot_method_whose_head_averages_its_templates(run, tmp_path):
    from vlm_rationality.data.shards import batches_under_shift
    from vlm_rationality.plan.config import check_config
    from vlm_rationality.plan.specs import base_model_spec, prompts

    shutil.copytree(run, tmp_path, dirs_exist_ok=True)
    config = copy.deepcopy(TEST_CONFIG)
    templates = ["a photo of a {name}", "a drawing of a {name}", "a {name}"]
    config["methods"]["zs-ensemble"] = {"kind": "zs", "templates": templates}
    planned = planned_jobs(snakemake(tmp_path, config, "--dry-run"))
    zs_jobs = list((run / "results" / "heatmaps" / "tiny-synthetic" / "clean" / "tiny-clip" / "zs").rglob("*.parquet"))
    assert planned["explain"] == len(zs_jobs) and not {"pretrain_base", "finetune"} & set(planned)  # nothing trains
    heatmaps = "results/heatmaps/tiny-synthetic/clean/tiny-clip/{}/chefer/shards-0000-0000.parquet"
    snakemake(tmp_path, config, heatmaps.format("zs-ensemble"))

    check_config(config, yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text()))
    base = str(tmp_path / "results" / "models" / "tiny-clip" / "base.safetensors")
    model = build_model(base_model_spec(config, "tiny-clip", base, "zs-ensemble")).eval()
    classes = prompts(config, "tiny-synthetic", "zs")
    with torch.no_grad():  # each template's unit embeddings, averaged per class and renormalised, by hand
        units = [
            F.normalize(model.encode_text([p.replace("a photo of a", t[:-7]) for p in classes]), dim=-1)
            for t in templates
        ]
        text = F.normalize(sum(units), dim=-1)
    files = {method: pq.read_table(tmp_path / heatmaps.format(method)) for method in ("zs", "zs-ensemble")}
    paths = sorted((tmp_path / "results" / "data" / "tiny-synthetic" / "test").glob("shard-*.parquet"))
    logits = {}
    with batches_under_shift(paths, 16, "clean") as batches, torch.no_grad():
        for batch in batches:
            image = F.normalize(model.encode_image(model.preprocess(batch.images)), dim=-1)
            logits.update(zip(batch.sample_ids, (model.logit_scale * image @ text.T).numpy()))
    stored = dict(zip(files["zs-ensemble"]["sample_id"].to_pylist(), files["zs-ensemble"]["logits"].to_pylist()))
    assert len(stored) == files["zs"].num_rows > 0
    for sample, row in stored.items():
        np.testing.assert_allclose(row, logits[sample], rtol=1e-3, atol=1e-3)  # stored as float16
    single = np.asarray(files["zs"]["logits"].to_pylist())
    assert not np.allclose(np.asarray(files["zs-ensemble"]["logits"].to_pylist()), single, atol=1e-2)


def test_robustness_predicts_logits_only_and_writes_its_table(run, tmp_path):
    shutil.copytree(run, tmp_path, dirs_exist_ok=True)
    config = copy.deepcopy(TEST_CONFIG)
    config["datasets"]["tiny-synthetic"]["splits"].update(
        val={"size": 40, "rho": 0.9},
        ood={"size": 40, "kind": "held_out_shape"},
        textures={"size": 40, "kind": "texture_only"},
        cue={"size": 40, "kind": "cue_conflict"},
    )
    folder = tmp_path / "ood-photos"  # an OOD set on disk: any layout, one unreadable file among the images
    (folder / "a" / "b").mkdir(parents=True)
    for i, size in enumerate([(50, 40), (32, 32), (64, 48)]):
        Image.fromarray(np.full((*size[::-1], 3), 60 * i, np.uint8)).save(folder / ("a" if i else "a/b") / f"{i}.png")
    (folder / "a" / "broken.jpg").write_bytes(b"not a jpeg")
    config["robustness"] = {
        "validation": "val",
        "ood": ["ood", "textures"],
        "cue_conflict": "cue",
        "ood_folders": {"photos": str(folder)},
    }
    results = tmp_path / "results"
    existing = {p: p.stat().st_mtime_ns for p in [*results.rglob("*.parquet"), *results.rglob("*.safetensors")]}
    # new splits are listed and prepared (the folder's size waits for its index); nothing else reruns
    planned = planned_jobs(snakemake(tmp_path, config, "--dry-run"))
    assert planned["predict"] == 4 and planned["robustness"] == 1
    assert set(planned) <= {"items", "prepare", "predict", "robustness", "all"}
    snakemake(tmp_path, config)
    assert {p: p.stat().st_mtime_ns for p in existing} == existing

    predictions = results / "predictions" / "tiny-synthetic" / "tiny-clip" / "ft.parquet"
    assert read_metadata(predictions)["schema"] == "predictions/2"
    table = pq.read_table(predictions)
    assert table.schema.field("logits").type == pa.list_(pa.float32(), 8)
    assert sorted(set(table.column("set").to_pylist())) == ["cue", "ood", "photos", "test/clean", "textures", "val"]
    assert table.column("set").to_pylist().count("photos") == 3  # at the eval transform of the dataset: 32 x 32
    cue = table.filter(pc.equal(table.column("set"), "cue"))
    assert all(
        b is not None and b != label
        for b, label in zip(cue.column("background").to_pylist(), cue.column("label").to_pylist())
    )
    rows = {r["method"]: r for r in pq.read_table(results / "metrics" / "robustness.parquet").to_pylist()}
    assert read_metadata(results / "metrics" / "robustness.parquet")["schema"] == "robustness-metrics/1"
    assert sorted(rows) == ["flcp", "ft", "lp", "zs"] and all(
        r["shift"] == "clean" and r["n"] == 48 for r in rows.values()
    )
    heatmaps = pq.read_table(
        results / "heatmaps" / "tiny-synthetic" / "clean" / "tiny-clip" / "ft" / "chefer" / "shards-0000-0000.parquet",
        columns=["pred", "label"],
    )
    first = table.filter(pc.equal(table.column("set"), "test/clean")).slice(0, heatmaps.num_rows)
    predicted = np.asarray(first.column("logits").to_pylist()).argmax(1)
    assert predicted.tolist() == heatmaps.column("pred").to_pylist()  # the explain stage's predictions, at float32
    for row in rows.values():
        assert 0 < row["temperature"] < 100 and 0 <= row["ece"] <= 1 and row["nll"] > 0 and 0 <= row["id_ece_ts"] <= 1
        assert 0 <= row["auroc.textures.mcm"] <= 1 and 0 <= row["fpr95.ood.energy"] <= 1
        assert 0 <= row["auroc.photos.msp"] <= 1 and row["n_skipped.photos"] == 1 and row["n_skipped"] == 0
        assert row["shape_decisions"] + row["texture_decisions"] <= 40
        assert row["cue_conflict_accuracy"] == row["shape_decisions"] / 40  # each cue image: two classes
    assert "## Shape bias" in (results / "tables" / "robustness.md").read_text()
    lines = {r["metric"]: r for r in pq.read_table(results / "metrics" / "id_ood.parquet").to_pylist()}
    assert read_metadata(results / "metrics" / "id_ood.parquet")["schema"] == "id-ood/1"
    assert {"auroc.ood.msp", "auroc.textures.mcm", "auroc.photos.energy", "shape_bias"} <= set(lines)
    assert all(r["n_classifiers"] == 4 and not abs(r["spearman"]) > 1 for r in lines.values())  # NaN: a tie
    assert -1 <= lines["auroc.ood.msp"]["spearman"] <= 1 and math.isfinite(lines["auroc.ood.msp"]["slope"])
    assert (results / "figures" / "id_ood.png").read_bytes()[:4] == b"\x89PNG"
    assert (results / "figures" / "reliability" / "tiny-synthetic" / "tiny-clip.png").read_bytes()[:4] == b"\x89PNG"


def test_a_validation_split_carved_from_training_is_never_trained_on(tmp_path):
    """On disk the validation split temperature scaling is fitted on is carved out of the training split: the
    training shards fine-tuning reads leave its items out, and the predictions score them as the validation set."""
    from tests import fixtures

    root = fixtures.imagenet(tmp_path / "imagenet").root
    for synset in ("n01440764", "n01443537"):
        for j in range(2, 10):
            fixtures.photo(root / "train" / synset / f"{synset}_{j}.JPEG", seed=j)
    config = copy.deepcopy(TEST_CONFIG)
    config["datasets"] = {
        "mini-in": {
            "adapter": "imagenet",
            "root": str(root),
            "image_size": 32,
            "shard_size": 8,
            "split_folders": {"test": "val"},
            "splits": {
                "train": {"masks": False},
                "test": {},
                "val": {"masks": False, "carve": {"from": "train", "fraction": 0.2, "seed": 0}},
            },
        }
    }
    config["models"] = {"tiny-clip": {"adapter": "open_clip", "arch": "tiny-vit-32"}}
    config["methods"] = {"ft": TEST_CONFIG["methods"]["ft"]}
    # two shifted test sets in their layouts: ImageNet-V2's folder 2 and ImageNet-R's shark are not classes here
    v2 = fixtures.shifted_imagenet(tmp_path / "imagenet-v2", "v2", [0, 1, 2])
    r = fixtures.shifted_imagenet(tmp_path / "imagenet-r", "r", ["n01443537", "n01484850"])
    config["robustness"] = {
        "validation": "val",
        "shifted_sets": {
            "v2": {"adapter": "imagenet_v2", "root": str(v2)},
            "r": {"adapter": "imagenet_r", "root": str(r)},
        },
    }
    snakemake(tmp_path, config, "results/metrics/robustness.parquet")
    data = tmp_path / "results" / "data" / "mini-in"
    trained = {
        i
        for shard in sorted((data / "train").glob("shard-*.parquet"))
        for i in pq.read_table(shard, columns=["sample_id"]).column("sample_id").to_pylist()
    }
    held_out = set(
        pq.read_table(data / "val" / "shard-0000.parquet", columns=["sample_id"]).column("sample_id").to_pylist()
    )
    assert len(trained) == 20 - 4 and len(held_out) == 4 and not trained & held_out  # a fifth of each class's 10
    predictions = pq.read_table(tmp_path / "results" / "predictions" / "mini-in" / "tiny-clip" / "ft.parquet")
    validation = predictions.filter(pc.equal(predictions.column("set"), "val"))
    assert set(validation.column("sample_id").to_pylist()) == held_out
    rows = {r["shift"]: r for r in pq.read_table(tmp_path / "results" / "metrics" / "robustness.parquet").to_pylist()}
    assert rows["clean"]["dataset"] == "mini-in" and 0 < rows["clean"]["temperature"] < 100
    for name, labels, skipped in (("v2", [0, 0, 1, 1], 2), ("r", [1, 1], 2)):
        shifted = predictions.filter(pc.equal(predictions.column("set"), f"test/{name}"))
        assert shifted.column("label").to_pylist() == labels and rows[name]["n_skipped"] == skipped
        logits = np.asarray(shifted.column("logits").to_pylist())
        kept = logits[:, sorted(set(labels))] if name == "r" else logits  # ImageNet-R: its own classes' logits
        right = np.asarray(sorted(set(labels)))[kept.argmax(1)] == np.asarray(labels)
        assert (
            rows[name]["accuracy"] == pytest.approx(right.mean())
            and rows[name]["temperature"] == rows["clean"]["temperature"]
        )


def test_the_paper_robustness_grid_dry_runs_on_fixture_folders(tmp_path):
    """config/paper-robustness.yaml on a fixture ImageNet, fixture OOD folders and stimuli: the config checks, the
    carved validation split is listed, and one predict job per (model, method) is planned."""
    from tests import fixtures

    config = yaml.safe_load((REPO / "config" / "paper-robustness.yaml").read_text())
    config["datasets"]["imagenet"]["root"] = str(fixtures.imagenet(tmp_path / "imagenet").root)
    config["datasets"]["imagenet"]["splits"]["val"]["carve"]["fraction"] = 0.5  # 2% of 2 images per class is none
    section = config["robustness"]
    for name in section["ood_folders"]:
        fixtures.photo(tmp_path / "ood" / name / "sub" / "0.jpg")
        section["ood_folders"][name] = str(tmp_path / "ood" / name)
    fixtures.photo(tmp_path / "cue-conflict" / "cat" / "cat1-dog2.png")
    section["cue_conflict_folder"] = str(tmp_path / "cue-conflict")
    for name, entry in section["shifted_sets"].items():
        layout = "v2" if entry["adapter"] == "imagenet_v2" else "r"
        entry["root"] = str(
            fixtures.shifted_imagenet(tmp_path / name, layout, [0] if layout == "v2" else ["n01440764"])
        )
    snakemake(tmp_path, config, "--until", "items")
    listed = sorted(p.parent.name for p in (tmp_path / "results" / "data" / "imagenet").glob("*/items.parquet"))
    assert listed == ["test", "train", "val"]  # the folders are listed once the plan reaches them
    jobs = planned_jobs(snakemake(tmp_path, config, "--dry-run"))
    assert jobs["predict"] == 2 * 4 and jobs["robustness"] == 1 and jobs["finetune"] == 2 * 3


def test_discovery_clusters_the_scored_split_regions_and_writes_its_table_and_grids(run, tmp_path):
    shutil.copytree(run, tmp_path, dirs_exist_ok=True)
    config = copy.deepcopy(TEST_CONFIG)
    config["discovery"] = {"methods": ["zs", "ft"]}
    planned = planned_jobs(snakemake(tmp_path, config, "--dry-run"))
    assert planned["discover"] == 2 and planned["discovery"] == 1 and set(planned) <= {"discover", "discovery", "all"}
    snakemake(tmp_path, config)
    results = tmp_path / "results"
    assert read_metadata(results / "metrics" / "discovery.parquet")["schema"] == "discovery-metrics/1"
    rows = {r["method"]: r for r in pq.read_table(results / "metrics" / "discovery.parquet").to_pylist()}
    assert sorted(rows) == ["ft", "zs"]
    test = sorted((results / "data" / "tiny-synthetic" / "test").glob("shard-*.parquet"))
    masks = {}
    for path in test:
        prepared = PreparedShard(path).read()
        masks.update(zip(prepared["sample_id"], prepared["mask"]))
    for method, row in rows.items():
        assert row["n_images"] == 48 and 16 <= row["k"] < 40 and -1 <= row["silhouette"] <= 1
        random = row["random_precision_at_10"]  # Random's expectation: the share of all regions that show the cue
        assert (random is None) == (row["top_cluster"] is None) and (random is None or 0 <= random <= 1)
        assert 0 <= row["george_precision_at_10"] <= 1 and row["george_class"] in range(8)  # the image-level baseline
        regions = pq.read_table(
            results / "discovery" / "tiny-synthetic" / "tiny-clip" / f"{method}.parquet"
        ).to_pylist()
        assert len(regions) == row["n_regions"] and {r["kind"] for r in regions} == {"object", "background"}
        for r in regions:
            x0, y0, x1, y1 = r["box"]
            mask = masks[r["sample_id"]]
            assert (mask[y0:y1, x0:x1].sum() == mask.sum()) if r["kind"] == "object" else not mask[y0:y1, x0:x1].any()
        assert sorted(r["rank"] for r in regions if r["rank"] >= 0) == list(range(row["top_cluster_size"]))
        png = results / "figures" / "discovery" / "tiny-synthetic" / "tiny-clip" / f"{method}.png"
        assert png.read_bytes()[:4] == b"\x89PNG"
    table = (results / "tables" / "discovery.md").read_text()
    assert "| tiny-synthetic | tiny-clip | FT |" in table and "George Precision@10 (%)" in table

    # RaVL's Stage 2 on FT's discovery: the training regions are assigned to FT's clusters, then ravl and its group
    # DRO baseline fine-tune, two seeds each, selecting their epoch on a held-out split; the outcomes over runs
    stage2 = {"mitigates": "ft", "lr": 1e-4, "epochs": 3, "batch_size": 20, "seed": [0, 1]}
    stage2["early_stopping"] = {"split": "val", "patience": 1}
    config["methods"]["ravl"] = {"kind": "ravl", **stage2}
    config["methods"]["vl-gdro"] = {"kind": "vl-gdro", **stage2}
    config["methods"]["vl-gdro"]["early_stopping"] = {"split": "val", "patience": 1, "metric": "worst_group"}
    # every (class, own background) group of the held-out split 14+ images, so its worst group can be selected on
    config["datasets"]["tiny-synthetic"]["splits"]["val"] = {"size": 320, "rho": 0.5}
    config["replicates"] = {"reference": "vl-gdro"}
    planned = planned_jobs(snakemake(tmp_path, config, "--dry-run"))
    assert planned["assign_regions"] == 1 and planned["finetune"] == 4 and "discover" not in planned
    assert planned["prepare"] == 8 and planned["replicates"] == 1  # the held-out split's shards
    snakemake(tmp_path, config)
    assigned = results / "regions" / "tiny-synthetic" / "train" / "tiny-clip" / "ft.parquet"
    meta = read_metadata(assigned)
    assert meta["schema"] == "training-regions/1" and meta["keys"]["method"] == "ft"
    found = read_metadata(results / "discovery" / "tiny-synthetic" / "tiny-clip" / "ft.parquet")["clusters"]
    assert meta["ranked"] == found["ranked"] and len(found["medoids"]) == rows["ft"]["k"]
    regions = pq.read_table(assigned).to_pydict()
    train = {
        s
        for path in (results / "data" / "tiny-synthetic" / "train").glob("shard-*.parquet")
        for s in PreparedShard(path).read()["sample_id"]
    }
    assert set(regions["sample_id"]) == train and set(regions["cluster"]) <= set(range(rows["ft"]["k"]))
    assert meta["summary"]["n_regions"] == len(regions["sample_id"])
    sidecar = json.loads((results / "checkpoints" / "tiny-synthetic" / "tiny-clip" / "ravl.seed=1.json").read_text())
    assert sidecar["method"]["regions"] == "results/regions/tiny-synthetic/train/tiny-clip/ft.parquet"
    assert (
        sidecar["method"]["region_loss"]["weight"] == 0.8 and str(assigned.relative_to(tmp_path)) in sidecar["inputs"]
    )
    held_out = [f"results/data/tiny-synthetic/val/shard-{i:04d}.parquet" for i in range(8)]
    assert sidecar["method"]["validation"] == held_out and set(held_out) <= set(sidecar["inputs"])
    metrics = sidecar["metrics"]
    assert 1 <= metrics["best_epoch"] <= metrics["epochs"] <= 3 and len(metrics["validation"]) == metrics["epochs"]
    gdro = json.loads((results / "checkpoints" / "tiny-synthetic" / "tiny-clip" / "vl-gdro.seed=0.json").read_text())
    assert (
        gdro["method"]["validation_groups"] == {"tied": list(range(8))} and "validation_groups" not in sidecar["method"]
    )
    scored = {r["method"] for r in pq.read_table(results / "metrics" / "rationality.parquet").to_pylist()}
    assert {"ravl.seed=0", "ravl.seed=1", "vl-gdro.seed=0", "vl-gdro.seed=1"} <= scored
    replicates = {
        (r["method"], r["metric"]): r for r in pacsv.read_csv(results / "tables" / "replicates.csv").to_pylist()
    }
    assert replicates["ravl", "accuracy"]["runs"] == 2 and replicates["ravl", "accuracy"]["paired_runs"] == 2
    assert "Minus VL-GDRO" in (results / "tables" / "replicates.md").read_text()


def test_twins_add_the_true_rationale_and_a_changed_twins_setting_reruns_only_what_reads_the_twins(run, tmp_path):
    shutil.copytree(run, tmp_path, dirs_exist_ok=True)
    config = copy.deepcopy(TEST_CONFIG)
    config["twins"] = {"masks": ["exact", "dilate-1", "box"]}
    config["factors"] = {"datasets": ["tiny-synthetic"]}  # with the twins: PT* per visual factor
    results = tmp_path / "results"
    existing = {
        p: p.stat().st_mtime_ns
        for p in [*results.rglob("*.parquet"), *results.rglob("*.safetensors")]
        if "metrics" not in p.parts
    }
    planned = planned_jobs(snakemake(tmp_path, config, "--dry-run"))
    assert planned["twins"] == 8 and planned["validity"] == 1 and planned["factors"] == 1  # 4 methods x 2 groups
    assert set(planned) == {"twins", "validity", "factors", "score", "report", "all"}
    snakemake(tmp_path, config)
    assert {p: p.stat().st_mtime_ns for p in existing} == existing

    rows = pq.read_table(results / "metrics" / "rationality.parquet").to_pylist()
    for row in rows:
        assert 0 <= row["n_object_grounded"] <= row["n"] == 48
        assert row["pt_true_ci_low"] <= row["pt_true"] <= row["pt_true_ci_high"] or math.isnan(row["pt_true"])
        assert 0 <= row["acc_background_alone"] <= 1 and row["twins_agreement"] == 1.0
        assert 0 <= row["region_acc_worst_group"] <= row["region_accuracy"] <= 1  # the object alone, RaVL's region
    twins = pq.read_table(results / "twins" / "tiny-synthetic" / "tiny-clip" / "ft" / "shards-0000-0000.parquet")
    assert (
        read_metadata(results / "twins" / "tiny-synthetic" / "tiny-clip" / "ft" / "shards-0000-0000.parquet")["schema"]
        == "twins/2"
    )
    assert twins.num_rows == 40 and twins.schema.field("twin_pred").type == pa.list_(pa.int32(), 8)
    heatmaps = pq.read_table(
        results / "heatmaps" / "tiny-synthetic" / "clean" / "tiny-clip" / "ft" / "chefer" / "shards-0000-0000.parquet",
        columns=["sample_id", "pred"],
    )
    assert twins.column("sample_id").to_pylist() == heatmaps.column("sample_id").to_pylist()
    assert twins.column("pred").to_pylist() == heatmaps.column("pred").to_pylist()  # the classifier explain ran
    validity = pq.read_table(results / "metrics" / "validity.parquet").to_pylist()
    truths = {"twins", "all-but-one", "cue", "beyond-zs"}
    assert {r["truth"] for r in validity} == truths
    rma = [r for r in validity if r["signal"] == "rma"]
    assert len(rma) == 4 * 2 * 3 * len(truths)  # methods x heatmap methods x masks x truths
    baseline = [r for r in validity if r["signal"] == "margin"]
    assert len(baseline) == 4 * len(truths) and {r["heatmap_method"] for r in baseline} == {"none"}
    for row in validity:
        assert row["n_right_grounded"] <= row["n_right"] <= row["n"] == 48
        if row["truth"] == "all-but-one":  # it moves PT* only; no signal is analysed against it
            assert row["auroc_within"] is None and row["pt_true"] is not None
        elif row["auroc_within"] is not None and not math.isnan(row["auroc_within"]):
            assert row["n_scored"] <= row["n_right"]
            assert row["auroc_within_ci_low"] <= row["auroc_within_ci_high"]
    by_key = {(r["method"], r["heatmap_method"], r["mask"]): r for r in rma if r["truth"] == "twins"}
    score = {(r["method"], r["heatmap_method"]): r for r in rows}
    for (method, heatmap), row in score.items():  # RMA recomputed from the stored maps: the score table's PT
        exact = by_key[(method, heatmap, "exact")]
        assert exact["pt_true"] == pytest.approx(row["pt_true"], nan_ok=True)
        assert exact["prediction_trustworthiness"] == pytest.approx(
            row["prediction_trustworthiness"], abs=0.03, nan_ok=True
        )
        assert by_key[(method, heatmap, "box")]["mean_signal_right"] >= exact["mean_signal_right"] - 1e-6 or math.isnan(
            exact["mean_signal_right"]
        )
    table = (results / "tables" / "pt_ir.md").read_text()
    lead = table.index("#### True prediction trustworthiness, the rationale this benchmark endorses (PT*_cue")
    paper = table.index("#### Prediction trustworthiness, the paper's protocol")
    assert lead < paper < table.index("#### True prediction trustworthiness (PT*")
    assert all(row["pt_true_cue"] is not None for row in rows)  # the synthetic twins name their cue's class
    assert "| chefer | rma | dilate-1 |" in (results / "tables" / "validity.md").read_text()
    # the localisation signals on the real maps of the run, against Quantus
    heatmaps = sorted(
        (results / "heatmaps" / "tiny-synthetic" / "clean" / "tiny-clip" / "ft" / "chefer").glob("*.parquet")
    )
    with contextlib.chdir(tmp_path):  # a heatmap file names its source shards relative to the run
        stored = next(iter(stored_evidence(heatmaps).values()))
    assert_quantus_parity(pytest.importorskip("quantus"), stored["heatmap"], stored["mask"])
    assert (results / "figures" / "validity.png").read_bytes()[:4] == b"\x89PNG"
    assert_factors_agree_with_the_score_table(results, rows)

    config["twins"]["backgrounds"] = 4  # the twins' own setting: their jobs and what reads them
    planned = planned_jobs(snakemake(tmp_path, config, "--dry-run"))
    assert planned == {"twins": 8, "score": 1, "validity": 1, "factors": 1, "report": 1, "all": 1}
    config["twins"]["backgrounds"] = 8
    config["twins"]["agreement"] = 0.5  # read by the jobs that score the twins only
    planned = planned_jobs(snakemake(tmp_path, config, "--dry-run"))
    assert planned == {"score": 1, "validity": 1, "factors": 1, "report": 1, "all": 1}


def assert_factors_agree_with_the_score_table(results: Path, rows: list[dict]) -> None:
    """The factor table's `all` rows are the score table's numbers (the same samples, threshold and bootstrap); each
    factor holds the generator's share of the samples."""
    factors = pq.read_table(results / "metrics" / "factors.parquet").to_pylist()
    assert read_metadata(results / "metrics" / "factors.parquet")["schema"] == "factor-metrics/1"
    overall = {(r["method"], r["heatmap_method"]): r for r in factors if r["factor"] == "all"}
    assert overall.keys() == {(r["method"], r["heatmap_method"]) for r in rows}
    for row in rows:
        found = overall[(row["method"], row["heatmap_method"])]
        for metric in ("accuracy", "prediction_trustworthiness", "pt_true", "pt_true_cue", "pt_true_cue_ci_low"):
            assert found[metric] == pytest.approx(row[metric], nan_ok=True), metric
        assert found["n"] == 48 and found["n_unannotated"] == 0
    for row in factors:
        if row["factor"] in ("pose", "smaller", "larger", "position", "low_contrast"):
            assert row["n"] == 16  # a tertile of 48 generated samples whose draws all differ
    assert "| tiny-synthetic | tiny-clip | FT | pose | 16 |" in (results / "tables" / "factors.md").read_text()
    assert (results / "figures" / "factors.png").read_bytes()[:4] == b"\x89PNG"


def test_models_fine_tuned_elsewhere_are_scored_by_one_method_entry_in_each_format(run, tmp_path):
    """The run's own FT and FLCP classifiers, exported as an outside trainer saves them (a whole CLIP state dict in a
    DDP-wrapped torch file; an image tower as safetensors plus a linear head; a checkpoint of another run), then
    loaded by `kind: external`: each must reproduce the numbers of the classifier it was exported from."""
    shutil.copytree(run, tmp_path, dirs_exist_ok=True)
    results, elsewhere = tmp_path / "results", tmp_path / "elsewhere"
    elsewhere.mkdir()
    trained = results / "checkpoints" / "tiny-synthetic" / "tiny-clip"
    flcp, ft = load_state_dict(trained / "flcp.safetensors"), load_state_dict(trained / "ft.safetensors")
    backbone = {f"module.{k.removeprefix('model.')}": v for k, v in flcp.items() if k.startswith("model.")}
    torch.save({"state_dict": backbone, "epoch": 1}, elsewhere / "flcp-ddp.pt")
    tower = {k.removeprefix("model."): v for k, v in ft.items() if k.startswith("model.visual.")}
    save_file(tower, elsewhere / "tower.safetensors")
    torch.save({"weight": ft["head.weight"], "bias": ft["head.bias"]}, elsewhere / "head.pt")
    shutil.copy(trained / "ft.safetensors", elsewhere / "tiny-clip.safetensors")
    config = copy.deepcopy(TEST_CONFIG)
    config["methods"] = {
        "zs": {"kind": "zs"},
        "ext-state": {"kind": "external", "weights": str(elsewhere / "flcp-ddp.pt")},
        "ext-probe": {
            "kind": "external",
            "weights": str(elsewhere / "tower.safetensors"),
            "linear_head": str(elsewhere / "head.pt"),
            "head": "cosine",
        },
        "ext-run": {"kind": "external", "checkpoint": str(elsewhere / "{model}.safetensors")},
    }
    twinned = planned_jobs(snakemake(tmp_path, {**config, "twins": {"masks": ["exact"]}}, "--dry-run"))
    assert twinned["twins"] == 4 * 2  # twinned like any method: (zs and) the three loaded, two shard groups each
    assert planned_jobs(snakemake(tmp_path, config, "--dry-run"))["finetune"] == 3
    snakemake(tmp_path, config)

    before = {
        (r["method"], r["heatmap_method"]): r
        for r in pq.read_table(run / "results" / "metrics" / "rationality.parquet").to_pylist()
    }
    after = {
        (r["method"], r["heatmap_method"]): r
        for r in pq.read_table(results / "metrics" / "rationality.parquet").to_pylist()
    }
    files = {
        "ext-state": {"flcp-ddp.pt"},
        "ext-probe": {"tower.safetensors", "head.pt"},
        "ext-run": {"tiny-clip.safetensors"},
    }
    for external, source in (("ext-state", "flcp"), ("ext-probe", "ft"), ("ext-run", "ft")):
        for heatmap in ("chefer", "gradcam"):
            new, old = after[(external, heatmap)], before[(source, heatmap)]
            for metric in ("accuracy", "prediction_trustworthiness", "inference_reliability"):
                assert new[metric] == pytest.approx(old[metric], nan_ok=True), (external, heatmap, metric)
        inputs = json.loads((trained / f"{external}.json").read_text())["inputs"]  # its files hashed, no shard read
        assert {Path(p).name for p in inputs if str(elsewhere) in p} == files[external]
        assert not any("data" in Path(p).parts for p in inputs)
    table = (results / "tables" / "pt_ir.md").read_text()
    assert table.count("| EXT-PROBE | tiny-clip |") >= 3


@pytest.mark.parametrize("deleted", ["ft.safetensors", "ft.json"], ids=["checkpoint", "sidecar"])
def test_a_deleted_checkpoint_is_trained_again_with_what_reads_it(run, tmp_path, deleted):
    shutil.copytree(run, tmp_path, dirs_exist_ok=True)
    (tmp_path / "results" / "checkpoints" / "tiny-synthetic" / "tiny-clip" / deleted).unlink()
    explained = list(
        (tmp_path / "results" / "heatmaps" / "tiny-synthetic" / "clean" / "tiny-clip" / "ft").rglob("*.parquet")
    )
    planned = planned_jobs(snakemake(tmp_path, TEST_CONFIG, "--dry-run"))
    assert planned["finetune"] == 1 and planned["explain"] == len(explained) > 0 and planned["score"] == 1, planned


@pytest.mark.parametrize(
    "source, message",
    [
        ("train/shard-0000.parquet", "holds split 'train', but this job reads 'test'"),
        ("test/shard-0000.parquet", "holds shard 0 (items 0-39 of split 'test'), not shard 0001"),
    ],
    ids=["another-split", "same-split"],
)
def test_a_shard_copied_over_another_is_refused_naming_it(run, tmp_path, source, message):
    """Scored, it would add another split's samples, or the same samples again, to the counts without a word."""
    shutil.copytree(run, tmp_path, dirs_exist_ok=True)
    data = tmp_path / "results" / "data" / "tiny-synthetic"
    shutil.copy(data / source, data / "test" / "shard-0001.parquet")
    result = snakemake(tmp_path, TEST_CONFIG, check=False)
    assert result.returncode != 0
    logs = "\n".join(p.read_text() for p in (tmp_path / "results" / "logs" / "explain").rglob("*.log"))
    assert f"{Path('results/data/tiny-synthetic/test/shard-0001.parquet')} {message}" in logs


def test_the_heatmap_files_read_as_one_table_with_pandas_polars_and_duckdb(run):
    """Each file carries its dataset, shift, model, method and heatmap method as columns: a glob is one table."""
    import duckdb
    import pandas as pd
    import polars as pl

    files = sorted((run / "results" / "heatmaps").rglob("*.parquet"))
    columns = ["dataset", "shift", "model", "method", "heatmap_method", "label", "pred"]
    by_pandas = pd.concat([pd.read_parquet(path, columns=columns) for path in files])
    by_polars = pl.scan_parquet(str(run / "results" / "heatmaps" / "**" / "*.parquet")).select(columns).collect()
    by_duckdb = duckdb.sql(
        f"SELECT method, heatmap_method, avg((label = pred)::DOUBLE) AS accuracy FROM "
        f"read_parquet('{run}/results/heatmaps/**/*.parquet') GROUP BY ALL"
    ).fetchall()
    metrics = {
        (r["method"], r["heatmap_method"]): r
        for r in pq.read_table(run / "results" / "metrics" / "rationality.parquet").to_pylist()
    }
    assert len(by_pandas) == len(by_polars) == sum(r["n"] for r in metrics.values())
    assert set(by_polars["dataset"].unique()) == {"tiny-synthetic"} and set(by_pandas["shift"]) == {"clean"}
    assert {(m, h): pytest.approx(a) for m, h, a in by_duckdb} == {key: r["accuracy"] for key, r in metrics.items()}
