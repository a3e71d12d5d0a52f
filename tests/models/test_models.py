import json

import open_clip
import pytest
import torch

from vlm_rationality.models import build_classifier, build_model, model_adapter
from vlm_rationality.models.checkpoint import load_state_dict, save_state_dict


def _images(model, n=3, seed=0):
    size = model.preprocess.image_size
    generator = torch.Generator().manual_seed(seed)
    return model.preprocess(torch.randint(0, 256, (n, size, size, 3), dtype=torch.uint8, generator=generator))


def test_attention_capture_leaves_outputs_and_weights_unchanged(any_tiny_model):
    model = any_tiny_model
    x = _images(model)
    keys_before = list(model.state_dict())
    with torch.no_grad():
        stock = model.encode_image(x)
        with model.capture_attention() as attention:
            captured = model.encode_image(x)
        after = model.encode_image(x)
    torch.testing.assert_close(captured, stock, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(after, stock, rtol=0, atol=0)
    assert list(model.state_dict()) == keys_before
    assert all("forward" not in vars(block.attn) for block in model.vision_blocks())
    blocks = len(model.vision_blocks())
    tokens = model.grid_size[0] * model.grid_size[1] + 1
    assert len(attention) == blocks
    assert attention[0].shape == (3, 4, tokens, tokens)  # every tiny config: 4 heads
    torch.testing.assert_close(attention[-1].sum(-1), torch.ones(3, 4, tokens))


def test_captured_attention_is_differentiable(any_tiny_model):
    x = _images(any_tiny_model, n=2).requires_grad_(True)
    with any_tiny_model.capture_attention() as attention:
        out = any_tiny_model.encode_image(x).sum()
    grads = torch.autograd.grad(out, attention)
    assert all(g is not None and g.abs().sum() > 0 for g in grads)


def test_patch_tokens_come_from_the_image_embeddings_own_forward_pass(any_tiny_model):
    x = _images(any_tiny_model, n=2).requires_grad_(True)
    embedding, patches = any_tiny_model.encode_image_tokens(x)
    torch.testing.assert_close(embedding, any_tiny_model.encode_image(x), rtol=1e-5, atol=1e-6)
    assert patches.shape == (2, *any_tiny_model.grid_size, any_tiny_model.embed_dim)
    # each token is its own patch's: the gradient of one image's tokens reaches that image only
    (grad,) = torch.autograd.grad(patches[0].sum(), x)
    assert grad[0].abs().sum() > 0 and grad[1].abs().sum() == 0


def test_custom_attention_blocks_are_probed(tmp_path):
    config = json.loads(open_clip.get_model_config("tiny-vit-32").__repr__().replace("'", '"'))
    config["vision_cfg"].update(block_type="custom", qk_norm=True)
    (tmp_path / "tiny-custom-attn.json").write_text(json.dumps(config))
    open_clip.add_model_config(tmp_path / "tiny-custom-attn.json")
    torch.manual_seed(0)
    model = build_model({"arch": "tiny-custom-attn"})
    assert type(model.vision_blocks()[0].attn).__name__ == "Attention"
    x = _images(model)
    with torch.no_grad():
        stock = model.encode_image(x)
        with model.capture_attention() as attention:
            captured = model.encode_image(x)
    torch.testing.assert_close(captured, stock, rtol=1e-5, atol=1e-5)
    assert len(attention) == len(model.vision_blocks())
    assert all("forward" not in vars(block.attn) for block in model.vision_blocks())


def test_checkpoint_file_reloads_to_identical_outputs(tiny_model, tmp_path, prompts):
    path = tmp_path / "base.safetensors"
    save_state_dict(tiny_model.backbone_state_dict(), path)
    reloaded = build_model({"arch": "tiny-vit-32", "pretrained": str(path)}).eval()
    x = _images(tiny_model)
    with torch.no_grad():
        torch.testing.assert_close(reloaded.encode_image(x), tiny_model.encode_image(x), rtol=0, atol=0)
        torch.testing.assert_close(reloaded.encode_text(prompts), tiny_model.encode_text(prompts), rtol=0, atol=0)
    assert reloaded.describe() == {"adapter": "open_clip", "arch": "tiny-vit-32", "pretrained": str(path)}
    assert set(load_state_dict(path)) == set(tiny_model.backbone_state_dict())


def test_open_clip_takes_another_input_size_resampling_the_position_embedding_as_open_clip_does(tiny_model, tmp_path):
    from open_clip.model import resize_pos_embed

    path = tmp_path / "base.safetensors"
    save_state_dict(tiny_model.backbone_state_dict(), path)  # 4x4 patches at 32 px
    spec = {"adapter": "open_clip", "arch": "tiny-vit-32", "pretrained": str(path), "image_size": 48}
    model = build_model(spec).eval()
    assert model.grid_size == (6, 6) and model.preprocess.image_size == 48
    assert model.describe() == spec  # what a checkpoint's sidecar rebuilds it from
    stored = {"visual.positional_embedding": tiny_model.model.visual.positional_embedding.detach().clone()}
    resize_pos_embed(stored, model.model)  # open_clip's own resampling, applied to the 32-px table
    pos = model.model.visual.positional_embedding.detach()
    torch.testing.assert_close(pos, stored["visual.positional_embedding"], rtol=0, atol=0)
    torch.testing.assert_close(pos[0], tiny_model.model.visual.positional_embedding[0].detach())  # CLS kept
    with torch.no_grad():
        assert model.encode_image(_images(model, n=2)).shape == (2, tiny_model.embed_dim)
    fine_tuned = tmp_path / "at48.safetensors"  # weights saved at 48 reload at 48 as they are
    save_state_dict(model.backbone_state_dict(), fine_tuned)
    reloaded = build_model({**spec, "pretrained": str(fine_tuned)}).eval()
    torch.testing.assert_close(reloaded.model.visual.positional_embedding, model.model.visual.positional_embedding)
    with pytest.raises(ValueError, match="image_size 50 is not a multiple of tiny-vit-32's patch size 8"):
        model_adapter({**spec, "image_size": 50}).check()


def test_prompt_head_gives_clip_image_text_logits(any_tiny_model, prompts):
    tiny_model = any_tiny_model
    classifier = build_classifier(tiny_model, "prompt", prompts)
    x = _images(tiny_model)
    with torch.no_grad():
        image = torch.nn.functional.normalize(tiny_model.encode_image(x), dim=-1)
        text = torch.nn.functional.normalize(tiny_model.encode_text(prompts), dim=-1)
        expected = tiny_model.logit_scale * image @ text.T
        torch.testing.assert_close(classifier(x), expected, rtol=1e-5, atol=1e-5)
    linear = build_classifier(tiny_model, "linear", prompts, init_from_prompts=True)
    with torch.no_grad():
        torch.testing.assert_close(linear(x), expected, rtol=1e-5, atol=1e-5)
    assert linear.head.weight.requires_grad and not classifier.head.weight.requires_grad


def test_a_prompt_ensemble_averages_unit_text_embeddings_per_class(any_tiny_model, prompts):
    model = any_tiny_model
    other = [prompt.replace("a photo of", "a drawing of") for prompt in prompts]
    ensemble = [list(pair) for pair in zip(prompts, other)]
    x = _images(model)
    with torch.no_grad():
        unit = [torch.nn.functional.normalize(model.encode_text(texts), dim=-1) for texts in (prompts, other)]
        text = torch.nn.functional.normalize(unit[0] + unit[1], dim=-1)  # the mean's direction
        image = torch.nn.functional.normalize(model.encode_image(x), dim=-1)
        expected = model.logit_scale * image @ text.T
        torch.testing.assert_close(build_classifier(model, "prompt", ensemble)(x), expected, rtol=1e-5, atol=1e-5)
        # one template given as an ensemble is that template's head
        alone = build_classifier(model, "prompt", [[prompt] for prompt in prompts])(x)
        torch.testing.assert_close(alone, build_classifier(model, "prompt", prompts)(x), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="the same number of prompts"):
        build_classifier(model, "prompt", [ensemble[0], ensemble[1][:1], *ensemble[2:]])


@pytest.mark.parametrize(
    "config, error, message",
    [
        ({"arch": "ViT-Q-99"}, KeyError, "unknown open_clip arch"),
        ({"arch": "tiny-vit-32", "pretrained": "/nowhere/base.safetensors"}, FileNotFoundError, "/nowhere/base"),
        ({"arch": "ViT-B-16", "pretrained": "not-a-tag"}, KeyError, "tags: .*openai"),
        ({"adapter": "lavis", "arch": "albef"}, KeyError, "unknown model adapter 'lavis'"),
        ({"arch": "RN50"}, NotImplementedError, "vision tower"),
    ],
)
def test_bad_model_configs_fail_clearly(config, error, message):
    with pytest.raises(error, match=message):
        build_model(config)


def test_hub_tag_without_network_names_the_fix():
    # open_clip would download ViT-B-32/openai; offline that must fail with a pointer to local files.
    with pytest.raises(RuntimeError, match="local file"):
        build_model({"arch": "ViT-B-32", "pretrained": "openai"})


def test_a_damaged_checkpoint_fails_naming_its_file(tmp_path):
    path = tmp_path / "ft.safetensors"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"ft\.safetensors is not a readable safetensors file.*rerun"):
        load_state_dict(path)


def test_texts_tokenized_once_give_the_embeddings_of_a_fresh_tokenization(tiny_model, prompts):
    from vlm_rationality.models import open_clip_model

    texts = [prompts[1], prompts[0], prompts[1], "a caption seen once"]
    fresh = tiny_model.model.encode_text(tiny_model.tokenizer(texts))
    assert torch.equal(tiny_model.encode_text(texts), fresh)
    assert torch.equal(tiny_model.encode_text(texts[::-1]), fresh.flip(0))  # from the cache, in the asked order
    assert set(texts) <= set(tiny_model._token_ids)
    kept = dict(tiny_model._token_ids)
    try:  # past the cache's bound, texts are tokenized afresh and not kept
        open_clip_model.TOKEN_CACHE = len(kept)
        assert torch.equal(
            tiny_model.encode_text(["one more caption", texts[0]]),
            tiny_model.model.encode_text(tiny_model.tokenizer(["one more caption", texts[0]])),
        )
        assert tiny_model._token_ids == kept
    finally:
        open_clip_model.TOKEN_CACHE = 1 << 16
