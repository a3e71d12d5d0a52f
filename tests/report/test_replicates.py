"""Outcomes over runs: means and t-intervals over bases x seeds, paired differences from a reference, by hand."""

from __future__ import annotations

import math

import pytest

from vlm_rationality.plan.sweep import family
from vlm_rationality.report.replicates import interval, replicate_table, replicates_markdown


def _row(model: str, method: str, accuracy: float, worst: float, shift: str = "clean", gap=None) -> dict:
    return {
        "dataset": "d",
        "shift": shift,
        "heatmap_method": "chefer",
        "model": model,
        "method": method,
        "accuracy": accuracy,
        "acc_worst_group": worst,
        "epsilon_1": None,
        "bg_gap": gap,
    }


def test_a_seed_variant_replicates_its_method_and_only_the_seed_is_cut():
    assert family("vl-erm.seed=2") == "vl-erm"
    assert family("ft.lr=0.002.seed=1") == "ft.lr=0.002"
    assert family("ft.seed=1.lr=0.002") == "ft.lr=0.002"
    assert family("ft.seeds=1") == "ft.seeds=1" and family("zs") == "zs"


def test_the_t_interval_over_runs_by_hand():
    mean, low, high = interval([1.0, 2.0, 6.0])  # mean 3, sd sqrt(7), t(0.975, 2) = 4.302653
    half = 4.302653 * math.sqrt(7) / math.sqrt(3)
    assert (mean, low, high) == pytest.approx((3.0, 3 - half, 3 + half))
    assert math.isnan(interval([5.0])[1])


def test_runs_pair_on_base_and_seed_and_a_metric_counts_the_runs_that_have_it():
    """Two bases x two seeds of `a` and of the reference `r`; `a`'s worst group is 10 points above `r`'s in every
    run, its accuracy the same on average; one run of `a` lacks the twins' gap, and `r` has one, on another run."""
    rows = []
    for base, offset in (("b0", 0.0), ("b1", 0.02)):
        for seed, noise in ((0, 0.01), (1, -0.01)):
            rows.append(_row(base, f"r.seed={seed}", 0.80 + offset, 0.30 + offset + noise))
            gap = None if (base, seed) == ("b0", 0) else 0.05
            rows.append(_row(base, f"a.seed={seed}", 0.80 + offset + noise, 0.40 + offset + noise, gap=gap))
    rows[-4]["bg_gap"] = 0.2  # r.seed=0 on b1
    rows.append(_row("b0", "zs", 0.7, 0.2))
    rows.append(_row("b0", "a.seed=0", 0.1, 0.1, shift="noise-3"))  # another shift: its own block
    found = replicate_table(rows, "r")
    assert len({tuple(r) for r in found}) == 1  # every row has every column, paired or not (one CSV schema)
    table = {(r["shift"], r["method"], r["metric"]): r for r in found}
    worst = table["clean", "a", "acc_worst_group"]
    assert worst["runs"] == 4 and worst["mean"] == pytest.approx(41.0)
    assert worst["diff"] == pytest.approx(10.0) and worst["diff_positive"] == 4 and worst["paired_runs"] == 4
    assert math.isnan(worst["diff_ci_low"]) is False and worst["diff_ci_low"] == pytest.approx(10.0)  # no spread
    accuracy = table["clean", "a", "accuracy"]
    assert accuracy["diff"] == pytest.approx(0.0, abs=1e-9) and accuracy["diff_ci_low"] < 0 < accuracy["diff_ci_high"]
    gap = table["clean", "a", "bg_gap"]
    assert gap["runs"] == 3 and gap["mean"] == pytest.approx(5.0)
    assert gap["paired_runs"] == 1 and gap["diff"] == pytest.approx(-15.0) and math.isnan(gap["diff_ci_low"])
    assert ("clean", "a", "epsilon_1") not in table  # no value in any run: no row
    assert table["clean", "zs", "accuracy"]["runs"] == 1 and table["clean", "zs", "accuracy"]["diff"] is None
    assert table["noise-3", "a", "accuracy"]["runs"] == 1 and ("noise-3", "a", "bg_gap") not in table
    text = replicates_markdown(list(table.values()), "r")
    assert "| A | 4 | 81.0 [" in text and "**10.0 [10.0, 10.0]** (4/4)" in text and "| -15.0 (0/1) |" in text
