"""The robustness table as Markdown (calibration per shift, OOD detection per set and score, shape bias) and the
reliability diagrams."""

from __future__ import annotations

import math
import os
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from vlm_rationality.metrics.calibration import reliability_bins, softmax
from vlm_rationality.metrics.id_ood import metric_points, probit
from vlm_rationality.metrics.robustness import OOD_SCORES, TEST_PREFIX, Predictions
from vlm_rationality.report.figures import plt, save_figure
from vlm_rationality.report.names import display_name, number


def _ci(row: dict[str, Any], name: str, percent: bool = False) -> str:
    """A value with its interval where the row has one."""
    low, high = row.get(f"{name}_ci_low"), row.get(f"{name}_ci_high")
    if low is None or (isinstance(low, float) and math.isnan(low)):
        return number(row[name], percent)
    return f"{number(row[name], percent)} [{number(low, percent)}, {number(high, percent)}]"


def robustness_markdown(
    rows: Sequence[dict[str, Any]], ood: Sequence[str], id_ood: Sequence[dict[str, Any]] = ()
) -> str:
    lines = [
        "# Robustness: calibration, OOD detection, shape bias",
        "",
        "ECE (15 bins, %) and NLL before and after temperature scaling (T fitted on the validation split, applied",
        "unchanged under every shift); accuracy in %. [95% percentile-bootstrap intervals over the test images;",
        "AUROC's resample the ID and the OOD set each within itself.]",
        "",
        "| dataset | shift | model | method | accuracy | ECE | ECE (TS) | NLL | NLL (TS) | T |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['dataset']} | {r['shift']} | {r['model']} | {display_name(r['method'])} | "
            f"{_ci(r, 'accuracy', True)} | {_ci(r, 'ece', True)} | {_ci(r, 'ece_ts', True)} | "
            f"{_ci(r, 'nll')} | {_ci(r, 'nll_ts')} | {number(r['temperature'])} |"
        )
    clean = [r for r in rows if r["shift"] == "clean"]
    if clean:
        lines += [
            "",
            "## In distribution: the validation split, two-fold cross-fitted temperature scaling",
            "",
            "| dataset | model | method | ECE | ECE (TS) | NLL | NLL (TS) |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in clean:
            lines.append(
                f"| {r['dataset']} | {r['model']} | {display_name(r['method'])} | {number(r['id_ece'], True)} | "
                f"{number(r['id_ece_ts'], True)} | {number(r['id_nll'])} | {number(r['id_nll_ts'])} |"
            )
    if ood and clean:
        lines += [
            "",
            "## OOD detection (clean test set = ID, positive): AUROC / FPR@95, %",
            "",
            "| dataset | model | method | OOD set | " + " | ".join(OOD_SCORES) + " |",
            "|---|---|---|---|" + "---|" * len(OOD_SCORES),
        ]
        for r in clean:
            for name in ood:
                cells = [
                    f"{_ci(r, f'auroc.{name}.{s}', True)} / {number(r[f'fpr95.{name}.{s}'], True)}" for s in OOD_SCORES
                ]
                lines.append(
                    f"| {r['dataset']} | {r['model']} | {display_name(r['method'])} | {name} | "
                    + " | ".join(cells)
                    + " |"
                )
    if any("shape_bias" in r for r in clean):
        lines += [
            "",
            "## Shape bias on cue-conflict images (shape / (shape + texture) decisions, %)",
            "",
            "Cue-conflict accuracy: shape decisions / cue-conflict images, %.",
            "",
            "| dataset | model | method | shape bias | cue-conflict accuracy | shape | texture |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in clean:
            if "shape_bias" in r:
                lines.append(
                    f"| {r['dataset']} | {r['model']} | {display_name(r['method'])} | {_ci(r, 'shape_bias', True)} "
                    f"| {_ci(r, 'cue_conflict_accuracy', True)} | {r['shape_decisions']} | {r['texture_decisions']} |"
                )
    return "\n".join(lines + _id_ood_section(id_ood)) + "\n"


def _id_ood_section(id_ood: Sequence[dict[str, Any]]) -> list[str]:
    if not id_ood:
        return []
    lines = [
        "",
        "## In distribution against each shift and OOD metric, across classifiers (figures/id_ood.png)",
        "",
        "Probit axes; the line is a Huber fit (slope, intercept, its R²), ρ is Spearman's over the classifiers.",
        "",
        "| metric | classifiers | slope | intercept | R² | Spearman ρ |",
        "|---|---|---|---|---|---|",
    ]
    return lines + [
        f"| {r['metric']} | {r['n_classifiers']} | {number(r['slope'])} | {number(r['intercept'])} | "
        f"{number(r['r2'])} | {number(r['spearman'])} |"
        for r in id_ood
    ]


PROBIT_TICKS = (0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)


def id_ood_figure(rows: Sequence[dict[str, Any]], lines: Sequence[dict[str, Any]], path: str | os.PathLike) -> None:
    """One panel per metric: each classifier's ID accuracy against the metric on probit axes, with the Huber line."""
    points = metric_points(rows)
    metrics = [line["metric"] for line in lines]
    columns = min(4, max(1, len(metrics)))
    fig, axes = plt.subplots(
        max(1, math.ceil(len(metrics) / columns)),
        columns,
        figsize=(3.2 * columns, 3.0 * math.ceil(len(metrics) / columns) + 0.3),
        squeeze=False,
    )
    ticks = probit(np.array(PROBIT_TICKS))
    for ax, fit in zip(axes.flat, lines):
        found = points[fit["metric"]]
        x, y = probit(np.array([p[1] for p in found])), probit(np.array([p[2] for p in found]))
        for (key, *_), px, py in zip(found, x, y):
            ax.scatter(px, py, s=18)
            ax.annotate(display_name(key[2]), (px, py), fontsize=6, xytext=(2, 2), textcoords="offset points")
        if math.isfinite(fit["slope"]):
            grid = np.linspace(x.min(), x.max(), 20)
            ax.plot(grid, fit["intercept"] + fit["slope"] * grid, color="black", lw=1)
        ax.set_xticks(ticks, [f"{t:g}" for t in PROBIT_TICKS], fontsize=6)
        ax.set_yticks(ticks, [f"{t:g}" for t in PROBIT_TICKS], fontsize=6)
        ax.set_xlim(x.min() - 0.3, x.max() + 0.3)
        ax.set_ylim(y.min() - 0.3, y.max() + 0.3)
        ax.set_title(f"{fit['metric']}\nR² {number(fit['r2'])}, ρ {number(fit['spearman'])}", fontsize=7)
        ax.set_xlabel("ID accuracy (probit)", fontsize=7)
    for ax in list(axes.flat)[len(lines) :]:
        ax.axis("off")
    fig.tight_layout()
    save_figure(fig, path)


def reliability_figures(
    predictions: Sequence[Predictions], rows: Sequence[dict[str, Any]], validation: str, folder: str | os.PathLike
) -> list[Path]:
    """`folder/<dataset>/<model>.png`: accuracy against confidence on the clean test split, a line per method,
    before and after temperature scaling (the T of the robustness rows), the diagonal being perfect calibration; under
    each, the samples in each confidence bin per method (a point on a sparse bin says little)."""
    fitted = {(r["dataset"], r["model"], r["method"]): r["temperature"] for r in rows if r["shift"] == "clean"}
    groups: dict[tuple[str, str], list] = defaultdict(list)
    for meta, sets in predictions:
        groups[(meta["keys"]["dataset"], meta["keys"]["model"])].append((meta["keys"]["method"], sets))
    written = []
    for (dataset, model), methods in groups.items():
        fig, (axes, counted) = plt.subplots(
            2, 2, figsize=(9, 5.6), sharex=True, sharey="row", gridspec_kw={"height_ratios": [3, 1]}
        )
        for method, sets in methods:
            test = sets.get(TEST_PREFIX + "clean")
            if test is None:
                continue
            keep = np.isfinite(test["logits"]).all(axis=1)
            logits, labels = test["logits"][keep], test["label"][keep]
            temperature = fitted.get((dataset, model, method), math.nan)
            for ax, below, t in zip(axes, counted, (1.0, temperature if math.isfinite(temperature) else 1.0)):
                confidence, accuracy, counts = reliability_bins(softmax(logits, t), labels)
                (line,) = ax.plot(confidence, accuracy, marker="o", markersize=3, label=display_name(method))
                edges = np.linspace(0, 1, len(counts) + 1)
                below.stairs(counts, edges, color=line.get_color(), label=display_name(method))
        for ax, title in zip(axes, ("before temperature scaling", f"after (T fitted on {validation})")):
            ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1)
            ax.set(xlim=(0, 1), ylim=(0, 1), title=title)
            ax.grid(alpha=0.3)
        for below in counted:
            below.set(xlabel="confidence (15 bins)")
            below.grid(alpha=0.3)
        axes[0].set_ylabel("accuracy")
        counted[0].set_ylabel("samples per bin")
        axes[1].legend(fontsize="small", loc="upper left")
        fig.suptitle(f"Reliability: {dataset} · {model} · clean test split")
        fig.tight_layout()
        out = Path(folder) / dataset / f"{model}.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        save_figure(fig, out)
        written.append(out)
    return written
