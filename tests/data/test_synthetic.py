import numpy as np
import pytest

from vlm_rationality.data.synthetic import OBJECT_COLOURS, SyntheticSpec, class_prompts, generate, make_sample


def test_same_seed_same_bytes_and_other_seed_differs():
    spec = SyntheticSpec(seed=3)
    a = list(generate(spec, "train", 20, rho=0.5))
    b = list(generate(spec, "train", 20, rho=0.5))
    c = list(generate(SyntheticSpec(seed=4), "train", 20, rho=0.5))
    assert all(x.image.tobytes() == y.image.tobytes() and (x.mask == y.mask).all() for x, y in zip(a, b))
    assert [x.extra["caption"] for x in a] == [y.extra["caption"] for y in b]
    assert any(x.image.tobytes() != z.image.tobytes() for x, z in zip(a, c))


def test_a_sample_does_not_depend_on_its_neighbours():
    spec = SyntheticSpec()
    whole = list(generate(spec, "test", 10))
    alone = make_sample(spec, "test", 7)
    assert alone.image.tobytes() == whole[7].image.tobytes()


def test_mask_is_exactly_the_painted_object():
    spec = SyntheticSpec(noise=0.0, num_classes=10, num_textures=10)
    for sample in generate(spec, "pretrain", 60):
        colour = np.array(OBJECT_COLOURS[sample.extra["colour"]], dtype=np.uint8)
        painted = (sample.image == colour).all(axis=-1)
        assert sample.mask.dtype == bool and sample.mask.shape == (64, 64)
        assert 0.02 < sample.mask.mean() < 0.6
        np.testing.assert_array_equal(painted, sample.mask)


def test_rho_ties_the_background_to_the_class():
    spec = SyntheticSpec()
    tied = list(generate(spec, "train", 200, rho=1.0))
    assert all(s.extra["background"] == spec.own_texture(s.label) for s in tied)
    free = list(generate(spec, "test", 400, rho=0.0))
    agreement = np.mean([s.extra["background"] == spec.own_texture(s.label) for s in free])
    assert agreement < 0.25  # chance is 1/8
    assert len({s.label for s in free}) == spec.num_classes


@pytest.mark.parametrize("detail, low, high", [(0.0, 0.0, 0.0), (0.1, 0.05, 0.15), (0.5, 0.42, 0.58)])
def test_captions_always_name_the_shape_and_the_rest_as_often_as_caption_detail_says(detail, low, high):
    spec = SyntheticSpec(caption_detail=detail)
    samples = list(generate(spec, "pretrain", 400))
    for s in samples:
        assert spec.class_names[s.label] in s.extra["caption"].split()
        assert s.extra["caption"].startswith(("a ", "an ", "a photo of a"))
    with_colour = np.mean([s.extra["colour"] in s.extra["caption"].split() for s in samples])
    with_background = np.mean(
        [spec.texture_names[s.extra["background"]] in s.extra["caption"].split() for s in samples]
    )
    assert low <= with_colour <= high and low <= with_background <= high
    # The zero-shot class prompt is itself a caption the text tower sees in pretraining.
    prompts = set(class_prompts(spec))
    assert any(s.extra["caption"] in prompts for s in samples)
    assert class_prompts(spec)[0] == "a photo of a circle"


def test_each_texture_has_its_own_hue():
    spec = SyntheticSpec(noise=0.0)
    means = {}
    for s in generate(spec, "test", 200):
        means.setdefault(s.extra["background"], []).append(s.image[~s.mask].mean(axis=0))
    centres = np.array([np.mean(v, axis=0) for _, v in sorted(means.items())])
    gaps = np.linalg.norm(centres[:, None] - centres[None], axis=-1)[np.triu_indices(len(centres), 1)]
    assert len(centres) == spec.num_textures and gaps.min() > 10


@pytest.mark.parametrize("bad", [dict(num_classes=1), dict(num_classes=11), dict(image_size=8), dict(min_scale=0.6)])
def test_bad_specs_are_rejected(bad):
    with pytest.raises(ValueError, match="synthetic"):
        SyntheticSpec(**bad)


def test_bad_rho_and_split_kinds_are_rejected():
    from vlm_rationality.data.synthetic import SyntheticDataset

    with pytest.raises(ValueError, match="rho"):
        make_sample(SyntheticSpec(), "train", 0, rho=1.5)
    with pytest.raises(ValueError, match="split 'x': unknown synthetic split kind 'ood'"):
        SyntheticDataset({"x": {"size": 4, "kind": "ood"}})
    with pytest.raises(ValueError, match="held_out_shape needs a shape outside the classes"):
        SyntheticDataset({"x": {"size": 4, "kind": "held_out_shape"}}, num_classes=10, num_textures=10)
    with pytest.raises(ValueError, match="cue_conflict ties every class to its own texture"):
        SyntheticDataset({"x": {"size": 4, "kind": "cue_conflict"}}, num_classes=8, num_textures=4)


def test_any_split_name_gets_its_own_stream_and_the_named_ones_keep_theirs():
    spec = SyntheticSpec()
    val, other, test = (make_sample(spec, name, 5) for name in ("val", "ood_shape", "test"))
    assert len({val.image.tobytes(), other.image.tobytes(), test.image.tobytes()}) == 3
    assert make_sample(spec, "val", 5).image.tobytes() == val.image.tobytes()
    assert make_sample(spec, "test", 5, kind="standard").image.tobytes() == test.image.tobytes()


def test_robustness_kinds_draw_what_they_promise():
    from vlm_rationality.data.synthetic import OOD_LABEL, SHAPES, SyntheticDataset

    spec = SyntheticSpec(noise=0.0)
    held_out = list(generate(spec, "ood", 60, kind="held_out_shape"))
    assert {s.label for s in held_out} == {OOD_LABEL} and all(s.mask.sum() > 0 for s in held_out)
    names = {word for s in held_out for word in s.extra["caption"].split() if word in SHAPES}  # the drawn shape
    assert names == set(SHAPES[spec.num_classes :])
    empty = list(generate(spec, "textures", 20, kind="texture_only"))
    assert {s.label for s in empty} == {OOD_LABEL} and not any(s.mask.any() for s in empty)
    conflict = list(generate(spec, "cue", 200, kind="cue_conflict"))
    assert all(0 <= s.label < spec.num_classes and s.extra["background"] != spec.own_texture(s.label) for s in conflict)
    assert len({s.extra["background"] for s in conflict}) == spec.num_textures  # every other class's texture
    dataset = SyntheticDataset(
        {"ood": {"size": 3, "kind": "held_out_shape"}, "cue": {"size": 3, "kind": "cue_conflict"}}
    )
    assert [i.label for i in dataset.items("ood")] == [OOD_LABEL] * 3
    assert [i.label for i in dataset.items("cue")] == [
        s.label for s in generate(SyntheticSpec(), "cue", 3, kind="cue_conflict")
    ]


def test_the_sticker_is_exact_never_touches_the_object_and_is_never_a_class_shape():
    from scipy import ndimage

    from vlm_rationality.data.synthetic import STICKER_COLOURS

    spec = SyntheticSpec(noise=0.0, cue="sticker")
    carried = 0
    for sample in generate(spec, "test", 300):
        sticker = sample.extra["cue_mask"]
        if not sticker.any():
            continue
        carried += 1
        painted = np.zeros_like(sticker)
        for colour in STICKER_COLOURS.astype(np.uint8):
            painted |= (sample.image == colour).all(axis=-1)
        np.testing.assert_array_equal(painted, sticker)  # the stored mask is exactly the painted sticker
        assert not (ndimage.binary_dilation(sticker, np.ones((3, 3), bool)) & sample.mask).any()
        rows, cols = np.flatnonzero(sticker.any(1)), np.flatnonzero(sticker.any(0))
        assert (len(rows), len(cols)) == spec.sticker_shape and len(rows) != len(cols)
        assert sticker.sum() == len(rows) * len(cols)  # a filled rectangle
    assert 120 < carried < 180  # about half the images of an untied split


def test_the_sticker_follows_the_tie_in_tied_splits_and_not_in_test_splits():
    from vlm_rationality.metrics.groups import cramers_v

    spec = SyntheticSpec(cue="sticker", sticker_class=2)
    tied = list(generate(spec, "train", 400, rho=1.0))
    assert all(s.extra["cue_mask"].any() == (s.label == 2) for s in tied)
    # the backgrounds no longer follow the class
    assert np.mean([s.extra["background"] == spec.own_texture(s.label) for s in tied]) < 0.25
    labels = lambda samples: np.array([s.label for s in samples])  # noqa: E731
    present = lambda samples: np.array([s.extra["cue_mask"].any() for s in samples])  # noqa: E731
    assert cramers_v(labels(tied), present(tied)) == pytest.approx(1.0)
    strong = list(generate(spec, "train", 800, rho=0.9))
    assert cramers_v(labels(strong), present(strong)) > 0.7
    free = list(generate(spec, "test", 800, rho=0.0))
    assert cramers_v(labels(free), present(free)) < 0.15
    assert 0.4 < present(free).mean() < 0.6
    # the background-alone twin keeps the sticker where it was
    alone = make_sample(spec, "test", 3, draw_object=False)
    np.testing.assert_array_equal(alone.extra["cue_mask"], free[3].extra["cue_mask"])


def test_bad_sticker_settings_fail_clearly():
    from vlm_rationality.data.synthetic import check_kind

    with pytest.raises(ValueError, match="synthetic.cue must be one of background, sticker"):
        SyntheticSpec(cue="corner")
    with pytest.raises(ValueError, match="sticker_class must be a class index in \\[0, 8\\)"):
        SyntheticSpec(cue="sticker", sticker_class=8)
    with pytest.raises(ValueError, match="kind cue_conflict .* needs cue: background"):
        check_kind(SyntheticSpec(cue="sticker"), "cue_conflict")


@pytest.mark.parametrize("kind", ["standard", "cue_conflict"])
def test_another_image_size_renders_the_same_scenes(kind):
    """The resolution study compares a model at 64 and 96 px on the same images: every draw is in units of the image
    side, so the labels, colours, backgrounds and poses match and the object covers the same part of the image.
    Only the pixel noise (one draw per pixel) and the caption drawn after it differ: captions serve pretraining."""
    import torch
    import torch.nn.functional as F

    small = list(generate(SyntheticSpec(image_size=64), "test", 60, kind=kind))
    large = list(generate(SyntheticSpec(image_size=96), "test", 60, kind=kind))
    assert [s.label for s in small] == [s.label for s in large]
    for a, b in zip(small, large):
        drawn = ("rotation", "scale", "offset", "caption")
        assert {k: v for k, v in a.extra.items() if k not in drawn} == {
            k: v for k, v in b.extra.items() if k not in drawn
        }
        assert [a.extra[k] for k in drawn[:3]] == pytest.approx([b.extra[k] for k in drawn[:3]], rel=1e-9)
        mask = torch.from_numpy(b.mask[None, None].astype(np.float32))
        shrunk = F.interpolate(mask, size=(64, 64), mode="area")[0, 0].numpy() >= 0.5
        assert np.logical_and(a.mask, shrunk).sum() / np.logical_or(a.mask, shrunk).sum() > 0.85
