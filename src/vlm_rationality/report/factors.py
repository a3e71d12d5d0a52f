"""The visual-factor table as Markdown and its figure: factor accuracy against overall accuracy on probit axes (a
Huber line per factor, ImageNet-X's view), and how far each factor moves the rationale (PT, and PT*_cue or PT*
where twins give it) from the classifier's own overall value."""

from __future__ import annotations

import math
import os
from typing import Any, Sequence

import numpy as np

from vlm_rationality.metrics.factors import ALL
from vlm_rationality.metrics.id_ood import line, probit
from vlm_rationality.report.figures import plt, save_figure
from vlm_rationality.report.names import display_name, number
from vlm_rationality.report.robustness import PROBIT_TICKS, _ci

CLASSIFIER = ("dataset", "model", "method")
LABELS = {"prediction_trustworthiness": "PT", "pt_true_cue": "PT*_cue", "pt_true": "PT*"}


def _first_heatmap(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of each classifier's first heatmap method (accuracy does not depend on it; the table's PT is its)."""
    first: dict[tuple, str] = {}
    for row in rows:
        first.setdefault(tuple(row[k] for k in CLASSIFIER), row["heatmap_method"])
    return [row for row in rows if first[tuple(row[k] for k in CLASSIFIER)] == row["heatmap_method"]]


def _truth(row: dict[str, Any]) -> str | None:
    """The true-rationale column a row has: PT*_cue where the cue names a class, else PT*; None without twins."""
    for name in ("pt_true_cue", "pt_true"):
        if row.get(name) is not None and not (isinstance(row[name], float) and math.isnan(row[name])):
            return name
    return None


def factors_markdown(rows: Sequence[dict[str, Any]]) -> str:
    lines = [
        "# Visual factors",
        "",
        "Per factor, the scored samples annotated with it: accuracy, the error ratio (their error ÷ the overall "
        "error; above 1 the factor hurts), PT at the threshold and, with twins, the true rationale (PT*_cue, or PT* "
        "where no cue names a class), with 95% bootstrap intervals. `all`: every annotated sample. The heatmap "
        "method is each classifier's first. A factor's samples are not a draw of the classes: on ImageNet an error "
        "ratio mixes the factor with the classes it is frequent in.",
        "",
        "| dataset | model | method | factor | n | accuracy | error ratio | PT | true rationale |",
        "|---|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in _first_heatmap(rows):
        truth = _truth(row)
        lines.append(
            f"| {row['dataset']} | {row['model']} | {display_name(row['method'])} | {row['factor']} | {row['n']} "
            f"| {_ci(row, 'accuracy', True)} | {number(row['error_ratio'])} "
            f"| {_ci(row, 'prediction_trustworthiness', True)} "
            f"| {_ci(row, truth, True) + (' (PT*_cue)' if truth == 'pt_true_cue' else ' (PT*)') if truth else '–'} |"
        )
    unannotated = {(r["dataset"], r["n_unannotated"]) for r in rows if r["factor"] == ALL and r["n_unannotated"]}
    lines += ["", *[f"{dataset}: {n} scored samples have no annotation (in no factor)." for dataset, n in unannotated]]
    return "\n".join(lines).rstrip() + "\n"


def _deltas(rows: Sequence[dict[str, Any]], name: str) -> dict[str, list[float]]:
    """factor -> each classifier's value of `name` on the factor minus its overall value."""
    overall = {tuple(r[k] for k in CLASSIFIER): r.get(name) for r in rows if r["factor"] == ALL}
    found: dict[str, list[float]] = {}
    for row in rows:
        base = overall.get(tuple(row[k] for k in CLASSIFIER))
        value = row.get(name)
        if row["factor"] != ALL and base is not None and value is not None and math.isfinite(value - base):
            found.setdefault(row["factor"], []).append(value - base)
    return found


def factors_figure(rows: Sequence[dict[str, Any]], path: str | os.PathLike) -> None:
    """Left: factor accuracy against overall accuracy per classifier, probit axes, a Huber line per factor. Right:
    PT and the true rationale on each factor minus the classifier's overall value (one point per classifier)."""
    rows = _first_heatmap(rows)
    overall = {tuple(r[k] for k in CLASSIFIER): r["accuracy"] for r in rows if r["factor"] == ALL}
    factors = list(dict.fromkeys(r["factor"] for r in rows if r["factor"] != ALL))
    colours = plt.get_cmap("tab20")(np.linspace(0, 1, max(len(factors), 1)))
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8), gridspec_kw={"width_ratios": [1, 1.4]})
    shown = [np.zeros(0)]
    for factor, colour in zip(factors, colours):
        found = [(overall[tuple(r[k] for k in CLASSIFIER)], r["accuracy"]) for r in rows if r["factor"] == factor]
        x, y = probit(np.array([f[0] for f in found])), probit(np.array([f[1] for f in found]))
        shown += [x, y]
        fit = line(x, y)
        left.scatter(x, y, s=14, color=colour, label=f"{factor} (slope {number(fit['slope'])})")
        if math.isfinite(fit["slope"]):
            grid = np.linspace(x.min(), x.max(), 20)
            left.plot(grid, fit["intercept"] + fit["slope"] * grid, color=colour, lw=1)
    ticks = probit(np.array(PROBIT_TICKS))
    left.plot(ticks[[0, -1]], ticks[[0, -1]], color="grey", ls="--", lw=0.8)
    left.set_xticks(ticks, [f"{t:g}" for t in PROBIT_TICKS], fontsize=7)
    left.set_yticks(ticks, [f"{t:g}" for t in PROBIT_TICKS], fontsize=7)
    span = np.concatenate(shown)
    if span.size:  # the data's range, not the ticks': the factors' lines sit within a few probit tenths
        low, high = span.min() - 0.3, span.max() + 0.3
        left.set_xlim(low, high)
        left.set_ylim(low, high)
    left.set_xlabel("overall accuracy (probit)")
    left.set_ylabel("accuracy on the factor's images (probit)")
    left.legend(fontsize=6, loc="upper left")
    truth = next((name for name in ("pt_true_cue", "pt_true") if any(_truth(r) == name for r in rows)), None)
    for offset, name, marker in ((-0.15, "prediction_trustworthiness", "o"), (0.15, truth, "s")):
        deltas = _deltas(rows, name) if name else {}
        for i, factor in enumerate(factors):
            values = deltas.get(factor, [])
            right.scatter(np.full(len(values), i + offset), values, s=14, marker=marker, color=colours[i])
        if deltas:
            right.scatter([], [], marker=marker, color="black", label=LABELS[name])
    right.axhline(0, color="grey", lw=0.8)
    right.set_xticks(range(len(factors)), factors, rotation=45, ha="right", fontsize=7)
    right.set_ylabel("on the factor − overall")
    right.legend(fontsize=7)
    right.set_title("the rationale per factor, each classifier against itself", fontsize=9)
    left.set_title("accuracy per factor across classifiers", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)
