"""Figures from the metrics table: PT, IR and accuracy per method (bars), and against the spurious strength rho."""

from __future__ import annotations

import os
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from vlm_rationality.io import atomic_path  # noqa: E402
from vlm_rationality.report.names import METRICS as LABELS  # noqa: E402
from vlm_rationality.report.names import TABLE2_ORDER, broken, display_name  # noqa: E402

METRICS = tuple((metric, LABELS[metric].short) for metric in TABLE2_ORDER)


def _percent(value: float | None) -> float:
    return np.nan if value is None else 100 * value


def _by_key(rows: Sequence[dict[str, Any]], shift: str) -> dict[tuple[str, str, str, str], dict[str, Any]]:
    """The rows of one shift by (heatmap method, dataset, method, model)."""
    return {(r["heatmap_method"], r["dataset"], r["method"], r["model"]): r for r in rows if r["shift"] == shift}


def save_figure(fig: plt.Figure, path: str | os.PathLike) -> None:
    """PNG at 120 dpi, written atomically; the figure is closed."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def pt_ir_figure(
    rows: Sequence[dict[str, Any]],
    methods: Sequence[str],
    models: Sequence[str],
    datasets: Sequence[str],
    heatmap_methods: Sequence[str],
    path: str | os.PathLike,
    shift: str = "clean",
) -> None:
    groups = [(m, model) for m in methods for model in models]
    # Panels widen with the bars (sweep variants have long names, drawn slanted) and the legend sits above them.
    long_names = max((len(m) for m in methods), default=0) > 6
    fig, axes = plt.subplots(
        len(heatmap_methods),
        len(datasets),
        squeeze=False,
        sharey=True,
        figsize=(
            max(4.2, 0.55 * len(groups) + 1) * len(datasets),
            (3.4 + (0.9 if long_names else 0)) * len(heatmap_methods) + 0.4,
        ),
    )
    index = _by_key(rows, shift)
    # with twins, the truth Table 2 leads with comes first, beside the paper's PT
    shown = (
        (("pt_true_cue", LABELS["pt_true_cue"].short),) if any(r.get("pt_true_cue") is not None for r in rows) else ()
    )
    shown += METRICS
    width = 0.8 / len(shown)
    for heatmap, panels in zip(heatmap_methods, axes):
        for ax, dataset in zip(panels, datasets):
            for k, (metric, label) in enumerate(shown):
                values, lows, highs = [], [], []
                for method, model in groups:
                    row = index.get((heatmap, dataset, method, model), {})
                    value = _percent(row.get(metric))
                    values.append(value)
                    lows.append(value - _percent(row.get(f"{metric}_ci_low")))
                    highs.append(_percent(row.get(f"{metric}_ci_high")) - value)
                x = np.arange(len(groups)) + (k - (len(shown) - 1) / 2) * width
                ax.bar(x, values, width, label=label, yerr=np.nan_to_num([lows, highs]), capsize=2)
            for i, (method, model) in enumerate(groups):
                mark = broken(index.get((heatmap, dataset, method, model)))
                if mark:  # a classifier with non-finite logits: said where its bars are (or are missing)
                    ax.text(i, 50, mark, rotation=90, ha="center", va="center", color="crimson", fontsize="small")
                    ax.set_xlim(-0.6, len(groups) - 0.4)
            names = [display_name(m) if len(models) == 1 else f"{display_name(m)}\n{model}" for m, model in groups]
            ax.set_xticks(
                np.arange(len(groups)),
                names,
                rotation=35 if long_names else 0,
                ha="right" if long_names else "center",
                fontsize="small" if long_names else None,
            )
            ax.set_title(f"{dataset} ({heatmap})")
            ax.set_ylim(0, 100)
            ax.set_yticks(range(0, 101, 20))
            ax.grid(axis="y", alpha=0.3)
        panels[0].set_ylabel(f"% (95% CI; shift: {shift})")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=len(shown), fontsize="small", frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()))
    save_figure(fig, path)


def rho_figure(
    rows: Sequence[dict[str, Any]],
    rhos: dict[str, float],
    methods: Sequence[str],
    models: Sequence[str],
    heatmap_methods: Sequence[str],
    path: str | os.PathLike,
    shift: str = "clean",
) -> None:
    """Accuracy, PT and IR against the training split's spurious strength rho, one line per (method, model) with
    its 95% interval as a band: the synthetic benchmark's calibration curve (a row of panels per heatmap method)."""
    datasets = sorted(rhos, key=rhos.get)
    x = np.array([rhos[d] for d in datasets])
    fig, axes = plt.subplots(
        len(heatmap_methods),
        len(METRICS),
        figsize=(4.2 * len(METRICS), 3.4 * len(heatmap_methods)),
        squeeze=False,
        sharey=True,
    )
    index = _by_key(rows, shift)
    for heatmap, panels in zip(heatmap_methods, axes):
        for ax, (metric, label) in zip(panels, METRICS):
            for method in methods:
                for model in models:
                    found = [index.get((heatmap, d, method, model), {}) for d in datasets]
                    value, low, high = (
                        np.array([r.get(f"{metric}{s}", np.nan) for r in found], dtype=float)
                        for s in ("", "_ci_low", "_ci_high")
                    )
                    name = display_name(method) if len(models) == 1 else f"{display_name(method)} {model}"
                    (line,) = ax.plot(x, value, marker="o", label=name)
                    ax.fill_between(x, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
            ax.set_title(f"{label} ({heatmap})")
            ax.set_xlabel("rho of the training split")
            ax.set_ylim(0, 1)
            ax.grid(alpha=0.3)
        panels[0].set_ylabel(f"value on the test split (shift: {shift})")
    axes[0][-1].legend(loc="lower left", fontsize="small")
    fig.suptitle(
        "Test split: background independent of the class. Training split: the class's own background with "
        "probability rho, else a random one",
        fontsize="medium",
    )
    fig.tight_layout()
    save_figure(fig, path)


def shift_figure(
    rows: Sequence[dict[str, Any]],
    dataset: str,
    model: str,
    heatmap: str,
    methods: Sequence[str],
    path: str | os.PathLike,
) -> None:
    """The paper's Figures 4–5: PT, IR and accuracy against corruption severity (0 = clean), one row of panels per
    corruption, one line per method with its 95% interval as a band; a point only where the severity was run."""
    from vlm_rationality.data.corruptions import parse_shift

    chosen = [r for r in rows if (r["dataset"], r["model"], r["heatmap_method"]) == (dataset, model, heatmap)]
    clean = {r["method"]: r for r in chosen if r["shift"] == "clean"}
    by_corruption: dict[str, dict[str, dict[int, dict[str, Any]]]] = {}
    for r in chosen:
        parsed = parse_shift(r["shift"])
        if parsed is not None:
            by_corruption.setdefault(parsed[0], {}).setdefault(r["method"], {})[parsed[1]] = r
    if not by_corruption:
        raise ValueError(f"{dataset}/{model}/{heatmap}: no corrupted shift in the metrics; add shifts to the config")
    corruptions = sorted(by_corruption)
    fig, axes = plt.subplots(
        len(corruptions),
        len(METRICS),
        figsize=(4.0 * len(METRICS), 2.8 * len(corruptions) + 0.5),
        squeeze=False,
        sharey=True,
    )
    for corruption, panels in zip(corruptions, axes):
        for ax, (metric, label) in zip(panels, METRICS):
            for method in methods:
                points = dict(by_corruption[corruption].get(method, {}))
                if not points:  # not run under this corruption: no lone clean point
                    continue
                if method in clean:
                    points[0] = clean[method]
                severity = sorted(points)
                value, low, high = (
                    np.array([points[s][f"{metric}{k}"] for s in severity], dtype=float)
                    for k in ("", "_ci_low", "_ci_high")
                )
                (line,) = ax.plot(severity, value, marker="o", label=display_name(method))
                ax.fill_between(severity, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
            ax.set_title(f"{label} · {corruption}", fontsize="medium")
            ax.set_xticks(range(6))
            ax.set_ylim(0, 1)
            ax.grid(alpha=0.3)
        panels[0].set_ylabel("value")
    for ax in axes[-1]:
        ax.set_xlabel("severity (0 = clean)")
    axes[0][-1].legend(loc="lower left", fontsize="small")
    fig.suptitle(f"{dataset} · {model} · {heatmap}: PT, IR and accuracy under corruption", fontsize="medium")
    fig.tight_layout()
    save_figure(fig, path)
