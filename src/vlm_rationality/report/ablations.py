"""The ablation table (the layout of the paper's Table 3): does the finding survive other settings?

Per (dataset, model, shift): a block *fine-tuning family* (every configured method that is not a sweep's
variant: ZS, LP, FLCP, FT, CoOp, CLIP-Adapter…), a block per swept method (rows = its variants, a column per
swept setting) and, when several heatmap methods ran, a block *explanation method*. Cells: accuracy, PT and IR
in % with their 95% bootstrap intervals; the first heatmap method explains the first two kinds of block.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

from vlm_rationality.report.names import cell_text, display_name, rounded, shift_order, tex
from vlm_rationality.report.tables import ABLATION_COLUMNS

Row = dict[str, Any]


@dataclass(frozen=True)
class Block:
    title: str  # "dataset · model · shift: block"
    axis: str
    labels: tuple[str, ...]  # the label columns: "method", then swept settings or "heatmap method"
    rows: tuple[tuple[tuple[str, ...], Row], ...]


def _setting(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:g}" if isinstance(value, float) else str(value)


def blocks(
    rows: Sequence[Row],
    methods: Sequence[str],
    models: Sequence[str],
    datasets: Sequence[str],
    heatmap_methods: Sequence[str],
) -> list[Block]:
    index = {(r["dataset"], r["model"], r["shift"], r["method"], r["heatmap_method"]): r for r in rows}
    sweep_of = {r["method"]: r.get("sweep_of") for r in rows}
    swept = list(dict.fromkeys(sweep_of[m] for m in methods if sweep_of.get(m)))
    first = heatmap_methods[0]
    out = []
    for dataset in datasets:
        for model in models:
            for shift in shift_order([r for r in rows if (r["dataset"], r["model"]) == (dataset, model)]):
                where = f"{dataset} · {model} · {shift}"

                def row(method: str, heatmap: str = first) -> Row | None:
                    return index.get((dataset, model, shift, method, heatmap))

                family = [((display_name(m),), row(m)) for m in methods if not sweep_of.get(m) and row(m)]
                if family:
                    out.append(Block(f"{where}: fine-tuning family", "family", ("method",), tuple(family)))
                for base in swept:
                    variants = [m for m in methods if sweep_of.get(m) == base and row(m)]
                    keys = (
                        [k[len("setting_") :] for k in row(variants[0]) if k.startswith("setting_")] if variants else []
                    )
                    keys = [k for k in keys if any(row(m).get(f"setting_{k}") is not None for m in variants)]
                    cells = [
                        ((display_name(base), *(_setting(row(m)[f"setting_{k}"]) for k in keys)), row(m))
                        for m in variants
                    ]
                    if cells:
                        out.append(Block(f"{where}: {base} sweep", base, ("method", *keys), tuple(cells)))
                if len(heatmap_methods) > 1:
                    cells = [((display_name(m), h), row(m, h)) for m in methods for h in heatmap_methods if row(m, h)]
                    out.append(
                        Block(f"{where}: explanation method", "heatmap", ("method", "heatmap method"), tuple(cells))
                    )
    return out


def markdown(found: Sequence[Block], threshold: float) -> str:
    lines = [
        "# Ablations",
        "",
        f"Accuracy, PT and IR in % (95% bootstrap intervals); valid evidence means RMA ≥ {threshold}. Swept settings",
        "are the columns of their method's block (`methods.<name>: {lr: [...]}` in the config).",
        "",
    ]
    for block in found:
        lines += [
            f"## {block.title}",
            "",
            "| " + " | ".join([*block.labels, *(t for _, t in ABLATION_COLUMNS)]) + " |",
            "|" + "---|" * (len(block.labels) + len(ABLATION_COLUMNS)),
        ]
        for labels, row in block.rows:
            lines.append("| " + " | ".join([*labels, *(cell_text(row, m) for m, _ in ABLATION_COLUMNS)]) + " |")
        lines.append("")
    return "\n".join(lines)


def latex(found: Sequence[Block], threshold: float) -> str:
    out = [f"% Ablations (vlm-rationality). Values in %; valid evidence means RMA >= {threshold}. Needs booktabs.", ""]
    for block in found:
        out += [
            "\\begin{table}[t]",
            "\\centering",
            f"\\caption{{{tex(block.title)}.}}",
            "\\begin{tabular}{" + "l" * len(block.labels) + "r" * len(ABLATION_COLUMNS) + "}",
            "\\toprule",
            " & ".join([*(tex(label) for label in block.labels), *(t for _, t in ABLATION_COLUMNS)]) + " \\\\",
            "\\midrule",
        ]
        for labels, row in block.rows:
            out.append(
                " & ".join([*(tex(label) for label in labels), *(cell_text(row, m) for m, _ in ABLATION_COLUMNS)])
                + " \\\\"
            )
        out += ["\\bottomrule", "\\end{tabular}", "\\end{table}", ""]
    return "\n".join(out).replace("–", "--")


CSV_COLUMNS = (
    "dataset",
    "model",
    "shift",
    "axis",
    "method",
    "heatmap_method",
    "settings",
    "metric",
    "value",
    "ci_low",
    "ci_high",
)


def csv_rows(found: Sequence[Block]) -> list[Row]:
    """Long form, values in %: one row per (block row, metric); `settings` is `key=value;...` of a sweep's row."""
    out = []
    for block in found:
        for labels, row in block.rows:
            settings = (
                ";".join(f"{k}={v}" for k, v in zip(block.labels[1:], labels[1:]))
                if block.axis not in ("family", "heatmap")
                else ""
            )
            for metric, _ in ABLATION_COLUMNS:
                out.append(
                    {
                        "dataset": row["dataset"],
                        "model": row["model"],
                        "shift": row["shift"],
                        "axis": block.axis,
                        "method": row["method"],
                        "heatmap_method": row["heatmap_method"],
                        "settings": settings,
                        "metric": metric,
                        **{
                            k: rounded(row[f"{metric}{s}"])
                            for k, s in (("value", ""), ("ci_low", "_ci_low"), ("ci_high", "_ci_high"))
                        },
                    }
                )
    return out
