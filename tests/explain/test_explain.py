import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from tests import fixtures
from vlm_rationality.artefacts import HEATMAPS, PreparedShard
from vlm_rationality.data.synthetic import SyntheticSpec, generate
from vlm_rationality.explain.chefer import Chefer
from vlm_rationality.explain.heatmaps import HeatmapSettings, explain_shards
from vlm_rationality.io import read_metadata
from vlm_rationality.metrics.rma import relevance_mass_accuracy
from vlm_rationality.models import build_classifier


@pytest.fixture(scope="module")
def shard(tmp_path_factory):
    samples = list(generate(SyntheticSpec(image_size=32), "test", 11))
    masks = np.stack([s.mask for s in samples])
    masks[4] = False  # an empty mask: RMA undefined
    return fixtures.prepared_shard(tmp_path_factory.mktemp("prepared") / "shard-0000.parquet", samples, masks=masks)


def test_heatmap_shard_schema_and_values(tiny_model, prompts, shard, tmp_path):
    classifier = build_classifier(tiny_model, "prompt", prompts)
    out = tmp_path / "heatmaps" / "shard-0000.parquet"
    summary = explain_shards(classifier, [shard], out, HeatmapSettings(batch_size=4), "cfg123")
    table = pq.read_table(out)
    assert table.column_names == [
        "sample_id",
        "label",
        "pred",
        "logits",
        "heatmap",
        "rma",
        "rma_status",
        "explained_class",
        "cue_rma",
        "dataset",
        "shift",
        "model",
        "method",
        "heatmap_method",
    ]
    assert str(table.schema.field("logits").type) == "fixed_size_list<element: halffloat>[8]"
    assert str(table.schema.field("heatmap").type) == "fixed_size_list<element: halffloat>[16]"
    meta = read_metadata(out)
    assert meta["schema"] == HEATMAPS and meta["config_hash"] == "cfg123" and meta["grid_size"] == [4, 4]

    prepared = PreparedShard(shard).read()
    assert table.column("sample_id").to_pylist() == prepared["sample_id"]
    images = tiny_model.preprocess(torch.from_numpy(prepared["image"]))
    labels = torch.from_numpy(prepared["label"]).long()
    reference = Chefer()(classifier, images, labels)
    heatmaps = np.stack(table.column("heatmap").to_numpy(zero_copy_only=False)).astype(np.float32)
    np.testing.assert_allclose(heatmaps, reference.relevance.reshape(11, -1).numpy(), rtol=2e-3, atol=1e-4)
    expected_rma, _ = relevance_mass_accuracy(reference.relevance, torch.from_numpy(prepared["mask"]))
    rma = table.column("rma").to_numpy()
    np.testing.assert_allclose(rma, expected_rma.numpy(), rtol=1e-5, equal_nan=True)
    assert np.isnan(rma[4]) and table.column("rma_status").to_pylist()[4] == "empty_mask"
    # no cue mask stored: the cue is the background, whose mass is 1 − RMA (all of it where the mask is empty)
    cue = table.column("cue_rma").to_numpy()
    np.testing.assert_allclose(cue[~np.isnan(rma)], 1 - rma[~np.isnan(rma)], rtol=1e-5, atol=1e-6)
    assert cue[4] == pytest.approx(1) and meta["cue"] == "background"
    assert set(table.column("heatmap_method").to_pylist()) == {"chefer"}
    np.testing.assert_array_equal(table.column("pred").to_numpy(), reference.logits.argmax(1).numpy())
    assert summary == {
        "n": 11,
        "accuracy": pytest.approx(float((reference.logits.argmax(1) == labels).float().mean())),
        "nonfinite_logits": 0,
        "undefined_rma": 1,
    }


def test_a_stored_cue_mask_is_where_the_cue_mass_is_measured(tiny_model, prompts, tmp_path):
    """The sticker cue: its exact pixels travel in the prepared shard and the heatmap file holds the relevance mass
    on them; NaN where an image carries no sticker."""
    spec = SyntheticSpec(image_size=32, cue="sticker", sticker_size=0.3)
    samples = list(generate(spec, "test", 10))
    cue_masks = np.stack([s.extra["cue_mask"] for s in samples])
    assert 0 < cue_masks.any((1, 2)).sum() < 10
    shard = fixtures.prepared_shard(tmp_path / "shard-0000.parquet", samples, extra={"cue_mask": list(cue_masks)})
    np.testing.assert_array_equal(PreparedShard(shard).read()["cue_mask"], cue_masks)
    classifier = build_classifier(tiny_model, "prompt", prompts)
    out = tmp_path / "heatmaps.parquet"
    explain_shards(classifier, [shard], out, HeatmapSettings(batch_size=4), "cfg")
    table = pq.read_table(out)
    relevance = torch.from_numpy(np.stack(table.column("heatmap").to_numpy(zero_copy_only=False)).astype(np.float32))
    expected, _ = relevance_mass_accuracy(relevance.reshape(10, 4, 4), torch.from_numpy(cue_masks))
    np.testing.assert_allclose(
        table.column("cue_rma").to_numpy(), expected.numpy(), rtol=2e-3, atol=1e-4, equal_nan=True
    )
    assert np.isnan(table.column("cue_rma").to_numpy()[~cue_masks.any((1, 2))]).all()
    assert read_metadata(out)["cue"] == "local"
    from vlm_rationality.report.gallery import read_samples, render_sample

    first = int(np.flatnonzero(cue_masks.any((1, 2)))[0])
    carrier = samples[first].sample_id
    np.testing.assert_array_equal(read_samples([shard], {carrier})[carrier][2], cue_masks[first])  # it outlines it
    render_sample(out, carrier, tmp_path / "sample.png", [shard])
    assert (tmp_path / "sample.png").stat().st_size > 0


def test_bad_heatmap_settings_fail_clearly():
    with pytest.raises(KeyError, match="unknown heatmap method 'lime'"):
        HeatmapSettings(method="lime")
    with pytest.raises(KeyError, match="amp"):
        HeatmapSettings(amp="fp8")


def test_corruptions_in_worker_processes_ahead_of_the_model_give_the_same_file(tiny_model, prompts, shard, tmp_path):
    """A shifted job read and corrupted ahead (0 workers: in the reading thread; 2: in two processes) writes what
    the corruption applied batch by batch in line writes: the same rows, the same maps."""
    from vlm_rationality.data.corruptions import apply_shift
    from vlm_rationality.data.shards import iter_batches, shifted

    classifier = build_classifier(tiny_model, "prompt", prompts)
    settings = HeatmapSettings(batch_size=4)
    keys = {"shift": "gaussian_noise-3"}
    tables = []
    for workers in (0, 2):
        out = tmp_path / f"workers-{workers}.parquet"
        explain_shards(classifier, [shard], out, settings, "h", "cpu", keys, workers=workers)
        tables.append(pq.read_table(out))
    for name in tables[0].column_names:  # rma: NaN for the empty mask, equal to itself only as an array
        np.testing.assert_array_equal(
            np.stack(tables[0].column(name).to_numpy(zero_copy_only=False)),
            np.stack(tables[1].column(name).to_numpy(zero_copy_only=False)),
        )
    prepared = PreparedShard(shard).read()
    corrupted = apply_shift(prepared["image"], prepared["sample_id"], "gaussian_noise-3")
    in_line = np.concatenate([b.images.numpy() for b in shifted(iter_batches([shard], 4), "gaussian_noise-3")])
    np.testing.assert_array_equal(in_line, corrupted)
    reference = Chefer()(
        classifier, tiny_model.preprocess(torch.from_numpy(corrupted)), torch.from_numpy(prepared["label"]).long()
    )
    heatmaps = np.stack(tables[1].column("heatmap").to_numpy(zero_copy_only=False)).astype(np.float32)
    np.testing.assert_allclose(heatmaps, reference.relevance.reshape(11, -1).numpy(), rtol=2e-3, atol=1e-4)


def test_prefetching_keeps_the_order_and_raises_where_the_producer_failed():
    from vlm_rationality.data.shards import prefetched

    assert list(prefetched(iter(range(50)), depth=3)) == list(range(50))

    def failing():
        yield from range(5)
        raise OSError("shard-0003.parquet is truncated")

    seen = []
    with pytest.raises(OSError, match="truncated"):
        for item in prefetched(failing(), depth=2):
            seen.append(item)
    assert seen == list(range(5))


def test_an_auto_batch_is_recorded_and_changes_no_map(tiny_model, prompts, shard, tmp_path):
    """On CPU `auto` is CPU_BATCH (the whole shard here); its file holds the maps of a batch of 4 to float16."""
    from vlm_rationality.explain.batch_size import CPU_BATCH

    classifier = build_classifier(tiny_model, "prompt", prompts)
    tables = {}
    for batch_size in (4, "auto"):
        out = tmp_path / f"batch-{batch_size}.parquet"
        explain_shards(classifier, [shard], out, HeatmapSettings(batch_size=batch_size), "h")
        assert read_metadata(out)["batch_size"] == (4 if batch_size == 4 else CPU_BATCH)
        tables[batch_size] = pq.read_table(out)
    assert tables[4].column("sample_id").to_pylist() == tables["auto"].column("sample_id").to_pylist()
    maps = [np.stack(t.column("heatmap").to_numpy(zero_copy_only=False)).astype(np.float32) for t in tables.values()]
    np.testing.assert_allclose(maps[0], maps[1], rtol=2e-3, atol=1e-4)
    np.testing.assert_array_equal(tables[4].column("pred").to_numpy(), tables["auto"].column("pred").to_numpy())
    with pytest.raises(ValueError, match="heatmaps.batch_size must be an integer >= 1 or auto, got 'big'"):
        HeatmapSettings(batch_size="big")


def test_the_auto_batch_meets_the_free_memory_on_the_line_through_two_probes():
    from vlm_rationality.explain.batch_size import HEADROOM, MAX_BATCH, fit_batch_size

    mib = 2**20
    probed = []

    def peak(n: int) -> int:  # what a job's probes measure: a fixed part and a part per image
        probed.append(n)
        return 512 * mib + 100 * mib * n

    free = 40 * 1024 * mib
    batch = fit_batch_size(peak, free)
    assert len(probed) == 2 and batch % 8 == 0
    assert peak(batch) <= HEADROOM * free < peak(batch + 8)
    assert fit_batch_size(peak, 2**50) == MAX_BATCH
    assert fit_batch_size(peak, 2000 * mib) == 8  # (0.8 * 2000 - 512) / 100 = 10.9, down to a multiple of 8
    assert fit_batch_size(peak, 1200 * mib) == 4  # 4.5: fewer than 8 are not rounded
    with pytest.raises(
        RuntimeError, match="one image needs 100 MiB beyond 512 MiB fixed, more than 80% of the 700 MiB"
    ):
        fit_batch_size(peak, 700 * mib)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the auto batch is probed on a CUDA device")
def test_the_auto_batch_fits_the_gpu(tiny_model, prompts, shard, tmp_path):
    from vlm_rationality.explain.batch_size import auto_batch_size

    device = torch.device("cuda")
    classifier = build_classifier(tiny_model, "prompt", prompts).to(device).eval()
    explain = HeatmapSettings().build()
    batch = auto_batch_size(explain, classifier, device)
    assert batch >= 8
    torch.cuda.reset_peak_memory_stats(device)
    images = torch.zeros(
        (batch, tiny_model.preprocess.image_size, tiny_model.preprocess.image_size, 3), dtype=torch.uint8, device=device
    )
    explain(classifier, classifier.model.preprocess(images), torch.zeros(batch, dtype=torch.long, device=device))
    assert torch.cuda.max_memory_allocated(device) < torch.cuda.get_device_properties(device).total_memory
    out = tmp_path / "auto.parquet"
    explain_shards(classifier, [shard], out, HeatmapSettings(batch_size="auto"), "h", device)
    assert read_metadata(out)["batch_size"] == batch
