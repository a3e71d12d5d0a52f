import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from vlm_rationality.artefacts import HEATMAPS, read_prepared, write_prepared_shard
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
    path = tmp_path_factory.mktemp("prepared") / "shard-0000.parquet"
    write_prepared_shard(
        path, sample_ids=[s.sample_id for s in samples], labels=np.array([s.label for s in samples]),
        images=np.stack([s.image for s in samples]), masks=masks, sources=["synthetic"] * 11, config_hash="h",
    )
    return path


def test_heatmap_shard_schema_and_values(tiny_model, prompts, shard, tmp_path):
    classifier = build_classifier(tiny_model, "prompt", prompts)
    out = tmp_path / "heatmaps" / "shard-0000.parquet"
    summary = explain_shards(classifier, [shard], out, HeatmapSettings(batch_size=4), "cfg123")
    table = pq.read_table(out)
    assert table.column_names == [
        "sample_id", "label", "pred", "logits", "heatmap", "rma", "rma_status", "explained_class", "heatmap_method",
    ]
    assert str(table.schema.field("logits").type) == "fixed_size_list<element: halffloat>[8]"
    assert str(table.schema.field("heatmap").type) == "fixed_size_list<element: halffloat>[16]"
    meta = read_metadata(out)
    assert meta["schema"] == HEATMAPS and meta["config_hash"] == "cfg123" and meta["grid_size"] == [4, 4]

    prepared = read_prepared(shard)
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
    assert set(table.column("heatmap_method").to_pylist()) == {"chefer"}
    np.testing.assert_array_equal(table.column("pred").to_numpy(), reference.logits.argmax(1).numpy())
    assert summary == {"n": 11, "accuracy": pytest.approx(float((reference.logits.argmax(1) == labels).float().mean())),
                       "nonfinite_logits": 0, "undefined_rma": 1}


def test_bad_heatmap_settings_fail_clearly():
    with pytest.raises(KeyError, match="unknown heatmap method 'lime'"):
        HeatmapSettings(method="lime")
    with pytest.raises(KeyError, match="amp"):
        HeatmapSettings(amp="fp8")
