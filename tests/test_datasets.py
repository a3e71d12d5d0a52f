"""The on-disk dataset adapters on miniature datasets in their real formats."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from tests import fixtures
from vlm_rationality.artefacts import read_prepared
from vlm_rationality.data import Sample, Skipped, build_dataset
from vlm_rationality.data.prepare import prepare_shard, split_report, write_item_index
from vlm_rationality.data.transform import eval_transform, resize_crop_box, to_rgb

SIZE = 32
CONFIGS = {
    "imagenet": lambda root: {"adapter": "imagenet", "root": str(root), "image_size": SIZE, "shard_size": 5,
                              "splits": {"train": {"masks": False}, "test": {}}, "split_folders": {"test": "val"}},
    "caltech101": lambda root: {"adapter": "caltech101", "root": str(root), "image_size": SIZE, "shard_size": 5,
                                "train_fraction": 0.5, "seed": 0, "splits": {"train": {}, "test": {}}},
    "stanford_dogs": lambda root: {"adapter": "stanford_dogs", "root": str(root), "image_size": SIZE, "shard_size": 5,
                                   "splits": {"train": {}, "test": {}}},
    "cub": lambda root: {"adapter": "cub", "root": str(root), "image_size": SIZE, "shard_size": 5,
                         "splits": {"train": {"masks": False}, "test": {}}},
}


def expected_box(box, size, s=SIZE):
    """Where an inclusive pixel box lands after resize-shorter-side + centre-crop, as inclusive pixels."""
    (new_w, new_h), (left, top, _r, _b) = resize_crop_box(*size, s)
    scale_x, scale_y = new_w / size[0], new_h / size[1]
    xmin, ymin, xmax, ymax = box
    return (xmin * scale_x - left, ymin * scale_y - top, (xmax + 1) * scale_x - left - 1, (ymax + 1) * scale_y - top - 1)


@pytest.fixture(params=sorted(CONFIGS))
def dataset(request, tmp_path):
    fixture = getattr(fixtures, request.param)(tmp_path / request.param)
    return request.param, fixture, CONFIGS[request.param](fixture.root)


def mask_splits(adapter) -> list[str]:
    return [split for split in adapter.splits if adapter.needs_masks(split)]


def test_masks_land_on_the_objects_and_bad_input_is_counted(dataset, tmp_path):
    name, fixture, config = dataset
    adapter = build_dataset(config)
    entries = [e for split in mask_splits(adapter) for e in adapter.samples(split, 0, adapter.split_size(split))]
    samples = {e.sample_id: e for e in entries if isinstance(e, Sample)}
    skipped = [e for e in entries if isinstance(e, Skipped)]
    assert set(samples) == set(fixture.boxes), name
    counts: dict[str, int] = {}
    for entry in skipped:
        counts[entry.reason] = counts.get(entry.reason, 0) + 1
    assert counts == fixture.bad
    for sample_id, sample in samples.items():
        assert sample.image.dtype == np.uint8 and sample.image.shape == (SIZE, SIZE, 3)
        ys, xs = np.nonzero(sample.mask)
        want = expected_box(fixture.boxes[sample_id], fixture.sizes[sample_id])
        got = (xs.min(), ys.min(), xs.max(), ys.max())
        for g, w in zip(got, want):
            assert abs(g - min(max(w, 0), SIZE - 1)) <= 1, (sample_id, got, want)
        # The mask covers the bright object in the transformed image too.
        assert sample.image[sample.mask].mean() > 150 > sample.image[~sample.mask].mean()


def test_prepare_writes_shards_and_a_report(dataset, tmp_path):
    name, fixture, config = dataset
    adapter = build_dataset(config)
    written, skipped = 0, {}
    for split in mask_splits(adapter):
        n = adapter.split_size(split)
        shards = []
        assert write_item_index(config, split, tmp_path / split / "items.parquet", "h") == n
        for k in range(math.ceil(n / config["shard_size"])):
            path = tmp_path / split / f"shard-{k:04d}.parquet"
            prepare_shard(config, split, k, tmp_path / split / "items.parquet", path, "h")
            shards.append(path)
        report = split_report(shards, tmp_path / split / "report.json")
        assert report["written"] + report["skipped_total"] == n
        written += report["written"]
        for reason, count in report["skipped"].items():
            skipped[reason] = skipped.get(reason, 0) + count
        for prepared in map(read_prepared, shards):
            assert len(prepared["sample_id"]) == 0 or max(prepared["label"]) < len(adapter.class_names)
            assert all(m.any() for m in prepared["mask"])
    assert written == len(fixture.boxes) and skipped == fixture.bad




def test_class_names_and_splits(tmp_path):
    imagenet = build_dataset(CONFIGS["imagenet"](fixtures.imagenet(tmp_path / "in").root))
    assert imagenet.class_names == ["tench", "goldfish"]
    assert imagenet.split_size("train") == 4  # training split: no boxes needed
    train = [e for e in imagenet.samples("train", 0, 4)]
    assert all(isinstance(e, Sample) and not e.mask.any() for e in train)

    caltech_root = fixtures.caltech101(tmp_path / "caltech").root
    caltech = build_dataset(CONFIGS["caltech101"](caltech_root))
    assert caltech.class_names == ["faces", "airplanes", "ant"]  # BACKGROUND_Google is not a class
    train = [i.sample_id for i in caltech.items("train")]
    test = [i.sample_id for i in caltech.items("test")]
    assert not set(train) & set(test) and len(train) + len(test) == 12
    again = build_dataset(CONFIGS["caltech101"](caltech_root))
    assert [i.sample_id for i in again.items("train")] == train
    other_seed = build_dataset({**CONFIGS["caltech101"](caltech_root), "seed": 1})
    assert [i.sample_id for i in other_seed.items("train")] != train

    dogs = build_dataset(CONFIGS["stanford_dogs"](fixtures.stanford_dogs(tmp_path / "dogs").root))
    assert dogs.class_names == ["Chihuahua", "Japanese spaniel"] and dogs.split_size("train") == 2
    cub = build_dataset(CONFIGS["cub"](fixtures.cub(tmp_path / "cub").root))
    assert cub.class_names == ["Black footed Albatross", "Laysan Albatross"] and cub.split_size("train") == 2
    assert cub.prompts("a photo of a {name}")[0] == "a photo of a Black footed Albatross"


@pytest.mark.parametrize("mode", ["L", "RGBA", "CMYK", "P", "LA"])
def test_every_image_mode_becomes_rgb(mode):
    image = Image.new("RGB", (40, 30), (200, 100, 50)).convert(mode)
    assert to_rgb(image).mode == "RGB"
    pixels, mask = eval_transform(image, np.ones((30, 40), bool), 16)
    assert pixels.shape == (16, 16, 3) and pixels.dtype == np.uint8 and mask.all()


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_a_missing_root_or_wrong_layout_fails_naming_the_path(tmp_path, name):
    with pytest.raises(FileNotFoundError, match="expected layout"):
        build_dataset(CONFIGS[name](tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'empty'}.*expected layout"):
        build_dataset(CONFIGS[name](tmp_path / "empty"))


def test_imagenet_reads_val_boxes_from_xml_files_too(tmp_path):
    fixture = fixtures.imagenet(tmp_path / "in")
    from_csv = build_dataset(CONFIGS["imagenet"](fixture.root))
    from_xml = build_dataset({**CONFIGS["imagenet"](fixture.root), "boxes": str(fixture.root / "val_xml")})
    a = list(from_csv.samples("test", 0, from_csv.split_size("test")))
    b = list(from_xml.samples("test", 0, from_xml.split_size("test")))
    assert [type(x) for x in a] == [type(y) for y in b]
    for x, y in zip(a, b):
        if isinstance(x, Sample):
            np.testing.assert_array_equal(x.mask, y.mask)
        else:
            assert x.reason == y.reason


def test_the_item_index_has_a_row_group_per_shard_and_reads_any_slice(tmp_path):
    import pyarrow.parquet as pq

    from vlm_rationality.artefacts import item_count, read_items
    from vlm_rationality.data.synthetic import SyntheticSpec, generate

    config = {"adapter": "synthetic", "image_size": 32, "shard_size": 7, "splits": {"train": {"size": 30, "rho": 0.5}}}
    path = tmp_path / "items.parquet"
    assert write_item_index(config, "train", path, "h") == 30 == item_count(path)
    assert pq.ParquetFile(path).metadata.num_row_groups == 5
    everything = read_items(path, 0, 30)
    samples = list(generate(SyntheticSpec(image_size=32), "train", 30, rho=0.5))
    assert everything["sample_id"] == [s.sample_id for s in samples] and everything["label"] == [s.label for s in samples]
    for start, stop in ((5, 16), (14, 21), (28, 40), (30, 37)):
        assert read_items(path, start, stop)["sample_id"] == everything["sample_id"][start:stop]
