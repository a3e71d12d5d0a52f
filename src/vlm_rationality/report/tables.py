"""Paper-style Markdown tables from the metrics rows.

Table 2: PT and IR blocks, methods × models as rows, datasets as columns, one per (heatmap method, shift).
The heatmap-method ablation (the layout of the paper's ablation table): per (dataset, model, shift), rows =
fine-tuning method × heatmap method, columns = accuracy, PT and IR with their intervals.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

BLOCKS = (
    ("prediction_trustworthiness", "Prediction trustworthiness (PT = RR / (RR + RW))"),
    ("inference_reliability", "Inference reliability (IR = RR / (RR + WR))"),
    ("accuracy", "Accuracy"),
)
ABLATION_COLUMNS = (("accuracy", "accuracy"), ("prediction_trustworthiness", "PT"), ("inference_reliability", "IR"))


def _percent(value: float) -> str:
    return "–" if value is None or math.isnan(value) else f"{100 * value:.1f}"


def _cell(row: dict[str, Any] | None, metric: str) -> str:
    if row is None:
        return "–"
    low, high = row[f"{metric}_ci_low"], row[f"{metric}_ci_high"]
    interval = "" if math.isnan(low) else f" [{_percent(low)}, {_percent(high)}]"
    return _percent(row[metric]) + interval


def _average(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if len(finite) == len(values) and finite else math.nan


def _shifts(rows: Sequence[dict[str, Any]]) -> list[str]:
    return sorted({r["shift"] for r in rows}, key=lambda s: (s != "clean", s))


def markdown_table(
    rows: Sequence[dict[str, Any]], methods: Sequence[str], models: Sequence[str], datasets: Sequence[str], shift: str
) -> str:
    """One heatmap method and shift: a block per metric, the best average in bold; cells are % with 95% CIs."""
    index = {(r["method"], r["model"], r["dataset"]): r for r in rows if r["shift"] == shift}
    lines = [f"### Shift: {shift}", ""]
    for metric, title in BLOCKS:
        lines += [f"#### {title}", "", "| method | model | " + " | ".join(datasets) + " | average |",
                  "|---|---|" + "---|" * (len(datasets) + 1)]
        table = []
        for method in methods:
            for model in models:
                cells = [index.get((method, model, d)) for d in datasets]
                if all(c is None for c in cells):
                    continue
                average = _average([math.nan if c is None else c[metric] for c in cells])
                table.append((method, model, cells, average))
        best = max((a for *_, a in table if not math.isnan(a)), default=math.nan)
        for method, model, cells, average in table:
            shown = _percent(average)
            shown = f"**{shown}**" if average == best else shown
            lines.append(f"| {method.upper()} | {model} | " + " | ".join(_cell(c, metric) for c in cells) + f" | {shown} |")
        lines.append("")
    return "\n".join(lines)


def report_markdown(
    rows: Sequence[dict[str, Any]], methods: Sequence[str], models: Sequence[str], datasets: Sequence[str],
    heatmap_methods: Sequence[str],
) -> str:
    threshold = rows[0]["threshold"] if rows else 0.5
    lines = [
        "# Right for the right reasons: PT and IR",
        "",
        f"Values in %, with 95% percentile-bootstrap intervals in brackets; valid evidence means RMA ≥ {threshold}.",
        "Averages are over datasets (– where a dataset lacks a value). Samples with undefined RMA are counted in",
        "`rationality.csv` and left out of PT and IR. One table per heatmap method (`heatmap_ablation.md` sets them",
        "side by side).",
        "",
    ]
    for heatmap in heatmap_methods:
        chosen = [r for r in rows if r["heatmap_method"] == heatmap]
        lines += [f"## Heatmap method: {heatmap}", ""]
        lines += [markdown_table(chosen, methods, models, datasets, shift) for shift in _shifts(chosen)]
    return "\n".join(lines)


def ablation_markdown(
    rows: Sequence[dict[str, Any]], methods: Sequence[str], models: Sequence[str], datasets: Sequence[str],
    heatmap_methods: Sequence[str],
) -> str:
    """Accuracy, PT and IR of every heatmap method side by side, per (dataset, model, shift)."""
    index = {(r["dataset"], r["model"], r["shift"], r["method"], r["heatmap_method"]): r for r in rows}
    lines = [
        "# Heatmap-method ablation",
        "",
        "Does a finding hang on the explanation method? Accuracy, PT and IR in % (95% bootstrap intervals) of the",
        "same predictions explained by each heatmap method. Accuracy does not depend on the heatmap method; its",
        "interval does, slightly, since each method's bootstrap resamples its own quadrant and undefined counts.",
        "",
    ]
    for dataset in datasets:
        for model in models:
            for shift in _shifts([r for r in rows if (r["dataset"], r["model"]) == (dataset, model)]):
                lines += [f"## {dataset} · {model} · {shift}", "",
                          "| method | heatmap method | " + " | ".join(t for _, t in ABLATION_COLUMNS) + " |",
                          "|---|---|" + "---|" * len(ABLATION_COLUMNS)]
                for method in methods:
                    for heatmap in heatmap_methods:
                        row = index.get((dataset, model, shift, method, heatmap))
                        if row is not None:
                            cells = " | ".join(_cell(row, metric) for metric, _ in ABLATION_COLUMNS)
                            lines.append(f"| {method.upper()} | {heatmap} | {cells} |")
                lines.append("")
    return "\n".join(lines)
