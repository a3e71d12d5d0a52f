"""The workflow submitted through `--profile workflow/profiles/slurm` to a real one-node SLURM cluster."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.cluster.slurm import ACCOUNT, PARTITION, SlurmCluster, missing_programs
from tests.snakemake_runs import REPO, TEST_CONFIG, planned_jobs, snakemake

pytestmark = pytest.mark.slow
# One heatmap method and one explain job per (model, method) keep the cluster run at 17 sbatch jobs; the local run
# explains with more (the rows do not depend on how shards are grouped into jobs).
CONFIG = copy.deepcopy(TEST_CONFIG)
CONFIG["heatmaps"].update(methods=["chefer"], shards_per_job=2)
CONFIG["heatmaps"]["threads"] = 2  # explain jobs ask for 2 CPUs, the one-thread jobs for 1 (their maps do not change)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    missing = missing_programs()
    if missing:
        pytest.skip(
            f"SLURM is not installed ({', '.join(missing)} missing): install Debian's slurmctld slurmd slurmdbd "
            "slurm-client mariadb-server munge (.ci/run does, as root)"
        )
    if os.geteuid() != 0:
        pytest.skip("the test cluster's slurmd must run as root to start jobs; run the tests as root (CI does)")
    with SlurmCluster(tmp_path_factory.mktemp("slurm")) as cluster:
        yield cluster


def submit(
    cluster: SlurmCluster, workdir: Path, config: dict, *args: str, check: bool = True
) -> subprocess.CompletedProcess:
    """Snakemake with the slurm profile, as a user runs it, with this cluster's partition and account."""
    return snakemake(
        workdir,
        config,
        "--profile",
        str(REPO / "workflow" / "profiles" / "slurm"),
        "--default-resources",
        f"slurm_partition={PARTITION}",
        f"slurm_account={ACCOUNT}",
        "--slurm-init-seconds-before-status-checks",
        "1",
        "--latency-wait",
        "5",
        *args,
        check=check,
        env=cluster.env,
    )


def sbatch_jobs(cluster: SlurmCluster, workdir: Path) -> list[dict[str, str]]:
    """The jobs sacct recorded for this workflow run (their comment names the rule)."""
    out = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-a", "--format", "JobID,State,WorkDir%200,Comment%100,ReqCPUS"],
        env=cluster.env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = [
        dict(zip(("id", "state", "workdir", "comment", "cpus"), line.split("|"))) for line in out.splitlines() if line
    ]
    return [row for row in rows if row["workdir"].startswith(str(workdir)) or str(workdir) in row["comment"]]


def metrics(workdir: Path) -> str:
    """The metrics rows, the cue's mean relevance mass to 6 decimals: it averages raw map values, which an explain
    job on 2 threads (its SLURM reservation) and on 1 sums in another order, 1e-8 apart; every other value is a
    count or a ratio of counts."""
    rows = pq.read_table(workdir / "results" / "metrics" / "rationality.parquet").to_pylist()
    for row in rows:
        for key in ("cue_mass", "cue_mass_ci_low", "cue_mass_ci_high"):
            row[key] = None if row[key] is None else round(row[key], 6)
    return json.dumps([row for row in rows if row["heatmap_method"] in CONFIG["heatmaps"]["methods"]])


@pytest.fixture(scope="module")
def slurm_run(cluster, tmp_path_factory) -> tuple[Path, float]:
    workdir = tmp_path_factory.mktemp("slurm-workflow")
    start = time.monotonic()
    submit(cluster, workdir, CONFIG)
    return workdir, time.monotonic() - start


def test_the_workflow_runs_through_sbatch_and_matches_the_local_run(cluster, slurm_run, local_run):
    workdir, seconds = slurm_run
    jobs = sbatch_jobs(cluster, workdir)
    print(f"SLURM run: {seconds:.0f} s, {len(jobs)} sbatch jobs")
    # items 3, prepare 5, pretrain 1, finetune 3, explain 4, score 1, breakdowns 1 (it reads every heatmap file, as
    # score does); prepare_report and report are local rules
    assert len(jobs) == 18 and {job["state"] for job in jobs} == {"COMPLETED"}
    # each job reserves the CPUs its rule uses: the 4 explain jobs 2 (heatmaps.threads), the 14 others 1 (training:
    # the config's 1 thread; items, prepare, score and breakdowns: 1 whatever the config says)
    assert sorted(job["cpus"] for job in jobs) == ["1"] * 14 + ["2"] * 4, jobs
    assert metrics(workdir) == metrics(local_run)


def test_a_failing_job_fails_the_run_and_a_rerun_resumes(cluster, slurm_run, local_run, tmp_path):
    workdir, _ = slurm_run
    shutil.copytree(workdir, tmp_path, dirs_exist_ok=True)
    for stage in ("metrics", "tables", "figures"):  # a run that has not got to scoring yet ...
        shutil.rmtree(tmp_path / "results" / stage)
    checkpoint = tmp_path / "results" / "checkpoints" / "tiny-synthetic" / "tiny-clip" / "ft.safetensors"
    checkpoint.write_bytes(b"not a checkpoint")  # ... with a damaged checkpoint: the jobs that read it fail
    start = time.monotonic()
    result = submit(cluster, tmp_path, CONFIG, "--retries", "0", check=False)
    text = result.stdout + result.stderr
    assert result.returncode != 0, text[-3000:]
    assert "Error in rule explain" in text, text[-3000:]
    assert time.monotonic() - start < 300  # reported, not hung
    assert any(job["state"] == "FAILED" for job in sbatch_jobs(cluster, tmp_path))
    logs = (tmp_path / "results" / "logs" / "explain" / "tiny-synthetic" / "clean" / "tiny-clip" / "ft").rglob("*.log")
    assert any("ft.safetensors" in log.read_text() for log in logs)

    # Remove the damaged file and run again: what finished stays, only the failed part and what follows runs.
    checkpoint.unlink()
    planned = planned_jobs(submit(cluster, tmp_path, CONFIG, "--dry-run"))
    assert planned == {
        "finetune": 1,
        "explain": 1,
        "score": 1,
        "report": 1,
        "breakdowns": 1,
        "gallery": 1,
        "all": 1,
    }, planned
    submit(cluster, tmp_path, CONFIG)
    assert metrics(tmp_path) == metrics(local_run)
