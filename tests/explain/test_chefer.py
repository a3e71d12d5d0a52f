import shutil

import pytest
import torch

from vlm_rationality.data.synthetic import SyntheticSpec, generate
from vlm_rationality.explain.chefer import Chefer, chefer_relevance_per_sample
from vlm_rationality.explain.rollout import Rollout
from vlm_rationality.models import build_classifier


@pytest.fixture(scope="module")
def images(tiny_model):
    samples = list(generate(SyntheticSpec(image_size=32), "test", 6))
    x = torch.stack([torch.from_numpy(s.image) for s in samples])
    return tiny_model.preprocess(x), torch.tensor([s.label for s in samples])


def _relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("kind", ["prompt", "linear"])
@pytest.mark.parametrize("target", ["label", "pred"])
@pytest.mark.parametrize("start_block", [0, 1])
def test_batched_rollout_matches_the_per_sample_oracle(any_tiny_model, prompts, kind, target, start_block):
    torch.manual_seed(1)
    classifier = build_classifier(any_tiny_model, kind, prompts, init_from_prompts=False)
    samples = list(generate(SyntheticSpec(image_size=any_tiny_model.preprocess.image_size), "test", 6))
    x = any_tiny_model.preprocess(torch.stack([torch.from_numpy(s.image) for s in samples]))
    labels = torch.tensor([s.label for s in samples])
    batched = Chefer(target, start_block)(classifier, x, labels)
    oracle = chefer_relevance_per_sample(classifier, x, labels, target, start_block)
    assert batched.relevance.shape == (6, *any_tiny_model.grid_size)
    assert oracle.relevance.abs().max() > 0
    assert _relative_error(batched.relevance, oracle.relevance) < 1e-4
    torch.testing.assert_close(batched.logits, oracle.logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(batched.explained_class, oracle.explained_class)
    expected = labels if target == "label" else oracle.logits.argmax(1)
    torch.testing.assert_close(batched.explained_class, expected)


def test_frozen_weights_still_get_heatmaps(tiny_model, prompts, images):
    classifier = build_classifier(tiny_model, "prompt", prompts)
    flags = [p.requires_grad for p in tiny_model.parameters()]
    tiny_model.requires_grad_(False)
    try:
        x, labels = images
        relevance = Chefer()(classifier, x, labels).relevance
    finally:
        for p, flag in zip(tiny_model.parameters(), flags):
            p.requires_grad_(flag)
    assert torch.isfinite(relevance).all() and relevance.abs().sum() > 0
    assert all(p.grad is None for p in tiny_model.parameters())


def test_bad_settings_fail_clearly(tiny_model, prompts, images):
    classifier = build_classifier(tiny_model, "prompt", prompts)
    x, labels = images
    with pytest.raises(ValueError, match="start_block 9"):
        Chefer(start_block=9)(classifier, x, labels)
    with pytest.raises(KeyError, match="heatmap target"):
        Chefer(target="gt")
    with pytest.raises(ValueError, match="fp16 heatmaps .* need a CUDA device"):
        Chefer(amp_dtype=torch.float16)(classifier, x, labels)


def test_bf16_maps_on_cpu_stay_near_the_fp32_maps(tiny_model, prompts, images):
    """bf16 autocast runs on CPU too, so its maps can be checked against fp32 without a GPU."""
    classifier = build_classifier(tiny_model, "prompt", prompts)
    x, labels = images
    exact, bf16 = (Chefer(amp_dtype=amp)(classifier, x, labels).relevance for amp in (None, torch.bfloat16))
    assert 0 < _relative_error(bf16, exact) < 5e-2  # not fp32 (bf16 did run), but close to it


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("amp", [None, torch.bfloat16])
def test_cuda_rollout_matches_cpu(tiny_model, prompts, images, amp):
    classifier = build_classifier(tiny_model, "prompt", prompts)
    x, labels = images
    cpu = Chefer()(classifier, x, labels).relevance
    gpu_classifier = build_classifier(tiny_model.cuda(), "prompt", prompts)
    try:
        gpu = Chefer(amp_dtype=amp)(gpu_classifier, x.cuda(), labels.cuda()).relevance.cpu()
    finally:
        tiny_model.cpu()
    assert _relative_error(gpu, cpu) < (1e-4 if amp is None else 5e-2)


@pytest.mark.skipif(
    shutil.which("g++") is None and shutil.which("c++") is None, reason="torch.compile on CPU needs a C++ compiler"
)
def test_the_compiled_attention_gives_the_eager_maps(tiny_model, prompts, images):
    """heatmaps.compile: the attention through torch.compile, split at the recorded probabilities, so the gradient
    with respect to them survives; maps and logits equal the eager ones to float rounding, for a batch of another
    size too (the job's last batch)."""
    classifier = build_classifier(tiny_model, "prompt", prompts)
    x, labels = images
    for method, n in ((Chefer, 6), (Chefer, 4), (Rollout, 6)):
        eager = method()(classifier, x[:n], labels[:n])
        compiled = method(compiled=True)(classifier, x[:n], labels[:n])
        assert eager.relevance.abs().max() > 0
        assert _relative_error(compiled.relevance, eager.relevance) < 1e-4
        torch.testing.assert_close(compiled.logits, eager.logits, rtol=1e-5, atol=1e-5)
