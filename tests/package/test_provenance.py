"""Every artefact names the code that wrote it: the package version, the checkout's commit, the libraries."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys

import pyarrow as pa
import torch
import yaml
from safetensors import safe_open

from tests.snakemake_runs import REPO
from vlm_rationality import __version__
from vlm_rationality.io import read_provenance, with_metadata, write_parquet
from vlm_rationality.models.checkpoint import PROVENANCE_KEY, save_state_dict
from vlm_rationality.provenance import made_by_lines, provenance


def expected_commit() -> str:
    """The checkout's HEAD as git says it, or `unknown` where the tests run outside a git checkout."""
    done = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else "unknown"


def test_provenance_names_the_version_the_commit_and_the_libraries():
    made = provenance()
    assert made["vlm_rationality"] == __version__
    assert made["git_commit"].removesuffix("+dirty") == expected_commit()
    assert made["torch"] == importlib.metadata.version("torch")
    assert made["open_clip"] == importlib.metadata.version("open_clip_torch")


def test_version_flag_prints_the_version_and_commit():
    done = subprocess.run(
        [sys.executable, "-m", "vlm_rationality", "--version"], capture_output=True, text=True, check=True
    )
    assert done.stdout.startswith(f"vlm-rationality {__version__} (git {expected_commit()[:12]}")
    assert f"torch {importlib.metadata.version('torch')}" in done.stdout


def test_parquet_artefacts_and_checkpoints_carry_it(tmp_path):
    write_parquet(with_metadata(pa.table({"x": [1]}), "test/1", "0" * 16), tmp_path / "a.parquet")
    assert read_provenance(tmp_path / "a.parquet") == provenance()
    assert read_provenance(_plain(tmp_path / "old.parquet")) == {}  # a file from before the key
    save_state_dict({"w": torch.zeros(2)}, tmp_path / "w.safetensors", metadata={"head_kind": "linear"})
    with safe_open(str(tmp_path / "w.safetensors"), "pt") as handle:
        meta = handle.metadata()
    assert json.loads(meta[PROVENANCE_KEY]) == provenance() and meta["head_kind"] == "linear"


def _plain(path):
    write_parquet(pa.table({"x": [1]}), path)
    return path


def test_a_report_names_each_distinct_provenance_once():
    now = provenance()
    older = {**now, "git_commit": "0" * 40}
    assert made_by_lines([now, {}, now]) == made_by_lines([now])
    lines = made_by_lines([older, now])
    assert len(lines) == 2 and "git 000000000000;" in lines[0]


def test_the_citation_file_names_this_version_its_license_and_the_papers():
    cff = yaml.safe_load((REPO / "CITATION.cff").read_text())
    assert cff["version"] == __version__
    assert cff["license"] == importlib.metadata.metadata("vlm-rationality")["License-Expression"] == "MIT"
    assert (REPO / "LICENSE").read_text().startswith("MIT License")
    titles = " ".join(reference["title"] for reference in cff["references"])
    assert "Prediction Rationality" in titles and "RaVL" in titles and "Attention-model Explainability" in titles
