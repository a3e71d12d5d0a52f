"""The published ImageNet-C folders as the source of a shift: images matched to their validation items, masks
through ImageNet-C's resize-256 / crop-224, a missing or incomplete folder refused at config check, and no stage
corrupting the images a second time."""

from __future__ import annotations

import copy
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from tests import fixtures
from tests.snakemake_runs import SCHEMA, TEST_CONFIG, planned_jobs, snakemake
from vlm_rationality.artefacts import PreparedShard, read_heatmaps
from vlm_rationality.data.corruptions import apply_shift, shift_to_apply
from vlm_rationality.data.imagenet_c import crop_mask
from vlm_rationality.data.prepare import prepare_shard, write_item_index
from vlm_rationality.data.transform import boxes_mask
from vlm_rationality.explain.heatmaps import HeatmapSettings, explain_shards
from vlm_rationality.models import build_classifier, build_model
from vlm_rationality.plan.config import ConfigError, check_config

SHIFT = "gaussian_noise-3"


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    base = tmp_path_factory.mktemp("imagenet-c")
    fx = fixtures.imagenet(base / "imagenet")
    return fx, fixtures.imagenet_c(fx.root, base / "ImageNet-C", [SHIFT])


def spec(root, **extra) -> dict:
    return {
        "adapter": "imagenet",
        "root": str(root),
        "image_size": 224,
        "shard_size": 100,
        "splits": {"test": {}},
        "split_folders": {"test": "val"},
        **extra,
    }


@pytest.fixture(scope="module")
def prepared(roots, tmp_path_factory):
    fx, c_root = roots
    out = tmp_path_factory.mktemp("prepared")
    write_item_index(spec(fx.root), "test", out / "items.parquet", "test")
    counts = {}
    for name, resize, shift, source in [("clean", 256, "clean", None), ("shift", None, SHIFT, c_root)]:
        config = spec(fx.root, **({"resize": resize} if resize else {}))
        counts[name] = prepare_shard(
            config,
            "test",
            0,
            out / "items.parquet",
            out / f"{name}.parquet",
            "test",
            shift,
            source,
            out / "clean.parquet" if source else None,
        )
    return fx, c_root, out, counts


def test_a_prepared_shift_is_imagenet_c_s_images_with_masks_through_its_crop(prepared):
    fx, c_root, out, counts = prepared
    shifted, clean = PreparedShard(out / "shift.parquet").read(), PreparedShard(out / "clean.parquet").read()
    assert (
        PreparedShard(out / "shift.parquet").meta["shift"] == SHIFT
        and "shift" not in PreparedShard(out / "clean.parquet").meta
    )
    assert shifted["sample_id"] == sorted(fx.boxes) == clean["sample_id"]  # the clean shard's samples, matched
    assert counts["shift"]["skipped"] == counts["clean"]["skipped"] == fx.bad
    for i, sample_id in enumerate(shifted["sample_id"]):
        wnid, name = sample_id.split("/")[1:]
        with Image.open(c_root / "gaussian_noise" / "3" / wnid / name) as handle:
            assert np.array_equal(shifted["image"][i], np.asarray(handle.convert("RGB")))  # the file, as it is
        width, height = fx.sizes[sample_id]
        expected = crop_mask(boxes_mask([fx.boxes[sample_id]], height, width))
        assert np.array_equal(shifted["mask"][i], expected)
        assert np.array_equal(shifted["mask"][i], clean["mask"][i])  # prepare's resize: 256 (here the same rounding)
        xmin, ymin, xmax, ymax = fx.boxes[sample_id]  # the box's left edge, where torchvision's 256/224 puts it
        scale = 256 / min(width, height)
        left = round((max(256, int(width * scale)) - 224) / 2)
        columns = np.flatnonzero(shifted["mask"][i].any(axis=0))
        assert abs(columns[0] - (xmin * scale - left)) <= 1.5
    corrupted = np.abs(shifted["image"].astype(int) - clean["image"].astype(int)).mean()
    assert corrupted > 5  # noise at severity 3 (the clean crop is bicubic, ImageNet-C's bilinear: a little apart)


def test_explaining_a_prepared_shift_does_not_corrupt_it_again(prepared):
    _, _, out, _ = prepared
    paths = [out / "shift.parquet"]
    assert shift_to_apply(paths, SHIFT) == "clean" and shift_to_apply([out / "clean.parquet"], SHIFT) == SHIFT
    with pytest.raises(ValueError, match="shift.parquet"):
        shift_to_apply(paths, "zoom_blur-2")
    with pytest.raises(ValueError, match="all be clean or all be that shift"):
        shift_to_apply([out / "clean.parquet", *paths], SHIFT)
    torch.manual_seed(0)
    classifier = build_classifier(
        build_model({"arch": "tiny-vit-224"}), "prompt", ["a photo of a tench", "a photo of a goldfish"]
    )
    settings = HeatmapSettings(batch_size=2)
    summary = explain_shards(classifier, paths, out / "heatmaps.parquet", settings, "test", keys={"shift": SHIFT})
    meta, table = read_heatmaps(out / "heatmaps.parquet", ["logits"])
    assert summary["n"] == 4 and meta["shift_source"] == "prepared" and meta["keys"]["shift"] == SHIFT
    shard = PreparedShard(paths[0]).read()
    with torch.no_grad():
        as_read, twice = (
            classifier(classifier.model.preprocess(torch.from_numpy(images))).numpy()
            for images in (shard["image"], apply_shift(shard["image"], shard["sample_id"], SHIFT))
        )
    stored = np.stack(table.column("logits").to_pylist())  # float16
    np.testing.assert_allclose(stored, as_read, rtol=2e-3, atol=2e-3)
    assert np.abs(stored - twice).max() > 10 * np.abs(stored - as_read).max()  # the test would see a second corruption


def config_with(roots, tmp_path, **dataset) -> dict:
    fx, c_root = roots
    config = copy.deepcopy(TEST_CONFIG)
    config["datasets"] = {
        "imagenet": {
            **spec(fx.root),
            "splits": {"train": {"masks": False}, "test": {}},
            "split_folders": {"test": "val"},
            "shard_size": 4,
            "imagenet_c": str(c_root),
            "shifts": ["clean", SHIFT],
            **dataset,
        }
    }
    config["models"] = {"tiny-clip": {"adapter": "open_clip", "arch": "tiny-vit-224"}}
    config["methods"] = {"zs": {"kind": "zs"}}
    config["heatmaps"].update(methods=["chefer"], shards_per_job=3)
    return config


def test_a_missing_or_incomplete_folder_fails_at_config_check_naming_it(roots, tmp_path):
    fx, c_root = roots
    check_config(config_with(roots, tmp_path), copy.deepcopy(SCHEMA))
    with pytest.raises(ConfigError, match=r"imagenet_c: .*zoom_blur/2 does not exist"):
        check_config(config_with(roots, tmp_path, shifts=["clean", SHIFT, "zoom_blur-2"]), copy.deepcopy(SCHEMA))
    partial = tmp_path / "partial"
    shutil.copytree(c_root, partial)
    shutil.rmtree(partial / "gaussian_noise" / "3" / "n01443537")
    with pytest.raises(
        ConfigError, match=r"gaussian_noise/3 is incomplete: 1 of 2 synset folders are missing \(e.g. n01443537\)"
    ):
        check_config(config_with(roots, tmp_path, imagenet_c=str(partial)), copy.deepcopy(SCHEMA))
    with pytest.raises(ConfigError, match="image_size: 224"):
        check_config(config_with(roots, tmp_path, image_size=256), copy.deepcopy(SCHEMA))


def test_a_missing_file_fails_the_prepare_job_naming_it(roots, tmp_path):
    fx, c_root = roots
    partial = tmp_path / "partial"
    shutil.copytree(c_root, partial)
    (partial / "gaussian_noise" / "3" / "n01440764" / "ILSVRC2012_val_00000001.JPEG").unlink()
    write_item_index(spec(fx.root), "test", tmp_path / "items.parquet", "test")
    prepare_shard(spec(fx.root), "test", 0, tmp_path / "items.parquet", tmp_path / "clean.parquet", "test")
    with pytest.raises(FileNotFoundError, match=r"n01440764/ILSVRC2012_val_00000001.JPEG is missing: .* is incomplete"):
        prepare_shard(
            spec(fx.root),
            "test",
            0,
            tmp_path / "items.parquet",
            tmp_path / "out.parquet",
            "test",
            SHIFT,
            partial,
            tmp_path / "clean.parquet",
        )


@pytest.mark.slow
def test_the_workflow_reads_the_shift_from_imagenet_c(roots, tmp_path):
    """Prepared once per shift and shard, explained and scored like any shift, with nothing corrupted on the fly."""
    config = config_with(roots, tmp_path)
    snakemake(tmp_path, config, "--until", "items")
    assert planned_jobs(snakemake(tmp_path, config, "--dry-run", "results/metrics/rationality.parquet")) == {
        "prepare": 3,
        "prepare_shift": 3,
        "explain": 2,
        "score": 1,
    }  # test: 9 items (4 good) in shards of 4
    gallery = f"results/figures/gallery/imagenet/{SHIFT}/tiny-clip/chefer/all_right.png"
    snakemake(tmp_path, config, "results/metrics/rationality.parquet", gallery)  # the gallery draws ImageNet-C's images
    assert (tmp_path / gallery).read_bytes()[:4] == b"\x89PNG"
    explained = sorted((tmp_path / "results" / "heatmaps" / "imagenet" / SHIFT).rglob("*.parquet"))
    meta, _ = read_heatmaps(explained[0], ["rma"])
    assert meta["shift_source"] == "prepared"
    assert all(f"data/imagenet/test/{SHIFT}/shard-" in path for path in meta["source_shards"])
    rows = {r["shift"]: r for r in pq.read_table(tmp_path / "results" / "metrics" / "rationality.parquet").to_pylist()}
    assert sorted(rows) == ["clean", SHIFT] and rows[SHIFT]["n"] == rows["clean"]["n"] == 4
    assert rows[SHIFT]["n_skipped"] == rows["clean"]["n_skipped"] == sum(roots[0].bad.values())


@pytest.mark.parametrize("size", [(500, 375), (333, 500), (257, 301), (640, 427)])
def test_masks_follow_torchvision_s_resize_256_and_centre_crop_224_to_the_pixel(size):
    """ImageNet-C's images are torchvision's Resize(256) + CenterCrop(224) of the originals; a mask through the
    same transform (nearest neighbour) is the mask of those pixels."""
    from torchvision import transforms

    rng = np.random.default_rng(sum(size))
    mask = rng.random((size[1], size[0])) > 0.5
    recipe = transforms.Compose(
        [transforms.Resize(256, transforms.InterpolationMode.NEAREST), transforms.CenterCrop(224)]
    )
    expected = np.asarray(recipe(Image.fromarray(mask.astype(np.uint8) * 255))) >= 128
    assert np.array_equal(crop_mask(mask), expected)
