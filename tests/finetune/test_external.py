"""Classifiers fine-tuned elsewhere, loaded by `kind: external`: each file format a researcher brings, what the
loaded classifier computes, and the errors that name the key and the file."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import huggingface_hub
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from tests.snakemake_runs import SCHEMA, TEST_CONFIG
from vlm_rationality import open_clip_data
from vlm_rationality.finetune.base import build_method
from vlm_rationality.models import build_model
from vlm_rationality.models.checkpoint import load_classifier, save_classifier
from vlm_rationality.models.heads import build_classifier
from vlm_rationality.plan.config import ConfigError, check_config

TINY = {"adapter": "open_clip", "arch": "tiny-vit-32"}


@pytest.fixture(scope="module")
def elsewhere() -> torch.nn.Module:
    """A tiny CLIP 'fine-tuned elsewhere': the base's weights moved by noise, as an outside trainer leaves them."""
    model = build_model(TINY).eval()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in model.model.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    return model


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(2))


def loaded(method: dict, prompts: list[str]):
    return build_method({"kind": "external", **method}).fit(
        build_model(TINY).eval(), prompts, None, torch.device("cpu")
    )


def test_a_whole_state_dict_saved_by_a_ddp_trainer_classifies_with_the_prompts(elsewhere, images, prompts, tmp_path):
    state = {f"module.{k}": v for k, v in elsewhere.backbone_state_dict().items()}
    torch.save({"state_dict": state, "epoch": 3}, tmp_path / "wise-ft.pt")
    classifier, found = loaded({"weights": str(tmp_path / "wise-ft.pt")}, prompts)
    expected = build_classifier(elsewhere, "prompt", prompts)
    with torch.no_grad():
        torch.testing.assert_close(classifier(images), expected(images))
    assert found == {"loaded_keys": len(state), "base_keys_kept": 0} and classifier.kind == "prompt"


def test_an_image_tower_and_a_linear_head_are_the_lp_case(elsewhere, images, prompts, tmp_path):
    tower = {k: v for k, v in elsewhere.backbone_state_dict().items() if k.startswith("visual.")}
    save_file({k: v.contiguous() for k, v in tower.items()}, tmp_path / "tower.safetensors")
    weight, bias = torch.randn(len(prompts), elsewhere.embed_dim), torch.randn(len(prompts))
    torch.save({"weight": weight, "bias": bias}, tmp_path / "head.pt")
    for head in ("cosine", "linear"):
        method = {"weights": str(tmp_path / "tower.safetensors"), "linear_head": str(tmp_path / "head.pt")}
        classifier, found = loaded({**method, "head": head}, prompts)
        with torch.no_grad():
            embedding = elsewhere.encode_image(images)
            embedding = F.normalize(embedding, dim=-1) if head == "cosine" else embedding
            torch.testing.assert_close(classifier(images), embedding @ weight.T + bias)
        assert found["loaded_keys"] == len(tower) and found["base_keys_kept"] > 0  # the text tower: the base's


def test_a_checkpoint_of_this_project_is_the_same_classifier(elsewhere, images, prompts, tmp_path):
    save_classifier(build_classifier(elsewhere, "linear", prompts), tmp_path / "ft.safetensors", {"method": "ft"})
    classifier, _ = loaded({"checkpoint": str(tmp_path / "ft.safetensors")}, prompts)
    with torch.no_grad():
        torch.testing.assert_close(classifier(images), load_classifier(TINY, tmp_path / "ft.safetensors")(images))


def test_wrong_files_fail_naming_the_key_the_file_and_what_fits(elsewhere, prompts, tmp_path):
    torch.save(elsewhere, tmp_path / "pickled.pt")  # the whole module: Python objects, refused unread
    with pytest.raises(ValueError, match=r"pickled\.pt is refused.*set weights to that"):
        loaded({"weights": str(tmp_path / "pickled.pt")}, prompts)
    renamed = {f"clip.{k}": v for k, v in elsewhere.backbone_state_dict().items()}
    torch.save(renamed, tmp_path / "renamed.pt")
    with pytest.raises(ValueError, match=r"weights: .*renamed\.pt has \d+ key\(s\) the model's layout lacks"):
        loaded({"weights": str(tmp_path / "renamed.pt")}, prompts)
    text_only = {k: v for k, v in elsewhere.backbone_state_dict().items() if not k.startswith("visual.")}
    torch.save(text_only, tmp_path / "text.pt")
    with pytest.raises(ValueError, match=r"lacks \d+ key\(s\) of the image tower"):
        loaded({"weights": str(tmp_path / "text.pt")}, prompts)
    torch.save({"weight": torch.zeros(3, elsewhere.embed_dim)}, tmp_path / "head3.pt")
    with pytest.raises(ValueError, match=r"linear_head: .*head3\.pt holds weight \(3, \d+\); .* need weight \(8, "):
        loaded({"linear_head": str(tmp_path / "head3.pt"), "head": "cosine"}, prompts)
    with pytest.raises(FileNotFoundError, match="weights: .*absent.pt does not exist"):
        loaded({"weights": str(tmp_path / "absent.pt")}, prompts)


def check(methods: dict) -> str:
    config = copy.deepcopy(TEST_CONFIG)
    config["methods"] = {"zs": {"kind": "zs"}, **methods}
    with pytest.raises(ConfigError) as error:
        check_config(config, SCHEMA)
    return str(error.value)


def test_the_config_check_names_what_a_loaded_method_lacks(tmp_path):
    (tmp_path / "tiny-clip.pt").touch()
    assert "methods.ext: external loads a classifier; give checkpoint, or weights and/or linear_head" in check(
        {"ext": {"kind": "external"}}
    )
    both = {"checkpoint": str(tmp_path / "tiny-clip.pt"), "weights": str(tmp_path / "tiny-clip.pt")}
    assert "methods.ext: checkpoint is a whole classifier; give it alone" in check(
        {"ext": {"kind": "external", **both}}
    )
    head = {"kind": "external", "linear_head": str(tmp_path / "tiny-clip.pt")}
    assert "methods.ext.head: say what the linear head reads: cosine" in check({"ext": head})
    per_model = {"kind": "external", "weights": str(tmp_path / "{model}.pt"), "lr": 0.1}
    message = check({"ext": per_model, "other": {"kind": "external", "weights": str(tmp_path / "{dataset}.pt")}})
    assert "methods.ext.lr: external loads its classifier, so it takes no training setting" in message
    assert "methods.ext.weights" not in message  # {model} filled in: tiny-clip.pt is there
    assert (
        f"methods.other.weights: {tmp_path / 'tiny-synthetic.pt'} (dataset tiny-synthetic, model tiny-clip)" in message
    )
    assert "a path may hold {dataset} and {model} only" in check(
        {"ext": {"kind": "external", "weights": str(tmp_path / "{method}.pt")}}
    )


def fill_hub_cache(cache: Path, repo: str, model, weights: bool = True) -> Path:
    """The layout `huggingface-cli download <repo>` leaves: refs/main naming a snapshot folder with the files."""
    folder = cache / f"models--{repo.replace('/', '--')}"
    snapshot = folder / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text("0" * 40)
    config = {"model_cfg": open_clip_data.model_config("tiny-vit-32"), "preprocess_cfg": {"mean": [0.5] * 3}}
    (snapshot / "open_clip_config.json").write_text(json.dumps(config))
    if weights:
        state = {k: v.contiguous() for k, v in model.backbone_state_dict().items()}
        save_file(state, snapshot / "open_clip_model.safetensors")
    return snapshot


def test_an_hf_hub_model_is_read_from_a_filled_cache_without_the_network(elsewhere, images, tmp_path, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    fill_hub_cache(tmp_path / "hub", "lab/tiny-clip-ft", elsewhere)
    model = build_model({"adapter": "open_clip", "arch": "hf-hub:lab/tiny-clip-ft"}).eval()
    assert model.preprocess.mean == (0.5, 0.5, 0.5)  # the repository's own preprocessing
    with torch.no_grad():
        torch.testing.assert_close(model.model.encode_image(images), elsewhere.model.encode_image(images))
    config = copy.deepcopy(TEST_CONFIG)
    config["models"] = {"hub": {"adapter": "open_clip", "arch": "hf-hub:lab/tiny-clip-ft"}}
    check_config(config, SCHEMA)  # its architecture read from the cached config
    config["models"]["hub"]["pretrained"] = "openai"
    with pytest.raises(ConfigError, match="hf-hub:lab/tiny-clip-ft holds its own weights .* drop pretrained"):
        check_config(config, SCHEMA)
    config["models"] = {"hub": {"adapter": "open_clip", "arch": "hf-hub:lab/absent"}}
    with pytest.raises(ConfigError, match=r"lab/absent's open_clip_config.json is not in the local Hugging Face cache"):
        check_config(config, SCHEMA)
    fill_hub_cache(tmp_path / "hub", "lab/config-only", elsewhere, weights=False)
    config["models"] = {"hub": {"adapter": "open_clip", "arch": "hf-hub:lab/config-only"}}
    with pytest.raises(ConfigError, match="holds the config but no weights"):
        check_config(config, SCHEMA)


def test_a_checkpoint_of_this_project_given_as_pretrained_is_named_for_what_it_is(elsewhere, prompts, tmp_path):
    save_classifier(build_classifier(elsewhere, "linear", prompts), tmp_path / "ft.safetensors", {"method": "ft"})
    config = copy.deepcopy(TEST_CONFIG)
    config["models"] = {"mine": {**TINY, "pretrained": str(tmp_path / "ft.safetensors")}}
    named = r"models.mine: .*ft.safetensors is a classifier checkpoint of this project .* `kind: external`"
    with pytest.raises(ConfigError, match=named):
        check_config(config, SCHEMA)
