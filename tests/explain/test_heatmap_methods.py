"""Every registered heatmap method on every tiny model (open_clip, ALBEF, BLIP): the explain contract's invariants,
and each method against an independent reference."""

import numpy as np
import pytest
import torch

from vlm_rationality.data.synthetic import SyntheticSpec, generate
from vlm_rationality.explain.base import HEATMAP_METHODS
from vlm_rationality.models import build_classifier, build_model


def _batch(model, n: int = 6):
    samples = list(generate(SyntheticSpec(image_size=model.preprocess.image_size), "test", n))
    images = model.preprocess(torch.stack([torch.from_numpy(s.image) for s in samples]))
    return images, torch.tensor([s.label for s in samples])


def _relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.fixture(scope="module")
def case(any_tiny_model, prompts):
    torch.manual_seed(1)
    classifier = build_classifier(any_tiny_model, "linear", prompts, init_from_prompts=False)
    return classifier, *_batch(any_tiny_model)


@pytest.mark.parametrize("name", list(HEATMAP_METHODS))
def test_maps_are_finite_non_negative_patch_grids(case, name):
    classifier, images, labels = case
    result = HEATMAP_METHODS.get(name)()(classifier, images, labels)
    assert result.relevance.shape == (len(images), *classifier.model.grid_size)
    assert result.relevance.dtype == torch.float32
    assert torch.isfinite(result.relevance).all() and (result.relevance >= 0).all()
    # Grad-CAM's ReLU may zero a whole map (every patch against the class): RMA counts it as zero_mass.
    assert result.relevance.flatten(1).sum(1).gt(0).sum() >= len(images) - 1
    torch.testing.assert_close(result.explained_class, labels)


@pytest.mark.parametrize("name", list(HEATMAP_METHODS))
def test_a_sample_map_does_not_depend_on_its_batch_mates(case, name):
    classifier, images, labels = case
    method = HEATMAP_METHODS.get(name)()
    whole = method(classifier, images, labels).relevance
    scale = float(whole.abs().max())  # a map may be all zero (Grad-CAM), so tolerances scale with the batch's
    for i in (0, 3):
        alone = method(classifier, images[i : i + 1], labels[i : i + 1]).relevance
        assert float((whole[i : i + 1] - alone).abs().max()) < 1e-5 * scale
    shuffled = method(classifier, images.flip(0), labels.flip(0)).relevance.flip(0)
    assert _relative_error(shuffled, whole) < 1e-5


@pytest.mark.parametrize("name", list(HEATMAP_METHODS))
def test_maps_are_deterministic_and_leave_the_model_outputs_unchanged(case, name):
    classifier, images, labels = case
    method = HEATMAP_METHODS.get(name)()
    first, second = method(classifier, images, labels), method(classifier, images, labels)
    assert torch.equal(first.relevance, second.relevance)
    with torch.no_grad():
        plain = classifier(images).float()
    torch.testing.assert_close(first.logits, plain, rtol=1e-5, atol=1e-5)
    assert not first.logits.requires_grad and not first.relevance.requires_grad


@pytest.mark.parametrize("name", list(HEATMAP_METHODS))
def test_methods_work_inside_an_outer_no_grad(case, name):
    classifier, images, labels = case
    method = HEATMAP_METHODS.get(name)()
    with torch.no_grad():
        inside = method(classifier, images, labels).relevance
    assert torch.equal(inside, method(classifier, images, labels).relevance)


@pytest.mark.parametrize("name", [n for n in HEATMAP_METHODS if HEATMAP_METHODS.get(n).uses_gradients])
def test_gradient_methods_explain_the_asked_class(case, name):
    classifier, images, labels = case
    method = HEATMAP_METHODS.get(name)()
    other = (labels + 1) % classifier.num_classes
    assert (
        _relative_error(method(classifier, images, labels).relevance, method(classifier, images, other).relevance)
        > 1e-3
    )
    pred = HEATMAP_METHODS.get(name)(target="pred")(classifier, images, labels)
    torch.testing.assert_close(pred.explained_class, pred.logits.argmax(1))


def rollout_per_sample(classifier, images: torch.Tensor, start_block: int) -> torch.Tensor:
    """Abnar & Zuidema's rollout with the full N×N matrices, one image at a time: the oracle of `rollout`."""
    model, maps = classifier.model, []
    for image in images:
        with torch.no_grad(), model.capture_attention() as attention:
            classifier(image[None])
        tokens = attention[0].shape[-1]
        product = torch.eye(tokens)
        for attn in attention[start_block:]:
            mixed = attn[0].mean(dim=0) + torch.eye(tokens)
            product = (mixed / mixed.sum(dim=1, keepdim=True)) @ product
        maps.append(product[0, 1:].reshape(model.grid_size))
    return torch.stack(maps)


@pytest.mark.parametrize("start_block", [0, 1])
def test_rollout_equals_the_full_matrix_product(case, start_block):
    classifier, images, labels = case
    batched = HEATMAP_METHODS.get("rollout")(start_block=start_block)(classifier, images, labels).relevance
    assert _relative_error(batched, rollout_per_sample(classifier, images, start_block)) < 1e-5


def test_gradcam_equals_pytorch_grad_cam(prompts):
    """Compared after pytorch-grad-cam's own post-processing applied to both (per layer: min-max with its 1e-7
    epsilon, cv2 bilinear resize to the input size; then min-max again over the layers' mean): that is where
    both compute the same thing, since its output is resized while ours stays on the patch grid for RMA.
    Same layer: the last block's first LayerNorm, CLS token dropped, patches on their grid."""
    gradcam = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.image import scale_cam_image
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model = build_model({"adapter": "open_clip", "arch": "tiny-vit-32"}).eval()  # its own: grad-cam fills .grad
    torch.manual_seed(2)
    classifier = build_classifier(model, "linear", prompts, init_from_prompts=False)
    images, labels = _batch(model)
    height, width = model.grid_size

    def tokens_to_grid(tokens: torch.Tensor) -> torch.Tensor:  # [B, 1 + h·w, D] -> [B, D, h, w]
        return tokens[:, 1:].reshape(tokens.shape[0], height, width, -1).permute(0, 3, 1, 2)

    with gradcam.GradCAM(classifier, [model.vision_block_norms()[-1]], reshape_transform=tokens_to_grid) as cam:
        reference = cam(images, [ClassifierOutputTarget(int(c)) for c in labels])
    ours = HEATMAP_METHODS.get("gradcam")()(classifier, images, labels).relevance.numpy()
    ours = scale_cam_image(scale_cam_image(ours, (images.shape[-1], images.shape[-2])))
    assert reference.shape == ours.shape == (len(images), *images.shape[-2:])
    assert np.abs(ours - reference).max() / np.abs(reference).max() < 1e-4
