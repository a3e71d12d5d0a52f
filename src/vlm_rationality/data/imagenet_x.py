"""What the imagenet-x package ships, read without importing it (its import loads pandas and scipy.stats: two
seconds at every DAG build): ImageNet-1K's canonical synset order, and ImageNet-X's visual-factor annotations of
the ImageNet validation images (Idrissi et al., 2023: which of 16 factors — pose, background, pattern, colour,
size, … — annotators marked as making an image unlike its class's prototypes).

The annotation file is JSON lines, one per image: `file_name` (`ILSVRC2012_val_00004487.JPEG`), `class` and one 0/1
column per factor (the `multi_factor` file marks every factor an annotator named, the `top_factor` file only the
main one).
"""

from __future__ import annotations

import importlib.util
import json
from functools import cache
from pathlib import Path

# ImageNet-X's factors, in its own column order.
FACTORS: tuple[str, ...] = (
    "multiple_objects",
    "background",
    "color",
    "brighter",
    "darker",
    "style",
    "larger",
    "smaller",
    "object_blocking",
    "person_blocking",
    "partial_view",
    "pattern",
    "pose",
    "shape",
    "subcategory",
    "texture",
)
VALIDATION_FACTORS = "imagenet_x_val_multi_factor.jsonl"


def imagenet_x_file(name: str) -> Path:
    """A file of the annotations the imagenet-x package ships."""
    spec = importlib.util.find_spec("imagenet_x")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("imagenet-x is not installed (pip install imagenet-x)")
    return Path(spec.submodule_search_locations[0], "annotations", name)


@cache
def imagenet_synsets() -> list[str]:
    """ImageNet-1K's 1000 wnids in the canonical label order, as the imagenet-x package ships them."""
    text = imagenet_x_file("imagenet_labels.txt").read_text()
    return [line.split(",", 1)[0].strip() for line in text.splitlines() if line.strip()]


@cache
def read_factors(path: Path) -> dict[str, frozenset[str]]:
    """Image file name -> the factors marked on it, from an annotation file in ImageNet-X's published format;
    a line without `file_name` or with a factor column missing fails naming the file and line."""
    marked: dict[str, frozenset[str]] = {}
    with open(path) as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            record = json.loads(line)
            missing = [key for key in ("file_name", *FACTORS) if key not in record]
            if missing:
                raise ValueError(
                    f"{path}:{number}: no {', '.join(missing)}; expected ImageNet-X's annotation format (JSON lines "
                    f"with file_name and a 0/1 column for each of {', '.join(FACTORS)})"
                )
            marked[record["file_name"]] = frozenset(factor for factor in FACTORS if int(record[factor]))
    return marked
