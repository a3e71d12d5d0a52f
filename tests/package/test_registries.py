"""Every plugin registry is filled one way: from the source that declares its entries, on first use."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.snakemake_runs import REPO
from vlm_rationality.registry import declared

REGISTRIES = [
    ("vlm_rationality.data", "DATASET_ADAPTERS"),
    ("vlm_rationality.models", "MODEL_ADAPTERS"),
    ("vlm_rationality.finetune", "FINETUNE_METHODS"),
    ("vlm_rationality.explain", "HEATMAP_METHODS"),
]
HOMES = {"FINETUNE_METHODS": "vlm_rationality.finetune.base", "HEATMAP_METHODS": "vlm_rationality.explain.base"}


@pytest.mark.parametrize("package, name", REGISTRIES)
def test_a_fresh_process_finds_every_declared_entry_and_imports_only_its_module(package, name):
    # in a new interpreter: the registry's module alone (it imports no plugin), then each entry by name
    script = f"""
import json, sys
from {HOMES.get(name, package)} import {name} as registry
before = {{m for m in sys.modules if m.startswith("{package}.")}}
listed = list(registry)
entries = {{n: registry.get(n) for n in listed}}
print(json.dumps({{"listed": listed, "before": sorted(before),
                   "modules": {{n: e.__module__ for n, e in entries.items()}}}}))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout.splitlines()[-1])
    facts = declared(package, name)
    assert out["listed"] == sorted(facts)
    plugins = {module for module in out["modules"].values()}
    assert not plugins & set(out["before"]), "a plugin module was imported before it was asked for"
    for entry, module in out["modules"].items():
        assert module.startswith(f"{package}."), (entry, module)
