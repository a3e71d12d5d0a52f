import math

import numpy as np
import pytest
import torch

from vlm_rationality.metrics.rationality import (
    CATEGORIES,
    bootstrap_intervals,
    category_counts,
    metrics_from_counts,
    rationality,
)
from vlm_rationality.metrics.rma import STATUSES, relevance_mass_accuracy, upsample


def test_rma_by_hand():
    # A 1x2 grid [0, 1] upsampled to 2x4 (bilinear, align_corners=False) is [0, .25, .75, 1] on each row;
    # min-max keeps it; the mask covers the right half: RMA = 2*(.75+1) / 2*(0+.25+.75+1) = 0.875.
    relevance = torch.tensor([[[0.0, 1.0]]])
    torch.testing.assert_close(upsample(relevance, (2, 4))[0, 0], torch.tensor([0.0, 0.25, 0.75, 1.0]))
    mask = torch.zeros(1, 2, 4, dtype=torch.bool)
    mask[..., 2:] = True
    rma, status = relevance_mass_accuracy(relevance, mask)
    assert rma.item() == pytest.approx(0.875) and STATUSES[status.item()] == "ok"
    # Min-max normalisation makes RMA invariant to shift and positive scale of the heatmap.
    rma2, _ = relevance_mass_accuracy(relevance * 7 + 3, mask)
    assert rma2.item() == pytest.approx(0.875)
    # The whole image as mask gives 1; the mirrored mask gives the complement.
    assert relevance_mass_accuracy(relevance, torch.ones_like(mask))[0].item() == pytest.approx(1.0)
    assert relevance_mass_accuracy(relevance, ~mask)[0].item() == pytest.approx(0.125)


def test_rma_undefined_cases_are_nan_with_a_reason():
    relevance = torch.tensor(
        [
            [[0.0, 1.0], [2.0, 3.0]],  # fine
            [[0.0, 1.0], [2.0, 3.0]],  # empty mask
            [[5.0, 5.0], [5.0, 5.0]],  # constant
            [[0.0, 0.0], [0.0, 0.0]],  # sum H = 0
            [[0.0, float("nan")], [1.0, 2.0]],  # non-finite
        ]
    )
    masks = torch.ones(5, 4, 4, dtype=torch.bool)
    masks[1] = False
    rma, status = relevance_mass_accuracy(relevance, masks)
    assert [STATUSES[s] for s in status.tolist()] == [
        "ok",
        "empty_mask",
        "constant_heatmap",
        "zero_mass",
        "nonfinite_heatmap",
    ]
    assert rma[0].item() == pytest.approx(1.0)
    assert torch.isnan(rma[1:]).all()


@pytest.mark.parametrize("value, grid, size", [(0.3, 8, 64), (0.1, 16, 224), (0.7, 14, 224)])
def test_a_constant_patch_grid_is_constant_after_upsampling(value, grid, size):
    """Regression: float32 bilinear upsampling leaves a span of about 1e-8 on a constant grid, which min-max
    used to stretch into a map with an RMA and status ok."""
    relevance = torch.full((1, grid, grid), value)
    mask = torch.zeros(1, size, size, dtype=torch.bool)
    mask[:, : size // 2] = True
    rma, status = relevance_mass_accuracy(relevance, mask)
    assert STATUSES[status.item()] == "constant_heatmap" and math.isnan(rma.item())
    nudged = relevance.clone()
    nudged[0, 0, 0] += 1e-3  # one patch apart: defined again, and the mass sits where the patch is
    rma, status = relevance_mass_accuracy(nudged, mask)
    assert STATUSES[status.item()] == "ok" and rma.item() > 0.5


def test_quadrants_pt_ir_by_hand():
    correct = np.array([1, 1, 1, 0, 0, 1, 0, 1], dtype=bool)
    rma = np.array([0.9, 0.5, 0.2, 0.7, 0.1, np.nan, np.nan, 0.49])
    counts = category_counts(correct, rma, threshold=0.5)
    assert dict(zip(CATEGORIES, counts.tolist())) == {
        "RR": 2,
        "RW": 2,
        "WR": 1,
        "WW": 1,
        "R_undefined": 1,
        "W_undefined": 1,
    }
    result = rationality(correct, rma, threshold=0.5, iterations=200)
    assert result.metrics["accuracy"] == pytest.approx(5 / 8)  # undefined RMA keeps its prediction
    assert result.metrics["prediction_trustworthiness"] == pytest.approx(2 / 4)
    assert result.metrics["inference_reliability"] == pytest.approx(2 / 3)
    assert result.metrics["rr"] == pytest.approx(2 / 6)
    row = result.as_row()
    assert row["n"] == 8 and row["n_undefined"] == 2 and row["n_RR"] == 2
    assert row["prediction_trustworthiness_ci_low"] <= 0.5 <= row["prediction_trustworthiness_ci_high"]
    # The threshold moves samples between valid and invalid evidence.
    strict = rationality(correct, rma, threshold=0.8, iterations=0)
    assert strict.counts["RR"] == 1 and strict.metrics["prediction_trustworthiness"] == pytest.approx(1 / 4)


def test_zero_denominators_give_nan_not_errors():
    all_wrong = rationality(np.zeros(4, bool), np.array([0.9, 0.1, 0.6, 0.2]), iterations=100)
    assert all_wrong.metrics["accuracy"] == 0.0
    assert math.isnan(all_wrong.metrics["prediction_trustworthiness"])
    assert all_wrong.metrics["inference_reliability"] == 0.0
    no_valid = rationality(np.ones(3, bool), np.array([0.1, 0.2, 0.3]), iterations=100)
    assert math.isnan(no_valid.metrics["inference_reliability"])
    assert all(math.isnan(v) for v in no_valid.intervals["inference_reliability"])
    all_undefined = rationality(np.ones(2, bool), np.array([np.nan, np.nan]), iterations=100)
    assert all_undefined.metrics["accuracy"] == 1.0 and math.isnan(all_undefined.metrics["rr"])
    empty = rationality(np.zeros(0, bool), np.zeros(0), iterations=100)
    assert empty.n == 0 and math.isnan(empty.metrics["accuracy"])


def test_metrics_are_vectorised_over_leading_axes():
    counts = np.array([[[2, 2, 1, 1, 1, 1]], [[0, 0, 0, 0, 0, 0]]])
    out = metrics_from_counts(counts)
    assert out["prediction_trustworthiness"].shape == (2, 1)
    assert out["prediction_trustworthiness"][0, 0] == pytest.approx(0.5) and np.isnan(out["accuracy"][1, 0])


def test_bootstrap_is_seeded_and_matches_resampling_samples():
    rng = np.random.default_rng(0)
    correct = rng.uniform(size=400) < 0.7
    rma = np.where(rng.uniform(size=400) < 0.05, np.nan, rng.uniform(size=400))
    counts = category_counts(correct, rma)
    a = bootstrap_intervals(counts, iterations=4000, seed=5)
    assert a == bootstrap_intervals(counts, iterations=4000, seed=5)
    assert a != bootstrap_intervals(counts, iterations=4000, seed=6)
    # Independent reference: resample the samples themselves with replacement.
    index = rng.integers(0, 400, size=(4000, 400))
    draws = np.stack([category_counts(correct[i], rma[i]) for i in index])
    reference = {name: np.nanpercentile(v, [2.5, 97.5]) for name, v in metrics_from_counts(draws).items()}
    for name, (low, high) in a.items():
        assert low == pytest.approx(reference[name][0], abs=0.015), name
        assert high == pytest.approx(reference[name][1], abs=0.015), name


def test_threshold_curves_score_every_grid_point_as_table_2_would():
    from vlm_rationality.metrics.rationality import rationality
    from vlm_rationality.metrics.thresholds import GRID, threshold_rows

    rng = np.random.default_rng(4)
    correct, rma = rng.random(300) < 0.7, rng.random(300)
    rma[:5] = np.nan  # undefined: out of the quadrants, as in score
    rows = threshold_rows({("d", "clean", "m", "ft", "chefer"): {"correct": correct, "rma": rma}}, 200, 0)
    assert [r["threshold"] for r in rows] == list(GRID) and GRID[0] == 0.05 and GRID[-1] == 0.95
    pt = [r["prediction_trustworthiness"] for r in rows]
    assert all(a >= b for a, b in zip(pt, pt[1:]))  # a stricter threshold validates fewer right predictions
    at_half = rationality(correct, rma, 0.5, 200, 0)
    middle = rows[GRID.index(0.5)]
    assert middle["prediction_trustworthiness"] == at_half.metrics["prediction_trustworthiness"]
    assert middle["inference_reliability_ci_high"] == at_half.intervals["inference_reliability"][1]
    assert middle["rma_median"] == pytest.approx(np.nanmedian(rma))


def test_per_class_rows_add_up_to_the_whole_and_carry_the_class_names():
    from vlm_rationality.metrics.thresholds import per_class_rows

    label = np.array([0, 0, 0, 1, 1, 2])
    correct = np.array([True, True, False, True, False, False])
    rma = np.array([0.9, 0.1, 0.8, 0.7, 0.2, np.nan])
    stored = {("d", "clean", "m", "ft", "chefer"): {"label": label, "correct": correct, "rma": rma}}
    rows = per_class_rows(stored, {"d": ["square", "circle", "star"]}, 0.5, 100, 0)
    assert [(r["class_name"], r["n"]) for r in rows] == [("square", 3), ("circle", 2), ("star", 1)]
    square = rows[0]  # right: RMA 0.9 (valid), 0.1 (invalid); wrong: 0.8 (valid)
    assert square["accuracy"] == pytest.approx(2 / 3) and square["prediction_trustworthiness"] == pytest.approx(1 / 2)
    assert square["inference_reliability"] == pytest.approx(1 / 2) and square["threshold"] == 0.5
