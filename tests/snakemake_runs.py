"""Running the real workflow on a config in a temporary directory, as the workflow tests do."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
TEST_CONFIG = yaml.safe_load((REPO / ".test" / "config.yaml").read_text())
SCHEMA = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())


def snakemake(
    workdir: Path, config: dict, *args: str, check: bool = True, env: dict | None = None
) -> subprocess.CompletedProcess:
    """`snakemake --cores 2 ARGS` on this repository's Snakefile with `config`, in `workdir`; `env` adds variables."""
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    env = {**os.environ, **(env or {}), "HF_HUB_OFFLINE": "1"}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env["PATH"]])
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(workdir / "config.yaml"),
        "--cores",
        "2",
        *args,
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    if check and result.returncode != 0:
        raise AssertionError(
            f"snakemake failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        )
    return result


def planned_jobs(result: subprocess.CompletedProcess) -> dict[str, int]:
    """Rule -> count from the 'Job stats' table of a dry run (empty when nothing is to be done)."""
    text = result.stdout + result.stderr
    table = text.split("Job stats:", 1)[1].split("total", 1)[0] if "Job stats:" in text else ""
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", table, re.M)}
