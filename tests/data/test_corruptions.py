import numpy as np
import pytest

from vlm_rationality.data.corruptions import CORRUPTIONS, SEVERITIES, all_shifts, apply_shift, parse_shift


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(2, 32, 32, 3), dtype=np.uint8)


@pytest.mark.parametrize("corruption", CORRUPTIONS)
def test_every_corruption_and_severity_keeps_dtype_and_shape(images, corruption):
    for severity in SEVERITIES:
        out = apply_shift(images, ["a", "b"], f"{corruption}-{severity}")
        assert out.dtype == np.uint8 and out.shape == images.shape
        assert not np.array_equal(out, images)


def test_corruptions_are_seeded_per_sample(images):
    a = apply_shift(images, ["x", "y"], "gaussian_noise-3")
    b = apply_shift(images, ["x", "y"], "gaussian_noise-3")
    np.testing.assert_array_equal(a, b)
    swapped = apply_shift(images[::-1], ["y", "x"], "gaussian_noise-3")
    np.testing.assert_array_equal(swapped[::-1], a)  # a sample's corruption does not depend on its batch place
    other = apply_shift(images, ["x", "z"], "gaussian_noise-3")
    assert not np.array_equal(other[1], a[1])
    state = np.random.get_state()[1].copy()
    apply_shift(images, ["x", "y"], "shot_noise-2")
    np.testing.assert_array_equal(np.random.get_state()[1], state)  # numpy's global generator is left alone


def test_shift_names():
    assert parse_shift("clean") is None and parse_shift("zoom_blur-5") == ("zoom_blur", 5)
    assert len(all_shifts()) == 1 + 15 * 5
    for bad in ("zoom_blur-6", "blur-2", "gaussian_noise", "clean-1"):
        with pytest.raises(ValueError, match="corruption"):
            parse_shift(bad)
