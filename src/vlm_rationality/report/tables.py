"""Table 2 of the paper as Markdown: PT and IR blocks, methods × models as rows, datasets as columns."""

from __future__ import annotations

import math
from typing import Any, Sequence

BLOCKS = (
    ("prediction_trustworthiness", "Prediction trustworthiness (PT = RR / (RR + RW))"),
    ("inference_reliability", "Inference reliability (IR = RR / (RR + WR))"),
    ("accuracy", "Accuracy"),
)


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


def markdown_table(
    rows: Sequence[dict[str, Any]], methods: Sequence[str], models: Sequence[str], datasets: Sequence[str], shift: str
) -> str:
    """One shift: a block per metric, the best average of each block in bold; cells are % with 95% CIs."""
    index = {(r["method"], r["model"], r["dataset"]): r for r in rows if r["shift"] == shift}
    lines = [f"## Shift: {shift}", ""]
    for metric, title in BLOCKS:
        lines += [f"### {title}", "", "| method | model | " + " | ".join(datasets) + " | average |",
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


def report_markdown(rows: Sequence[dict[str, Any]], methods: Sequence[str], models: Sequence[str], datasets: Sequence[str]) -> str:
    shifts = sorted({r["shift"] for r in rows}, key=lambda s: (s != "clean", s))
    threshold = rows[0]["threshold"] if rows else 0.5
    header = [
        "# Right for the right reasons: PT and IR",
        "",
        f"Values in %, with 95% percentile-bootstrap intervals in brackets; valid evidence means RMA ≥ {threshold}.",
        "Averages are over datasets (– where a dataset lacks a value). Samples with undefined RMA are counted in",
        "`rationality.csv` and left out of PT and IR.",
        "",
    ]
    return "\n".join(header + [markdown_table(rows, methods, models, datasets, s) for s in shifts])
