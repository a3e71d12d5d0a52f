"""Shared machinery of the on-disk dataset adapters: item lists, the bad-input policy, the eval transform.

An adapter lists each split's items (path, label, annotation) in a fixed order and turns an item's
annotation into an object mask at the image's original resolution. Everything that can go wrong with one
item becomes a `Skipped` with a named reason; a missing root or wrong layout fails at config-check time,
naming the path and the expected layout.
"""

from __future__ import annotations

import logging
import math
import os
import random
from abc import abstractmethod
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from vlm_rationality.data.base import Dataset, Item, Sample, Skipped
from vlm_rationality.data.transform import eval_transform, resize_crop_box

log = logging.getLogger(__name__)


class BadInput(Exception):
    """One item's image or annotation cannot be used; `reason` is the skip reason it is counted under."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


# The shorter side is resized to `resize` before the centre crop, so a 30000x1 strip would become gigabytes: the
# resized image may hold at most this many crops' worth of pixels (an aspect ratio of 64:1).
MAX_RESIZED_CROPS = 64


def regular(path: Path) -> Path:
    """Opening a FIFO blocks and a device streams forever: anything but a regular file is refused by its type."""
    if path.exists() and not path.is_file():
        raise BadInput("not_a_file", f"{path} is not a regular file (a folder, FIFO or device); remove it")
    return path


def inside(root: Path, relative: str | os.PathLike) -> Path:
    """`root / relative` where a dataset's own index names the file: an entry that leads out of the root (`..`, an
    absolute path) is skipped and counted, never read. Checked on the path as written, so a root that is a link farm
    (datasets on another disk) still works."""
    path = root / relative
    if os.path.isabs(relative) or not os.path.normpath(path).startswith(os.path.normpath(root) + os.sep):
        raise BadInput("outside_root", f"{relative!s}: the dataset's index names a file outside its root {root}")
    return regular(path)


def bounded_resize(path: Path, width: int, height: int, size: int, resize: int | None) -> None:
    """Refuse an image whose resize before the crop would allocate more than MAX_RESIZED_CROPS crops."""
    (new_w, new_h), _ = resize_crop_box(width, height, size, resize)
    side = resize or size
    if new_w * new_h > MAX_RESIZED_CROPS * side * side:
        raise BadInput(
            "extreme_aspect_ratio",
            f"{path}: {width}x{height} would be resized to {new_w}x{new_h} before "
            f"the centre crop (more than {MAX_RESIZED_CROPS}:1)",
        )


def require(path: Path, layout: str) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; expected layout: {layout}")
    return path


def seeded_split(items_by_class: dict[int, list[Item]], train_fraction: float, seed: int, split: str) -> list[Item]:
    """A per-class train/test split that depends only on (seed, class, file list): deterministic everywhere."""
    out: list[Item] = []
    for label in sorted(items_by_class):
        items = sorted(items_by_class[label], key=lambda item: item.sample_id)
        random.Random(f"{seed}-{label}").shuffle(items)
        cut = round(len(items) * train_fraction)
        out += items[:cut] if split == "train" else items[cut:]
    return sorted(out, key=lambda item: item.sample_id)


def carve(items: Sequence[Item], carves: dict[str, dict[str, Any]]) -> tuple[list[Item], dict[str, list[Item]]]:
    """Carve held-out splits out of one split's items: per class, each carved split (in name order) takes
    n · fraction of the class's n items (rounded half up), drawn with its own seed from what the splits before it
    left. The draw depends only on (split name, seed, class, file list), so it is the same on every machine and run.
    Returns the items left to the source split and each carved split's items, all in the source's order."""
    by_class: dict[int, list[Item]] = {}
    for item in items:
        by_class.setdefault(item.label, []).append(item)
    taken: dict[str, set[str]] = {name: set() for name in carves}
    for label, members in sorted(by_class.items()):
        rest = sorted(item.sample_id for item in members)
        for name in sorted(carves):
            count = min(math.floor(len(members) * carves[name]["fraction"] + 0.5), len(rest))
            drawn = random.Random(f"carve-{name}-{carves[name]['seed']}-{label}").sample(rest, count)
            taken[name].update(drawn)
            rest = [sample_id for sample_id in rest if sample_id not in taken[name]]
    for name, ids in taken.items():
        if not ids:
            raise ValueError(
                f"split {name!r}: {carves[name]['fraction']} of each class of its {len(items)} source items "
                "is no item at all; raise its carve.fraction"
            )
    held_out = set().union(*taken.values())
    return (
        [item for item in items if item.sample_id not in held_out],
        {name: [item for item in items if item.sample_id in ids] for name, ids in taken.items()},
    )


def check_boxes(
    boxes: Sequence[tuple[float, float, float, float]], width: int, height: int
) -> list[tuple[float, float, float, float]]:
    """Clip boxes to the image; a box with no area inside it is bad input."""
    kept = []
    for xmin, ymin, xmax, ymax in boxes:
        if xmax < xmin or ymax < ymin:
            raise BadInput("malformed_annotation", f"box {(xmin, ymin, xmax, ymax)} has negative size")
        if xmax < 0 or ymax < 0 or xmin > width - 1 or ymin > height - 1:
            raise BadInput("box_outside_image", f"box {(xmin, ymin, xmax, ymax)} outside {width}x{height}")
        kept.append((max(0.0, xmin), max(0.0, ymin), min(width - 1.0, xmax), min(height - 1.0, ymax)))
    return kept


# Options of every on-disk dataset: the eval transform and the prompts' class names (the official code's choices
# differ per dataset; config/paper-official.yaml selects them).
FILE_OPTIONS: dict[str, Any] = {
    "resize": {
        "type": "integer",
        "minimum": 1,
        "description": "shorter side before the centre crop of image_size (left out: image_size; ImageNet recipe: 256)",
    },
    "interpolation": {
        "type": "string",
        "enum": ["bicubic", "bilinear"],
        "default": "bicubic",
        "description": "image resampling (bicubic: CLIP's; bilinear: torchvision's default, the official code's)",
    },
    "mask_interpolation": {
        "type": "string",
        "enum": ["nearest", "bilinear"],
        "default": "nearest",
        "description": "mask resampling before it is thresholded at mask_threshold",
    },
    "class_names": {
        "type": "string",
        "description": "text file, one class per line in label order; a line's first comma-separated name is used",
    },
}


class FileDataset(Dataset):
    """A dataset read from its original layout under `root`; subclasses list items and build masks."""

    layout: str = ""
    split_options = {
        "masks": {"type": "boolean", "default": True, "description": "false: a split used without annotations"},
        "carve": {
            "type": "object",
            "additionalProperties": False,
            "required": ["from", "fraction"],
            "properties": {
                "from": {
                    "type": "string",
                    "description": "the split carved from (the training split), which then leaves these items out",
                },
                "fraction": {
                    "type": "number",
                    "exclusiveMinimum": 0,
                    "exclusiveMaximum": 1,
                    "description": "share of each class of `from`",
                },
                "seed": {"type": "integer", "default": 0},
            },
            "description": "this split is a seeded per-class share of another split, held out of it (e.g. the "
            "validation split temperature scaling is fitted on)",
        },
    }
    mask_threshold: int = 128  # an object mask is 0/255 before resampling; CUB's soft segmentation has its own

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.options = {**FILE_OPTIONS, **cls.options}

    def __init__(
        self,
        root: str,
        image_size: int,
        splits: dict[str, dict[str, Any]],
        resize: int | None = None,
        interpolation: str = "bicubic",
        mask_interpolation: str = "nearest",
        class_names: str | None = None,
    ) -> None:
        self.root = require(Path(root).expanduser(), self.layout)
        self.image_size = int(image_size)
        if resize is not None and resize < self.image_size:
            raise ValueError(f"resize {resize} is smaller than image_size {self.image_size}: the crop would not fit")
        self.resize, self.interpolation, self.mask_interpolation = resize, interpolation, mask_interpolation
        self.names_file = require(Path(class_names).expanduser(), "one class name per line") if class_names else None
        self.splits = splits
        self.carves = {name: spec["carve"] for name, spec in splits.items() if "carve" in spec}
        for name, spec in self.carves.items():
            if spec["from"] not in splits:
                raise KeyError(f"split {name!r} is carved from {spec['from']!r}, which is not a configured split")
            if spec["from"] in self.carves:
                raise ValueError(
                    f"split {name!r} is carved from {spec['from']!r}, itself carved; carve both from "
                    f"{self.carves[spec['from']]['from']!r}"
                )
        for source in {spec["from"] for spec in self.carves.values()}:
            family = sorted(name for name, spec in self.carves.items() if spec["from"] == source)
            if sum(self.carves[name]["fraction"] for name in family) >= 1:
                raise ValueError(
                    f"splits {', '.join(family)} carve all of {source!r}: their fractions must sum below 1"
                )
        self._items: dict[str, list[Item]] = {}

    @property
    def listed_splits(self) -> list[str]:
        """The splits read from the layout; the others are carved out of one of these."""
        return [name for name in self.splits if name not in self.carves]

    def prompts(self, template: str) -> list[str]:
        """The class prompts; with `class_names`, from that file (checked against the adapter's class count)."""
        if self.names_file is None:
            return super().prompts(template)
        names = [line.split(",")[0].strip() for line in self.names_file.read_text().splitlines() if line.strip()]
        if len(names) != len(self.class_names):
            raise ValueError(f"{self.names_file} names {len(names)} classes, the dataset has {len(self.class_names)}")
        return [template.format(name=name) for name in names]

    @abstractmethod
    def list_items(self, split: str) -> list[Item]:
        """Every item of `split`, in a fixed order."""

    @abstractmethod
    def object_mask(self, item: Item, width: int, height: int) -> np.ndarray:
        """Mask [height, width] of the object, bool or uint8 (soft, kept ≥ mask_threshold after resampling); raise
        BadInput for a missing or malformed annotation."""

    def items(self, split: str) -> list[Item]:
        if split not in self.splits:
            raise KeyError(
                f"{type(self).__name__} has no configured split {split!r}; configured: {', '.join(self.splits)}"
            )
        if split not in self._items:
            source = self.carves[split]["from"] if split in self.carves else split
            family = {name: spec for name, spec in self.carves.items() if spec["from"] == source}
            self._items[source], carved = carve(self.list_items(source), family)
            self._items.update(carved)
            log.info(
                "listed %d items of split %s under %s%s",
                len(self._items[split]),
                split,
                self.root,
                "".join(f"; {len(v)} carved out into {k}" for k, v in carved.items()),
            )
        return self._items[split]

    def needs_masks(self, split: str) -> bool:
        """Evaluation splits need an object; training splits may be used without annotations."""
        return bool(self.splits[split]["masks"])

    def load(self, item: Item, with_mask: bool) -> Sample:
        path = inside(self.root, item.sample_id)
        try:
            with Image.open(path) as handle:
                bounded_resize(path, handle.width, handle.height, self.image_size, self.resize)
                handle.load()
                image = handle.copy()
        except FileNotFoundError as err:
            raise BadInput("missing_image", str(path)) from err
        except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError) as err:
            # A decompression bomb (over twice PIL's MAX_IMAGE_PIXELS) is refused before decoding: memory stays bounded.
            raise BadInput("unreadable_image", f"{path}: {err}") from err
        if with_mask:
            mask = self.object_mask(item, image.width, image.height)
            if not (mask if mask.dtype == bool else mask >= self.mask_threshold).any():
                raise BadInput("empty_mask", item.sample_id)
        else:
            mask = np.zeros((image.height, image.width), dtype=bool)
        pixels, mask = eval_transform(
            image, mask, self.image_size, self.resize, self.interpolation, self.mask_interpolation, self.mask_threshold
        )
        if with_mask and not mask.any():
            raise BadInput("empty_mask", f"{item.sample_id}: the object lies outside the centre crop")
        return Sample(item.sample_id, item.label, pixels, mask, type(self).__name__)

    def image_path(self, item: Item) -> str:
        return str(self.root / item.sample_id)

    def load_items(self, split: str, items: Sequence[Item], start: int) -> Iterator[Sample | Skipped]:
        with_mask = self.needs_masks(split)
        for item in items:
            try:
                yield self.load(item, with_mask)
            except BadInput as bad:
                yield Skipped(item.sample_id, bad.reason, str(bad))
