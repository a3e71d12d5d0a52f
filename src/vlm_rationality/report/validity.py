"""The validity table and figure: each rationale signal against the twins' truth, as a reviewer would test it.

Per signal (heatmap method × signal × mask variant), over the trained methods: does it rank the object-grounded right
predictions above the others **within a class** (mean per-class AUROC, with its interval), does it add anything
**beyond confidence** (the out-of-fold AUROC gain over `grounded ~ margin + class`), and when fine-tuning on the
spurious split lowers PT*, does the signal's PT fall with it (the ρ gap ratio)? The goal (`AUROC_GOAL`, a gain whose
interval lies above 0) must hold for every trained method on every dataset. The confidence baseline (the logit
margin) is a row of its own and a line in the figure.
"""

from __future__ import annotations

import math
import os
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from vlm_rationality.report.figures import save_figure  # noqa: E402
from vlm_rationality.report.names import display_name, number  # noqa: E402

AUROC_GOAL = 0.75  # within class: the signal separates grounded from ungrounded right predictions
LEAD_TRUTH = "cue"  # the truth the tables lead with (docs/studies.md says why)
TRUTH_NAMES = {
    "twins": "PT* (every twin keeps the prediction)",
    "all-but-one": "PT* (all twins but one)",
    "cue": "PT*_cue (no twin goes to its cue's class)",
    "beyond-zs": "PT* beyond ZS (flips ZS also makes excused)",
}
SIGNAL = ("heatmap_method", "signal", "mask")


def signal_name(row: dict[str, Any]) -> str:
    return "/".join(str(row[k]) for k in SIGNAL if row[k] != "none")


def _lead(rows: Sequence[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    truths = list(dict.fromkeys(r["truth"] for r in rows))
    truth = LEAD_TRUTH if LEAD_TRUTH in truths else truths[0]
    return truth, [r for r in rows if r["truth"] == truth]


def rho_gaps(rows: Sequence[dict[str, Any]], rhos: dict[str, float]) -> list[dict[str, Any]]:
    """Per (model, method, signal, truth) with a PT: PT and PT* at the lowest minus at the highest training rho,
    and their ratio (how much of the true drop the signal's PT shows); empty without two distinct rhos."""
    if len(set(rhos.values())) < 2:
        return []
    low, high = min(rhos, key=rhos.get), max(rhos, key=rhos.get)
    rest = ("model", "method", *SIGNAL, "truth")
    index = {(r["dataset"], *(r[k] for k in rest)): r for r in rows}
    out = []
    for (dataset, *others), row in index.items():
        other = index.get((high, *others))
        if dataset != low or other is None or math.isnan(row["prediction_trustworthiness"]):
            continue
        pt = row["prediction_trustworthiness"] - other["prediction_trustworthiness"]
        truth = row["pt_true"] - other["pt_true"]
        out.append(
            {
                **dict(zip(rest, others)),
                "low": low,
                "high": high,
                "pt_gap": pt,
                "pt_true_gap": truth,
                "gap_ratio": pt / truth if truth else math.nan,
            }
        )
    return out


def _finite(values: Sequence[float]) -> list[float]:
    return [v for v in values if v is not None and not math.isnan(v)]


def signal_summary(
    rows: Sequence[dict[str, Any]], gaps: Sequence[dict[str, Any]], trained: Sequence[str]
) -> list[dict[str, Any]]:
    """Per signal under the lead truth, over the trained methods and datasets: the weakest within-class AUROC and
    its interval, the weakest gain beyond confidence (the lowest lower bound), the weakest ρ gap ratio, and whether
    the goal holds for every one of them."""
    truth, lead = _lead(rows)
    out = []
    for signal in dict.fromkeys(tuple(r[k] for k in SIGNAL) for r in lead):
        mine = [r for r in lead if tuple(r[k] for k in SIGNAL) == signal and r["method"] in trained]
        if not mine:
            continue
        weakest = min(mine, key=lambda r: -math.inf if math.isnan(r["auroc_within"]) else r["auroc_within"])
        within = _finite(r["auroc_within"] for r in mine)
        ratios = _finite(
            g["gap_ratio"]
            for g in gaps
            if tuple(g[k] for k in SIGNAL) == signal and g["method"] in trained and g["truth"] == truth
        )
        gains = [r["auroc_gain_ci_low"] for r in mine]
        out.append(
            {
                **dict(zip(SIGNAL, signal)),
                "truth": truth,
                "min_auroc_within": weakest["auroc_within"],
                "min_auroc_within_ci": (weakest["auroc_within_ci_low"], weakest["auroc_within_ci_high"]),
                "mean_auroc_within": sum(within) / len(within) if within else math.nan,
                "min_auroc_pooled": min(_finite(r["auroc"] for r in mine), default=math.nan),
                "min_gain": min(_finite(r["auroc_gain"] for r in mine), default=math.nan),
                "min_gain_ci_low": math.nan if any(math.isnan(g) for g in gains) else min(gains),
                "min_gap_ratio": min(ratios, default=math.nan),
                "meets_goal": bool(all(r["auroc_within"] >= AUROC_GOAL for r in mine) and all(g > 0 for g in gains)),
            }
        )
    return out


def _percent_interval(row: dict[str, Any], name: str) -> str:
    low, high = row.get(f"{name}_ci_low"), row.get(f"{name}_ci_high")
    return f"{number(row[name], True)} [{number(low, True)}, {number(high, True)}]"


def _interval(row: dict[str, Any], name: str) -> str:
    return f"{number(row[name])} [{number(row[f'{name}_ci_low'])}, {number(row[f'{name}_ci_high'])}]"


def markdown(rows: Sequence[dict[str, Any]], gaps: Sequence[dict[str, Any]], summary: Sequence[dict[str, Any]]) -> str:
    truth, lead = _lead(rows)
    first = rows[0] if rows else {"threshold": 0.5, "twins_agreement": 1.0}
    lines = [
        "# Validity of the rationale signals against the twins' ground truth",
        "",
        f"Truth led with: **{TRUTH_NAMES.get(truth, truth)}**. Per sample, among right predictions: AUROC of each",
        "signal for groundedness pooled over classes and within class (the mean of per-class AUROCs), and the gain",
        "in out-of-fold AUROC of `grounded ~ margin + class + signal` over `grounded ~ margin + class` (beyond",
        "confidence); [95% class-stratified bootstrap intervals]. PT from each signal at its own validity value",
        f"(RMA-like signals at {first['threshold']}), PT* at twins agreement {first['twins_agreement']}.",
        "Values in %, AUROC as fractions.",
        "",
        "## Signals",
        "",
        f"Goal: within-class AUROC ≥ {AUROC_GOAL} and a gain beyond confidence whose interval lies above 0, for "
        "every trained method on every dataset. `margin` is the confidence baseline itself; `mask_area` (the object's "
        "share of the image, no map) is the trivial baseline a localisation signal must beat.",
        "",
        "| heatmap method | signal | mask | min within-class AUROC [CI] | mean within | min pooled | "
        "min gain (lowest CI bound) | min PT gap / PT* gap | meets the goal |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summary:
        low, high = s["min_auroc_within_ci"]
        lines.append(
            f"| {s['heatmap_method']} | {s['signal']} | {s['mask']} | {number(s['min_auroc_within'])} "
            f"[{number(low)}, {number(high)}] | {number(s['mean_auroc_within'])} | {number(s['min_auroc_pooled'])} | "
            f"{number(s['min_gain'])} ({number(s['min_gain_ci_low'])}) | {number(s['min_gap_ratio'])} | "
            f"{'yes' if s['meets_goal'] else 'no'} |"
        )
    lines += [
        "",
        "## The truths (PT* under each reading, 95% CI)",
        "",
        "| dataset | model | method | acc | " + " | ".join(TRUTH_NAMES.get(t, t) for t in _truths(rows)) + " |",
        "|---|---|---|---|" + "---|" * len(_truths(rows)),
    ]
    by_truth = {(r["dataset"], r["model"], r["method"], r["truth"]): r for r in rows}
    for key in dict.fromkeys((r["dataset"], r["model"], r["method"]) for r in rows):
        cells = [
            _percent_interval(by_truth[(*key, t)], "pt_true") if (*key, t) in by_truth else "–" for t in _truths(rows)
        ]
        accuracy = next(r["accuracy"] for r in rows if (r["dataset"], r["model"], r["method"]) == key)
        lines.append(
            f"| {key[0]} | {key[1]} | {display_name(key[2])} | {number(accuracy, True)} | " + " | ".join(cells) + " |"
        )
    if gaps:
        lines += [
            "",
            f"## Rho gaps under the lead truth ({gaps[0]['low']} minus {gaps[0]['high']})",
            "",
            "| model | method | heatmap method | signal | mask | PT gap | PT* gap | ratio |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for g in gaps:
            if g["truth"] == truth:
                lines.append(
                    f"| {g['model']} | {display_name(g['method'])} | {g['heatmap_method']} | {g['signal']} | "
                    f"{g['mask']} | {number(g['pt_gap'], True)} | {number(g['pt_true_gap'], True)} | "
                    f"{number(g['gap_ratio'])} |"
                )
    lines += [
        "",
        "## Per dataset and method, under the lead truth",
        "",
        "| dataset | model | method | heatmap method | signal | mask | PT | PT* | pooled AUROC | within-class AUROC "
        "[CI] | gain beyond confidence [CI] | LR p | κ |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in lead:
        lines.append(
            f"| {r['dataset']} | {r['model']} | {display_name(r['method'])} | {r['heatmap_method']} | {r['signal']} | "
            f"{r['mask']} | {number(r['prediction_trustworthiness'], True)} | {number(r['pt_true'], True)} | "
            f"{number(r['auroc'])} | {_interval(r, 'auroc_within')} | {_interval(r, 'auroc_gain')} | "
            f"{number(r['lr_p'])} | {number(r['kappa_valid_grounded'])} |"
        )
    return "\n".join(lines) + "\n"


def _truths(rows: Sequence[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(r["truth"] for r in rows))


def _label_points(ax: Any, points: Sequence[tuple[tuple[float, float], str, Any]], gap: float = 3.2) -> None:
    """Each point's short label beside it, with a leader line; labels on one side are spread apart vertically
    (at least `gap` axis units) so a cluster of points stays readable. Right of a point, or left near the edge."""
    for side in (False, True):  # labels right of their points, then left of them
        chosen = sorted((p for p in points if (p[0][0] > 70) == side), key=lambda p: p[0][1])
        placed: list[float] = []
        for (x, y), _, _ in chosen:
            placed.append(max(y, placed[-1] + gap) if placed else y)
        for ((x, y), text, colour), at in zip(chosen, placed):
            ax.annotate(
                text,
                (x, y),
                xytext=(x - 9 if side else x + 9, at),
                ha="right" if side else "left",
                va="center",
                fontsize=6.5,
                color=colour,
                arrowprops={"arrowstyle": "-", "color": colour, "linewidth": 0.5},
            )


def figure(
    rows: Sequence[dict[str, Any]], summary: Sequence[dict[str, Any]], path: str | os.PathLike, trained: Sequence[str]
) -> None:
    """Left: each signal's within-class AUROC under the lead truth (a row per signal), one point per trained
    (dataset, method) with its interval; the band spans the trained classifiers' logit margins (the confidence
    baseline) and the goal is dashed. Right: the paper's PT (chefer's RMA on the exact mask) against PT*, each point
    labelled beside it with its method and the end of its dataset's name (its training rho)."""
    truth, lead = _lead(rows)
    signals = [tuple(s[k] for k in SIGNAL) for s in summary]
    keys = sorted({(r["model"], r["dataset"], r["method"]) for r in lead if r["method"] in trained})
    models = {key[0] for key in keys}
    colours = plt.get_cmap("tab20" if len(keys) > 10 else "tab10")
    size = 20 if len(keys) > 10 else 10
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(13.5, max(5.0, 0.26 * len(signals) + 1.6)), gridspec_kw={"width_ratios": [1.6, 1]}
    )
    index = {(r["model"], r["dataset"], r["method"], *(r[k] for k in SIGNAL)): r for r in lead}
    margins = [
        index[(*key, "none", "margin", "none")]["auroc_within"]
        for key in keys
        if (*key, "none", "margin", "none") in index
    ]
    if margins:
        left.axvspan(min(margins), max(margins), color="grey", alpha=0.18, label="logit margin (confidence), range")
    step = 0.7 / max(len(keys), 1)
    for k, key in enumerate(keys):
        ys, xs, errors = [], [], [[], []]
        for i, signal in enumerate(signals):
            row = index.get((*key, *signal))
            if row is None or row["auroc_within"] is None or math.isnan(row["auroc_within"]):
                continue
            ys.append(i - 0.35 + (k + 0.5) * step)
            xs.append(row["auroc_within"])
            errors[0].append(row["auroc_within"] - row["auroc_within_ci_low"])
            errors[1].append(row["auroc_within_ci_high"] - row["auroc_within"])
        left.errorbar(
            xs,
            ys,
            xerr=errors,
            fmt="o",
            ms=3,
            capsize=1.5,
            elinewidth=0.8,
            color=colours(k % size),
            label=f"{display_name(key[2])}, {key[1]}" + (f", {key[0]}" if len(models) > 1 else ""),
        )
    left.axvline(0.5, color="grey", linewidth=0.8)
    left.axvline(AUROC_GOAL, color="black", linewidth=0.9, linestyle="--", label=f"goal {AUROC_GOAL}")
    left.set_yticks(range(len(signals)), [" · ".join(p for p in s if p != "none") for s in signals], fontsize=7)
    left.invert_yaxis()
    left.set(
        xlim=(0.2, 1.0),
        xlabel=f"within-class AUROC for groundedness ({truth}), right predictions, 95% CI",
        title="Which signal tracks the truth within a class?",
    )
    left.legend(fontsize=7, loc="upper right")
    paper = [r for r in lead if (r["heatmap_method"], r["signal"], r["mask"]) == ("chefer", "rma", "exact")]
    markers = "os^Dv<>P*X"
    points = []
    for k, r in enumerate(paper):
        point = (100 * r["pt_true"], 100 * r["prediction_trustworthiness"])
        name = f"{display_name(r['method'])}, {r['dataset']}" + (f", {r['model']}" if len(models) > 1 else "")
        right.scatter(*point, s=34, marker=markers[k % len(markers)], color=colours(k % size), label=name)
        short = f"{display_name(r['method'])} {r['dataset'].rsplit('-', 1)[-1]}" + (
            f" {r['model']}" if len(models) > 1 else ""
        )
        points.append((point, short, colours(k % size)))
    _label_points(right, points)
    right.legend(fontsize=7, loc="upper left")
    right.plot([0, 100], [0, 100], color="grey", linewidth=0.8, linestyle="--")
    right.set(
        xlim=(0, 100),
        ylim=(0, 100),
        xlabel=f"{TRUTH_NAMES.get(truth, truth)} (%)",
        ylabel="PT (%), chefer RMA ≥ threshold on the exact mask",
        title="The paper's PT against the truth",
    )
    fig.tight_layout()
    save_figure(fig, path)
