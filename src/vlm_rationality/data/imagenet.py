"""ImageNet-1K (ILSVRC2012): synset folders, val boxes from LOC_val_solution.csv or the ILSVRC XML files."""

from __future__ import annotations

import csv
import xml.etree.ElementTree as ET
from functools import cached_property
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from vlm_rationality import open_clip_data
from vlm_rationality.data import imagenet_x
from vlm_rationality.data.base import DATASET_ADAPTERS
from vlm_rationality.data.files import BadInput, FileDataset, Item, check_boxes, require
from vlm_rationality.data.transform import boxes_mask
from vlm_rationality.visual_factors import Factors

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")


def read_loc_csv(path: Path) -> dict[str, list[tuple[str, tuple[float, ...]]]]:
    """LOC_val_solution.csv: ImageId, "synset xmin ymin xmax ymax synset …" -> {image id: [(synset, box)]}."""
    boxes: dict[str, list[tuple[str, tuple[float, ...]]]] = {}
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            fields = row["PredictionString"].split()
            if len(fields) % 5:
                boxes[row["ImageId"]] = []  # malformed: reported when the image is prepared
                continue
            boxes[row["ImageId"]] = [
                (fields[i], tuple(map(float, fields[i + 1 : i + 5]))) for i in range(0, len(fields), 5)
            ]
    return boxes


def read_voc_boxes(path: Path) -> list[tuple[str, tuple[float, ...]]]:
    """PASCAL-VOC style XML (ILSVRC val, Stanford Dogs): [(object name, (xmin, ymin, xmax, ymax))]."""
    try:
        root = ET.parse(path).getroot()
        return [
            (
                obj.findtext("name", ""),
                tuple(float(obj.find("bndbox").findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")),
            )
            for obj in root.iter("object")
        ]
    except FileNotFoundError as err:
        raise BadInput("missing_annotation", str(path)) from err
    except (ET.ParseError, AttributeError, TypeError, ValueError) as err:
        raise BadInput("malformed_annotation", f"{path}: {err}") from err


@DATASET_ADAPTERS.register("imagenet")
class ImageNet(FileDataset):
    layout = (
        "root/train/<synset>/*.JPEG, root/val/<synset>/*.JPEG, and val boxes as root/LOC_val_solution.csv "
        "or a folder of ILSVRC val XML files (option `boxes`)"
    )
    published = "ILSVRC-2012: train 1,281,167, val 50,000 images"
    options = {
        "boxes": {"type": "string", "description": "LOC_val_solution.csv or a folder of ILSVRC val XML files"},
        "split_folders": {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "description": "split name -> folder under root, e.g. {test: val}",
        },
        "factors_file": {
            "type": "string",
            "description": "ImageNet-X annotations in their published JSON-lines format (default: the imagenet-x "
            "package's validation multi-factor file); the visual-factor table reads them",
        },
    }
    factor_source = "ImageNet-X (the imagenet-x package's validation annotations, or option factors_file)"

    @classmethod
    def published_classes(cls, entry: dict[str, Any]) -> int | None:
        return 1000

    @classmethod
    def published_size(cls, entry: dict[str, Any], split: str) -> int | None:
        return {"train": 1_281_167, "val": 50_000}.get(entry.get("split_folders", {}).get(split, split))

    def __init__(
        self,
        root: str,
        image_size: int,
        splits: dict,
        boxes: str | None = None,
        split_folders: dict[str, str] | None = None,
        factors_file: str | None = None,
        **common: Any,
    ) -> None:
        super().__init__(root, image_size, splits, **common)
        self.factors_file = Path(factors_file).expanduser() if factors_file else None
        self.boxes_path = Path(boxes).expanduser() if boxes else self.root / "LOC_val_solution.csv"
        self.split_folders = {
            split: (split_folders or {}).get(split, split) for split in self.listed_splits
        }  # e.g. test -> val
        for folder in self.split_folders.values():
            require(self.root / folder, self.layout)
        if any(self.needs_masks(s) for s in splits):
            require(self.boxes_path, self.layout)

    @cached_property
    def synsets(self) -> list[str]:
        split_dir = self.root / next(iter(self.split_folders.values()))
        synsets = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
        if not synsets:
            raise FileNotFoundError(f"{split_dir} has no synset folders; expected layout: {self.layout}")
        return synsets

    def label_synsets(self) -> list[str]:
        return self.synsets

    @property
    def class_names(self) -> list[str]:
        """CLIP's curated names for the full 1000 classes; otherwise LOC_synset_mapping.txt or the synset ids."""
        curated = open_clip_data.imagenet_class_names()
        if len(self.synsets) == len(curated):
            return curated
        mapping_file = self.root / "LOC_synset_mapping.txt"
        if mapping_file.is_file():
            mapping = dict(line.strip().split(" ", 1) for line in mapping_file.read_text().splitlines() if line.strip())
            return [mapping.get(s, s).split(",")[0].strip() for s in self.synsets]
        return list(self.synsets)

    @cached_property
    def _csv_boxes(self) -> dict[str, list[tuple[str, tuple[float, ...]]]]:
        return read_loc_csv(self.boxes_path)

    def list_items(self, split: str) -> list[Item]:
        folder = self.split_folders[split]
        items = []
        for label, synset in enumerate(self.synsets):
            for path in sorted((self.root / folder / synset).glob("*")):
                if path.suffix.lower() in IMAGE_SUFFIXES:
                    items.append(Item(f"{folder}/{synset}/{path.name}", label, (synset, path.stem)))
        return items

    def factors(self, split: str, sample_ids: Sequence[str]) -> Factors:
        """ImageNet-X's factors, matched by the image's file name (they annotate the validation images: another
        split's images are unannotated, and counted so by the factor table)."""
        path = self.factors_file or imagenet_x.imagenet_x_file(imagenet_x.VALIDATION_FACTORS)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no ImageNet-X annotations there (datasets.<name>.factors_file)")
        marked = imagenet_x.read_factors(path)
        found = [marked.get(Path(sample_id).name) for sample_id in sample_ids]
        return Factors(
            np.array([f is not None for f in found], bool),
            {factor: np.array([f is not None and factor in f for f in found], bool) for factor in imagenet_x.FACTORS},
        )

    def prerendered_name(self, item: Item) -> str:
        return item.sample_id.split("/", 1)[1]  # val/<wnid>/<image>.JPEG -> <wnid>/<image>.JPEG

    def object_mask(self, item: Item, width: int, height: int) -> np.ndarray:
        synset, image_id = item.annotation
        if self.boxes_path.is_dir():
            objects = read_voc_boxes(self.boxes_path / f"{image_id}.xml")
        elif image_id in self._csv_boxes:
            objects = self._csv_boxes[image_id]
        else:
            raise BadInput("missing_annotation", f"{image_id} not in {self.boxes_path}")
        boxes = [box for name, box in objects if name == synset]  # every box of the image's class
        if not boxes:
            raise BadInput("malformed_annotation", f"{image_id}: no box of {synset}")
        return boxes_mask(check_boxes(boxes, width, height), height, width)
