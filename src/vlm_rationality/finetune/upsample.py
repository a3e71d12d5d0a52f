"""Upsampled fine-tuning: RaVL's simplest mitigation baseline, what a practitioner tries first.

The groups are those Stage 1 implies: (class, whether the image holds a region of the discovered spurious cluster),
read from the same assigned training regions RaVL's Stage 2 reads (discover/assign.py). Full fine-tuning then draws
its batches so that every non-empty group is equally likely (each image weighted by 1 / its group's size), which
upsamples the rare groups: images of the tied class without the feature, images of other classes with it.
"""

from __future__ import annotations

import torch

from vlm_rationality.finetune.base import FINETUNE_METHODS
from vlm_rationality.finetune.ft import FullFineTune
from vlm_rationality.finetune.ravl import SplitRegions


def region_groups(config: dict, split) -> torch.Tensor:
    """Each training sample's Stage 1 group, 2·class + (whether it holds a region of the spurious candidates), read
    from the training regions file the method's config names (`regions`)."""
    if "regions" not in config:
        raise KeyError(
            f"{config['kind']} needs `regions`: the training regions file of the method it mitigates "
            "(the workflow's assign_regions rule writes it)"
        )
    regions = SplitRegions.read(config["regions"], split.sample_ids, config["spurious_clusters"])
    return split.labels * 2 + regions.spurious.any(1).long()


def group_weights(groups: torch.Tensor) -> torch.Tensor:
    """1 / the size of each sample's group: every non-empty group weighs the same in total."""
    counts = torch.bincount(groups)
    return 1.0 / counts[groups].double()


@FINETUNE_METHODS.register(
    "upsample",
    trains=True,
    head="linear",
    regions=True,
    selects=True,
    options={
        "spurious_clusters": {
            "type": "integer",
            "minimum": 1,
            "default": 1,
            "description": "regions of the first this many discovered candidates by gap are spurious (RaVL: one)",
        },
    },
)
class UpsampledFineTune(FullFineTune):
    """FT with a sampler that balances the (class, spurious region present) groups of the discovery it mitigates."""

    def sample_weights(self, split) -> torch.Tensor:
        return group_weights(region_groups(self.config, split))
