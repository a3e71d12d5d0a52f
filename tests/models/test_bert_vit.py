"""ALBEF and BLIP adapters against an independent reference of their ITC path, on files in the official layout."""

from __future__ import annotations

import copy
import logging
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from tests.fixtures import wordpiece_vocab
from tests.snakemake_runs import SCHEMA
from vlm_rationality.models import build_model
from vlm_rationality.plan import config as settings

ADAPTERS = ["albef", "blip"]
TEXT_PREFIX = {"albef": "text_encoder.bert.", "blip": "text_encoder."}
PROMPTS = ["a photo of a circle", "a red star on waves", "an arrow"]  # different lengths: padding is masked


def _tiny(adapter: str, vocab: Path, **extra) -> torch.nn.Module:
    return build_model({"adapter": adapter, "arch": f"tiny-{adapter}", "tokenizer": str(vocab), **extra}).eval()


def _images(n: int = 3, size: int = 32) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(0))


def _official_file(adapter: str, model, path: Path) -> dict[str, torch.Tensor]:
    """The model's ITC tensors, perturbed away from their initialisation, plus what an official checkpoint
    also holds (fusion/cross-attention layers, heads, momentum encoders, queues), saved as {'model': ...}."""
    generator = torch.Generator().manual_seed(1)
    state = {k: v + 0.05 * torch.randn(v.shape, generator=generator) for k, v in model.backbone_state_dict().items()}
    state["temp"] = torch.tensor(0.05)
    prefix = TEXT_PREFIX[adapter]
    extra = {
        "itm_head.weight": torch.randn(2, 32),
        "itm_head.bias": torch.zeros(2),
        "image_queue": torch.randn(32, 8),
        "text_queue": torch.randn(32, 8),
        "queue_ptr": torch.zeros(1, dtype=torch.long),
        f"{prefix}embeddings.position_ids": torch.arange(32)[None],
        **{
            f"visual_encoder_m.{k[len('visual_encoder.') :]}": v
            for k, v in state.items()
            if k.startswith("visual_encoder.")
        },
    }
    if adapter == "albef":  # layers 2-3 of the tiny BERT are fusion layers, and there is an MLM head
        extra.update(
            {f"{prefix}encoder.layer.{i}.crossattention.self.query.weight": torch.randn(32, 32) for i in (2, 3)}
        )
        extra.update({f"{prefix}encoder.layer.{i}.output.dense.weight": torch.randn(32, 64) for i in (2, 3)})
        extra["text_encoder.cls.predictions.bias"] = torch.zeros(64)
    else:  # BLIP: cross-attention in every layer, and a decoder
        extra.update(
            {f"{prefix}encoder.layer.{i}.crossattention.self.query.weight": torch.randn(32, 32) for i in (0, 1)}
        )
        extra["text_decoder.cls.predictions.bias"] = torch.zeros(66)
    state.update(extra)
    torch.save({"model": state, "config": {"image_res": 32, "embed_dim": 32}, "epoch": 29}, path)
    return state


def _reference_image(state: dict[str, torch.Tensor], x: torch.Tensor, patch: int, heads: int) -> torch.Tensor:
    """ViT-B-style tower written out from the file's tensors: pre-norm blocks, LayerNorm eps 1e-6, CLS token."""
    p = lambda name: state[f"visual_encoder.{name}"]  # noqa: E731
    tokens = (
        F.conv2d(x, p("patch_embed.proj.weight"), p("patch_embed.proj.bias"), stride=patch).flatten(2).transpose(1, 2)
    )
    h = torch.cat([p("cls_token").expand(len(x), -1, -1), tokens], 1) + p("pos_embed")
    width, layers = h.shape[-1], 1 + max(int(k.split(".")[2]) for k in state if k.startswith("visual_encoder.blocks."))
    norm = lambda t, name: F.layer_norm(t, (width,), p(f"{name}.weight"), p(f"{name}.bias"), 1e-6)  # noqa: E731
    for i in range(layers):
        b = f"blocks.{i}."
        q, k, v = F.linear(norm(h, b + "norm1"), p(b + "attn.qkv.weight"), p(b + "attn.qkv.bias")).chunk(3, -1)
        q, k, v = (t.unflatten(-1, (heads, -1)).transpose(1, 2) for t in (q, k, v))
        attn = ((q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])).softmax(-1) @ v
        h = h + F.linear(attn.transpose(1, 2).flatten(2), p(b + "attn.proj.weight"), p(b + "attn.proj.bias"))
        mlp = F.gelu(F.linear(norm(h, b + "norm2"), p(b + "mlp.fc1.weight"), p(b + "mlp.fc1.bias")))
        h = h + F.linear(mlp, p(b + "mlp.fc2.weight"), p(b + "mlp.fc2.bias"))
    return F.linear(norm(h, "norm")[:, 0], state["vision_proj.weight"], state["vision_proj.bias"])


def _reference_text(state, prefix: str, ids: torch.Tensor, mask: torch.Tensor, layers: int, heads: int) -> torch.Tensor:
    """BERT in text mode written out from the file's tensors: post-norm layers, eps 1e-12, the first `layers` only."""
    p = lambda name: state[f"{prefix}{name}"]  # noqa: E731
    h = p("embeddings.word_embeddings.weight")[ids] + p("embeddings.position_embeddings.weight")[: ids.shape[1]]
    if f"{prefix}embeddings.token_type_embeddings.weight" in state:
        h = h + p("embeddings.token_type_embeddings.weight")[0]
    width = h.shape[-1]
    norm = lambda t, name: F.layer_norm(t, (width,), p(f"{name}.weight"), p(f"{name}.bias"), 1e-12)  # noqa: E731
    lin = lambda t, name: F.linear(t, p(f"{name}.weight"), p(f"{name}.bias"))  # noqa: E731
    h = norm(h, "embeddings.LayerNorm")
    bias = torch.zeros(mask.shape).masked_fill(mask == 0, float("-inf"))[:, None, None, :]
    for i in range(layers):
        b = f"encoder.layer.{i}."
        q, k, v = (
            lin(h, b + f"attention.self.{n}").unflatten(-1, (heads, -1)).transpose(1, 2)
            for n in ("query", "key", "value")
        )
        attn = ((q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1]) + bias).softmax(-1) @ v
        h = norm(
            h + lin(attn.transpose(1, 2).flatten(2), b + "attention.output.dense"), b + "attention.output.LayerNorm"
        )
        h = norm(h + lin(F.gelu(lin(h, b + "intermediate.dense")), b + "output.dense"), b + "output.LayerNorm")
    return F.linear(h[:, 0], state["text_proj.weight"], state["text_proj.bias"])


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_an_official_checkpoint_loads_and_matches_the_reference(adapter, tiny_vocab, tmp_path, caplog):
    path = tmp_path / f"{adapter}.pth"
    state = _official_file(adapter, _tiny(adapter, tiny_vocab), path)
    with caplog.at_level(logging.INFO):
        model = _tiny(adapter, tiny_vocab, pretrained=str(path))
    assert (
        "itm_head ×2" in caplog.text
        and "visual_encoder_m.blocks.{0..3}" in caplog.text
        and "queue_ptr ×1" in caplog.text
    )
    x = _images()
    tokens = model.tokenizer(PROMPTS, padding="longest", return_tensors="pt")
    assert (tokens.attention_mask == 0).any()
    with torch.no_grad():
        torch.testing.assert_close(
            model.encode_image(x), _reference_image(state, x, patch=8, heads=4), rtol=1e-4, atol=1e-5
        )
        expected_text = _reference_text(
            state, TEXT_PREFIX[adapter], tokens.input_ids, tokens.attention_mask, layers=2, heads=2
        )
        torch.testing.assert_close(model.encode_text(PROMPTS), expected_text, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(model.logit_scale.detach(), torch.tensor(20.0))
    assert model.describe() == {
        "adapter": adapter,
        "arch": f"tiny-{adapter}",
        "tokenizer": str(tiny_vocab),
        "pretrained": str(path),
        "image_size": 32,
    }


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_the_written_layout_reloads_to_identical_features(adapter, tiny_vocab, tmp_path):
    path = tmp_path / "official.pth"
    _official_file(adapter, _tiny(adapter, tiny_vocab), path)
    trained = _tiny(adapter, tiny_vocab, pretrained=str(path))
    written = trained.backbone_state_dict()
    assert all(
        k.startswith(("visual_encoder.", TEXT_PREFIX[adapter], "vision_proj.", "text_proj.")) or k == "temp"
        for k in written
    )
    fresh = _tiny(adapter, tiny_vocab)
    fresh.load_backbone_state_dict(written)
    x = _images()
    with torch.no_grad():
        torch.testing.assert_close(fresh.encode_image(x), trained.encode_image(x), rtol=0, atol=0)
        torch.testing.assert_close(fresh.encode_text(PROMPTS), trained.encode_text(PROMPTS), rtol=0, atol=0)


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_a_truncated_or_mismatched_checkpoint_fails_naming_the_keys(adapter, tiny_vocab, tmp_path):
    model = _tiny(adapter, tiny_vocab)
    state = model.backbone_state_dict()
    truncated = {
        k: v for k, v in state.items() if k not in ("visual_encoder.blocks.3.attn.qkv.weight", "text_proj.bias")
    }
    with pytest.raises(
        ValueError, match=r"2 tensors .* missing.*visual_encoder\.blocks\.3\.attn\.qkv\.weight.*text_proj\.bias"
    ):
        model.load_backbone_state_dict(truncated)
    with pytest.raises(ValueError, match=r"vision_proj\.weight \(16, 64\) in the file, \(32, 64\) in tiny-"):
        model.load_backbone_state_dict({**state, "vision_proj.weight": torch.zeros(16, 64)})
    with pytest.raises(ValueError, match=r"unexpected tensors itm_head ×1"):
        model.load_backbone_state_dict({**state, "itm_head.weight": torch.zeros(2, 32)})
    torch.save({"model": truncated}, tmp_path / "truncated.pth")
    with pytest.raises(ValueError, match=r"truncated\.pth: 2 tensors"):
        _tiny(adapter, tiny_vocab, pretrained=str(tmp_path / "truncated.pth"))
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(ValueError, match=r"list\.pth holds no state dict"):
        _tiny(adapter, tiny_vocab, pretrained=str(tmp_path / "list.pth"))
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        _tiny(adapter, tiny_vocab, pretrained=str(tmp_path / "nowhere.pth"))


def test_the_position_embedding_follows_another_input_size(tiny_vocab, tmp_path):
    path = tmp_path / "albef.pth"
    state = _official_file("albef", _tiny("albef", tiny_vocab), path)  # 4x4 patches at 32 px
    model = _tiny("albef", tiny_vocab, pretrained=str(path), image_size=48)
    assert model.grid_size == (6, 6) and model.preprocess.image_size == 48
    pos = model.visual_encoder.pos_embed.detach()
    torch.testing.assert_close(pos[:, 0], state["visual_encoder.pos_embed"][:, 0])  # the CLS position is kept
    with torch.no_grad():
        assert model.encode_image(_images(2, 48)).shape == (2, 32)
    state["visual_encoder.pos_embed"] = torch.zeros(1, 20, 64)  # not a square grid
    torch.save({"model": state}, path)
    with pytest.raises(ValueError, match=r"pos_embed \(1, 20, 64\) in the file, \(1, 37, 64\)"):
        _tiny("albef", tiny_vocab, pretrained=str(path), image_size=48)


def test_a_missing_or_wrong_vocabulary_fails_clearly(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises((ValueError, FileNotFoundError), match=r"tokenizer '.*empty'"):
        build_model({"adapter": "blip", "arch": "tiny-blip", "tokenizer": str(tmp_path / "empty")})
    wrong = wordpiece_vocab(tmp_path / "wrong", 70)
    with pytest.raises(ValueError, match=r"has 70 tokens, the architecture expects 64"):
        build_model({"adapter": "albef", "arch": "tiny-albef", "tokenizer": str(wrong)})
    with pytest.raises(KeyError, match=r"unknown blip arch 'BLIP-ViT-L-99'; known: BLIP-ViT-B-16, tiny-blip"):
        build_model({"adapter": "blip", "arch": "BLIP-ViT-L-99", "tokenizer": str(wrong)})


def test_config_check_names_the_model_key(tiny_vocab):
    config = yaml.safe_load((Path(__file__).resolve().parents[2] / ".test" / "config.yaml").read_text())
    good = copy.deepcopy(config)
    good["models"]["tiny-albef"] = {"adapter": "albef", "arch": "tiny-albef", "tokenizer": str(tiny_vocab)}
    settings.check_config(good, SCHEMA)
    bad = copy.deepcopy(good)
    bad["models"]["tiny-albef"]["tokenizer"] = "/nowhere/bert-base-uncased"
    with pytest.raises(settings.ConfigError, match=r"models\.tiny-albef: tokenizer '/nowhere/bert-base-uncased'"):
        settings.check_config(bad, SCHEMA)
    bad["models"]["tiny-albef"].update(tokenizer=str(tiny_vocab), pretrained="/nowhere/ALBEF.pth")
    with pytest.raises(settings.ConfigError, match=r"models\.tiny-albef: pretrained: .*/nowhere/ALBEF\.pth"):
        settings.check_config(bad, SCHEMA)


# Published sizes: ViT-B/16 without its classifier has 85,798,656 parameters at 224 px (+60x768 positions at
# 256 px); bert-base-uncased without its pooler 108,891,648, of which 23,837,184 are embeddings and 7,087,872
# each layer; the two projections 768->256 with biases 393,728; plus the temperature.
@pytest.mark.parametrize(
    "adapter, arch, vision, text, size",
    [
        ("albef", "ALBEF-ViT-B-16", 85_798_656 + 60 * 768, 23_837_184 + 6 * 7_087_872, 256),
        ("blip", "BLIP-ViT-B-16", 85_798_656, 108_891_648, 224),
    ],
)
def test_the_full_size_models_build_with_their_published_sizes(adapter, arch, vision, text, size, tmp_path):
    model = build_model({"adapter": adapter, "arch": arch, "tokenizer": str(wordpiece_vocab(tmp_path, 30_522))})
    count = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
    assert count(model.visual_encoder) == vision and count(model.text_encoder) == text
    assert count(model) == vision + text + 393_728 + 1
    assert model.grid_size == (size // 16, size // 16) and len(model.vision_blocks()) == 12
    with torch.no_grad():
        assert model.encode_image(torch.zeros(1, 3, size, size)).shape == (1, 256)
        assert model.encode_text(["a photo of a circle"]).shape == (1, 256)
