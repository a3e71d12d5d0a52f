"""Visual factors: the annotations (ImageNet-X's format, the synthetic generator's draws) and the per-factor table."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests import fixtures
from vlm_rationality.artefacts import write_heatmap_shard
from vlm_rationality.data import build_dataset
from vlm_rationality.data.imagenet_x import FACTORS, VALIDATION_FACTORS, imagenet_x_file, read_factors
from vlm_rationality.data.synthetic import LUMINANCE, SyntheticSpec, make_sample
from vlm_rationality.metrics.factors import factor_rows
from vlm_rationality.metrics.grounding import grounding
from vlm_rationality.metrics.rationality import rationality
from vlm_rationality.visual_factors import Factors


def imagenet_x_line(file_name: str, label: int, *marked: str) -> str:
    """One line of ImageNet-X's published annotation format."""
    record = {"file_name": file_name, "class": label, **{f: int(f in marked) for f in FACTORS}}
    return json.dumps({**record, "justification": "", "one_word": ""})


def test_the_packaged_imagenet_x_annotations_are_read_in_their_published_format():
    marked = read_factors(imagenet_x_file(VALIDATION_FACTORS))
    assert len(marked) > 48_000 and all(name.startswith("ILSVRC2012_val_") for name in marked)
    shares = {f: sum(f in m for m in marked.values()) / len(marked) for f in FACTORS}
    assert all(0 < share < 1 for share in shares.values()), shares  # every factor is marked on some images
    assert max(shares, key=shares.get) == "pose"  # ImageNet-X's most frequent factor


def test_imagenet_factors_match_images_by_file_name_and_count_the_unannotated(tmp_path):
    fixtures.imagenet(tmp_path / "imagenet")
    annotations = tmp_path / "x.jsonl"
    annotations.write_text(
        imagenet_x_line("ILSVRC2012_val_00000000.JPEG", 0, "pose", "background")
        + "\n"
        + imagenet_x_line("ILSVRC2012_val_00000011.JPEG", 1, "darker")
        + "\n"
    )
    dataset = build_dataset(
        {
            "adapter": "imagenet",
            "root": str(tmp_path / "imagenet"),
            "image_size": 32,
            "factors_file": str(annotations),
            "splits": {"val": {}},
        }
    )
    ids = [item.sample_id for item in dataset.items("val")]
    found = dataset.factors("val", ids)
    named = {sample: i for i, sample in enumerate(ids)}
    first, second = (
        named["val/n01440764/ILSVRC2012_val_00000000.JPEG"],
        named["val/n01443537/ILSVRC2012_val_00000011.JPEG"],
    )
    assert found.annotated.sum() == 2 and found.annotated[first] and found.annotated[second]
    assert {f for f, shows in found.shows.items() if shows[first]} == {"pose", "background"}
    assert {f for f, shows in found.shows.items() if shows[second]} == {"darker"}
    assert sum(int(shows.sum()) for shows in found.shows.values()) == 3

    annotations.write_text(imagenet_x_line("a.JPEG", 0) + "\n" + json.dumps({"file_name": "b.JPEG", "pose": 1}))
    read_factors.cache_clear()
    with pytest.raises(ValueError, match=r"x\.jsonl:2: no multiple_objects, background"):
        dataset.factors("val", ids)


def test_the_synthetic_factors_are_the_generators_draws_in_tertiles():
    entry = {"adapter": "synthetic", "image_size": 32, "max_rotation": 45, "jitter": 0.5, "seed": 3}
    dataset = build_dataset({**entry, "splits": {"test": {"size": 90, "rho": 0.0}}})
    ids = [item.sample_id for item in dataset.items("test")]
    found = dataset.factors("test", ids)
    assert found.annotated.all() and all(found.shows[f].sum() == 30 for f in ("pose", "smaller", "larger"))
    assert not (found.shows["smaller"] & found.shows["larger"]).any()
    spec = SyntheticSpec(image_size=32, max_rotation=45, jitter=0.5, seed=3)
    samples = [make_sample(spec, "test", i) for i in range(90)]
    # the cue points away from the class: the background is not the class's own texture
    away = np.array([s.extra["background"] != spec.own_texture(s.label) for s in samples])
    np.testing.assert_array_equal(found.shows["background"], away)
    # low contrast, measured here on the images: the marked objects differ less in luminance from their background
    contrast = np.array(
        [abs((s.image @ LUMINANCE)[s.mask].mean() - (s.image @ LUMINANCE)[~s.mask].mean()) for s in samples]
    )
    assert contrast[found.shows["low_contrast"]].max() < contrast[~found.shows["low_contrast"]].min()

    fixed = build_dataset(
        {**entry, "max_rotation": 0, "min_scale": 0.3, "max_scale": 0.3, "splits": {"test": {"size": 30, "rho": 0.0}}}
    )
    still = fixed.factors("test", [f"test-{i:06d}" for i in range(30)])
    assert not (still.shows["pose"].any() or still.shows["smaller"].any() or still.shows["larger"].any())


def test_factor_rows_on_a_hand_case():
    """Six samples, two factors: the rows are the quadrant metrics of each factor's samples, the error ratio their
    error over the overall error, PT* the twins' truth on the same samples; an unannotated sample is in no row."""
    label = np.array([0, 0, 1, 1, 0, 1])
    pred = np.array([0, 1, 1, 1, 0, 0])
    rma = np.array([0.9, 0.2, 0.1, 0.8, 0.6, 0.7])
    ids = np.array([f"s{i}" for i in range(6)], dtype=object)
    stored = {
        ("d", "clean", "m", "ft", "chefer"): {"sample_id": ids, "label": label, "correct": pred == label, "rma": rma}
    }
    annotated = np.array([1, 1, 1, 1, 1, 0], bool)
    shows = {"pose": np.array([1, 1, 0, 0, 0, 1], bool), "darker": np.array([0, 0, 1, 1, 1, 0], bool)}
    twin_pred = np.array([[0, 0], [1, 0], [1, 1], [1, 0], [0, 0], [0, 1]])
    twins = {
        ("d", "m", "ft"): {
            "sample_id": list(ids[::-1]),  # twins files in another order: aligned by sample id
            "label": label[::-1],
            "pred": pred[::-1],
            "twin_pred": twin_pred[::-1],
            "twin_same_class": np.zeros((6, 2), bool),
            "alone_pred": pred[::-1],
            "twin_cue_class": np.full((6, 2), -1),
        }
    }
    index = {sample: i for i, sample in enumerate(ids)}
    rows = factor_rows(stored, {"d": (index, Factors(annotated, shows))}, twins, 0.5, 1.0, 200, 0)
    by_factor = {row["factor"]: row for row in rows}
    assert set(by_factor) == {"all", "pose", "darker"}
    overall_error = 1 / 5  # of the five annotated samples, sample 1 is wrong
    for factor, members in (("all", annotated), ("pose", shows["pose"] & annotated), ("darker", shows["darker"])):
        row, right = by_factor[factor], pred[members] == label[members]
        expected = rationality(right, rma[members], 0.5, 200, 0)
        assert row["n"] == members.sum() and row["n_unannotated"] == 1
        assert row["accuracy"] == pytest.approx(right.mean())
        assert row["error_ratio"] == pytest.approx((1 - right.mean()) / overall_error)
        assert row["prediction_trustworthiness"] == pytest.approx(expected.metrics["prediction_trustworthiness"])
        truth = grounding(
            label[members],
            pred[members],
            twin_pred[members],
            np.zeros((members.sum(), 2), bool),
            pred[members],
            1.0,
            200,
            0,
        )
        assert row["pt_true"] == pytest.approx(truth["pt_true"], nan_ok=True)
    assert by_factor["pose"]["error_ratio"] == pytest.approx(2.5)  # half wrong against a fifth
    assert by_factor["darker"]["pt_true"] == pytest.approx(2 / 3)  # samples 2-4 all right; 3's twins flip it


def test_without_twins_the_table_says_so_and_the_figure_is_drawn(tmp_path):
    from vlm_rationality.report.factors import factors_figure, factors_markdown

    rng = np.random.default_rng(0)
    ids = np.array([f"s{i}" for i in range(60)], dtype=object)
    stored = {
        ("d", "clean", "m", method, "chefer"): {
            "sample_id": ids,
            "label": rng.integers(0, 3, 60),
            "correct": rng.integers(0, 3, 60) == rng.integers(0, 3, 60),
            "rma": rng.uniform(size=60),
        }
        for method in ("zs", "lp", "ft")
    }
    shows = {"pose": np.arange(60) % 2 == 0, "smaller": np.arange(60) % 3 == 0}
    index = {sample: i for i, sample in enumerate(ids)}
    rows = factor_rows(stored, {"d": (index, Factors(np.ones(60, bool), shows))}, {}, 0.5, 1.0, 100, 0)
    assert len(rows) == 3 * 3 and all(row["pt_true"] is None for row in rows)
    text = factors_markdown(rows)
    assert "| d | m | FT | pose | 30 |" in text and text.count(" | – |") == 9
    factors_figure(rows, tmp_path / "factors.png")
    assert (tmp_path / "factors.png").read_bytes()[:4] == b"\x89PNG"


def test_a_dataset_with_no_annotated_sample_is_refused_naming_it(tmp_path):
    """ImageNet's eval split read from another folder than ILSVRC2012's val: no image is in ImageNet-X, and an empty
    table would say nothing about why."""
    from vlm_rationality.metrics.factors import factors_table

    heatmaps = tmp_path / "shards-0000-0000.parquet"
    write_heatmap_shard(
        heatmaps,
        sample_ids=[f"val/n01440764/ILSVRC2012_val_{k:08d}.JPEG" for k in range(4)],
        labels=np.zeros(4, int),
        preds=np.zeros(4, int),
        logits=np.zeros((4, 2)),
        heatmaps=np.ones((4, 4)),
        rma=np.full(4, 0.9, np.float32),
        rma_status=np.zeros(4, int),
        explained_class=np.zeros(4, int),
        cue_rma=np.full(4, np.nan, np.float32),
        keys={"dataset": "d", "shift": "clean", "model": "m", "method": "zs", "heatmap_method": "chefer"},
        config_hash="x",
        meta={"grid_size": [2, 2]},
    )
    none = {"d": lambda ids: Factors(np.zeros(len(ids), bool), {"pose": np.zeros(len(ids), bool)})}
    with pytest.raises(ValueError, match="none of the 4 samples 'd' scores has a factor annotation"):
        factors_table([heatmaps], [], none, "exclude", 0.5, 1.0, 100, 0)
