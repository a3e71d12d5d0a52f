"""CUB-200-2011: the metadata .txt files, images/, and the separately distributed segmentations/ PNGs."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from vlm_rationality.data.base import DATASET_ADAPTERS
from vlm_rationality.data.files import BadInput, FileDataset, Item, inside, require

TABLES = ("images.txt", "image_class_labels.txt", "classes.txt", "train_test_split.txt")


def _table(path: Path) -> dict[str, str]:
    return dict(line.split(" ", 1) for line in path.read_text().splitlines() if line.strip())


@DATASET_ADAPTERS.register("cub")
class CUB(FileDataset):
    layout = (
        "root/{images,image_class_labels,classes,train_test_split,bounding_boxes}.txt, root/images/, "
        "and root/segmentations/<class>/<image>.png (option `segmentations`)"
    )

    published = "CUB-200-2011: train 5,994, test 5,794 images"
    options = {
        "segmentations": {
            "type": "string",
            "description": "the separately distributed segmentations/ folder, if not under root",
        },
        "threshold": {
            "type": "integer",
            "minimum": 1,
            "maximum": 255,
            "default": 128,
            "description": "a pixel is the bird where the resampled segmentation is >= threshold (official: 255 "
            "after a bilinear resize, i.e. mask_interpolation: bilinear)",
        },
    }

    @classmethod
    def published_classes(cls, entry: dict[str, Any]) -> int | None:
        return 200

    @classmethod
    def published_size(cls, entry: dict[str, Any], split: str) -> int | None:
        return {"train": 5_994, "test": 5_794}.get(split)

    def __init__(
        self, root: str, image_size: int, splits: dict, threshold: int, segmentations: str | None = None, **common: Any
    ) -> None:
        super().__init__(root, image_size, splits, **common)
        for name in TABLES:
            require(self.root / name, self.layout)
        self.segmentations = Path(segmentations).expanduser() if segmentations else self.root / "segmentations"
        if any(self.needs_masks(s) for s in splits):
            require(self.segmentations, self.layout)
        if not 0 < threshold <= 255:
            raise ValueError(f"cub segmentation threshold must be in (0, 255], got {threshold}")
        unknown = set(self.listed_splits) - {"train", "test"}
        if unknown:
            raise KeyError(
                "cub splits are 'train' and 'test' (train_test_split.txt; any other is carved from one, `carve`); "
                f"got {', '.join(sorted(unknown))}"
            )
        self.mask_threshold = threshold

    @cached_property
    def _classes(self) -> dict[str, str]:
        return _table(self.root / "classes.txt")

    @property
    def class_names(self) -> list[str]:
        return [
            name.split(".", 1)[-1].replace("_", " ")
            for _id, name in sorted(self._classes.items(), key=lambda kv: int(kv[0]))
        ]

    def list_items(self, split: str) -> list[Item]:
        images, labels = _table(self.root / "images.txt"), _table(self.root / "image_class_labels.txt")
        is_train = _table(self.root / "train_test_split.txt")
        wanted = "1" if split == "train" else "0"
        return [
            Item(f"images/{images[i]}", int(labels[i]) - 1, images[i].rsplit(".", 1)[0] + ".png")
            for i in sorted(images, key=int)
            if is_train.get(i) == wanted
        ]

    def object_mask(self, item: Item, width: int, height: int) -> np.ndarray:
        path = inside(self.segmentations, item.annotation)
        try:
            with Image.open(path) as handle:
                soft = np.asarray(handle.convert("L"))
        except FileNotFoundError as err:
            raise BadInput("missing_annotation", str(path)) from err
        except (UnidentifiedImageError, OSError) as err:
            raise BadInput("malformed_annotation", f"{path}: {err}") from err
        if soft.shape != (height, width):
            raise BadInput("malformed_annotation", f"{path}: {soft.shape} does not match the image {(height, width)}")
        return soft  # thresholded after resampling (with nearest, the same as before it)
