"""The dataset-adapter protocol: what `prepare` needs from any dataset, synthetic or on disk."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterator, Sequence

import numpy as np

from vlm_rationality.data.twins import Pool, Twins, pasted_twins
from vlm_rationality.registry import Registry
from vlm_rationality.visual_factors import Factors

DATASET_ADAPTERS: Registry[type["Dataset"]] = Registry("dataset adapter", ("vlm_rationality.data", "DATASET_ADAPTERS"))


# A Sample.extra flag: drawn to carry a local cue (the synthetic sticker) where none fits; kept, counted by prepare.
STICKER_MISSING = "sticker_missing"


@dataclass
class Sample:
    """One prepared sample: the image and its object mask after the eval transform."""

    sample_id: str
    label: int
    image: np.ndarray  # uint8 [S, S, 3]
    mask: np.ndarray  # bool [S, S]
    source: str
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Item:
    """One entry of a split's index: what loading the sample needs, without opening any file."""

    sample_id: str  # on-disk datasets: the image's path relative to the root
    label: int
    annotation: Any  # whatever the adapter needs to build the object mask (JSON-able)


@dataclass
class Skipped:
    """A sample left out as bad input; `reason` is counted in the prepare report and the score table."""

    sample_id: str
    reason: str
    detail: str = ""  # the path and error, for the job log


class Dataset(ABC):
    """A dataset adapter reads its original layout and yields samples at a given input size.

    `options` and `split_options` declare, as JSON-schema properties with their defaults, the config keys the
    adapter takes besides the common ones (adapter, root, image_size, shard_size, splits, shifts) and in each
    split: the config check closes a dataset entry over exactly these.
    """

    extra_columns: tuple[str, ...] = ()
    options: ClassVar[dict[str, Any]] = {}
    split_options: ClassVar[dict[str, Any]] = {}
    published: ClassVar[str] = ""  # where the sizes `published_size` assumes come from
    factor_source: ClassVar[str] = ""  # where `factors` reads its annotations; empty: the dataset has none

    def label_synsets(self) -> list[str] | None:
        """The WordNet id of each label where the classes are ImageNet synsets (the shifted test sets are labelled
        by them: data/shifted.py); None for other datasets."""
        return None

    @classmethod
    def published_size(cls, entry: dict[str, Any], split: str) -> int | None:
        """The split's size as the dataset's authors publish it, for pricing a grid whose data are not on disk yet
        (`plan`); None where there is no such number."""
        return None

    @classmethod
    def published_classes(cls, entry: dict[str, Any]) -> int | None:
        """The number of classes as published, for `plan` (the heatmap files' size), where the files are not there."""
        return None

    image_size: int

    @property
    @abstractmethod
    def class_names(self) -> list[str]: ...

    @abstractmethod
    def items(self, split: str) -> list[Item]:
        """Every item of `split`, in a fixed order: the split's index (an on-disk dataset lists its files here)."""

    @abstractmethod
    def load_items(self, split: str, items: Sequence[Item], start: int) -> Iterator[Sample | Skipped]:
        """The samples of `items`, which are the split's items from position `start` on; bad input comes back as
        `Skipped`."""

    def image_path(self, item: Item) -> str:
        """Where the item's image is read from ('' for generated data)."""
        return ""

    def prerendered_name(self, item: Item) -> str:
        """The item's path inside a published pre-rendered shift folder (ImageNet-C: `<wnid>/<image>.JPEG`, see
        imagenet_c.py); only adapters whose items have one override this."""
        raise NotImplementedError(f"{type(self).__name__} items have no pre-rendered (ImageNet-C) counterpart")

    def known_size(self, split: str) -> int | None:
        """A split's size where the config alone tells it (no listing), else None."""
        return None

    def needs_masks(self, split: str) -> bool:
        """Whether `split`'s samples carry object masks: a scored split must (RMA is a map's mass on them)."""
        return True

    def split_size(self, split: str) -> int:
        """Number of samples in `split` (before any skipped as bad input)."""
        size = self.known_size(split)
        return len(self.items(split)) if size is None else size

    def samples(self, split: str, start: int, stop: int) -> Iterator[Sample | Skipped]:
        """Samples `start … stop-1` of `split`, in a fixed order."""
        yield from self.load_items(split, self.items(split)[start:stop], start)

    def prompts(self, template: str) -> list[str]:
        return [template.format(name=name) for name in self.class_names]

    def tied_backgrounds(self) -> list[int] | None:
        """Class -> the background class a spuriously correlated training split ties it to, where the dataset knows
        (its samples' `background` column then says whether the cue is present); None where it does not."""
        return None

    def sticker_class(self) -> int | None:
        """The class a local cue (the synthetic sticker, stored as each sample's `cue_mask`) is tied to, where the
        dataset has one; None where it does not."""
        return None

    def factors(self, split: str, sample_ids: Sequence[str]) -> Factors:
        """Which visual factors each sample shows (metrics/factors.py), for an adapter with a `factor_source`."""
        raise NotImplementedError(f"{type(self).__name__} has no visual-factor annotations")

    def background_names(self) -> list[str] | None:
        """Background id -> its name, where the samples record a `background` (what a background region shows)."""
        return None

    def twins(
        self,
        split: str,
        sample_ids: Sequence[str],
        labels: np.ndarray,
        images: np.ndarray,
        masks: np.ndarray,
        pool: Pool,
        count: int,
        seed: int,
    ) -> Twins:
        """The counterfactual twins of prepared samples (data/twins.py): by default their objects pasted on `count`
        backgrounds of other images of `pool`; a generator that can render a background afresh overrides this."""
        return pasted_twins(sample_ids, labels, images, masks, pool, count, seed)


def _defaults(declared: dict[str, Any]) -> dict[str, Any]:
    return {name: spec["default"] for name, spec in declared.items() if "default" in spec}


def build_dataset(config: dict[str, Any]) -> Dataset:
    """The adapter named by `config["adapter"]`, given every other key except `shard_size`, the shifts' (`shifts`,
    `imagenet_c`) and `mask` (applied by the prepare stage to every adapter's masks); options and split options the
    config leaves out take the adapter's declared defaults."""
    adapter = DATASET_ADAPTERS.get(config["adapter"])
    options = {
        key: value
        for key, value in config.items()
        if key not in ("adapter", "shard_size", "shifts", "imagenet_c", "mask")
    }
    options = {**_defaults(adapter.options), **options}
    options["splits"] = {
        name: {**_defaults(adapter.split_options), **split} for name, split in config["splits"].items()
    }
    return adapter(**options)
