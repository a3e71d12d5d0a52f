"""Stanford Dogs: Images/, Annotation/ (VOC XML boxes), train_list.mat / test_list.mat."""

from __future__ import annotations

from functools import cached_property
from typing import Any

import numpy as np

from vlm_rationality.data.base import DATASET_ADAPTERS
from vlm_rationality.data.files import BadInput, FileDataset, Item, check_boxes, inside, require
from vlm_rationality.data.imagenet import read_voc_boxes
from vlm_rationality.data.transform import boxes_mask


@DATASET_ADAPTERS.register("stanford_dogs")
class StanfordDogs(FileDataset):
    layout = (
        "root/Images/<synset-breed>/*.jpg, root/Annotation/<synset-breed>/<image> (XML), root/{train,test}_list.mat"
    )
    published = "Stanford Dogs: train 12,000, test 8,580 images"
    options = {
        "boxes": {
            "type": "string",
            "enum": ["union", "last"],
            "default": "union",
            "description": "the object mask: every box of the XML, or its last box only (the official code's loop)",
        },
        "names": {
            "type": "string",
            "enum": ["breed", "cut"],
            "default": "breed",
            "description": "breed: the folder's full breed name; cut: only up to its next hyphen, as the "
            "official code names them ('black-and-tan_coonhound' -> 'black')",
        },
    }

    @classmethod
    def published_classes(cls, entry: dict[str, Any]) -> int | None:
        return 120

    @classmethod
    def published_size(cls, entry: dict[str, Any], split: str) -> int | None:
        return {"train": 12_000, "test": 8_580}.get(split)

    def __init__(
        self, root: str, image_size: int, splits: dict, boxes: str = "union", names: str = "breed", **common: Any
    ) -> None:
        super().__init__(root, image_size, splits, **common)
        self.box_rule, self.name_rule = boxes, names
        require(self.root / "Images", self.layout)
        require(self.root / "Annotation", self.layout)
        for split in self.listed_splits:
            require(self.root / f"{split}_list.mat", self.layout)

    @cached_property
    def breeds(self) -> list[str]:
        return sorted(p.name for p in (self.root / "Images").iterdir() if p.is_dir())

    @property
    def class_names(self) -> list[str]:
        if self.name_rule == "cut":
            return [breed.split("-")[1].replace("_", " ") for breed in self.breeds]
        return [breed.split("-", 1)[-1].replace("_", " ") for breed in self.breeds]

    def list_items(self, split: str) -> list[Item]:
        from scipy.io import loadmat  # here: scipy is slow to import and only these files need it

        lists = loadmat(self.root / f"{split}_list.mat")
        index = {breed: i for i, breed in enumerate(self.breeds)}
        items = []
        for entry in lists["file_list"].ravel():
            relative = str(np.ravel(entry)[0])
            breed = relative.split("/", 1)[0]
            if breed not in index:
                raise FileNotFoundError(f"{split}_list.mat names {relative}, but Images/{breed} does not exist")
            items.append(Item(f"Images/{relative}", index[breed], relative.rsplit(".", 1)[0]))
        return items

    def object_mask(self, item: Item, width: int, height: int) -> np.ndarray:
        boxes = [box for _name, box in read_voc_boxes(inside(self.root / "Annotation", item.annotation))]
        if not boxes:
            raise BadInput("malformed_annotation", f"{item.annotation}: no object box")
        if self.box_rule == "last":
            boxes = boxes[-1:]
        return boxes_mask(check_boxes(boxes, width, height), height, width)
