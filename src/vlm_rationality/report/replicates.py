"""Outcomes over runs: a method trained with several seeds (a `seed` list: one variant per seed) on several bases
(the configured models), as the mean over its runs with a t-interval, and as the paired difference from a reference
method (the same base, the same seed) with its own t-interval, so that a reader sees which differences exclude zero.

A bootstrap interval of one run says how much its test split could move the number; it says nothing of the next
seed or the next base. Here the unit is the run. The sticker gap, PT* and the region-level accuracies come from the
twins, where the config has them (the score table's `bg_gap`, metrics/grounding.py: on the samples of the sticker's
class, accuracy on the twins that show the sticker minus on those that do not; `region_*`: the object alone,
metrics/groups.py).
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Sequence

import numpy as np
from scipy import stats

from vlm_rationality.plan.sweep import SEED, family
from vlm_rationality.report.names import display_name

Row = dict[str, Any]
# column -> heading; in percentage points
METRICS = {
    "accuracy": "accuracy",
    "acc_worst_group": "worst group",
    "region_accuracy": "region accuracy",
    "region_acc_worst_group": "region worst group",
    "epsilon_1": "ε1",
    "epsilon_2": "ε2",
    "bg_gap": "sticker gap (twins)",
    "prediction_trustworthiness": "PT",
    "pt_true_cue": "PT*",
}
LEVEL = 0.95


def interval(values: Sequence[float]) -> tuple[float, float, float]:
    """(mean, low, high): the t-interval of the mean over runs (NaN bounds for a single run)."""
    values = np.asarray(values, float)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, math.nan, math.nan
    half = stats.t.ppf(0.5 + LEVEL / 2, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values))
    return mean, mean - half, mean + half


def runs(rows: Sequence[Row]) -> dict[tuple, dict[tuple[str, str], Row]]:
    """(dataset, shift, heatmap method, family) -> {(model, seed): the run's metrics}."""
    found: dict[tuple, dict[tuple[str, str], Row]] = defaultdict(dict)
    for r in rows:
        key = (r["dataset"], r["shift"], r["heatmap_method"], family(r["method"]))
        found[key][r["model"], _seed(r["method"])] = {name: r.get(name) for name in METRICS}
    return dict(found)


def _seed(method: str) -> str:
    match = SEED.search(method)
    return match.group(0)[len(".seed=") :] if match else ""


def replicate_table(rows: Sequence[Row], reference: str | None) -> list[Row]:
    """One row per (dataset, shift, heatmap method, family, metric): the runs' mean and t-interval in points, and
    against `reference` (paired on base and seed: only the runs both have) the mean difference, its t-interval and
    how many runs it is positive in (None without a paired run)."""
    found = runs(rows)
    out = []
    for (dataset, shift, heatmap, name), mine in sorted(found.items()):
        theirs = found.get((dataset, shift, heatmap, reference), {}) if reference and name != reference else {}
        for metric in METRICS:
            values = {run: 100 * v[metric] for run, v in mine.items() if _known(v[metric])}
            if not values:
                continue
            mean, low, high = interval(list(values.values()))
            row = {
                "dataset": dataset,
                "shift": shift,
                "heatmap_method": heatmap,
                "method": name,
                "metric": metric,
                "runs": len(values),
                "mean": mean,
                "ci_low": low,
                "ci_high": high,
                "reference": reference if theirs else None,
                **dict.fromkeys(("paired_runs", "diff", "diff_ci_low", "diff_ci_high", "diff_positive")),
            }
            both = [run for run in values if _known(theirs.get(run, {}).get(metric))]
            paired = [values[run] - 100 * theirs[run][metric] for run in both]
            if paired:
                diff, diff_low, diff_high = interval(paired)
                row.update(
                    paired_runs=len(paired),
                    diff=diff,
                    diff_ci_low=diff_low,
                    diff_ci_high=diff_high,
                    diff_positive=sum(d > 0 for d in paired),
                )
            out.append(row)
    return out


def _known(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _points(mean: float, low: float, high: float) -> str:
    return f"{mean:.1f}" if math.isnan(low) else f"{mean:.1f} [{low:.1f}, {high:.1f}]"


def replicates_markdown(table: Sequence[Row], reference: str | None) -> str:
    """Per (dataset, shift, heatmap method): a row per method, a column per metric, `mean [t-interval]` over its
    runs and, below, the paired differences from the reference; a difference whose interval excludes zero in bold."""
    lines = [
        "# Outcomes over runs: bases x seeds",
        "",
        "Percentage points. Each cell: the mean over the method's runs (every configured base x every seed of its "
        "`seed` list)",
        "with its 95% t-interval over those runs (n runs in the first column). The sticker gap is the twins': on "
        "the tied class,",
        "accuracy on twins showing the sticker minus on twins without. "
        + (
            f"Below each block: the difference from {display_name(reference)}, paired on base and seed, in bold "
            "where its interval excludes zero, with the runs where it is positive."
            if reference
            else ""
        ),
    ]
    blocks: dict[tuple, list[Row]] = defaultdict(list)
    for row in table:
        blocks[row["dataset"], row["shift"], row["heatmap_method"]].append(row)
    header = "| method | runs | " + " | ".join(METRICS.values()) + " |"
    rule = "|---|---|" + "---|" * len(METRICS)
    for (dataset, shift, heatmap), block in blocks.items():
        cells: dict[str, dict[str, Row]] = defaultdict(dict)
        for row in block:
            cells[row["method"]][row["metric"]] = row
        lines += ["", f"## {dataset} · {shift} · {heatmap}", "", header, rule]
        for method, by_metric in cells.items():
            n = max(r["runs"] for r in by_metric.values())
            values = [
                _points(m["mean"], m["ci_low"], m["ci_high"]) if (m := by_metric.get(k)) else "–" for k in METRICS
            ]
            lines.append(f"| {display_name(method)} | {n} | " + " | ".join(values) + " |")
        paired = {m: by for m, by in cells.items() if any(r["diff"] is not None for r in by.values())}
        if paired:
            lines += ["", f"Minus {display_name(reference)} (paired runs; runs where positive):", "", header, rule]
            for method, by_metric in paired.items():
                n = max(r["paired_runs"] or 0 for r in by_metric.values())
                lines.append(
                    f"| {display_name(method)} | {n} | "
                    + " | ".join(_difference(by_metric.get(k)) for k in METRICS)
                    + " |"
                )
    return "\n".join(lines) + "\n"


def _difference(row: Row | None) -> str:
    if row is None or row["diff"] is None:
        return "–"
    text = _points(row["diff"], row["diff_ci_low"], row["diff_ci_high"])
    excludes = not math.isnan(row["diff_ci_low"]) and (row["diff_ci_low"] > 0 or row["diff_ci_high"] < 0)
    return f"{'**' + text + '**' if excludes else text} ({row['diff_positive']}/{row['paired_runs']})"
