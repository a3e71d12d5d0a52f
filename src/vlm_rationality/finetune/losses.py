"""Contrastive image-text losses."""

from __future__ import annotations

from typing import Sequence

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
# Parts of RaVL's loss a run may leave out, to show what each does: a whole term (L_R, L_A), L_R's penalty P(R_B^s),
# L_A's other images' relevant regions (`cross_relevant`), or L_A's spurious regions from the whole batch
# (`batch_spurious`: left out, only image i's own spurious regions compete for its class).
ABLATIONS = ("L_R", "L_A", "P", "cross_relevant", "batch_spurious")
REDUCTIONS = ("sum", "mean")


def region_losses(
    region: torch.Tensor,
    text: torch.Tensor,
    valid: torch.Tensor,
    spurious: torch.Tensor,
    target: torch.Tensor,
    temperature: float,
    denominator: str = "classes",
    ablate: Sequence[str] = (),
) -> tuple[torch.Tensor, torch.Tensor]:
    """RaVL's region terms per image (Section 4.1 of the paper): (L_R, L_A), each [B], zero for an image without a
    relevant region.

    region [B, R, D] and text [C, D] are unit-norm; `valid` [B, R] marks real regions (images have different counts),
    `spurious` [B, R] those assigned to the discovered cluster; the rest of the valid ones are relevant. With
    s(a, c) = <a, text_c> / τ, m_i(c) = max over image i's relevant regions of s, and R_B^s the batch's spurious
    regions:
    - L_R^i = −log e^{m_i(y_i)} / (Σ_{c ∈ batch} e^{m_i(c)} + P), P = Σ_{r ∈ R_B^s} max_{c ∈ batch} e^{s(r, c)}: the
      best relevant region must match i's class text rather than the batch's other texts, and every spurious region
      of the batch competes with it at the class it is most like. `denominator`: "classes" counts each class of the
      batch once, "items" one text per batch item (CLIP's reading, where a class present k times counts k times);
    - L_A^i = −log e^{m_i(y_i)} / (e^{m_i(y_i)} + Σ_{j: y_j ≠ y_i} e^{m_j(y_i)} + Σ_{r ∈ R_B^s} e^{s(r, y_i)}): the
      other classes' images' best relevant regions and every spurious region of the batch must be less like i's
      class text than i's own best relevant region, so the gradient lowers exactly those similarities.
    `ablate` leaves parts out (ABLATIONS). Both in log space (logsumexp), so τ = 0.07 cannot overflow.
    """
    if denominator not in DENOMINATORS:
        raise ValueError(f"region_loss.denominator: {denominator!r}; use one of {', '.join(DENOMINATORS)}")
    unknown = sorted(set(ablate) - set(ABLATIONS))
    if unknown:
        raise ValueError(f"region_loss.ablate: {', '.join(unknown)}; use some of {', '.join(ABLATIONS)}")
    relevant, spurious = valid & ~spurious, valid & spurious
    has = relevant.any(1)
    zero = region.new_zeros(len(target))
    if not bool(has.any()):
        return zero, zero
    neg = float("-inf")
    similarity = torch.einsum("brd,cd->brc", region, text) / temperature  # [B, R, C]
    best = similarity.masked_fill(~relevant[..., None], neg).amax(1)  # [B, C]: m_i(c), −inf without a relevant region
    batch_spurious = similarity[spurious]  # [S, C]: every spurious region of the batch
    rows, target_in = has.nonzero().squeeze(1), target[has]  # the images the terms are about
    own = best[rows, target_in]  # m_i(y_i)
    columns = target.unique() if denominator == "classes" else target
    l_r_parts = [best[rows][:, columns]]
    if "P" not in ablate and len(batch_spurious):
        penalty = torch.logsumexp(batch_spurious[:, target.unique()].amax(1), 0)  # log P(R_B^s)
        l_r_parts.append(penalty.expand(len(rows))[:, None])
    l_a_parts = [own[:, None]]
    if "cross_relevant" not in ablate:  # m_j(y_i) for every image j of another class (−inf: j has no relevant region)
        l_a_parts.append(best[:, target_in].T.masked_fill(target_in[:, None] == target[None, :], neg))
    if "batch_spurious" in ablate:  # image i's own spurious regions only
        mine = similarity[rows].gather(2, target_in[:, None, None].expand(-1, similarity.shape[1], 1)).squeeze(2)
        l_a_parts.append(mine.masked_fill(~spurious[rows], neg))
    elif len(batch_spurious):
        l_a_parts.append(batch_spurious[:, target_in].T)  # [i, S]: s(r, y_i)
    l_r = zero if "L_R" in ablate else zero.index_put((rows,), torch.logsumexp(torch.cat(l_r_parts, 1), 1) - own)
    l_a = zero if "L_A" in ablate else zero.index_put((rows,), torch.logsumexp(torch.cat(l_a_parts, 1), 1) - own)
    return l_r, l_a


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
    ablate: Sequence[str] = (),
    reduction: str = "sum",
) -> torch.Tensor:
    """L = λ·L_CLIP + (1 − λ)·Σ_i (L_R^i + L_A^i): the image-level contrastive loss against the class texts
    (as FLCP's, with the text tower frozen) and RaVL's region terms (`region_losses`). `reduction`: "sum" over the
    batch, as the paper writes it (the region terms then weigh more as the batch grows), or "mean", which keeps them
    on the scale of L_CLIP, itself a batch mean, whatever the batch size."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"region_loss.reduction: {reduction!r}; use one of {', '.join(REDUCTIONS)}")
    clip = contrastive_loss(image, text[target], scale, target)
    if weight == 1:
        return clip
    l_r, l_a = region_losses(region, text, valid, spurious, target, temperature, denominator, ablate)
    terms = l_r + l_a
    return weight * clip + (1 - weight) * (terms.sum() if reduction == "sum" else terms.mean())
