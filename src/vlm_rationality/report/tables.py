"""Paper-style tables from the metrics rows: Markdown, booktabs LaTeX, HTML and CSV.

Table 2: PT and IR blocks, methods × models as rows, datasets as columns, one per (heatmap method, shift).
The heatmap-method ablation (the layout of the paper's ablation table): per (dataset, model, shift), rows =
fine-tuning method × heatmap method, columns = accuracy, PT and IR with their intervals.
"""

from __future__ import annotations

import html
import math
from typing import Any, Sequence

from vlm_rationality.report.names import (
    ABLATION_ORDER,
    METRICS,
    TABLE2_ORDER,
    as_percent,
    cell_text,
    display_name,
    marked,
    metric_value,
    rounded,
    shift_order,
    tex,
)

BLOCKS = tuple((metric, METRICS[metric].title) for metric in TABLE2_ORDER)
# With counterfactual twins (config section `twins`), the true rationale's block follows: the same ratios with
# object-groundedness (metrics/grounding.py) in place of RMA-validity.
TRUE_BLOCKS = tuple((metric, METRICS[metric].title) for metric in ("pt_true", "ir_true"))
# Where a dataset's cue is local (the synthetic sticker), the cue's own relevance mass follows (metrics/cue.py); for a
# background cue it is 1 − RMA and says nothing PT does not, so rationality.csv keeps it and the tables leave it out.
CUE_BLOCKS = tuple((metric, METRICS[metric].title) for metric in ("cue_mass", "cue_over_object"))
ABLATION_COLUMNS = tuple((metric, METRICS[metric].short) for metric in ABLATION_ORDER)


def blocks(rows: Sequence[dict[str, Any]]) -> tuple[tuple[str, str], ...]:
    """Table 2's blocks: PT, IR, accuracy, PT* and IR* where any row has them, the cue's mass where any row's cue is
    local."""
    return (
        BLOCKS
        + (TRUE_BLOCKS if any(r.get("pt_true") is not None for r in rows) else ())
        + (CUE_BLOCKS if any(r.get("cue") == "local" for r in rows) else ())
    )


def _average(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if len(finite) == len(values) and finite else math.nan


def _block(
    rows: Sequence[dict[str, Any]],
    metric: str,
    methods: Sequence[str],
    models: Sequence[str],
    datasets: Sequence[str],
) -> list[tuple[str, str, list[dict[str, Any] | None], float]]:
    """One metric's rows of Table 2: (method, model, a row per dataset or None, average), skipping absent pairs."""
    index = {(r["method"], r["model"], r["dataset"]): r for r in rows}
    table = []
    for method in methods:
        for model in models:
            cells = [index.get((method, model, d)) for d in datasets]
            if any(c is not None for c in cells):
                table.append((method, model, cells, _average([metric_value(c, metric) for c in cells])))
    return table


def _ranked(averages: Sequence[float]) -> tuple[float, float]:
    """The best and the second-best distinct average (NaN where there is none)."""
    distinct = sorted({a for a in averages if not math.isnan(a)}, reverse=True)
    return (distinct + [math.nan, math.nan])[0], (distinct + [math.nan, math.nan])[1]


def markdown_table(
    rows: Sequence[dict[str, Any]], methods: Sequence[str], models: Sequence[str], datasets: Sequence[str], shift: str
) -> str:
    """One heatmap method and shift: a block per metric, the best average in bold; cells are % with 95% CIs."""
    chosen = [r for r in rows if r["shift"] == shift]
    lines = [f"### Shift: {shift}", ""]
    for metric, title in blocks(chosen):
        lines += [
            f"#### {title}",
            "",
            "| method | model | " + " | ".join(datasets) + " | average |",
            "|---|---|" + "---|" * (len(datasets) + 1),
        ]
        table = _block(chosen, metric, methods, models, datasets)
        best, _ = _ranked([a for *_, a in table])
        for method, model, cells, average in table:
            shown = as_percent(average)
            shown = f"**{shown}**" if average == best else shown
            lines.append(
                f"| {display_name(method)} | {model} | "
                + " | ".join(cell_text(c, metric) for c in cells)
                + f" | {shown} |"
            )
        lines.append("")
    return "\n".join(lines)


def latex_tables(
    rows: Sequence[dict[str, Any]],
    methods: Sequence[str],
    models: Sequence[str],
    datasets: Sequence[str],
    heatmap_methods: Sequence[str],
) -> str:
    """Table 2 as booktabs LaTeX, one tabular per (heatmap method, shift): a block per metric, the best average
    in bold and the second underlined, as in the paper. Needs \\usepackage{booktabs}."""
    threshold = rows[0]["threshold"] if rows else 0.5
    out = [f"% Table 2 (vlm-rationality). Values in %; valid evidence means RMA >= {threshold}. Needs booktabs.", ""]
    width = 2 + len(datasets) + 1
    for heatmap in heatmap_methods:
        chosen = [r for r in rows if r["heatmap_method"] == heatmap]
        for shift in shift_order(chosen):
            at_shift = [r for r in chosen if r["shift"] == shift]
            out += [
                "\\begin{table}[t]",
                "\\centering",
                f"\\caption{{PT, IR and accuracy (\\%), heatmap method {tex(heatmap)}, shift {tex(shift)}.}}",
                "\\begin{tabular}{ll" + "r" * (len(datasets) + 1) + "}",
                "\\toprule",
                "Method & Model & " + " & ".join(tex(d) for d in datasets) + " & Avg. \\\\",
            ]
            for metric, title in blocks(at_shift):
                out += ["\\midrule", f"\\multicolumn{{{width}}}{{l}}{{\\emph{{{tex(title)}}}}} \\\\"]
                table = _block(at_shift, metric, methods, models, datasets)
                best, second = _ranked([a for *_, a in table])
                for method, model, cells, average in table:
                    shown = as_percent(average)
                    shown = (
                        f"\\textbf{{{shown}}}"
                        if average == best
                        else f"\\underline{{{shown}}}"
                        if average == second
                        else shown
                    )
                    values = [marked(c, as_percent(metric_value(c, metric))) for c in cells]
                    out.append(" & ".join([tex(display_name(method)), tex(model), *values, shown]) + " \\\\")
            out += ["\\bottomrule", "\\end{tabular}", "\\end{table}", ""]
    return "\n".join(out).replace("–", "--")


def html_tables(
    rows: Sequence[dict[str, Any]],
    methods: Sequence[str],
    models: Sequence[str],
    datasets: Sequence[str],
    heatmap_methods: Sequence[str],
    made_by: Sequence[str] = (),
) -> str:
    """Table 2 as one self-contained HTML page (what `snakemake --report` shows inline): the Markdown's cells;
    `made_by`: the provenance lines that close it."""
    threshold = rows[0]["threshold"] if rows else 0.5
    out = [
        "<!DOCTYPE html>",
        '<html><head><meta charset="utf-8"><title>Table 2: PT and IR</title><style>',
        "body{font-family:sans-serif;font-size:14px} table{border-collapse:collapse;margin:0 0 1.5em}",
        "th,td{padding:3px 8px;border-bottom:1px solid #ccc;text-align:right} th:nth-child(-n+2),"
        "td:nth-child(-n+2){text-align:left} caption{text-align:left;font-weight:bold;padding:4px 0}",
        "</style></head><body>",
        "<h1>Right for the right reasons: PT and IR</h1>",
        f"<p>Values in %, 95% percentile-bootstrap intervals in brackets; valid evidence means RMA &ge; {threshold}; "
        "the best average in bold.</p>",
    ]
    for heatmap in heatmap_methods:
        chosen = [r for r in rows if r["heatmap_method"] == heatmap]
        for shift in shift_order(chosen):
            out.append(f"<h2>Heatmap method: {html.escape(heatmap)} · shift: {html.escape(shift)}</h2>")
            for metric, title in blocks([r for r in chosen if r["shift"] == shift]):
                table = _block([r for r in chosen if r["shift"] == shift], metric, methods, models, datasets)
                best, _ = _ranked([a for *_, a in table])
                out += [
                    f"<table><caption>{html.escape(title)}</caption>",
                    "<tr><th>method</th><th>model</th>"
                    + "".join(f"<th>{html.escape(d)}</th>" for d in datasets)
                    + "<th>average</th></tr>",
                ]
                for method, model, cells, average in table:
                    shown = as_percent(average)
                    shown = f"<b>{shown}</b>" if average == best else shown
                    out.append(
                        f"<tr><td>{html.escape(display_name(method))}</td><td>{html.escape(model)}</td>"
                        + "".join(f"<td>{cell_text(c, metric)}</td>" for c in cells)
                        + f"<td>{shown}</td></tr>"
                    )
                out.append("</table>")
    out += [f"<p><i>Made by {html.escape(line)}.</i></p>" for line in made_by]
    return "\n".join([*out, "</body></html>", ""])


CSV_COLUMNS = ("heatmap_method", "shift", "metric", "method", "model", "dataset", "value", "ci_low", "ci_high")


def csv_rows(
    rows: Sequence[dict[str, Any]],
    methods: Sequence[str],
    models: Sequence[str],
    datasets: Sequence[str],
    heatmap_methods: Sequence[str],
) -> list[dict[str, Any]]:
    """Table 2 in long form (values in %, as in the Markdown): one row per cell, dataset `average` for the
    average column (which has no interval)."""
    out = []
    for heatmap in heatmap_methods:
        chosen = [r for r in rows if r["heatmap_method"] == heatmap]
        for shift in shift_order(chosen):
            for metric, _ in blocks([r for r in chosen if r["shift"] == shift]):
                for method, model, cells, average in _block(
                    [r for r in chosen if r["shift"] == shift], metric, methods, models, datasets
                ):
                    keys = {
                        "heatmap_method": heatmap,
                        "shift": shift,
                        "metric": metric,
                        "method": method,
                        "model": model,
                    }
                    for dataset, cell in zip(datasets, cells):
                        if cell is not None:
                            out.append(
                                {
                                    **keys,
                                    "dataset": dataset,
                                    **{
                                        k: rounded(metric_value(cell, f"{metric}{s}"))
                                        for k, s in (("value", ""), ("ci_low", "_ci_low"), ("ci_high", "_ci_high"))
                                    },
                                }
                            )
                    out.append(
                        {**keys, "dataset": "average", "value": rounded(average), "ci_low": None, "ci_high": None}
                    )
    return out


def report_markdown(
    rows: Sequence[dict[str, Any]],
    methods: Sequence[str],
    models: Sequence[str],
    datasets: Sequence[str],
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
        lines += [markdown_table(chosen, methods, models, datasets, shift) for shift in shift_order(chosen)]
    return "\n".join(lines)


def ablation_markdown(
    rows: Sequence[dict[str, Any]],
    methods: Sequence[str],
    models: Sequence[str],
    datasets: Sequence[str],
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
            for shift in shift_order([r for r in rows if (r["dataset"], r["model"]) == (dataset, model)]):
                lines += [
                    f"## {dataset} · {model} · {shift}",
                    "",
                    "| method | heatmap method | " + " | ".join(t for _, t in ABLATION_COLUMNS) + " |",
                    "|---|---|" + "---|" * len(ABLATION_COLUMNS),
                ]
                for method in methods:
                    for heatmap in heatmap_methods:
                        row = index.get((dataset, model, shift, method, heatmap))
                        if row is not None:
                            cells = " | ".join(cell_text(row, metric) for metric, _ in ABLATION_COLUMNS)
                            lines.append(f"| {display_name(method)} | {heatmap} | {cells} |")
                lines.append("")
    return "\n".join(lines)
