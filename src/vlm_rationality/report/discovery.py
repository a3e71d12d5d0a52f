"""RaVL discovery for a person: the top cluster's regions as an image grid, and the discovery table as Markdown."""

from __future__ import annotations

import math
import os
from typing import Any, Sequence

import numpy as np

from vlm_rationality.report.figures import plt, save_figure
from vlm_rationality.report.names import display_name, number


def region_caption(kind: str, feature: int | None, names: dict[str, list[str] | None]) -> str:
    """'object circle', 'background stripes': a region's feature by name (by id where the dataset names none; the
    kind alone for a grid cell, which shows no known feature)."""
    if feature is None:
        return kind
    table = {"object": names["classes"], "background": names.get("backgrounds")}.get(kind)
    return f"{kind} {feature if table is None else table[feature]}"


def region_grid(crops: Sequence[np.ndarray], captions: Sequence[str], title: str, path: str | os.PathLike) -> None:
    """The regions in rank order, five to a row, each captioned; a note instead when no cluster survived."""
    columns = 5
    rows = max(1, math.ceil(len(crops) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(1.6 * columns, 1.75 * rows + 0.5), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, crop, caption in zip(axes.ravel(), crops, captions):
        ax.imshow(crop)
        ax.set_title(caption, fontsize=7)
    if not len(crops):
        axes[0, 0].text(0, 0.5, "no cluster passed the filters (influence >= 0.25, gaps of both signs)", fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)


def discovery_markdown(rows: Sequence[dict[str, Any]], class_names: dict[str, list[str]]) -> str:
    lines = [
        "# RaVL discovery: the region cluster a classifier's errors follow",
        "",
        "K-Medoids over the regions of the discovery split (K by silhouette); the top cluster is the candidate "
        "(influence",
        ">= 0.25, gaps of both signs) with the largest performance gap G_c; Precision@10 (%) counts its first ten",
        "regions that show the cue tied to the class it is tied to (that class's own background, or the sticker);",
        "Random is the expected Precision@10 of ten regions drawn from all of them (the share that shows it);",
        "George is the image-level baseline on the same regions: per class, the cluster its images fail most in",
        "(its class -> the class they are taken for, and its Precision@10 counted alike).",
        "Accuracy (%) of the same images and of their object regions alone, overall / in the worst (class, cue",
        "present) group.",
        "",
        "| dataset | model | method | regions | K | silhouette | candidates | top cluster size | G_c | H_c "
        "| tied class | background share of top 10 (%) | Precision@10 / Random (%) | George slice | George "
        "Precision@10 (%) | image acc. / worst group | region acc. / worst group |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        names = class_names.get(r["dataset"], [])
        tied = _class_name(r["tied_class"], names)
        george = (
            "–"
            if r.get("george_class") is None
            else f"{_class_name(r['george_class'], names)} -> {_class_name(r['george_tied_class'], names)}"
        )
        lines.append(
            f"| {r['dataset']} | {r['model']} | {display_name(r['method'])} | {r['n_regions']} | {r['k']} | "
            f"{number(r['silhouette'])} | {r['n_candidates']} | {r['top_cluster_size']} | {number(r['top_gap'])} | "
            f"{number(r['top_influence'])} | {tied} | {number(r['top10_background_share'], True)} | "
            f"{number(r['precision_at_10'], True)} / {number(r.get('random_precision_at_10'), True)} | "
            f"{george} | {number(r.get('george_precision_at_10'), True)} | "
            f"{number(r.get('image_accuracy'), True)} / "
            f"{number(r.get('image_acc_worst_group'), True)} | {number(r.get('region_accuracy'), True)} / "
            f"{number(r.get('region_acc_worst_group'), True)} |"
        )
    return "\n".join(lines) + "\n"


def _class_name(label: int | None, names: Sequence[str]) -> str:
    return "–" if label is None else names[label] if label < len(names) else str(label)
