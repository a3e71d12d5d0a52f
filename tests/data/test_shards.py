import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from vlm_rationality.artefacts import (
    PREPARED,
    PreparedShard,
    shard_paths,
    write_prepared_shard,
)
from vlm_rationality.data.shards import batches_under_shift, iter_batches, unpack_masks
from vlm_rationality.io import atomic_path, read_metadata, write_parquet


def _arrays(n=7, h=13, w=11, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, h, w, 3), dtype=np.uint8)
    masks = rng.uniform(size=(n, h, w)) < 0.3
    return images, masks


def _write(path, images, masks, first=0, **kw):
    n = len(images)
    write_prepared_shard(
        path,
        sample_ids=[f"s{i}" for i in range(first, first + n)],
        labels=np.arange(n) % 3,
        images=images,
        masks=masks,
        sources=["fixture"] * n,
        config_hash="cafe",
        **kw,
    )


def test_round_trip_is_exact_with_odd_sizes(tmp_path):
    images, masks = _arrays()  # 13*11 = 143 mask bits: the last byte is padded
    path = tmp_path / "shard-0000.parquet"
    _write(path, images, masks, extra={"caption": [f"c{i}" for i in range(7)]})
    back = PreparedShard(path).read()
    np.testing.assert_array_equal(back["image"], images)
    np.testing.assert_array_equal(back["mask"], masks)
    assert back["sample_id"] == [f"s{i}" for i in range(7)] and back["caption"][3] == "c3"
    schema = pq.read_schema(path)
    assert schema.field("image").type.byte_width == 13 * 11 * 3
    assert schema.field("mask").type.byte_width == 18
    assert str(schema.field("label").type) == "int32"
    meta = read_metadata(path)
    assert meta["schema"] == PREPARED and meta["config_hash"] == "cafe" and meta["image_shape"] == [13, 11]


def test_streaming_batches_cover_every_sample_in_order(tmp_path):
    images, masks = _arrays(n=10)
    for k in range(2):
        _write(tmp_path / f"shard-{k:04d}.parquet", images[k * 5 : (k + 1) * 5], masks[k * 5 : (k + 1) * 5])
    batches = list(iter_batches(shard_paths(tmp_path), batch_size=3))
    assert [len(b.sample_ids) for b in batches] == [3, 2, 3, 2]
    got_images = torch.cat([b.images for b in batches]).numpy()
    got_masks = torch.cat([b.masks() for b in batches]).numpy()
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_masks, masks)
    assert batches[0].labels.dtype == torch.int64


def test_a_few_samples_read_under_a_shift_are_those_of_the_whole_read(tmp_path):
    images, masks = _arrays(n=10, h=32, w=32)
    paths = [tmp_path / f"shard-{k:04d}.parquet" for k in range(2)]
    for k, path in enumerate(paths):
        _write(path, images[k * 5 : (k + 1) * 5], masks[k * 5 : (k + 1) * 5], first=k * 5)

    def read(**kw):
        with batches_under_shift(paths, 2, "gaussian_noise-3", **kw) as batches:
            return {s: (b.images[i].numpy(), b.masks()[i].numpy()) for b in batches for i, s in enumerate(b.sample_ids)}

    whole, few = read(), read(samples={"s1", "s3", "s7"})
    assert sorted(few) == ["s1", "s3", "s7"] and len(whole) == 10
    for sample, (image, mask) in few.items():  # the same corruption, seeded by the sample, whatever else is read
        np.testing.assert_array_equal(image, whole[sample][0])
        np.testing.assert_array_equal(mask, masks[int(sample[1:])])
    assert not np.array_equal(few["s7"][0], images[7])
    assert read(samples={"nobody"}) == {}


def test_unpack_matches_numpy_packbits():
    masks = np.random.default_rng(1).uniform(size=(4, 5, 9)) < 0.5
    bits = torch.from_numpy(np.packbits(masks.reshape(4, -1), axis=1))
    np.testing.assert_array_equal(unpack_masks(bits, 5, 9).numpy(), masks)


def test_bad_arrays_fail_naming_the_file(tmp_path):
    images, masks = _arrays()
    with pytest.raises(ValueError, match="shard-x.parquet.*uint8"):
        _write(tmp_path / "shard-x.parquet", images.astype(np.float32), masks)
    with pytest.raises(ValueError, match="masks"):
        _write(tmp_path / "shard-x.parquet", images, masks[:, :5])
    assert not list(tmp_path.iterdir())


def test_exception_mid_write_leaves_no_partial_file(tmp_path):
    target = tmp_path / "out.parquet"
    with pytest.raises(OSError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"PAR1 half a file")
            raise OSError("disk full")
    assert list(tmp_path.iterdir()) == []


def test_a_failed_rewrite_keeps_the_previous_file(tmp_path):
    images, masks = _arrays()
    path = tmp_path / "shard-0000.parquet"
    _write(path, images, masks)
    before = path.read_bytes()
    with pytest.raises(Exception):
        write_parquet("not a table", path)  # fails inside pq.write_table, after the temp file is opened
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_missing_shards_and_wrong_schema_are_explained(tmp_path):
    with pytest.raises(FileNotFoundError, match="prepare"):
        shard_paths(tmp_path)
    import pyarrow as pa

    pq.write_table(pa.table({"x": [1]}), tmp_path / "shard-0000.parquet")
    with pytest.raises(ValueError, match="expected 'prepared-samples/1'"):
        list(iter_batches([tmp_path / "shard-0000.parquet"], 2))
