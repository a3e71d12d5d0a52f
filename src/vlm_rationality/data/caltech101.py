"""Caltech-101: 101_ObjectCategories/ images, Annotations/ .mat contours, a seeded per-class split."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from vlm_rationality.data.base import DATASET_ADAPTERS
from vlm_rationality.data.files import BadInput, FileDataset, Item, inside, require, seeded_split
from vlm_rationality.data.transform import polygon_mask

# The annotation folders of four classes are named differently from their image folders.
ANNOTATION_FOLDERS = {
    "Faces": "Faces_2",
    "Faces_easy": "Faces_3",
    "Motorbikes": "Motorbikes_16",
    "airplanes": "Airplanes_Side_2",
}
NOT_A_CLASS = "BACKGROUND_Google"


def every_nth_split(by_class: dict[int, list[Item]], root: Path, test_fraction: float, split: str) -> list[Item]:
    """The official code's split: over the annotated images in folder order, positions 1, 1 + k, 1 + 2k, … are test
    (k = n // int(n * test_fraction)); the other annotated images are train. Unannotated images are in neither."""
    annotated = [item for label in sorted(by_class) for item in by_class[label] if (root / item.annotation).is_file()]
    count = int(len(annotated) * test_fraction)
    if count == 0:
        raise ValueError(f"caltech101 every_nth split: {len(annotated)} annotated images give no test image")
    test = set(range(1, len(annotated), len(annotated) // count))
    return [item for i, item in enumerate(annotated) if (i in test) == (split == "test")]


@DATASET_ADAPTERS.register("caltech101")
class Caltech101(FileDataset):
    layout = "root/101_ObjectCategories/<class>/image_NNNN.jpg and root/Annotations/<class>/annotation_NNNN.mat"
    published = "Caltech-101: 8,677 images in 101 classes (9,144 with BACKGROUND_Google), split by train_fraction"

    @classmethod
    def published_classes(cls, entry: dict[str, Any]) -> int | None:
        return 102 if entry.get("background") else 101

    @classmethod
    def published_size(cls, entry: dict[str, Any], split: str) -> int | None:
        total = 9_144 if entry.get("background") else 8_677
        train = round(total * entry.get("train_fraction", 0.5))  # per class it rounds apart: within a few images
        return {"train": train, "test": total - train}.get(split)

    options = {
        "train_fraction": {
            "type": "number",
            "exclusiveMinimum": 0,
            "exclusiveMaximum": 1,
            "default": 0.5,
            "description": "share of each class in the seeded train split (Caltech-101 has no official one)",
        },
        "seed": {"type": "integer", "default": 0},
        "split_rule": {
            "type": "string",
            "enum": ["seeded", "every_nth"],
            "default": "seeded",
            "description": "seeded: a per-class shuffle; every_nth: the official code's, positions 1, 1+k, … "
            "of the n annotated images are test, k = n // int(n * (1 - train_fraction))",
        },
        "background": {
            "type": "boolean",
            "default": False,
            "description": "keep BACKGROUND_Google as class 'background google' (the official 102 classes)",
        },
    }

    def __init__(
        self,
        root: str,
        image_size: int,
        splits: dict,
        train_fraction: float,
        seed: int,
        split_rule: str = "seeded",
        background: bool = False,
        **common: Any,
    ) -> None:
        super().__init__(root, image_size, splits, **common)
        require(self.root / "101_ObjectCategories", self.layout)
        require(self.root / "Annotations", self.layout)
        if not 0 < train_fraction < 1:
            raise ValueError(f"caltech101 train_fraction must be in (0, 1), got {train_fraction}")
        unknown = set(self.listed_splits) - {"train", "test"}
        if unknown:
            raise KeyError(
                "caltech101 splits are 'train' and 'test' (a seeded split; any other is carved from one, `carve`); "
                f"got {', '.join(sorted(unknown))}"
            )
        self.train_fraction, self.seed, self.split_rule, self.background = train_fraction, seed, split_rule, background

    @cached_property
    def folders(self) -> list[str]:
        images = self.root / "101_ObjectCategories"
        return sorted(p.name for p in images.iterdir() if p.is_dir() and (self.background or p.name != NOT_A_CLASS))

    @property
    def class_names(self) -> list[str]:
        return [folder.replace("_", " ").lower() for folder in self.folders]

    def list_items(self, split: str) -> list[Item]:
        by_class: dict[int, list[Item]] = {}
        for label, folder in enumerate(self.folders):
            annotations = ANNOTATION_FOLDERS.get(folder, folder)
            for path in sorted((self.root / "101_ObjectCategories" / folder).glob("image_*.jpg")):
                number = path.stem.split("_")[-1]
                by_class.setdefault(label, []).append(
                    Item(
                        f"101_ObjectCategories/{folder}/{path.name}",
                        label,
                        f"Annotations/{annotations}/annotation_{number}.mat",
                    )
                )
        if self.split_rule == "every_nth":
            return every_nth_split(by_class, self.root, 1 - self.train_fraction, split)
        return seeded_split(by_class, self.train_fraction, self.seed, split)

    def object_mask(self, item: Item, width: int, height: int) -> np.ndarray:
        path = inside(self.root, item.annotation)
        if not path.is_file():
            raise BadInput("missing_annotation", str(path))
        try:
            from scipy.io import loadmat  # here: scipy is slow to import and only these files need it

            annotation = loadmat(path)
            top, _bottom, left, _right = np.ravel(annotation["box_coord"]).astype(float)
            contour = np.asarray(annotation["obj_contour"], dtype=float)
        except (KeyError, ValueError, TypeError, OSError) as err:
            raise BadInput("malformed_annotation", f"{path}: {err}") from err
        if contour.ndim != 2 or contour.shape[0] != 2 or contour.shape[1] < 3:
            raise BadInput("malformed_annotation", f"{path}: obj_contour has shape {contour.shape}")
        # MATLAB's 1-based contour is relative to the box's top-left corner.
        xs, ys = contour[0] + left - 1, contour[1] + top - 1
        if xs.max() < 0 or ys.max() < 0 or xs.min() > width - 1 or ys.min() > height - 1:
            raise BadInput("box_outside_image", f"{path}: contour outside {width}x{height}")
        return polygon_mask(xs, ys, height, width)
