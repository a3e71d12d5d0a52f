"""RaVL's Stage 2: the region-aware loss on hand-made embeddings, and the ravl method on real shards and a real
model."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vlm_rationality.finetune.losses import contrastive_loss, region_aware_loss, region_losses


def _batch(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    image = torch.randn(6, 8, generator=generator)
    region = F.normalize(torch.randn(6, 4, 8, generator=generator), dim=-1)
    text = F.normalize(torch.randn(3, 8, generator=generator), dim=-1)
    target = torch.tensor([0, 1, 2, 0, 1, 1])
    valid = torch.ones(6, 4, dtype=torch.bool)
    valid[2, 3] = False
    spurious = torch.zeros(6, 4, dtype=torch.bool)
    spurious[:, 1] = True
    return image, region, text, target, valid, spurious


def test_weight_one_is_exactly_the_clip_loss_in_value_and_gradient():
    image, region, text, target, valid, spurious = _batch()
    scale = torch.tensor(14.3)
    image_a, image_b = image.clone().requires_grad_(True), image.clone().requires_grad_(True)
    ravl = region_aware_loss(image_a, region, text, scale, valid, spurious, target, 1.0, 0.07)
    clip = contrastive_loss(image_b, text[target], scale, target)
    assert torch.equal(ravl, clip)
    ravl.backward()
    clip.backward()
    assert torch.equal(image_a.grad, image_b.grad)
    mixed = region_aware_loss(image, region, text, scale, valid, spurious, target, 0.8, 0.07)
    l_r, l_a = region_losses(region, text, valid, spurious, target, 0.07)
    assert torch.allclose(mixed, 0.8 * clip + 0.2 * (l_r + l_a).sum())
    mean = region_aware_loss(image, region, text, scale, valid, spurious, target, 0.8, 0.07, reduction="mean")
    assert torch.allclose(mean, 0.8 * clip + 0.2 * (l_r + l_a).mean())


def test_the_papers_region_terms_by_hand():
    """Image 0 (class 0): relevant region a0, spurious region s0; image 1 (class 1): relevant region a1, spurious
    region s1; texts e0 and e1, τ = 1, so each cosine is a logit. Every term of Section 4.1 written out."""
    text = torch.eye(2)
    unit = lambda angle: [math.cos(angle), math.sin(angle)]  # noqa: E731 - at `angle` rad from e0 towards e1
    angles = {"a0": 0.3, "s0": 1.2, "a1": 1.0, "s1": 0.4}
    region = torch.tensor([[unit(angles["a0"]), unit(angles["s0"])], [unit(angles["a1"]), unit(angles["s1"])]])
    valid = torch.ones(2, 2, dtype=torch.bool)
    spurious = torch.tensor([[False, True], [False, True]])
    target = torch.tensor([0, 1])
    sigma = {name: (math.exp(math.cos(a)), math.exp(math.sin(a))) for name, a in angles.items()}  # σ(r, y0), σ(r, y1)
    penalty = max(sigma["s0"]) + max(sigma["s1"])  # P(R_B^s): each spurious region at the class it is most like
    l_r0 = -math.log(sigma["a0"][0] / (sigma["a0"][0] + sigma["a0"][1] + penalty))
    l_r1 = -math.log(sigma["a1"][1] / (sigma["a1"][0] + sigma["a1"][1] + penalty))
    # L_A: image 1's relevant region competes for class 0, image 0's for class 1, and both spurious regions for each
    l_a0 = -math.log(sigma["a0"][0] / (sigma["a0"][0] + sigma["a1"][0] + sigma["s0"][0] + sigma["s1"][0]))
    l_a1 = -math.log(sigma["a1"][1] / (sigma["a1"][1] + sigma["a0"][1] + sigma["s0"][1] + sigma["s1"][1]))
    l_r, l_a = region_losses(region, text, valid, spurious, target, 1.0)
    assert l_r.tolist() == pytest.approx([l_r0, l_r1])
    assert l_a.tolist() == pytest.approx([l_a0, l_a1])
    # each part left out is exactly that part gone
    without_p, _ = region_losses(region, text, valid, spurious, target, 1.0, ablate=["P"])
    assert without_p[0].item() == pytest.approx(-math.log(sigma["a0"][0] / (sigma["a0"][0] + sigma["a0"][1])))
    _, no_cross = region_losses(region, text, valid, spurious, target, 1.0, ablate=["cross_relevant"])
    expected = -math.log(sigma["a0"][0] / (sigma["a0"][0] + sigma["s0"][0] + sigma["s1"][0]))
    assert no_cross[0].item() == pytest.approx(expected)
    _, own_spurious = region_losses(region, text, valid, spurious, target, 1.0, ablate=["batch_spurious"])
    expected = -math.log(sigma["a0"][0] / (sigma["a0"][0] + sigma["a1"][0] + sigma["s0"][0]))
    assert own_spurious[0].item() == pytest.approx(expected)
    only_a = region_losses(region, text, valid, spurious, target, 1.0, ablate=["L_R"])
    assert only_a[0].tolist() == [0, 0] and only_a[1].tolist() == pytest.approx([l_a0, l_a1])
    # the whole loss, summed over the batch as the paper writes it
    image, scale = torch.randn(2, 2), torch.tensor(10.0)
    clip = contrastive_loss(image, text[target], scale, target).item()
    loss = region_aware_loss(image, region, text, scale, valid, spurious, target, 0.8, 1.0)
    assert loss.item() == pytest.approx(0.8 * clip + 0.2 * (l_r0 + l_r1 + l_a0 + l_a1))
    # an image whose every region is spurious has no terms of its own, its regions still compete, nothing is NaN
    every = torch.tensor([[True, True], [False, True]])
    leaf = region.clone().requires_grad_(True)
    l_r, l_a = region_losses(leaf, text, valid, every, target, 1.0)
    assert l_r[0].item() == 0 and l_a[0].item() == 0
    assert l_a[1].item() == pytest.approx(
        -math.log(sigma["a1"][1] / (sigma["a1"][1] + sigma["a0"][1] + sigma["s0"][1] + sigma["s1"][1]))
    )
    (l_r + l_a).sum().backward()
    assert torch.isfinite(leaf.grad).all()
    with pytest.raises(ValueError, match="region_loss.ablate: cross; use some of"):
        region_losses(region, text, valid, spurious, target, 1.0, ablate=["cross"])


WITHIN_IMAGE = ["P", "cross_relevant", "batch_spurious"]  # the loss without the batch's cross-image parts


def test_the_within_image_region_terms_by_hand():
    """Two images of class 0 and one of class 1, texts e0 and e1, τ = 1 (cosines as logits), with the paper's
    cross-image parts left out."""
    text = torch.eye(2)
    c, s = math.cos(0.5), math.sin(0.5)
    region = torch.tensor(
        [
            [[1.0, 0.0], [0.0, 1.0]],  # image 0: relevant region = e0, spurious region = e1
            [[c, s], [1.0, 0.0]],  # image 1: relevant region at 0.5 rad from e0, spurious region = e0
            [[0.0, 1.0], [0.0, 1.0]],  # image 2 (class 1): no spurious region
        ]
    )
    valid = torch.tensor([[True, True], [True, True], [True, False]])
    spurious = torch.tensor([[False, True], [False, True], [False, False]])
    target = torch.tensor([0, 0, 1])
    l_r, l_a = region_losses(region, text, valid, spurious, target, 1.0, "classes", WITHIN_IMAGE)
    # L_R over the batch's two classes: -log e^m(y) / (e^m(0) + e^m(1))
    assert l_r[0].item() == pytest.approx(math.log(math.e + 1) - 1)
    assert l_r[1].item() == pytest.approx(math.log(math.exp(c) + math.exp(s)) - c)
    # L_A: image 0's spurious region e1 has cosine 0 with its class text e0; image 1's has cosine 1; image 2 has none
    assert l_a[0].item() == pytest.approx(math.log(math.e + 1) - 1)
    assert l_a[1].item() == pytest.approx(math.log(math.exp(c) + math.e) - c)
    assert l_a[2].item() == 0
    # "items": one text per batch item, so class 0 (two items) counts twice in the denominator
    items, _ = region_losses(region, text, valid, spurious, target, 1.0, "items", WITHIN_IMAGE)
    assert items[0].item() == pytest.approx(math.log(2 * math.e + 1) - 1)
    assert items[2].item() == pytest.approx(math.log(2 * 1 + math.e) - 1)
    # an image whose every region is spurious has no relevant region: both of its terms are zero
    only_spurious = spurious.clone()
    only_spurious[0] = True
    l_r, l_a = region_losses(region, text, valid, only_spurious, target, 1.0, "classes", WITHIN_IMAGE)
    assert l_r[0].item() == 0 and l_a[0].item() == 0 and l_r[1].item() > 0
    with pytest.raises(ValueError, match="region_loss.denominator: 'each'"):
        region_losses(region, text, valid, spurious, target, 1.0, "each")


def test_a_gradient_step_lowers_a_spurious_regions_similarity_to_its_class_text():
    image, region, text, target, valid, spurious = _batch(1)
    own = text[target]  # [B, D]: each image's class text
    region = region.clone()
    region[:, 1] = F.normalize(own + 0.5 * region[:, 1], dim=-1)  # spurious regions that look like the class text
    region.requires_grad_(True)
    before = (region.detach() * own[:, None]).sum(-1)  # [B, R] cosine of each region with its image's class text
    loss = region_aware_loss(image, region, text, torch.tensor(14.3), valid, spurious, target, 0.8, 0.07)
    loss.backward()
    with torch.no_grad():
        after = (F.normalize(region - 1e-3 * region.grad, dim=-1) * own[:, None]).sum(-1)
    assert (after[spurious] < before[spurious]).all()
    # the best relevant region of each image moves towards its class text
    best = before.masked_fill(spurious | ~valid, -2).argmax(1)
    rows = torch.arange(len(target))
    assert (after[rows, best] > before[rows, best]).all()


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """A prepared training shard of the synthetic benchmark and its regions file, each background square of an
    image on its own class's texture assigned to the spurious cluster 1."""
    from tests import fixtures
    from vlm_rationality.artefacts import write_training_regions
    from vlm_rationality.data.synthetic import SyntheticSpec, generate
    from vlm_rationality.discover.run import image_regions

    root = tmp_path_factory.mktemp("ravl")
    samples = list(generate(SyntheticSpec(image_size=32, num_classes=4, num_textures=4), "train", 32, rho=0.9))
    shard = fixtures.prepared_shard(root / "shard-0000.parquet", samples)
    regions = {"sample_id": [], "kind": [], "feature": [], "box": [], "cluster": []}
    settings = {"background_boxes": 3, "box_fraction": 0.25, "grid": 3, "seed": 0}
    for s in samples:
        for box, kind in image_regions(s.mask, s.sample_id, settings):
            own = kind == "background" and s.extra["background"] == s.label
            regions["sample_id"].append(s.sample_id)
            regions["kind"].append(kind)
            regions["feature"].append(s.label if kind == "object" else s.extra["background"])
            regions["box"].append(list(box))
            regions["cluster"].append(1 if own else 0)
    path = root / "regions.parquet"
    write_training_regions(path, regions, {}, [1, 0], {"dataset": "tiny"}, "h")
    return shard, path, regions


def test_split_regions_pad_images_and_mark_the_chosen_clusters_spurious(shards):
    from vlm_rationality.finetune.data import load_split
    from vlm_rationality.finetune.ravl import SplitRegions

    shard, path, table = shards
    split = load_split([shard])
    regions = SplitRegions.read(str(path), split.sample_ids, 1)
    counts = [table["sample_id"].count(s) for s in split.sample_ids]
    assert regions.valid.sum(1).tolist() == counts and regions.valid.shape[1] == max(counts)
    assert int(regions.spurious.sum()) == table["cluster"].count(1)
    assert not (regions.spurious & ~regions.valid).any()
    both = SplitRegions.read(str(path), split.sample_ids, 2)  # the first two candidates: every region
    assert torch.equal(both.spurious, both.valid)
    with pytest.raises(ValueError, match="no regions for 1 training samples"):
        SplitRegions.read(str(path), [*split.sample_ids, "stranger"], 1)


def _ravl_config(regions, **region_loss) -> dict:
    """A two-epoch RaVL on the `shards` fixture (batches of 8) with the paper's region terms, `region_loss` set."""
    loss = {"temperature": 0.07, "spurious_clusters": 1, "denominator": "classes", "ablate": [], **region_loss}
    return {
        "kind": "ravl",
        "mitigates": "ft",
        "lr": 1e-3,
        "epochs": 2,
        "batch_size": 8,
        "seed": 0,
        "regions": str(regions),
        "region_loss": loss,
    }


@pytest.mark.parametrize("view", ["crop", "in_place", "roi"])
def test_ravl_trains_the_image_tower_only_and_classifies_with_the_frozen_prompts(shards, view):
    from vlm_rationality.finetune.base import build_method
    from vlm_rationality.finetune.data import load_split
    from vlm_rationality.models import build_model
    from vlm_rationality.models.heads import prompt_head

    shard, path, table = shards
    prompts = [f"a photo of a {name}" for name in ("circle", "square", "triangle", "star")]
    torch.manual_seed(0)
    model = build_model({"adapter": "open_clip", "arch": "tiny-vit-32"})
    text_before = {k: v.clone() for k, v in model.model.named_parameters() if not k.startswith("visual.")}
    image_before = [p.detach().clone() for p in model.image_parameters()]
    head_before = prompt_head(model, prompts).weight.detach().clone()
    config = _ravl_config(path, weight=0.8, view=view, reduction="sum")
    classifier, metrics = build_method(config).fit(model, prompts, load_split([shard]), torch.device("cpu"))
    assert classifier.kind == "prompt" and math.isfinite(metrics["train_loss"]) and metrics["steps"] == 8
    assert metrics["spurious_region_share"] == pytest.approx(table["cluster"].count(1) / len(table["cluster"]))
    assert all(torch.equal(v, dict(model.model.named_parameters())[k]) for k, v in text_before.items())
    assert any(not torch.equal(a, b) for a, b in zip(image_before, model.image_parameters()))
    assert torch.equal(classifier.head.weight, head_before)  # the class texts did not move
    with pytest.raises(ValueError, match="augment: true would move the boxes"):
        build_method({**config, "augment": True})
    with pytest.raises(KeyError, match="ravl needs `regions`"):
        build_method({k: v for k, v in config.items() if k != "regions"}).fit(
            model, prompts, load_split([shard]), torch.device("cpu")
        )


def test_in_place_keeps_a_region_at_its_place_and_scale_on_grey():
    from vlm_rationality.finetune.ravl import in_place

    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    shown = in_place(image, [(4, 8, 20, 12), (0, 0, 32, 32)])
    assert shown.shape == (2, 32, 32, 3) and np.array_equal(shown[1], image)
    assert np.array_equal(shown[0, 8:12, 4:20], image[8:12, 4:20])
    outside = np.ones((32, 32), bool)
    outside[8:12, 4:20] = False
    assert (shown[0][outside] == 128).all()


def test_roi_pool_averages_the_patch_tokens_a_box_covers():
    from vlm_rationality.finetune.ravl import roi_pool

    patches = torch.arange(2 * 4 * 4 * 3, dtype=torch.float32).reshape(2, 4, 4, 3)  # 4x4 patches of 8 px, 32 px
    boxes = np.array([[[8, 0, 16, 8], [0, 0, 16, 16], [0, 0, 0, 0]], [[16, 8, 32, 16], [0, 0, 0, 0], [0, 0, 0, 0]]])
    valid = torch.tensor([[True, True, False], [True, False, False]])
    pooled = roi_pool(patches.requires_grad_(True), boxes, valid, 32)
    assert pooled.shape == (2, 3, 3)
    torch.testing.assert_close(pooled[0, 0], patches[0, 0, 1])  # one patch: row 0, column 1
    torch.testing.assert_close(pooled[0, 1], patches[0, :2, :2].mean((0, 1)))  # 2x2 patches
    torch.testing.assert_close(pooled[1, 0], patches[1, 1, 2:].mean(0))  # row 1, columns 2-3
    assert pooled[0, 2].abs().sum() == 0 and pooled[1, 1:].abs().sum() == 0
    (grad,) = torch.autograd.grad(pooled[1, 0].sum(), patches)
    assert (grad[1, 1, 2:] == 0.5).all() and grad.abs().sum() == 3  # the two covered patches, half each


def test_upsampling_balances_the_groups_stage_1_implies(shards):
    """Each (class, spurious region present) group is drawn equally often, and the method trains as FT does."""
    from vlm_rationality.finetune.base import build_method
    from vlm_rationality.finetune.data import load_split
    from vlm_rationality.finetune.ravl import SplitRegions
    from vlm_rationality.finetune.upsample import group_weights
    from vlm_rationality.models import build_model

    labels, flagged = torch.tensor([0, 0, 0, 1, 1, 1]), torch.tensor([True, False, False, False, False, False])
    assert group_weights(labels * 2 + flagged.long()).tolist() == pytest.approx([1, 1 / 2, 1 / 2, 1 / 3, 1 / 3, 1 / 3])
    shard, path, _ = shards
    split = load_split([shard])
    flagged = SplitRegions.read(str(path), split.sample_ids, 1).spurious.any(1)
    groups = split.labels * 2 + flagged.long()
    assert len(groups.unique()) > 2  # the fixture holds groups of different sizes
    weights = group_weights(groups)
    generator = torch.Generator().manual_seed(0)
    drawn = torch.cat([torch.cat(list(split.batches(8, generator, weights))) for _ in range(300)])
    share = torch.bincount(groups[drawn], minlength=int(groups.max()) + 1).double() / len(drawn)
    present = share[groups.unique()]
    assert present.tolist() == pytest.approx([1 / len(present)] * len(present), abs=0.015)
    prompts = [f"a photo of a {name}" for name in ("circle", "square", "triangle", "star")]
    torch.manual_seed(0)
    model = build_model({"adapter": "open_clip", "arch": "tiny-vit-32"})
    config = {"kind": "upsample", "mitigates": "ft", "lr": 1e-3, "epochs": 1, "batch_size": 8, "seed": 0}
    with pytest.raises(KeyError, match="upsample needs `regions`"):
        build_method(config).fit(model, prompts, split, torch.device("cpu"))
    config.update(regions=str(path), spurious_clusters=1)
    classifier, metrics = build_method(config).fit(model, prompts, split, torch.device("cpu"))
    assert classifier.kind == "linear" and math.isfinite(metrics["train_loss"]) and metrics["steps"] == 4


def test_the_summed_loss_at_weight_w_is_the_averaged_loss_at_the_weight_it_implies(shards):
    """AdamW does not see a global scale of the loss, so the paper's summed form, w·L_CLIP + (1 − w)·Σ_batch, is the
    averaged form at w_eff = w / (w + (1 − w)·B) (B the batch size): the same training, up to AdamW's ε, which only
    acts where a gradient is float noise (the attention's key bias, which the softmax cancels). At w 0.8 and batch 64
    that is w_eff 0.06: the image-level objective all but dropped."""
    from vlm_rationality.finetune.base import batch_images, build_method
    from vlm_rationality.finetune.data import load_split
    from vlm_rationality.models import build_model

    shard, path, _ = shards  # 32 images, batches of 8: every batch full
    split = load_split([shard])
    prompts = [f"a photo of a {name}" for name in ("circle", "square", "triangle", "star")]

    def embeddings(weight: float, reduction: str) -> torch.Tensor:
        torch.manual_seed(0)
        model = build_model({"adapter": "open_clip", "arch": "tiny-vit-32"})
        config = _ravl_config(path, weight=weight, view="roi", reduction=reduction)
        build_method(config).fit(model, prompts, split, torch.device("cpu"))
        with torch.no_grad():
            return model.encode_image(batch_images(model, split, torch.arange(len(split)), torch.device("cpu")))

    summed, implied, averaged = (
        embeddings(0.8, "sum"),
        embeddings(0.8 / (0.8 + 0.2 * 8), "mean"),
        embeddings(0.8, "mean"),
    )
    gap, apart = float((summed - implied).abs().max()), float((summed - averaged).abs().max())
    assert gap < 1e-4 and apart > 1000 * gap  # the same training at the implied weight, another at the same weight


def test_group_dro_weights_follow_the_update_rule_by_hand():
    """Sagawa et al.'s online update, step by step: q_g ← q_g·exp(η·L_g) over the batch's group means (0 for a group
    the batch lacks), normalised; the loss is Σ q_g·L_g with the updated q."""
    from vlm_rationality.finetune.vl_gdro import GroupDRO

    dro = GroupDRO(groups=3, step_size=0.5)
    losses, groups = torch.tensor([1.0, 3.0, 4.0, 0.5]), torch.tensor([0, 0, 1, 1])
    means = [2.0, 2.25, 0.0]  # group 2 is not in the batch
    raw = [math.exp(0.5 * m) / 3 for m in means]
    q = [r / sum(raw) for r in raw]
    loss = dro(losses, groups)
    assert dro.q.tolist() == pytest.approx(q)
    assert float(loss) == pytest.approx(sum(a * b for a, b in zip(q, means)))
    dro(torch.tensor([2.0]), torch.tensor([2]))
    raw = [q[0], q[1], q[2] * math.exp(0.5 * 2.0)]
    assert dro.q.tolist() == pytest.approx([r / sum(raw) for r in raw])
    (grad,) = torch.autograd.grad(dro(losses.requires_grad_(True), groups), losses)
    assert grad[0] == grad[1] == pytest.approx(float(dro.q[0]) / 2)  # each sample: its group's weight / its size


def _vl_config(kind: str, regions, **options) -> dict:
    config = {"kind": kind, "lr": 1e-3, "epochs": 2, "batch_size": 8, "seed": 0, **options}
    return {**config, "mitigates": "ft", "regions": str(regions), "spurious_clusters": 1} if kind != "vl-ft" else config


def test_the_papers_baselines_train_the_image_tower_on_the_clip_objective(shards):
    """vl-ft is RaVL without its region terms (the same weights as ravl at λ 1); the upsampled, ERM and GDRO
    variants each change it in one place, and keep the text tower frozen."""
    from vlm_rationality.finetune.base import build_method
    from vlm_rationality.finetune.data import load_split
    from vlm_rationality.models import build_model

    shard, path, _ = shards
    split = load_split([shard])
    prompts = [f"a photo of a {name}" for name in ("circle", "square", "triangle", "star")]
    trained = {}
    for name, config in {
        "ravl λ 1": _ravl_config(path, weight=1.0, view="crop", reduction="sum"),
        "vl-ft": _vl_config("vl-ft", path),
        "vl-upsample": _vl_config("vl-upsample", path),
        "vl-erm": _vl_config("vl-erm", path, weight=0.8),
        "vl-gdro": _vl_config("vl-gdro", path, weight=0.8, step_size=0.01),
    }.items():
        torch.manual_seed(0)
        model = build_model({"adapter": "open_clip", "arch": "tiny-vit-32"})
        text_before = [p.detach().clone() for n, p in model.model.named_parameters() if not n.startswith("visual.")]
        classifier, metrics = build_method(config).fit(model, prompts, split, torch.device("cpu"))
        text_after = [p for n, p in model.model.named_parameters() if not n.startswith("visual.")]
        assert classifier.kind == "prompt" and math.isfinite(metrics["train_loss"]) and metrics["steps"] == 8
        assert all(torch.equal(a, b) for a, b in zip(text_before, text_after)), name
        trained[name] = [p.detach().clone() for p in model.image_parameters()]
    assert all(torch.equal(a, b) for a, b in zip(trained["ravl λ 1"], trained["vl-ft"]))
    for name in ("vl-upsample", "vl-erm", "vl-gdro"):
        assert any(not torch.equal(a, b) for a, b in zip(trained["vl-ft"], trained[name])), name
    assert any(not torch.equal(a, b) for a, b in zip(trained["vl-erm"], trained["vl-gdro"]))
    with pytest.raises(KeyError, match="vl-gdro needs `regions`"):
        build_method(
            {k: v for k, v in _vl_config("vl-gdro", path, weight=0.8, step_size=0.01).items() if k != "regions"}
        ).fit(build_model({"adapter": "open_clip", "arch": "tiny-vit-32"}), prompts, split, torch.device("cpu"))
