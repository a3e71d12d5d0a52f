"""The on-disk dataset adapters on miniature datasets in their real formats."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from PIL import Image

from tests import fixtures
from vlm_rationality.artefacts import PreparedShard
from vlm_rationality.data import Sample, Skipped, build_dataset
from vlm_rationality.data.prepare import prepare_shard, split_report, write_item_index
from vlm_rationality.data.transform import eval_transform, resize_crop_box, to_rgb

SIZE = 32
CONFIGS = {
    "imagenet": lambda root: {
        "adapter": "imagenet",
        "root": str(root),
        "image_size": SIZE,
        "shard_size": 5,
        "splits": {"train": {"masks": False}, "test": {}},
        "split_folders": {"test": "val"},
    },
    "caltech101": lambda root: {
        "adapter": "caltech101",
        "root": str(root),
        "image_size": SIZE,
        "shard_size": 5,
        "train_fraction": 0.5,
        "seed": 0,
        "splits": {"train": {}, "test": {}},
    },
    "stanford_dogs": lambda root: {
        "adapter": "stanford_dogs",
        "root": str(root),
        "image_size": SIZE,
        "shard_size": 5,
        "splits": {"train": {}, "test": {}},
    },
    "cub": lambda root: {
        "adapter": "cub",
        "root": str(root),
        "image_size": SIZE,
        "shard_size": 5,
        "splits": {"train": {"masks": False}, "test": {}},
    },
}


def expected_box(box, size, s=SIZE):
    """Where an inclusive pixel box lands after resize-shorter-side + centre-crop, as inclusive pixels."""
    (new_w, new_h), (left, top, _r, _b) = resize_crop_box(*size, s)
    scale_x, scale_y = new_w / size[0], new_h / size[1]
    xmin, ymin, xmax, ymax = box
    return (
        xmin * scale_x - left,
        ymin * scale_y - top,
        (xmax + 1) * scale_x - left - 1,
        (ymax + 1) * scale_y - top - 1,
    )


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
        for prepared in (PreparedShard(path).read() for path in shards):
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
    assert everything["sample_id"] == [s.sample_id for s in samples] and everything["label"] == [
        s.label for s in samples
    ]
    for start, stop in ((5, 16), (14, 21), (28, 40), (30, 37)):
        assert read_items(path, start, stop)["sample_id"] == everything["sample_id"][start:stop]


def test_resize_256_and_crop_224_keeps_a_box_aligned_within_a_pixel():
    image, box = Image.new("RGB", (400, 300), (30, 60, 90)), (120, 40, 300, 250)
    mask = np.zeros((300, 400), dtype=bool)
    mask[box[1] : box[3] + 1, box[0] : box[2] + 1] = True
    pixels, out = eval_transform(image, mask, 224, resize=256, interpolation="bilinear")
    assert pixels.shape == (224, 224, 3)
    ys, xs = np.nonzero(out)
    (new_w, new_h), (left, top, _r, _b) = resize_crop_box(400, 300, 224, 256)
    assert (new_w, new_h) == (341, 256) and (left, top) == (58, 16)
    scale = 256 / 300
    expected = (
        box[0] * scale - left,
        box[1] * scale - top,
        (box[2] + 1) * scale - left - 1,
        (box[3] + 1) * scale - top - 1,
    )
    for got, want in zip((xs.min(), ys.min(), xs.max(), ys.max()), expected):
        assert abs(got - want) <= 1
    with pytest.raises(ValueError, match="resize 200 is smaller than the crop 224"):
        resize_crop_box(400, 300, 224, 200)


def test_a_soft_segmentation_kept_only_at_255_after_a_bilinear_resize_shrinks_to_its_core():
    soft = np.zeros((75, 100), dtype=np.uint8)
    soft[20:60, 30:80] = 255
    soft[20:60, 80:86] = 100  # a soft edge
    image = Image.new("RGB", (100, 75))
    _, nearest = eval_transform(image, soft, 32)  # the default: nearest, kept >= 128
    _, bool_mask = eval_transform(image, soft >= 128, 32)
    _, official = eval_transform(
        image, soft, 32, interpolation="bilinear", mask_interpolation="bilinear", mask_threshold=255
    )
    assert np.array_equal(nearest, bool_mask)  # thresholding before or after a nearest resize is the same
    assert official.sum() < nearest.sum() and not (official & ~nearest).any()


def test_official_protocol_options_of_the_file_adapters(tmp_path):
    imagenet_root = fixtures.imagenet(tmp_path / "in").root
    names = tmp_path / "imagenet-classes.txt"
    names.write_text("tench, Tinca tinca\ngoldfish, Carassius auratus\n")
    imagenet = build_dataset({**CONFIGS["imagenet"](imagenet_root), "class_names": str(names)})
    assert imagenet.prompts("a photo of a {name}") == ["a photo of a tench", "a photo of a goldfish"]
    names.write_text("tench\n")
    with pytest.raises(ValueError, match="imagenet-classes.txt names 1 classes, the dataset has 2"):
        build_dataset({**CONFIGS["imagenet"](imagenet_root), "class_names": str(names)}).prompts("{name}")

    caltech_root = fixtures.caltech101(tmp_path / "caltech").root
    official = build_dataset(
        {**CONFIGS["caltech101"](caltech_root), "train_fraction": 0.8, "split_rule": "every_nth", "background": True}
    )
    assert official.class_names == ["background google", "faces", "airplanes", "ant"]
    # 11 images have an annotation file; int(11 * 0.2) = 2 test images, every 5th from position 1.
    annotated = [i for i in official.items("train") + official.items("test")]
    assert len(annotated) == 11 and all(
        "BACKGROUND" not in i.sample_id and "ant/image_0004" not in i.sample_id for i in annotated
    )
    assert [i.sample_id for i in official.items("test")] == [
        "101_ObjectCategories/Faces/image_0002.jpg",
        "101_ObjectCategories/airplanes/image_0003.jpg",
    ]

    dogs_root = fixtures.stanford_dogs(tmp_path / "dogs").root
    fixtures.voc_xml(
        dogs_root / "Annotation" / "n02085620-Chihuahua" / "n02085620_1",
        [("dog", (10, 10, 40, 40)), ("dog", (60, 30, 90, 60))],
    )
    union = build_dataset(CONFIGS["stanford_dogs"](dogs_root))
    last = build_dataset({**CONFIGS["stanford_dogs"](dogs_root), "boxes": "last", "names": "cut"})
    item = next(i for i in union.items("test") if i.annotation.endswith("n02085620_1"))
    both, only_last = union.object_mask(item, 100, 75), last.object_mask(item, 100, 75)
    assert both[20, 20] and both[40, 70] and not only_last[20, 20] and only_last[40, 70]
    assert last.class_names == ["Chihuahua", "Japanese spaniel"]  # no second hyphen: cut changes nothing here
    (dogs_root / "Images" / "n02089078-black-and-tan_coonhound").mkdir()
    cut = build_dataset({**CONFIGS["stanford_dogs"](dogs_root), "names": "cut"})
    assert (
        "black" in cut.class_names
        and "black-and-tan coonhound" in build_dataset(CONFIGS["stanford_dogs"](dogs_root)).class_names
    )


def imagenet_with_train(root, per_class: int):
    """The ImageNet fixture with `per_class` training images per class (tiny photos: listing and carving only)."""
    fx = fixtures.imagenet(root)
    for synset in ("n01440764", "n01443537"):
        for j in range(2, per_class):
            fixtures.photo(fx.root / "train" / synset / f"{synset}_{j}.JPEG", size=(16, 12), box=(2, 2, 8, 8), seed=j)
    return fx


def test_a_carved_split_is_a_seeded_per_class_share_held_out_of_its_source(tmp_path):
    from vlm_rationality.plan.specs import prepare_spec

    root = imagenet_with_train(tmp_path / "in", per_class=10).root
    plain = CONFIGS["imagenet"](root)
    listed = [item.sample_id for item in build_dataset(plain).items("train")]
    carved = {
        **plain,
        "splits": {
            **plain["splits"],
            "val": {"masks": False, "carve": {"from": "train", "fraction": 0.3, "seed": 0}},
            "calib": {"masks": False, "carve": {"from": "train", "fraction": 0.2, "seed": 0}},
        },
    }
    dataset = build_dataset(carved)
    train, val, calib = ([item.sample_id for item in dataset.items(split)] for split in ("train", "val", "calib"))
    assert sorted(train + val + calib) == sorted(listed) and len(set(train + val + calib)) == len(listed)
    for split, per_class in (("train", 5), ("val", 3), ("calib", 2)):  # 10 per class: 0.3 and 0.2 of each class
        labels = [item.label for item in dataset.items(split)]
        assert labels.count(0) == labels.count(1) == per_class, split
    assert train == [sample_id for sample_id in listed if sample_id in set(train)]  # the source's order
    again = build_dataset(carved)
    assert [item.sample_id for item in again.items("val")] == val  # asking for the carved split first
    reseeded = build_dataset(
        {
            **carved,
            "splits": {
                **carved["splits"],
                "val": {"masks": False, "carve": {"from": "train", "fraction": 0.3, "seed": 1}},
            },
        }
    )
    assert [item.sample_id for item in reseeded.items("val")] != val
    assert [(s.sample_id, s.mask.any()) for s in dataset.samples("val", 0, 2)] == [(v, False) for v in val[:2]]

    config = {"datasets": {"in": carved}}
    assert set(prepare_spec(config, "in", "train")["splits"]) == {"train", "val", "calib"}
    assert set(prepare_spec(config, "in", "val")["splits"]) == {"train", "val", "calib"}
    assert set(prepare_spec(config, "in", "test")["splits"]) == {"test"}
    narrowed = build_dataset(prepare_spec(config, "in", "train"))
    assert [item.sample_id for item in narrowed.items("train")] == train
    tiny = build_dataset(
        {
            **plain,
            "splits": {
                **plain["splits"],
                "val": {"masks": False, "carve": {"from": "train", "fraction": 0.04, "seed": 0}},
            },
        }
    )
    with pytest.raises(
        ValueError, match=re.escape("split 'val': 0.04 of each class of its 20 source items is no item at all")
    ):
        tiny.items("train")


@pytest.mark.parametrize(
    "carves, message",
    [
        (
            {"val": {"from": "training", "fraction": 0.1, "seed": 0}},
            "split 'val' is carved from 'training', which is not a configured split",
        ),
        (
            {"val": {"from": "train", "fraction": 0.1, "seed": 0}, "val2": {"from": "val", "fraction": 0.5, "seed": 0}},
            "split 'val2' is carved from 'val', itself carved; carve both from 'train'",
        ),
        (
            {
                "val": {"from": "train", "fraction": 0.6, "seed": 0},
                "val2": {"from": "train", "fraction": 0.4, "seed": 0},
            },
            "splits val, val2 carve all of 'train': their fractions must sum below 1",
        ),
    ],
)
def test_a_carve_that_cannot_work_fails_naming_the_splits(tmp_path, carves, message):
    plain = CONFIGS["caltech101"](fixtures.caltech101(tmp_path / "caltech").root)
    config = {
        **plain,
        "splits": {**plain["splits"], **{name: {"masks": False, "carve": carve} for name, carve in carves.items()}},
    }
    with pytest.raises((KeyError, ValueError), match=re.escape(message)):
        build_dataset(config)
