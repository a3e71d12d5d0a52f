"""The conda environment `--sdm conda` jobs run in keeps up with the package's own dependencies."""

from __future__ import annotations

import re
import tomllib

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.snakemake_runs import REPO

# What runs the workflow rather than its jobs: Snakemake and its cluster plugin are not imported by any job.
WORKFLOW_SIDE = {"snakemake", "snakemake-executor-plugin-slurm"}


def _env_pins() -> dict[str, str]:
    env = yaml.safe_load((REPO / "envs" / "vlm-rationality.yaml").read_text())
    pip = next(entry["pip"] for entry in env["dependencies"] if isinstance(entry, dict))
    pins = {}
    for line in pip:
        name, version = re.fullmatch(r"([A-Za-z0-9_.-]+)==(\S+)", line).groups()
        pins[canonicalize_name(name)] = version
    return pins


def test_the_conda_env_pins_every_runtime_dependency_at_a_version_the_package_accepts():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = _env_pins()
    missing, refused = [], []
    for requirement in map(Requirement, project["dependencies"]):
        name = canonicalize_name(requirement.name)
        if name in WORKFLOW_SIDE:
            continue
        if name not in pins:
            missing.append(name)
        elif not requirement.specifier.contains(pins[name], prereleases=True):
            refused.append(f"{name}=={pins[name]} (pyproject: {requirement.specifier})")
    assert not missing, f"envs/vlm-rationality.yaml lacks {missing}: a job that imports them fails under --sdm conda"
    assert not refused, f"envs/vlm-rationality.yaml pins versions pyproject.toml refuses: {refused}"
    assert set(pins) <= {canonicalize_name(Requirement(r).name) for r in project["dependencies"]}, (
        "the env pins a package pyproject.toml does not depend on"
    )
