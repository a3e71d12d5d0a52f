"""What made an artefact: this package's version and the git commit of its checkout, and the versions of the
libraries that set the numbers. Every Parquet artefact and checkpoint carries it (io.with_metadata,
checkpoint.save_state_dict) and the report prints it, so a table read months later names the code behind it."""

from __future__ import annotations

import functools
import importlib.metadata
import json
import platform
import subprocess
from pathlib import Path
from typing import Any, Iterable

from vlm_rationality import __version__

LIBRARIES = {"torch": "torch", "open_clip": "open_clip_torch", "numpy": "numpy", "pyarrow": "pyarrow"}
UNKNOWN = "unknown"


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(Path(__file__).parent), *args], capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):  # no git, not a checkout (an installed wheel), or a hung git
        return None
    return done.stdout.strip()


def git_commit() -> str:
    """The checkout's commit, `+dirty` when tracked files differ from it; `unknown` outside a git checkout."""
    commit = _git("rev-parse", "HEAD")
    if not commit:
        return UNKNOWN
    return commit + ("+dirty" if _git("status", "--porcelain", "--untracked-files=no") else "")


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return UNKNOWN


@functools.cache
def provenance() -> dict[str, str]:
    """Computed once per process (one git call): the versions a job ran with."""
    return {
        "vlm_rationality": __version__,
        "git_commit": git_commit(),
        "python": platform.python_version(),
        **{name: _version(distribution) for name, distribution in LIBRARIES.items()},
    }


def describe(record: dict[str, Any]) -> str:
    commit = str(record.get("git_commit", UNKNOWN))
    commit = commit if commit == UNKNOWN else commit[:12] + ("+dirty" if commit.endswith("+dirty") else "")
    libraries = ", ".join(f"{name} {record.get(name, UNKNOWN)}" for name in ("torch", "open_clip", "python"))
    return f"vlm-rationality {record.get('vlm_rationality', UNKNOWN)} (git {commit}; {libraries})"


def made_by_lines(records: Iterable[dict[str, Any]]) -> list[str]:
    """One line per distinct non-empty provenance among `records`: a report whose inputs came from another commit
    than itself says so."""
    distinct = {json.dumps(r, sort_keys=True): r for r in records if r}
    return [describe(r) for r in distinct.values()]
