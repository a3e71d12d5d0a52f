"""The validity table and figure: each rationale signal (heatmap method × mask variant) against the twins' truth.

Two questions per signal. Per sample: among right predictions, does RMA rank the object-grounded ones above the
others (AUROC, Cohen's κ of RMA-validity)? Per training: when fine-tuning on the spurious split makes fewer right
predictions object-grounded (PT* drops from the lowest to the highest training rho), does PT drop with it? The
signal that does both for every trained method is the one a benchmark may report PT with.
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

AUROC_GOAL = 0.75  # per-sample: RMA separates grounded from ungrounded right predictions
GAP_GOAL = 0.5  # per-training: PT's rho gap is at least half of PT*'s


def _signals(rows: Sequence[dict[str, Any]]) -> list[tuple[str, str]]:
    return list(dict.fromkeys((r["heatmap_method"], r["mask"]) for r in rows))


def rho_gaps(rows: Sequence[dict[str, Any]], rhos: dict[str, float]) -> list[dict[str, Any]]:
    """Per (model, method, heatmap method, mask): PT and PT* at the lowest minus at the highest training rho, and
    their ratio (how much of the true drop PT shows); empty without two distinct rhos."""
    if len(set(rhos.values())) < 2:
        return []
    low = min(rhos, key=rhos.get)
    high = max(rhos, key=rhos.get)
    index = {(r["dataset"], r["model"], r["method"], r["heatmap_method"], r["mask"]): r for r in rows}
    out = []
    for (dataset, *rest), row in index.items():
        other = index.get((high, *rest))
        if dataset != low or other is None:
            continue
        pt = row["prediction_trustworthiness"] - other["prediction_trustworthiness"]
        truth = row["pt_true"] - other["pt_true"]
        out.append(
            {
                **dict(zip(("model", "method", "heatmap_method", "mask"), rest)),
                "low": low,
                "high": high,
                "pt_gap": pt,
                "pt_true_gap": truth,
                "gap_ratio": pt / truth if truth else math.nan,
            }
        )
    return out


def signal_summary(
    rows: Sequence[dict[str, Any]], gaps: Sequence[dict[str, Any]], trained: Sequence[str]
) -> list[dict[str, Any]]:
    """Per signal, over the trained methods: the weakest per-sample AUROC, the weakest gap ratio, and whether both
    reach the goals."""
    out = []
    for heatmap, mask in _signals(rows):
        mine = [r for r in rows if (r["heatmap_method"], r["mask"]) == (heatmap, mask) and r["method"] in trained]
        ratios = [
            g["gap_ratio"]
            for g in gaps
            if (g["heatmap_method"], g["mask"]) == (heatmap, mask) and g["method"] in trained
        ]
        worst_auroc = min((r["auroc_rma_grounded"] for r in mine), default=math.nan)
        worst_ratio = min(ratios, default=math.nan)
        out.append(
            {
                "heatmap_method": heatmap,
                "mask": mask,
                "min_auroc": worst_auroc,
                "min_gap_ratio": worst_ratio,
                "mean_auroc": sum(r["auroc_rma_grounded"] for r in mine) / len(mine) if mine else math.nan,
                "meets_goal": bool(worst_auroc >= AUROC_GOAL and worst_ratio >= GAP_GOAL),
            }
        )
    return out


def markdown(rows: Sequence[dict[str, Any]], gaps: Sequence[dict[str, Any]], summary: Sequence[dict[str, Any]]) -> str:
    threshold = rows[0]["threshold"] if rows else 0.5
    agreement = rows[0]["twins_agreement"] if rows else 1.0
    lines = [
        "# Validity of the rationale metric against the twins' ground truth",
        "",
        f"PT/IR from RMA ≥ {threshold} under each mask variant; PT*/IR* from the counterfactual twins (a prediction",
        f"is object-grounded when at least {100 * agreement:.0f}% of its twins keep it). AUROC and κ: per sample, "
        "among right predictions,",
        "RMA (κ: RMA-validity) against object-groundedness. Values in %, AUROC and κ as fractions.",
        "",
        "## Signals",
        "",
        f"Goal: per-sample AUROC ≥ {AUROC_GOAL} and a rho gap in PT at least {GAP_GOAL:.0%} of PT*'s, for every "
        "trained method.",
        "",
        "| heatmap method | mask | min AUROC | mean AUROC | min PT gap / PT* gap | meets the goal |",
        "|---|---|---|---|---|---|",
    ]
    for s in summary:
        lines.append(
            f"| {s['heatmap_method']} | {s['mask']} | {number(s['min_auroc'])} | {number(s['mean_auroc'])} | "
            f"{number(s['min_gap_ratio'])} | {'yes' if s['meets_goal'] else 'no'} |"
        )
    if gaps:
        lines += [
            "",
            f"## Rho gaps ({gaps[0]['low']} minus {gaps[0]['high']})",
            "",
            "| model | method | heatmap method | mask | PT gap | PT* gap | ratio |",
            "|---|---|---|---|---|---|---|",
        ]
        for g in gaps:
            lines.append(
                f"| {g['model']} | {display_name(g['method'])} | {g['heatmap_method']} | {g['mask']} | "
                f"{number(g['pt_gap'], True)} | {number(g['pt_true_gap'], True)} | {number(g['gap_ratio'])} |"
            )
    lines += [
        "",
        "## Per dataset",
        "",
        "| dataset | model | method | heatmap method | mask | acc | PT | PT* | IR | IR* | AUROC | κ |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['dataset']} | {r['model']} | {display_name(r['method'])} | {r['heatmap_method']} | {r['mask']} | "
            + " | ".join(
                number(r[k], True)
                for k in ("accuracy", "prediction_trustworthiness", "pt_true", "inference_reliability", "ir_true")
            )
            + f" | {number(r['auroc_rma_grounded'])} | {number(r['kappa_valid_grounded'])} |"
        )
    return "\n".join(lines) + "\n"


def figure(rows: Sequence[dict[str, Any]], summary: Sequence[dict[str, Any]], path: str | os.PathLike) -> None:
    """Left: PT against PT* for every (dataset, method), a colour per heatmap method and a marker per mask (a
    faithful signal lies on the diagonal). Right: each signal's per-sample AUROC, weakest and mean over the trained
    methods, with the goal."""
    heatmaps = list(dict.fromkeys(r["heatmap_method"] for r in rows))
    masks = list(dict.fromkeys(r["mask"] for r in rows))
    colours = plt.get_cmap("tab10")
    markers = "osD^vP*X"
    fig, (left, right) = plt.subplots(1, 2, figsize=(12.5, 5.2), gridspec_kw={"width_ratios": [1, 1.3]})
    for r in rows:
        left.scatter(
            100 * r["pt_true"],
            100 * r["prediction_trustworthiness"],
            s=28,
            alpha=0.8,
            color=colours(heatmaps.index(r["heatmap_method"]) % 10),
            marker=markers[masks.index(r["mask"]) % 8],
        )
    left.plot([0, 100], [0, 100], color="grey", linewidth=0.8, linestyle="--")
    left.set(
        xlim=(0, 100),
        ylim=(0, 100),
        xlabel="PT* (%), object-grounded share of right predictions",
        ylabel="PT (%), from RMA",
        title="PT against the truth, per (dataset, method)",
    )
    handles = [
        plt.Line2D([], [], color=colours(i % 10), marker="o", linestyle="", label=h) for i, h in enumerate(heatmaps)
    ]
    handles += [
        plt.Line2D([], [], color="black", marker=markers[i % 8], linestyle="", label=m) for i, m in enumerate(masks)
    ]
    left.legend(handles=handles, fontsize=8, loc="upper left")
    labels = [f"{s['heatmap_method']}\n{s['mask']}" for s in summary]
    positions = range(len(summary))
    right.bar(
        [p - 0.2 for p in positions],
        [s["min_auroc"] for s in summary],
        width=0.4,
        label="weakest trained method",
        color=[colours(heatmaps.index(s["heatmap_method"]) % 10) for s in summary],
        alpha=0.55,
    )
    right.bar(
        [p + 0.2 for p in positions],
        [s["mean_auroc"] for s in summary],
        width=0.4,
        label="mean",
        color=[colours(heatmaps.index(s["heatmap_method"]) % 10) for s in summary],
    )
    right.axhline(0.5, color="grey", linewidth=0.8, linestyle=":")
    right.axhline(AUROC_GOAL, color="black", linewidth=0.8, linestyle="--", label=f"goal {AUROC_GOAL}")
    right.set_xticks(list(positions), labels, fontsize=7)
    right.set(ylim=(0, 1), ylabel="AUROC of RMA for object-grounded", title="Per-sample signal (right predictions)")
    right.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    save_figure(fig, path)
