"""The published ImageNet-C folders as the source of a shift: `<root>/<corruption>/<severity>/<wnid>/<image>.JPEG`.

Hendrycks & Dietterich made ImageNet-C from the validation images resized to 256 (shorter side) and centre-cropped
to 224, then corrupted and saved as JPEG. Reading those files replaces the on-the-fly corruption, the CPU-bound
side of an ImageNet-C explain job. Each file is matched to its validation item (synset folder and file name), and
the item's object mask goes through that same resize-256 / crop-224 transform, whatever the dataset's own eval
transform is, so mask and pixels stay aligned. A validation item whose file is missing means the folder is
incomplete: the job fails naming the file, rather than scoring the shift on fewer samples than clean.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from vlm_rationality.data.base import Dataset, Item, Sample, Skipped
from vlm_rationality.data.corruptions import parse_shift
from vlm_rationality.data.files import BadInput, FileDataset, bounded_resize, inside
from vlm_rationality.data.transform import INTERPOLATIONS, to_rgb

RESIZE, SIZE = 256, 224  # how the published ImageNet-C was cropped


def crop_mask(mask: np.ndarray, interpolation: str = "nearest", threshold: int = 128) -> np.ndarray:
    """A mask (bool, or uint8 0–255) of an original image through ImageNet-C's transform, with torchvision's rounding
    (its `Resize(256)` truncates the long side, its `CenterCrop(224)` rounds the offset): [224, 224] bool."""
    height, width = mask.shape
    short, long = min(width, height), max(width, height)
    new_long = int(RESIZE * long / short)
    size = (RESIZE, new_long) if width <= height else (new_long, RESIZE)
    left, top = int(round((size[0] - SIZE) / 2.0)), int(round((size[1] - SIZE) / 2.0))
    soft = mask.astype(np.uint8) * 255 if mask.dtype == bool else mask.astype(np.uint8)
    resized = Image.fromarray(soft).resize(size, INTERPOLATIONS[interpolation])
    return np.asarray(resized.crop((left, top, left + SIZE, top + SIZE))) >= threshold


def shift_folder(root: str | os.PathLike, shift: str) -> Path:
    parsed = parse_shift(shift)
    if parsed is None:
        raise ValueError("the clean data has no ImageNet-C folder")
    return Path(root).expanduser() / parsed[0] / str(parsed[1])


def folder_errors(dataset: Dataset, root: str | os.PathLike, shifts: Sequence[str]) -> list[str]:
    """What keeps `root` from being the source of `shifts` of `dataset`: a missing corruption/severity folder, or one
    missing synset folders of the dataset (the file-level check is the prepare job's)."""
    if type(dataset).prerendered_name is Dataset.prerendered_name or not isinstance(dataset, FileDataset):
        return [
            f"the {type(dataset).__name__} adapter has no ImageNet-C counterpart; only imagenet's validation items do"
        ]
    if int(dataset.image_size) != SIZE:
        return [f"ImageNet-C images are {SIZE} px crops; set image_size: {SIZE} (it is {dataset.image_size})"]
    wanted = set(dataset.synsets)
    errors = []
    for shift in shifts:
        if shift == "clean":
            continue
        folder = shift_folder(root, shift)
        if not folder.is_dir():
            errors.append(
                f"{folder} does not exist; expected the ImageNet-C layout "
                "<root>/<corruption>/<severity>/<wnid>/<image>.JPEG"
            )
            continue
        missing = sorted(wanted - {p.name for p in folder.iterdir() if p.is_dir()})
        if missing:
            errors.append(
                f"{folder} is incomplete: {len(missing)} of {len(wanted)} synset folders are missing "
                f"(e.g. {', '.join(missing[:3])})"
            )
    return errors


def load_shifted(dataset: FileDataset, item: Item, folder: Path, with_mask: bool) -> Sample:
    """`item`'s ImageNet-C image under `folder`, with the item's mask through the resize-256 / crop-224 transform."""
    path = inside(folder, dataset.prerendered_name(item))
    try:
        with Image.open(path) as handle:
            handle.load()
            image = to_rgb(handle.copy())
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{path} is missing: the ImageNet-C folder {folder} is incomplete; restore it") from err
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError) as err:
        raise BadInput("unreadable_image", f"{path}: {err}") from err
    if image.size != (SIZE, SIZE):
        raise BadInput("unreadable_image", f"{path}: {image.width}x{image.height}, not an ImageNet-C {SIZE} px crop")
    mask = np.zeros((SIZE, SIZE), bool)
    if with_mask:
        original = inside(dataset.root, item.sample_id)
        try:  # the header alone: the mask needs the original's size
            with Image.open(original) as handle:
                width, height = handle.size
            bounded_resize(original, width, height, SIZE, RESIZE)
        except FileNotFoundError as err:
            raise BadInput("missing_image", str(original)) from err
        except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError) as err:
            raise BadInput("unreadable_image", f"{original}: {err}") from err
        mask = crop_mask(dataset.object_mask(item, width, height), dataset.mask_interpolation, dataset.mask_threshold)
        if not mask.any():
            raise BadInput("empty_mask", f"{item.sample_id}: the object lies outside the centre crop")
    return Sample(item.sample_id, item.label, np.asarray(image, np.uint8), mask, f"{type(dataset).__name__}-C")


def load_items(
    dataset: FileDataset, split: str, items: Sequence[Item], root: str | os.PathLike, shift: str
) -> Iterator[Sample | Skipped]:
    """The samples of `items` under `shift`, read from the ImageNet-C folder `root`; bad input is `Skipped`."""
    folder, with_mask = shift_folder(root, shift), dataset.needs_masks(split)
    for item in items:
        try:
            yield load_shifted(dataset, item, folder, with_mask)
        except BadInput as bad:
            yield Skipped(item.sample_id, bad.reason, str(bad))
