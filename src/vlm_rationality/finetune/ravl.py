"""RaVL's Stage 2 (Varma et al., NeurIPS 2024): fine-tuning with a region-aware loss that ignores the discovered
spurious feature.

The training split's regions come assigned to the clusters that Stage 1 found on the method being mitigated
(`mitigates`, discover/assign.py): regions of the first `spurious_clusters` candidates by gap are spurious (RaVL
mitigates the top one), every other region is relevant. The image tower learns the paper's
L = λ·L_CLIP + (1 − λ)·Σ_i (L_R^i + L_A^i) (losses.region_aware_loss) against the frozen class-prompt texts, and
classifies with them afterwards, as zero-shot does. Regions are cut and resized as discovery cuts them, so a region
looks in training as it looked when it was assigned; random crops would move the boxes, hence no `augment`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from vlm_rationality.artefacts import read_training_regions
from vlm_rationality.discover.embed import crops
from vlm_rationality.finetune.base import FINETUNE_METHODS, Method, batch_images
from vlm_rationality.finetune.distributed import gather, share
from vlm_rationality.finetune.loop import fit
from vlm_rationality.finetune.losses import region_aware_loss
from vlm_rationality.models.heads import build_classifier


@dataclass
class SplitRegions:
    """Every training image's regions, padded to the most any image has."""

    boxes: np.ndarray  # int [N, R, 4]
    valid: torch.Tensor  # bool [N, R]
    spurious: torch.Tensor  # bool [N, R]

    @classmethod
    def read(cls, path: str, sample_ids: Sequence[str], spurious_clusters: int) -> "SplitRegions":
        table, ranked = read_training_regions(path)
        position = {sample_id: i for i, sample_id in enumerate(sample_ids)}
        missing = sorted(set(sample_ids) - set(table["sample_id"]))
        if missing:
            raise ValueError(
                f"{path}: no regions for {len(missing)} training samples (e.g. {missing[0]}); "
                "it was assigned on another training split: delete it and rerun"
            )
        rows: list[list[int]] = [[] for _ in sample_ids]
        for r, sample_id in enumerate(table["sample_id"]):
            if sample_id in position:
                rows[position[sample_id]].append(r)
        width = max(map(len, rows))
        boxes = np.zeros((len(rows), width, 4), int)
        valid = torch.zeros(len(rows), width, dtype=torch.bool)
        spurious = torch.zeros_like(valid)
        chosen = set(ranked[:spurious_clusters])
        for i, mine in enumerate(rows):
            for j, r in enumerate(mine):
                boxes[i, j], valid[i, j] = table["box"][r], True
                spurious[i, j] = table["cluster"][r] in chosen
        return cls(boxes, valid, spurious)


def in_place(image: np.ndarray, boxes: Sequence[tuple[int, int, int, int]]) -> np.ndarray:
    """uint8 [H, W, 3] -> [len(boxes), H, W, 3]: each box kept at its place and scale, everything outside it grey.

    RaVL embeds regions of CNNs by RoIAlign on the feature map, at the image's scale; a crop resized to the input
    magnifies a region (a 16 px background square of a 64 px image 4x, and its texture with it)."""
    out = np.full((len(boxes), *image.shape), 128, np.uint8)
    for n, (x0, y0, x1, y1) in enumerate(boxes):
        out[n, y0:y1, x0:x1] = image[y0:y1, x0:x1]
    return out


def roi_pool(patches: torch.Tensor, boxes: np.ndarray, valid: torch.Tensor, image_size: int) -> torch.Tensor:
    """Patch tokens [b, gh, gw, D] -> [b, R, D]: each valid box's RoIAlign average over the patch grid (pixel
    boxes, half-pixel aligned, one output bin), zeros elsewhere; differentiable into the image's own forward pass."""
    from torchvision.ops import roi_align

    b, _, gw, dim = patches.shape
    rows, slots = valid.nonzero(as_tuple=True)
    out = patches.new_zeros(b, valid.shape[1], dim)
    if not len(rows):
        return out
    rois = torch.cat([rows[:, None].to(patches), torch.as_tensor(boxes[rows.numpy(), slots.numpy()]).to(patches)], 1)
    pooled = roi_align(
        patches.permute(0, 3, 1, 2), rois, output_size=1, spatial_scale=gw / image_size, sampling_ratio=-1, aligned=True
    )
    return out.index_put((rows.to(out.device), slots.to(out.device)), pooled.flatten(1))


VIEWS = {"crop": crops, "in_place": in_place}  # pixel views; `roi` reads the patch grid (roi_pool)


@FINETUNE_METHODS.register(
    "ravl",
    trains=True,
    head="prompt",
    regions=True,
    selects=True,
    options={
        "region_loss": {
            "type": "object",
            "description": (
                "L = weight·L_CLIP + (1 − weight)·Σ_i (L_R^i + L_A^i) at temperature τ (finetune/losses.py), summed "
                "over the batch as the paper writes it or averaged (`reduction: mean`); the regions of the first "
                "`spurious_clusters` discovered candidates by gap are spurious (RaVL: the top one); L_R's denominator "
                "counts each class of the batch once (`classes`) or each item (`items`); `ablate` leaves parts of the "
                "paper's loss out (L_R, L_A, L_R's penalty P, L_A's other images' relevant regions `cross_relevant`, "
                "L_A's spurious regions of the whole batch `batch_spurious`: then image i's own only); a region "
                "reaches the encoder cut and resized (`crop`, as discovery embeds it), at its place and scale on grey "
                "(`in_place`), or as the RoIAlign average of the image's own patch tokens (`roi`)"
            ),
            "additionalProperties": False,
            "default": {},
            "properties": {
                "weight": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.8},
                "temperature": {"type": "number", "exclusiveMinimum": 0, "default": 0.07},
                "spurious_clusters": {"type": "integer", "minimum": 1, "default": 1},
                "denominator": {"type": "string", "enum": ["classes", "items"], "default": "classes"},
                "view": {"type": "string", "enum": ["crop", "in_place", "roi"], "default": "crop"},
                "reduction": {"type": "string", "enum": ["sum", "mean"], "default": "sum"},
                "ablate": {
                    "type": "array",
                    "items": {"enum": ["L_R", "L_A", "P", "cross_relevant", "batch_spurious"]},
                    "uniqueItems": True,
                    "default": [],
                },
            },
        },
    },
)
class RegionAwareFineTune(Method):
    """`mitigates`: the method whose discovery names the spurious regions; `region_loss`: {weight (λ), temperature
    (τ), spurious_clusters, denominator, reduction and ablate (losses.region_aware_loss), view: how a region reaches
    the encoder (`crop`: cut and resized, as discovery embeds it; `in_place`; `roi`: pooled from the image's own patch
    tokens)}."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        if self.augment:
            raise ValueError("ravl cuts each region at its assigned box; augment: true would move the boxes")
        self.loss = config["region_loss"]  # defaults (λ 0.8, τ 0.07, the top cluster, crop) live in the schema

    def fit(self, model, prompts, split, device):
        if "regions" not in self.config:
            raise KeyError(
                "ravl needs `regions`: the training regions file of the method it mitigates "
                "(the workflow's assign_regions rule writes it)"
            )
        torch.manual_seed(self.settings.seed)
        regions = SplitRegions.read(self.config["regions"], split.sample_ids, self.loss["spurious_clusters"])
        model.requires_grad_(False)
        with torch.no_grad():
            text = F.normalize(model.encode_text(prompts).float(), dim=-1)
        trained = model.image_parameters()
        for parameter in trained:
            parameter.requires_grad_(True)
        classifier = build_classifier(model, "prompt", prompts)  # the frozen texts: the same before as after
        model.train()
        labels = split.labels.to(device)

        def step(index):
            target = labels[index.to(device)]
            mine = share(index)
            local_image, local = self._encode(model, split, regions, mine, device)
            image = gather(local_image, len(index))
            region = F.normalize(gather(local, len(index)), dim=-1)
            loss = region_aware_loss(
                image,
                region,
                text,
                model.logit_scale,
                regions.valid[index].to(device),
                regions.spurious[index].to(device),
                target,
                self.loss["weight"],
                self.loss["temperature"],
                self.loss["denominator"],
                self.loss["ablate"],
                self.loss["reduction"],
            )
            correct = int(((F.normalize(image, dim=-1) @ text.T).argmax(1) == target).sum())
            return loss, correct

        metrics = fit(trained, step, split, self.settings, select=self.selection(classifier, device))
        metrics["spurious_region_share"] = float(regions.spurious.sum() / regions.valid.sum())
        model.eval().requires_grad_(False)
        return classifier.eval(), metrics

    def _encode(
        self, model, split, regions: SplitRegions, index: torch.Tensor, device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's image embeddings [b, D] and region embeddings [b, R, D] (zeros where an image has fewer
        regions; with a pixel view, zeros everywhere at λ = 1, where the region terms weigh nothing, so no region
        takes a second encoder pass)."""
        pixels = batch_images(model, split, index, device)
        valid = regions.valid[index]
        if self.loss["view"] == "roi":
            image, patches = model.encode_image_tokens(pixels)
            return image, roi_pool(patches, regions.boxes[index.numpy()], valid, pixels.shape[-1])
        image = model.encode_image(pixels)
        if self.loss["weight"] == 1 or not len(index):
            return image, image.new_zeros(len(index), valid.shape[1], image.shape[-1])
        view = VIEWS[self.loss["view"]]
        shown = np.concatenate(
            [
                view(split.images[i].numpy(), [tuple(box) for box in regions.boxes[i][valid[n]]])
                for n, i in enumerate(index.tolist())
            ]
        )
        encoded = model.encode_image(model.preprocess(torch.from_numpy(shown).to(device, non_blocking=True)))
        out = encoded.new_zeros(len(index), valid.shape[1], encoded.shape[-1])
        return image, out.masked_scatter(valid.to(device)[..., None], encoded)
