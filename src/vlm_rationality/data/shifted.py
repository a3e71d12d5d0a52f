"""ImageNet's classes under natural distribution shifts, each read in the layout its authors publish: ImageNet-V2
(`root/<class index 0-999>/*.jpeg`), ImageNet-R and ImageNet-A (`root/<wnid>/*`, 200-class subsets) and
ImageNet-Sketch (`root/<wnid>/*`, all 1000). No masks: they feed accuracy, calibration and the shift tables.

A label is the class's index in the dataset the classifier was made for (`synsets`, the parent dataset's classes
in label order; ImageNet-1K's canonical order when not given), so one classifier reads every set. An image of a
class the parent does not have is counted as skipped (`class_not_in_dataset`), never relabelled. ImageNet-R and -A
are scored on their own classes (`restricted`): the standard protocol keeps the logits of those 200 classes only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from vlm_rationality import open_clip_data
from vlm_rationality.data.base import DATASET_ADAPTERS, Item
from vlm_rationality.data.files import BadInput, FileDataset
from vlm_rationality.data.folders import IMAGE_SUFFIXES
from vlm_rationality.data.imagenet_x import imagenet_synsets

NOT_IN_DATASET = -1


class ShiftedImageNet(FileDataset):
    """One shifted test set; subclasses say how a folder names its class."""

    restricted: ClassVar[bool] = False  # scored on its own classes only (the logits of the others dropped)
    published_images: ClassVar[int | None] = None

    def __init__(self, root: str, image_size: int, splits: dict, synsets: list[str] | None = None, **transform):
        super().__init__(root, image_size, splits, **transform)
        self.synsets = list(synsets) if synsets else imagenet_synsets()
        self.folders = sorted(p.name for p in self.root.iterdir() if p.is_dir())
        unknown = [folder for folder in self.folders if self.folder_synset(folder) is None]
        if not self.folders or unknown:
            raise ValueError(
                f"{self.root}: {'no class folders' if not self.folders else f'folders {unknown[:3]} name no class'}; "
                f"expected {self.layout}"
            )

    @classmethod
    def published_size(cls, entry: dict[str, Any], split: str) -> int | None:
        return cls.published_images

    def folder_synset(self, folder: str) -> str | None:
        """The wnid a class folder holds, None if the name is not one of this layout's."""
        return folder if folder in imagenet_synsets() else None

    @property
    def class_names(self) -> list[str]:
        """The parent's classes, by CLIP's curated names where they are ImageNet-1K's."""
        names = dict(zip(imagenet_synsets(), open_clip_data.imagenet_class_names()))
        return [names.get(synset, synset) for synset in self.synsets]

    def list_items(self, split: str) -> list[Item]:
        index = {synset: label for label, synset in enumerate(self.synsets)}
        items = []
        for folder in self.folders:
            label = index.get(self.folder_synset(folder), NOT_IN_DATASET)
            for path in sorted((self.root / folder).iterdir()):
                if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
                    items.append(Item(f"{folder}/{path.name}", label, None))
        return items

    def needs_masks(self, split: str) -> bool:
        return False  # no object annotations are published

    def load(self, item: Item, with_mask: bool):
        if item.label == NOT_IN_DATASET:
            raise BadInput("class_not_in_dataset", f"{Path(item.sample_id).parent}: not a class of the dataset")
        return super().load(item, with_mask)

    def object_mask(self, item: Item, width: int, height: int) -> np.ndarray:
        raise BadInput("no_annotation", f"{item.sample_id}: a shifted test set has no masks")


@DATASET_ADAPTERS.register("imagenet_v2")
class ImageNetV2(ShiftedImageNet):
    layout = "root/<class index 0-999>/*.jpeg (ImageNet-V2, any of its three samplings)"
    published = "ImageNet-V2 (Recht et al. 2019): 10,000 images per sampling"
    published_images = 10_000

    def folder_synset(self, folder: str) -> str | None:
        return imagenet_synsets()[int(folder)] if folder.isdigit() and int(folder) < 1000 else None


@DATASET_ADAPTERS.register("imagenet_r")
class ImageNetR(ShiftedImageNet):
    layout = "root/<wnid>/*.jpg over ImageNet-R's 200 classes"
    published = "ImageNet-R (Hendrycks et al. 2021): 30,000 renditions of 200 classes"
    published_images = 30_000
    restricted = True


@DATASET_ADAPTERS.register("imagenet_a")
class ImageNetA(ShiftedImageNet):
    layout = "root/<wnid>/*.jpg over ImageNet-A's 200 classes"
    published = "ImageNet-A (Hendrycks et al. 2021): 7,500 natural adversarial images of 200 classes"
    published_images = 7_500
    restricted = True


@DATASET_ADAPTERS.register("imagenet_sketch")
class ImageNetSketch(ShiftedImageNet):
    layout = "root/<wnid>/*.JPEG (ImageNet-Sketch, `sketch/` of its archive)"
    published = "ImageNet-Sketch (Wang et al. 2019): 50,889 sketches of the 1000 classes"
    published_images = 50_889
