"""The paper's Figure 3 from the heatmap and prepared shards: what each method looks at, drawn as RMA sees it.

Two galleries per (dataset, model, heatmap method) on the clean data: samples every method predicted correctly
(one row per sample, one column per method), and per method samples it got right for the wrong reason (RW: right
prediction, RMA below the threshold). Samples are drawn with a seeded generator from the sorted candidate ids,
so a gallery is the same on every run; samples with an undefined RMA are never candidates.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from vlm_rationality.artefacts import PreparedShard, read_heatmaps
from vlm_rationality.data.shards import batches_under_shift, cue_columns
from vlm_rationality.metrics.rma import minmax_normalize, upsample
from vlm_rationality.report.figures import plt, save_figure
from vlm_rationality.report.names import display_name

COLUMNS = ("sample_id", "label", "pred", "rma", "heatmap")


@dataclass
class MethodHeatmaps:
    """One method's explained samples: sample_id -> (label, pred, rma, patch-grid heatmap)."""

    rows: dict[str, tuple[int, int, float, np.ndarray]]
    grid_size: tuple[int, int]
    shift: str

    def right(self) -> set[str]:
        return {s for s, (label, pred, *_) in self.rows.items() if pred == label}

    def defined(self) -> set[str]:
        return {s for s, (*_, rma, _) in self.rows.items() if np.isfinite(rma)}


def read_method_heatmaps(paths: Sequence[str | os.PathLike]) -> dict[str, MethodHeatmaps]:
    """Heatmap files of one (dataset, model, heatmap method) grouped by fine-tuning method (from their metadata)."""
    found: dict[str, MethodHeatmaps] = {}
    for path in paths:
        meta, table = read_heatmaps(path, COLUMNS)
        method = meta["keys"]["method"]
        entry = found.setdefault(method, MethodHeatmaps({}, tuple(meta["grid_size"]), meta["keys"]["shift"]))
        grids = np.asarray(table.column("heatmap").combine_chunks().flatten(), np.float32).reshape(table.num_rows, -1)
        rma = table.column("rma").to_numpy(zero_copy_only=False)
        for k, (sample, label, pred) in enumerate(
            zip(*(table.column(c).to_pylist() for c in ("sample_id", "label", "pred")))
        ):
            entry.rows[sample] = (label, pred, float(rma[k]) if rma[k] is not None else float("nan"), grids[k])
    return found


def heatmap_view(grid: np.ndarray, grid_size: Sequence[int], image_size: Sequence[int]) -> np.ndarray:
    """The heatmap RMA weighs: the patch grid upsampled bilinearly to the image and min-max normalised (rma.py's
    own functions, so the picture and the number cannot disagree)."""
    relevance = torch.as_tensor(np.asarray(grid, np.float32)).reshape(1, *grid_size)
    heat, _ = minmax_normalize(upsample(relevance, tuple(image_size)))
    return heat[0].numpy()


Sample = tuple[np.ndarray, np.ndarray, np.ndarray | None]  # image, object mask, the cue's own mask where stored


def read_samples(shards: Sequence[str | os.PathLike], wanted: set[str], shift: str = "clean") -> dict[str, Sample]:
    """sample_id -> (uint8 image [H, W, 3] as it was explained under `shift`, bool object mask [H, W], bool cue mask
    [H, W] where the shards store one, else None) for the wanted samples of prepared shards."""
    found: dict[str, Sample] = {}
    columns = cue_columns(shards)
    with batches_under_shift(shards, 512, shift, columns, samples=wanted) as batches:
        for batch in batches:
            masks = batch.masks().numpy()
            cues = batch.cue_masks().numpy() if columns else [None] * len(masks)
            for k, sample in enumerate(batch.sample_ids):
                found[sample] = (batch.images[k].numpy(), masks[k], cues[k])
    missing = wanted - found.keys()
    if missing:
        raise ValueError(
            f"{len(missing)} gallery samples (e.g. {sorted(missing)[0]}) are in no prepared shard of "
            f"{', '.join(map(str, shards))}; rerun the prepare and explain stages"
        )
    return found


def draw(candidates: set[str], count: int, seed: int) -> list[str]:
    """`count` of the candidates (all if fewer), seeded, in sorted order."""
    ordered = sorted(candidates)
    picked = np.random.default_rng(seed).choice(len(ordered), size=min(count, len(ordered)), replace=False)
    return [ordered[k] for k in sorted(picked)]


def all_right(heatmaps: dict[str, MethodHeatmaps], methods: Sequence[str], count: int, seed: int) -> list[str]:
    """Samples every method predicted correctly, each with a defined RMA under every method."""
    sets = [heatmaps[m].right() & heatmaps[m].defined() for m in methods]
    return draw(set.intersection(*sets) if sets else set(), count, seed)


def right_wrong_reason(heatmaps: MethodHeatmaps, threshold: float, count: int, seed: int) -> list[str]:
    """Samples the method got right on invalid evidence (RW: RMA below the threshold)."""
    return draw({s for s in heatmaps.right() & heatmaps.defined() if heatmaps.rows[s][2] < threshold}, count, seed)


def _panel(ax, sample: Sample, heat: np.ndarray | None, text: str, threshold: float, rma: float) -> None:
    """The image, the heatmap over it, the object outlined in white and a local cue (where stored) in dashed
    magenta."""
    image, mask, cue = sample
    ax.imshow(image, interpolation="nearest")
    if heat is not None:
        ax.imshow(heat, cmap="jet", alpha=0.5, vmin=0, vmax=1, interpolation="nearest")
    if mask.any() and not mask.all():
        ax.contour(mask.astype(float), levels=[0.5], colors="white", linewidths=1.2)
    if cue is not None and cue.any():
        ax.contour(cue.astype(float), levels=[0.5], colors="magenta", linewidths=1.2, linestyles="dashed")
    if text:
        colour = "black" if not np.isfinite(rma) else ("tab:green" if rma >= threshold else "tab:red")
        ax.set_xlabel(text, color=colour, fontsize="small")
    ax.set_xticks([])
    ax.set_yticks([])


def _empty(path: str | os.PathLike, message: str) -> None:
    fig, ax = plt.subplots(figsize=(6, 1.2))
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True)
    save_figure(fig, path)


def all_right_figure(
    heatmaps: dict[str, MethodHeatmaps],
    samples: dict[str, Sample],
    chosen: Sequence[str],
    methods: Sequence[str],
    class_names: Sequence[str],
    threshold: float,
    title: str,
    path: str | os.PathLike,
) -> None:
    """One row per sample: the image with the object outlined, then each method's heatmap with its RMA."""
    if not chosen:
        _empty(path, f"{title}: no sample was predicted correctly by every method ({', '.join(methods)})")
        return
    cols = 1 + len(methods)
    fig, axes = plt.subplots(len(chosen), cols, figsize=(max(1.9 * cols, 6.5), 2.0 * len(chosen) + 0.6), squeeze=False)
    for row, sample in zip(axes, chosen):
        image = samples[sample][0]
        label = heatmaps[methods[0]].rows[sample][0]
        _panel(row[0], samples[sample], None, "", threshold, float("nan"))
        row[0].set_ylabel(
            f"{sample.rsplit('/', 1)[-1]}\n{class_names[label]}", fontsize="x-small"
        )  # a path's file name
        for ax, method in zip(row[1:], methods):
            _, _, rma, grid = heatmaps[method].rows[sample]
            heat = heatmap_view(grid, heatmaps[method].grid_size, image.shape[:2])
            _panel(ax, samples[sample], heat, f"RMA {rma:.2f}", threshold, rma)
    for ax, name in zip(axes[0], ["image + object", *(display_name(m) for m in methods)]):
        ax.set_title(name, fontsize="small")
    fig.suptitle(
        f"{title}\nsamples every method got right (RMA green if ≥ {threshold}, red if below)", fontsize="small"
    )
    fig.tight_layout()
    save_figure(fig, path)


def rw_figure(
    heatmaps: dict[str, MethodHeatmaps],
    samples: dict[str, Sample],
    chosen: dict[str, list[str]],
    methods: Sequence[str],
    class_names: Sequence[str],
    threshold: float,
    title: str,
    path: str | os.PathLike,
) -> None:
    """One row per method: samples it predicted correctly with RMA below the threshold (RW)."""
    width = max((len(v) for v in chosen.values()), default=0)
    if width == 0:
        _empty(path, f"{title}: no method has a right-for-the-wrong-reason (RW) sample")
        return
    fig, axes = plt.subplots(
        len(methods), width, figsize=(max(1.9 * width, 6.5), 2.1 * len(methods) + 0.6), squeeze=False
    )
    for row, method in zip(axes, methods):
        for k, ax in enumerate(row):
            if k >= len(chosen[method]):
                ax.axis("off")
                continue
            sample = chosen[method][k]
            label, _, rma, grid = heatmaps[method].rows[sample]
            heat = heatmap_view(grid, heatmaps[method].grid_size, samples[sample][0].shape[:2])
            _panel(ax, samples[sample], heat, f"{class_names[label]} · RMA {rma:.2f}", threshold, rma)
        row[0].set_ylabel(f"{display_name(method)}\n({len(chosen[method])} shown)", fontsize="small")
    fig.suptitle(f"{title}\nright prediction, RMA < {threshold} (RW), per method", fontsize="small")
    fig.tight_layout()
    save_figure(fig, path)


def galleries(
    heatmap_paths: Sequence[str | os.PathLike],
    shards: Sequence[str | os.PathLike],
    methods: Sequence[str],
    class_names: Sequence[str],
    threshold: float,
    count: int,
    seed: int,
    title: str,
    all_right_path: str | os.PathLike,
    rw_path: str | os.PathLike,
) -> dict[str, object]:
    """Both galleries of one (dataset, model, heatmap method); returns what was drawn, for the log."""
    heatmaps = read_method_heatmaps(heatmap_paths)
    missing = [m for m in methods if m not in heatmaps]
    if missing:
        raise ValueError(f"no heatmap file among the inputs is for method(s) {', '.join(missing)}")
    right = all_right(heatmaps, methods, count, seed)
    rw = {m: right_wrong_reason(heatmaps[m], threshold, count, seed) for m in methods}
    # each image drawn as it was explained: corrupted on the fly, or read from ImageNet-C
    samples = read_samples(shards, set(right).union(*rw.values()), next(iter(heatmaps.values())).shift)
    all_right_figure(heatmaps, samples, right, methods, class_names, threshold, title, all_right_path)
    rw_figure(heatmaps, samples, rw, methods, class_names, threshold, title, rw_path)
    return {"all_right": right, "rw": rw}


def render_sample(
    heatmap_path: str | os.PathLike,
    sample: str,
    png: str | os.PathLike,
    prepared: Sequence[str | os.PathLike] | None = None,
) -> str:
    """One sample of a heatmap file drawn as the gallery draws it (the image under the file's shift, the object
    outlined, the heatmap as RMA weighs it); the prepared shards default to the file's `source_shards`."""
    meta, table = read_heatmaps(heatmap_path, COLUMNS)
    ids = table.column("sample_id").to_pylist()
    if sample not in ids:
        raise SystemExit(f"{heatmap_path}: no sample {sample!r} (it holds {len(ids)}, e.g. {', '.join(ids[:3])})")
    shards = list(prepared or meta["source_shards"])
    absent = [str(p) for p in shards if not os.path.exists(p)]
    if absent:
        raise SystemExit(
            f"{heatmap_path}: prepared shard(s) {', '.join(absent)} not found; run from the workflow "
            "directory or name them with --prepared"
        )
    row = table.slice(ids.index(sample), 1).to_pylist()[0]
    image, mask, cue = read_samples(shards, {sample}, meta["keys"]["shift"])[sample]
    heat = heatmap_view(np.asarray(row["heatmap"], np.float32), meta["grid_size"], image.shape[:2])
    rma = float("nan") if row["rma"] is None else row["rma"]
    keys = meta["keys"]
    fig, axes = plt.subplots(1, 2, figsize=(5.2, 3.0))
    _panel(axes[0], (image, mask, cue), None, f"label {row['label']}, predicted {row['pred']}", 0.5, float("nan"))
    _panel(axes[1], (image, mask, cue), heat, f"RMA {rma:.3f}", 0.5, float("nan"))
    fig.suptitle(
        f"{sample} · {keys['dataset']} · {keys['shift']} · {keys['model']} · {keys['method']} · "
        f"{keys['heatmap_method']}",
        fontsize="small",
    )
    fig.tight_layout()
    save_figure(fig, png)
    return f"wrote {png}: {sample} label {row['label']} pred {row['pred']} RMA {rma:.4f}"


def render_prepared(shard: str | os.PathLike, sample: str, png: str | os.PathLike) -> str:
    """One sample of a prepared shard: the image as stored, its object outlined and its local cue (where stored)
    dashed, with its label."""
    prepared = PreparedShard(shard)
    index = prepared.index()
    if sample not in index["sample_id"]:
        ids = index["sample_id"]
        raise SystemExit(f"{shard}: no sample {sample!r} (it holds {len(ids)}, e.g. {', '.join(ids[:3])})")
    label = int(index["label"][index["sample_id"].index(sample)])
    names = prepared.meta.get("class_names") or []
    label = f"{label} ({names[label]})" if label < len(names) else label
    fig, ax = plt.subplots(figsize=(3.2, 3.4))
    _panel(ax, read_samples([shard], {sample})[sample], None, f"label {label}", 0.5, float("nan"))
    ax.set_title(f"{sample} · {Path(shard).name}", fontsize="small")
    fig.tight_layout()
    save_figure(fig, png)
    return f"wrote {png}: {sample} label {label}"
