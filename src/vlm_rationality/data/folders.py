"""Image folders the robustness table reads: an out-of-distribution set (iNaturalist, Places or NINCO subsets a
user puts on disk, in any layout; every image an item of label -1) and the cue-conflict stimuli. No masks."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from vlm_rationality.data.base import DATASET_ADAPTERS, Item, Sample
from vlm_rationality.data.files import BadInput, FileDataset
from vlm_rationality.imagenet16 import imagenet16, parse_stimulus

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png", ".bmp", ".webp")
OOD_LABEL = -1
MAX_ENTRIES = 200_000  # files and folders walked under one image folder (the OOD sets of the papers: 2,000-36,500)


def image_files(root: Path) -> list[str]:
    """Every image under `root` (relative, sorted), walked with a bound: a folder given by mistake (`/`, a home
    folder) fails at once instead of listing the whole disk."""
    if root.resolve() == Path(root.resolve().anchor):
        raise ValueError(f"{root} is a filesystem root; give the folder that holds the images")
    files, seen = [], 0
    for folder, dirs, names in os.walk(root):
        seen += len(dirs) + len(names)
        if seen > MAX_ENTRIES:
            raise ValueError(
                f"{root} holds more than {MAX_ENTRIES:,} files and folders; an image folder here is a set of some "
                "thousand images: give that folder, not one above it"
            )
        dirs.sort()
        files += [
            (Path(folder) / name).relative_to(root).as_posix()
            for name in names
            if Path(name).suffix.lower() in IMAGE_SUFFIXES and (Path(folder) / name).is_file()
        ]
    return sorted(files)


@DATASET_ADAPTERS.register("image_folder")
class ImageFolder(FileDataset):
    layout = "images (.jpg, .jpeg, .png, .bmp, .webp) anywhere under root"

    def __init__(self, root: str, image_size: int, splits: dict, **transform) -> None:
        super().__init__(root, image_size, splits, **transform)
        self.files = image_files(self.root)
        if not self.files:
            raise ValueError(f"{self.root} holds no images; expected {self.layout}")

    @property
    def class_names(self) -> list[str]:
        return []

    def list_items(self, split: str) -> list[Item]:
        return [Item(name, OOD_LABEL, None) for name in self.files]

    def needs_masks(self, split: str) -> bool:
        return False  # an OOD image has no object of a class

    def object_mask(self, item: Item, width: int, height: int) -> np.ndarray:
        raise BadInput("no_annotation", f"{Path(item.sample_id)} is an OOD image")


@DATASET_ADAPTERS.register("cue_conflict_stimuli")
class CueConflictStimuli(FileDataset):
    """Geirhos et al.'s cue-conflict stimuli: `root/<shape>/<shape><i>-<texture><j>.png` over 16 categories. The
    label is the shape's category, `background` the texture's (categories in sorted order, as `imagenet16.json`)."""

    layout = "root/<shape>/<shape><i>-<texture><j>.png over the 16 categories (airplane, bear, … truck)"
    extra_columns = ("background",)

    def __init__(self, root: str, image_size: int, splits: dict, **transform) -> None:
        super().__init__(root, image_size, splits, **transform)
        self.categories = list(imagenet16())
        self.stimuli: list[tuple[str, int, int]] = []
        for path in sorted(self.root.glob("*/*.png")):
            shape, texture = parse_stimulus(path.name)
            for category in (path.parent.name, shape, texture):
                if category not in self.categories:
                    raise ValueError(f"{path}: {category!r} is not one of the 16 categories; expected {self.layout}")
            self.stimuli.append(
                (path.relative_to(self.root).as_posix(), self.categories.index(shape), self.categories.index(texture))
            )
        if not self.stimuli:
            raise ValueError(f"{self.root} holds no stimuli; expected {self.layout}")

    @property
    def class_names(self) -> list[str]:
        return self.categories

    def list_items(self, split: str) -> list[Item]:
        return [Item(name, shape, {"texture": texture}) for name, shape, texture in self.stimuli]

    def needs_masks(self, split: str) -> bool:
        return False

    def object_mask(self, item: Item, width: int, height: int) -> np.ndarray:
        raise BadInput("no_annotation", f"{item.sample_id} is a cue-conflict stimulus")

    def load(self, item: Item, with_mask: bool) -> Sample:
        sample = super().load(item, with_mask)
        sample.extra["background"] = int(item.annotation["texture"])
        return sample
