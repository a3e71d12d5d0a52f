"""Contrastive image-text losses."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def contrastive_loss(
    image: torch.Tensor, text: torch.Tensor, scale: torch.Tensor, groups: torch.Tensor
) -> torch.Tensor:
    """Symmetric InfoNCE over a batch of (image, text) pairs where equal `groups` are all positives.

    CLIP's loss assumes one positive per row; with few classes (FLCP's class prompts) or repeated captions
    a batch holds many identical texts, and treating them as negatives would push apart what is the same.
    """
    image, text = F.normalize(image, dim=-1), F.normalize(text, dim=-1)
    logits = scale * image @ text.T
    positives = (groups[:, None] == groups[None, :]).float()
    targets = positives / positives.sum(dim=1, keepdim=True)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


DENOMINATORS = ("classes", "items")


def region_losses(
    region: torch.Tensor,
    text: torch.Tensor,
    valid: torch.Tensor,
    spurious: torch.Tensor,
    target: torch.Tensor,
    temperature: float,
    denominator: str = "classes",
) -> tuple[torch.Tensor, torch.Tensor]:
    """RaVL's region terms per image: (L_R, L_A), each [B], zero for an image without a relevant region.

    region [B, R, D] and text [C, D] are unit-norm; `valid` [B, R] marks real regions (images have different counts),
    `spurious` [B, R] those assigned to the discovered cluster; the rest of the valid ones are relevant. With
    m_i(c) = max over image i's relevant regions of <region, text_c> / τ:
    - L_R = −log softmax of m_i over the batch's texts at i's own class: the best relevant region must match i's
      class text rather than the other texts of the batch. `denominator`: "classes" counts each class of the batch
      once, "items" one text per batch item (CLIP's reading, where a class present k times counts k times);
    - L_A = −log e^{m_i(y_i)} / (e^{m_i(y_i)} + Σ_spurious e^{<r, text_{y_i}>/τ}): every spurious region of i must
      be less like i's class text than its best relevant region, so the gradient lowers exactly that similarity.
    Both in log space (logsumexp), so τ = 0.07 cannot overflow.
    """
    if denominator not in DENOMINATORS:
        raise ValueError(f"region_loss.denominator: {denominator!r}; use one of {', '.join(DENOMINATORS)}")
    relevant = valid & ~spurious
    has = relevant.any(1)
    zero = region.new_zeros(len(target))
    if not bool(has.any()):
        return zero, zero
    region, relevant, target_in = region[has], relevant[has], target[has]
    spurious_in = (valid & spurious)[has]
    similarity = torch.einsum("brd,cd->brc", region, text) / temperature  # [b, R, C]
    best = similarity.masked_fill(~relevant[..., None], float("-inf")).amax(1)  # [b, C]
    own = best.gather(1, target_in[:, None]).squeeze(1)
    columns = target.unique() if denominator == "classes" else target
    l_r = torch.logsumexp(best[:, columns], 1) - own
    spurious_own = similarity.gather(2, target_in[:, None, None].expand(-1, similarity.shape[1], 1)).squeeze(2)
    spurious_own = spurious_own.masked_fill(~spurious_in, float("-inf"))
    l_a = torch.logsumexp(torch.cat([own[:, None], spurious_own], 1), 1) - own
    return zero.masked_scatter(has, l_r), zero.masked_scatter(has, l_a)


def region_aware_loss(
    image: torch.Tensor,
    region: torch.Tensor,
    text: torch.Tensor,
    scale: torch.Tensor,
    valid: torch.Tensor,
    spurious: torch.Tensor,
    target: torch.Tensor,
    weight: float,
    temperature: float,
    denominator: str = "classes",
) -> torch.Tensor:
    """L = λ·L_CLIP + (1 − λ)·mean_i (L_R^i + L_A^i): the image-level contrastive loss against the class texts
    (as FLCP's, with the text tower frozen) and RaVL's region terms (`region_losses`). The batch mean keeps the
    region terms on the scale of L_CLIP, itself a batch mean, whatever the batch size."""
    clip = contrastive_loss(image, text[target], scale, target)
    l_r, l_a = region_losses(region, text, valid, spurious, target, temperature, denominator)
    return weight * clip + (1 - weight) * (l_r + l_a).mean()
