"""The figures a reader looks for before trusting a threshold: PT and IR against the RMA threshold per method, with
the configured threshold marked, and the RMA distribution per method that explains why the curves cross."""

from __future__ import annotations

import os
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from vlm_rationality.metrics.thresholds import CURVES  # noqa: E402
from vlm_rationality.report.figures import save_figure  # noqa: E402
from vlm_rationality.report.names import METRICS, display_name  # noqa: E402


def _name(method: str, model: str, models: Sequence[str]) -> str:
    return display_name(method) if len(models) == 1 else f"{display_name(method)} {model}"


def threshold_figure(
    rows: Sequence[dict[str, Any]],
    methods: Sequence[str],
    models: Sequence[str],
    datasets: Sequence[str],
    heatmap_methods: Sequence[str],
    threshold: float,
    path: str | os.PathLike,
    shift: str = "clean",
) -> None:
    """A row of panels per heatmap method, PT then IR for each dataset; a line per (method, model) with its 95%
    interval as a band; the configured threshold dashed."""
    index: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        if row["shift"] == shift:
            index.setdefault((row["heatmap_method"], row["dataset"], row["method"], row["model"]), []).append(row)
    columns = [(dataset, metric) for dataset in datasets for metric in CURVES]
    fig, axes = plt.subplots(
        len(heatmap_methods),
        len(columns),
        figsize=(3.6 * len(columns), 3.2 * len(heatmap_methods) + 0.5),
        squeeze=False,
        sharex=True,
        sharey=True,
    )
    for heatmap, panels in zip(heatmap_methods, axes):
        for ax, (dataset, metric) in zip(panels, columns):
            for method in methods:
                for model in models:
                    found = sorted(index.get((heatmap, dataset, method, model), []), key=lambda r: r["threshold"])
                    if not found:
                        continue
                    x = np.array([r["threshold"] for r in found])
                    value, low, high = (
                        100 * np.array([r[f"{metric}{s}"] for r in found], dtype=float)
                        for s in ("", "_ci_low", "_ci_high")
                    )
                    (line,) = ax.plot(x, value, label=_name(method, model, models))
                    ax.fill_between(x, low, high, color=line.get_color(), alpha=0.18, linewidth=0)
            ax.axvline(threshold, color="black", linestyle="--", linewidth=1)
            ax.set_title(f"{METRICS[metric].short} · {dataset} ({heatmap})", fontsize="medium")
            ax.set_ylim(0, 100)
            ax.grid(alpha=0.3)
        panels[0].set_ylabel(f"% (95% CI; shift: {shift})")
    for ax in axes[-1]:
        ax.set_xlabel("RMA threshold")
    handles, labels = axes[0][0].get_legend_handles_labels()
    handles.append(plt.Line2D([], [], color="black", linestyle="--", linewidth=1))
    labels.append(f"configured threshold {threshold:g}")
    fig.legend(handles, labels, loc="upper center", ncol=len(labels), fontsize="small", frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.4 / fig.get_figheight()))
    save_figure(fig, path)


def rma_figure(
    stored: dict[tuple[str, ...], dict[str, np.ndarray]],
    methods: Sequence[str],
    models: Sequence[str],
    datasets: Sequence[str],
    heatmap_methods: Sequence[str],
    threshold: float,
    path: str | os.PathLike,
    shift: str = "clean",
) -> None:
    """A panel per (heatmap method, dataset): per (method, model) the RMA of its right and of its wrong predictions
    as box plots (whiskers 5–95 %), the configured threshold dashed: PT reads the right ones against the line, IR
    the share of all above it that are right."""
    fig, axes = plt.subplots(
        len(heatmap_methods),
        len(datasets),
        figsize=(max(4.5, 1.1 * len(methods) * len(models)) * len(datasets), 3.4 * len(heatmap_methods) + 0.5),
        squeeze=False,
        sharey=True,
    )
    groups = [(method, model) for method in methods for model in models]
    for heatmap, panels in zip(heatmap_methods, axes):
        for ax, dataset in zip(panels, datasets):
            for i, (method, model) in enumerate(groups):
                found = stored.get((dataset, shift, model, method, heatmap))
                if found is None:
                    continue
                rma, correct = found["rma"], found["correct"]
                for offset, chosen, colour in ((-0.18, correct, "tab:blue"), (0.18, ~correct, "tab:orange")):
                    values = rma[chosen & np.isfinite(rma)]
                    if values.size:
                        box = ax.boxplot(
                            values,
                            positions=[i + offset],
                            widths=0.3,
                            whis=(5, 95),
                            showfliers=False,
                            patch_artist=True,
                            medianprops={"color": "black"},
                        )
                        box["boxes"][0].set_facecolor(colour)
            ax.axhline(threshold, color="black", linestyle="--", linewidth=1)
            ax.set_xticks(range(len(groups)), [_name(m, model, models) for m, model in groups])
            ax.set_xlim(-0.6, len(groups) - 0.4)
            ax.set_ylim(0, 1)
            ax.set_title(f"{dataset} ({heatmap})", fontsize="medium")
            ax.grid(axis="y", alpha=0.3)
        panels[0].set_ylabel(f"RMA (shift: {shift})")
    legend = [
        plt.Rectangle((0, 0), 1, 1, color="tab:blue"),
        plt.Rectangle((0, 0), 1, 1, color="tab:orange"),
        plt.Line2D([], [], color="black", linestyle="--", linewidth=1),
    ]
    labels = ["right predictions", "wrong predictions", f"configured threshold {threshold:g}"]
    fig.legend(legend, labels, loc="upper center", ncol=3, fontsize="small", frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.4 / fig.get_figheight()))
    save_figure(fig, path)


def per_class_figure(
    rows: Sequence[dict[str, Any]],
    methods: Sequence[str],
    models: Sequence[str],
    datasets: Sequence[str],
    heatmap: str,
    path: str | os.PathLike,
    shift: str = "clean",
) -> None:
    """A row of panels per dataset: accuracy and PT (under `heatmap`) per class, a line per (method, model) with its
    95% interval as a band, the classes ordered by the first method's accuracy (named where there are few)."""
    chosen = [r for r in rows if r["shift"] == shift and r["heatmap_method"] == heatmap]
    metrics = ("accuracy", "prediction_trustworthiness")
    fig, axes = plt.subplots(len(datasets), len(metrics), figsize=(12, 3.6 * len(datasets) + 0.5), squeeze=False)
    for dataset, panels in zip(datasets, axes):
        here = [r for r in chosen if r["dataset"] == dataset]
        first = [r for r in here if (r["method"], r["model"]) == (methods[0], models[0])]
        order = [r["label"] for r in sorted(first, key=lambda r: (r["accuracy"], r["label"]))]
        names = {r["label"]: r["class_name"] for r in here}
        for ax, metric in zip(panels, metrics):
            for method in methods:
                for model in models:
                    by_label = {r["label"]: r for r in here if (r["method"], r["model"]) == (method, model)}
                    if not by_label:
                        continue
                    value, low, high = (
                        100 * np.array([by_label.get(c, {}).get(f"{metric}{s}", np.nan) for c in order], dtype=float)
                        for s in ("", "_ci_low", "_ci_high")
                    )
                    x = np.arange(len(order))
                    (line,) = ax.plot(
                        x, value, marker="o" if len(order) <= 40 else None, ms=3, label=_name(method, model, models)
                    )
                    ax.fill_between(x, low, high, color=line.get_color(), alpha=0.15, linewidth=0)
            if len(order) <= 40:
                ax.set_xticks(range(len(order)), [names[c] for c in order], rotation=45, ha="right", fontsize=7)
            else:
                ax.set_xlabel(f"class, by {display_name(methods[0])}'s accuracy ({len(order)} classes)")
            title = METRICS[metric].short + (f" ({heatmap})" if metric != "accuracy" else "")
            ax.set(ylim=(0, 100), title=f"{title} per class · {dataset}")
            ax.grid(alpha=0.3)
        panels[0].set_ylabel(f"% (95% CI; shift: {shift})")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=len(labels), fontsize="small", frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()))
    save_figure(fig, path)
