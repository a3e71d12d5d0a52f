"""The official code's protocol choices, each on a hand-made case (protocol.py, the settings it switches)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from tests.snakemake_runs import SCHEMA, TEST_CONFIG
from vlm_rationality.metrics.rationality import (
    UNDEFINED_POLICIES,
    category_counts,
    metrics_from_counts,
    resolve_undefined,
)
from vlm_rationality.plan import protocol
from vlm_rationality.plan.config import check_config
from vlm_rationality.plan.specs import checkpoint_method, finetune_spec, heatmap_spec


def test_undefined_rma_policies_move_pt_as_counted_by_hand():
    # 4 right: valid, invalid, constant map, empty mask; 2 wrong: valid, zero-mass map.
    correct = np.array([True, True, True, True, False, False])
    rma = np.array([0.9, 0.1, np.nan, np.nan, 0.8, np.nan])
    status = np.array(["ok", "ok", "constant_heatmap", "empty_mask", "ok", "zero_mass"], dtype=object)
    found = {
        p: metrics_from_counts(category_counts(correct, resolve_undefined(rma, status, p), 0.5))
        for p in UNDEFINED_POLICIES
    }
    # exclude: RR=1, RW=1 -> 1/2; valid: the constant map joins RR, the empty mask RW -> 2/4; invalid: RR=1 of 4.
    assert found["exclude"]["prediction_trustworthiness"] == pytest.approx(1 / 2)
    assert found["valid"]["prediction_trustworthiness"] == pytest.approx(2 / 4)
    assert found["invalid"]["prediction_trustworthiness"] == pytest.approx(1 / 4)
    # IR: exclude RR/(RR+WR) = 1/2; valid: the zero-mass wrong one is WR too -> 2/(2+2); invalid -> 1/2.
    assert found["valid"]["inference_reliability"] == pytest.approx(2 / 4)
    assert found["invalid"]["inference_reliability"] == pytest.approx(1 / 2)
    assert all(found[p]["accuracy"] == pytest.approx(4 / 6) for p in found)  # accuracy never depends on the policy


def test_the_linear_head_gives_the_logits_of_a_plain_linear_layer_on_unnormalised_features(
    tiny_model, prompts, tmp_path
):
    from vlm_rationality.models import build_classifier
    from vlm_rationality.models.checkpoint import load_classifier, save_classifier

    torch.manual_seed(0)
    classifier = build_classifier(tiny_model, "linear", prompts, head_input="linear")
    plain = nn.Linear(tiny_model.embed_dim, len(prompts))
    plain.load_state_dict(classifier.head.state_dict())
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        features = tiny_model.encode_image(images)
        assert not torch.allclose(features.norm(dim=-1), torch.ones(3))  # the features really are unnormalised
        torch.testing.assert_close(classifier(images), plain(features))
        # nn.Linear's own init (bias included), not the prompt rows at the logit scale of the cosine head
        assert classifier.head.bias.abs().sum() > 0
        cosine = build_classifier(tiny_model, "linear", prompts)
        torch.testing.assert_close(cosine(images), cosine.head(nn.functional.normalize(features, dim=-1)))
    save_classifier(classifier, tmp_path / "lp.safetensors", {})
    reloaded = load_classifier({"adapter": "open_clip", "arch": "tiny-vit-32"}, tmp_path / "lp.safetensors")
    assert reloaded.head_input == "linear"
    with torch.no_grad():
        torch.testing.assert_close(reloaded(images), classifier(images))


def test_a_last_block_rollout_equals_start_block_depth_minus_one_and_the_per_sample_oracle(tiny_model, prompts):
    from vlm_rationality.explain.chefer import chefer_relevance_per_sample
    from vlm_rationality.explain.heatmaps import HeatmapSettings
    from vlm_rationality.models import build_classifier

    classifier = build_classifier(tiny_model, "prompt", prompts)
    images, labels = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    depth = len(tiny_model.vision_blocks())
    last = HeatmapSettings(start_block=-1).build()(classifier, images, labels)
    explicit = HeatmapSettings(start_block=depth - 1).build()(classifier, images, labels)
    every = HeatmapSettings(start_block=0).build()(classifier, images, labels)
    torch.testing.assert_close(last.relevance, explicit.relevance)
    assert not torch.allclose(last.relevance, every.relevance)
    oracle = chefer_relevance_per_sample(classifier, images, labels, start_block=-1)
    torch.testing.assert_close(last.relevance, oracle.relevance, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="start_block -3 is outside"):
        HeatmapSettings(start_block=-depth - 1).build()(classifier, images, labels)


def test_a_model_normalisation_replaces_the_models_own(tiny_model):
    from vlm_rationality.models import build_model

    imagenet = build_model({"arch": "tiny-vit-32", "normalization": protocol.IMAGENET_NORMALIZATION})
    assert imagenet.preprocess.mean == (0.485, 0.456, 0.406) and imagenet.preprocess.std == (0.229, 0.224, 0.225)
    assert tiny_model.preprocess.mean != imagenet.preprocess.mean
    images = torch.full((1, 32, 32, 3), 128, dtype=torch.uint8)
    expected = (128 / 255 - 0.485) / 0.229
    assert imagenet.preprocess(images)[0, 0, 0, 0].item() == pytest.approx(expected, rel=1e-5)


@pytest.fixture
def config():
    config = copy.deepcopy(TEST_CONFIG)
    check_config(config, SCHEMA)
    return config


def test_each_switch_makes_variants_of_exactly_the_methods_it_changes(config):
    made = protocol.variants(config)
    assert made == {
        "undefined_rma": [],  # re-scores the same heatmaps
        "rollout_depth": ["zs@rollout_depth", "flcp@rollout_depth"],
        "head": ["lp@head", "ft@head"],
        "precision": [],  # fp16 needs CUDA; the test config runs on CPU
        "normalization": ["zs@normalization", "lp@normalization", "flcp@normalization", "ft@normalization"],
    }
    assert protocol.describe(config)[1] == {"precision": "fp16 heatmaps need CUDA; run with device: cuda"}
    config["methods"]["flcp"]["heatmaps"] = {"start_block": -1}  # already the official choice: nothing to switch
    assert protocol.variants(config)["rollout_depth"] == ["zs@rollout_depth"]
    config["protocol_sensitivity"]["switches"] = ["undefined_rma", "head"]
    assert protocol.variants(config) == {"undefined_rma": [], "head": ["lp@head", "ft@head"]}
    assert list(protocol.describe(config)[0]) == ["undefined_rma", "head"]


def test_a_variant_reuses_its_bases_checkpoint_unless_training_changes(config):
    assert heatmap_spec(config, "chefer", "flcp@rollout_depth")["start_block"] == -1
    assert heatmap_spec(config, "chefer", "flcp")["start_block"] == 0
    assert finetune_spec(config, "flcp@rollout_depth") == finetune_spec(config, "flcp")
    assert checkpoint_method(config, "tiny-clip", "flcp@rollout_depth") == "flcp"
    head = finetune_spec(config, "ft@head")
    assert head["head"] == "linear" and "head_init" not in head  # the official head keeps nn.Linear's init
    assert checkpoint_method(config, "tiny-clip", "ft@head") == "ft@head"
    assert checkpoint_method(config, "tiny-clip", "lp@normalization") == "lp@normalization"  # the model changes
    assert (
        protocol.model_entry(config, "tiny-clip", "zs@normalization")["normalization"]
        == protocol.IMAGENET_NORMALIZATION
    )
    with pytest.raises(KeyError, match="unknown protocol switch 'fp8'"):
        protocol.method_entry(config, "zs@fp8")
    with pytest.raises(KeyError, match="does not apply to method 'zs'"):
        protocol.method_entry(config, "zs@head")
