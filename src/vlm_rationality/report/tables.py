"""Paper-style tables from the metrics rows: Markdown, booktabs LaTeX, HTML and CSV.

Table 2: PT and IR blocks, methods × models as rows, datasets as columns, one per (heatmap method, shift).
The heatmap-method ablation (the layout of the paper's ablation table): per (dataset, model, shift), rows =
fine-tuning method × heatmap method, columns = accuracy, PT and IR with their intervals.
"""

from __future__ import annotations

import html
import math
from typing import Any, NamedTuple, Sequence

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
# With counterfactual twins (config section `twins`), the true rationale's blocks: the same ratios with
# object-groundedness (metrics/grounding.py) in place of RMA-validity. PT*_cue, the truth the validity study endorses
# (docs/studies.md), leads the table; PT* and the IRs follow the paper's blocks.
LEAD_BLOCKS = (("pt_true_cue", METRICS["pt_true_cue"].title),)
TRUE_BLOCKS = tuple((metric, METRICS[metric].title) for metric in ("pt_true", "ir_true", "ir_true_cue"))
# Where a dataset's cue is local (the synthetic sticker), the cue's own relevance mass follows (metrics/cue.py); for a
# background cue it is 1 − RMA and says nothing PT does not, so rationality.csv keeps it and the tables leave it out.
CUE_BLOCKS = tuple((metric, METRICS[metric].title) for metric in ("cue_mass", "cue_over_object"))
Z95 = 1.959964  # the normal quantile of a two-sided 95% interval
ABLATION_COLUMNS = tuple((metric, METRICS[metric].short) for metric in ABLATION_ORDER)


def blocks(rows: Sequence[dict[str, Any]]) -> tuple[tuple[str, str], ...]:
    """Table 2's blocks: PT*_cue first where any row has it, then PT, IR, accuracy, then PT*, IR* (and IR*_cue) where
    any row has them, the cue's mass where any row's cue is local."""

    def present(metric: str) -> bool:
        return any(r.get(metric) is not None for r in rows)

    return (
        tuple(b for b in LEAD_BLOCKS if present(b[0]))
        + BLOCKS
        + tuple(b for b in TRUE_BLOCKS if present(b[0]))
        + (CUE_BLOCKS if any(r.get("cue") == "local" for r in rows) else ())
    )


class Average(NamedTuple):
    """The mean over datasets and its 95% interval: the datasets are independent samples, so the mean's standard
    error is √(Σ se_i²) / n, each se_i read off its dataset's bootstrap interval as (high − low) / (2 · 1.96)."""

    value: float
    low: float
    high: float


def _average(cells: Sequence[dict[str, Any] | None], metric: str) -> Average:
    values = [metric_value(c, metric) for c in cells]
    if not values or any(math.isnan(v) for v in values):
        return Average(math.nan, math.nan, math.nan)
    lows = [metric_value(c, f"{metric}_ci_low") for c in cells]
    highs = [metric_value(c, f"{metric}_ci_high") for c in cells]
    mean = sum(values) / len(values)
    if any(math.isnan(v) for v in (*lows, *highs)):
        return Average(mean, math.nan, math.nan)
    error = math.sqrt(sum(((h - lo) / (2 * Z95)) ** 2 for lo, h in zip(lows, highs))) / len(values)
    return Average(mean, mean - Z95 * error, mean + Z95 * error)


def _block(
    rows: Sequence[dict[str, Any]],
    metric: str,
    methods: Sequence[str],
    models: Sequence[str],
    datasets: Sequence[str],
) -> list[tuple[str, str, list[dict[str, Any] | None], Average]]:
    """One metric's rows of Table 2: (method, model, a row per dataset or None, average), skipping absent pairs."""
    index = {(r["method"], r["model"], r["dataset"]): r for r in rows}
    table = []
    for method in methods:
        for model in models:
            cells = [index.get((method, model, d)) for d in datasets]
            if any(c is not None for c in cells):
                table.append((method, model, cells, _average(cells, metric)))
    return table


def _best(averages: Sequence[Average]) -> Average | None:
    """The highest average, only where its interval lies wholly above the runner-up's: a bold number inside the
    others' intervals would claim an order the data do not show."""
    ranked = sorted((a for a in averages if not math.isnan(a.value)), key=lambda a: a.value, reverse=True)
    if len(ranked) < 2 or not ranked[0].low > ranked[1].high:
        return None
    return ranked[0]


def average_text(average: Average) -> str:
    interval = "" if math.isnan(average.low) else f" [{as_percent(average.low)}, {as_percent(average.high)}]"
    return as_percent(average.value) + interval


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
        best = _best([a for *_, a in table])
        for method, model, cells, average in table:
            shown = average_text(average)
            shown = f"**{shown}**" if average is best else shown
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
    """Table 2 as booktabs LaTeX, one tabular per (heatmap method, shift): a block per metric, each value with its
    95% interval in small type, the best average in bold where its interval separates it from the next. Needs
    \\usepackage{booktabs}."""
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
                best = _best([a for *_, a in table])
                for method, model, cells, average in table:
                    shown = _tex_interval(as_percent(average.value), average.low, average.high)
                    shown = f"\\textbf{{{shown}}}" if average is best else shown
                    values = [
                        marked(
                            c,
                            _tex_interval(
                                as_percent(metric_value(c, metric)),
                                metric_value(c, f"{metric}_ci_low"),
                                metric_value(c, f"{metric}_ci_high"),
                            ),
                        )
                        for c in cells
                    ]
                    out.append(" & ".join([tex(display_name(method)), tex(model), *values, shown]) + " \\\\")
            out += ["\\bottomrule", "\\end{tabular}", "\\end{table}", ""]
    return "\n".join(out).replace("–", "--")


def _tex_interval(shown: str, low: float, high: float) -> str:
    return shown if math.isnan(low) else f"{shown} {{\\scriptsize [{as_percent(low)}, {as_percent(high)}]}}"


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
        "an average's interval from the datasets' (independent samples); the best average in bold only where its "
        "interval lies above the next one's.</p>",
    ]
    for heatmap in heatmap_methods:
        chosen = [r for r in rows if r["heatmap_method"] == heatmap]
        for shift in shift_order(chosen):
            out.append(f"<h2>Heatmap method: {html.escape(heatmap)} · shift: {html.escape(shift)}</h2>")
            for metric, title in blocks([r for r in chosen if r["shift"] == shift]):
                table = _block([r for r in chosen if r["shift"] == shift], metric, methods, models, datasets)
                best = _best([a for *_, a in table])
                out += [
                    f"<table><caption>{html.escape(title)}</caption>",
                    "<tr><th>method</th><th>model</th>"
                    + "".join(f"<th>{html.escape(d)}</th>" for d in datasets)
                    + "<th>average</th></tr>",
                ]
                for method, model, cells, average in table:
                    shown = average_text(average)
                    shown = f"<b>{shown}</b>" if average is best else shown
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
    average column (its interval from the datasets', see `Average`)."""
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
                        {
                            **keys,
                            "dataset": "average",
                            "value": rounded(average.value),
                            "ci_low": rounded(average.low),
                            "ci_high": rounded(average.high),
                        }
                    )
    return out


def _intervals(rows: Sequence[dict[str, Any]]) -> str:
    """How the cells' intervals came about, or that there are none (`score.bootstrap_iterations: 0`)."""
    lows = [r.get("accuracy_ci_low") for r in rows]
    if rows and all(v is None or math.isnan(v) for v in lows):
        return "without intervals (score.bootstrap_iterations is 0)"
    return "with 95% percentile-bootstrap intervals in brackets"


def which_number(rows: Sequence[dict[str, Any]]) -> str:
    """The one sentence that says which number answers "right for the right reasons?" and why."""
    if any(r.get("pt_true_cue") is not None for r in rows):
        return (
            '**Which number answers "right for the right reasons?"**: PT\\*_cue, the first block: the share of right '
            "predictions that no counterfactual twin pulls to the class its cue is tied to, checked on the images "
            "themselves. The paper's PT (a heatmap's RMA) is beside it as the paper's protocol: on this benchmark no "
            "heatmap signal tracks the true rationale within class beyond confidence (docs/studies.md, the validity "
            "verdict)."
        )
    return (
        '**Which number answers "right for the right reasons?"**: none here is validated. PT and IR follow the '
        "paper's protocol (a heatmap's RMA); on the embedded benchmark, where counterfactual twins give the true "
        "rationale, no heatmap signal tracks it within class beyond confidence (docs/studies.md, the validity "
        "verdict). Read PT as the paper's measure, not as proof of a rationale."
    )


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
        which_number(rows),
        "",
        f"Values in %, {_intervals(rows)}; valid evidence means RMA ≥ {threshold}.",
        "Averages are over datasets (– where a dataset lacks a value), their intervals from the datasets' (independent",
        "samples); the best average is bold only where its interval lies above the next one's. Samples with undefined",
        "RMA are counted in `rationality.csv` and left out of PT and IR. One table per heatmap method",
        "(`heatmap_ablation.md` sets them side by side).",
        "",
    ]
    missing = {r["dataset"]: r.get("n_sticker_missing") or 0 for r in rows}
    lines += [
        f"{dataset}: {count} scored images drawn to carry the sticker have none (no place beside the object fits "
        "`sticker_size`); they count as images without it, so the cue is weaker than its rho says.\n"
        for dataset, count in missing.items()
        if count
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
