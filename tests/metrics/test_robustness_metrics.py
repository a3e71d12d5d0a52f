"""Calibration and OOD-detection metrics against independent references and constructed cases."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import rankdata

from vlm_rationality.metrics import calibration, ood


def test_ece_matches_torchmetrics_documented_example():
    probs = np.array([[0.25, 0.2, 0.55], [0.55, 0.05, 0.4], [0.1, 0.3, 0.6], [0.9, 0.05, 0.05]])
    assert calibration.expected_calibration_error(probs, np.array([0, 1, 2, 0]), bins=3) == pytest.approx(0.2)


def test_ece_bins_are_closed_on_the_right():
    # confidences 0.4 (right) and 0.5 (wrong), 2 bins: both in (0, 0.5] -> |0.5 - 0.45| = 0.05
    # (left-closed bins would split them: (0.6 + 0.5) / 2 = 0.55)
    probs = np.array([[0.4, 0.3, 0.3], [0.5, 0.0, 0.5]])
    assert calibration.expected_calibration_error(probs, np.array([0, 1]), bins=2) == pytest.approx(0.05)
    assert calibration.expected_calibration_error(probs, np.array([0, 0]), bins=2) == pytest.approx(0.55)


def test_temperature_scaling_recovers_the_temperature_that_made_the_logits():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 1.5, (20000, 10))
    labels = np.array([rng.choice(10, p=p) for p in calibration.softmax(z)])
    logits = 3 * z  # overconfident by a factor 3
    fitted = calibration.fit_temperature(logits, labels)
    assert fitted == pytest.approx(3.0, rel=0.05)
    before = (
        calibration.negative_log_likelihood(logits, labels),
        calibration.expected_calibration_error(calibration.softmax(logits), labels),
    )
    after = (
        calibration.negative_log_likelihood(logits, labels, fitted),
        calibration.expected_calibration_error(calibration.softmax(logits, fitted), labels),
    )
    assert after[0] < before[0] and after[1] < before[1] / 3
    assert (calibration.softmax(logits, fitted).argmax(1) == logits.argmax(1)).all()  # accuracy unchanged


def test_auroc_and_fpr95_on_identical_disjoint_and_swapped_distributions():
    rng = np.random.default_rng(1)
    same_id, same_ood = rng.normal(size=20000), rng.normal(size=20000)
    assert ood.auroc(same_id, same_ood) == pytest.approx(0.5, abs=0.01)
    assert ood.fpr_at_tpr(same_id, same_ood) == pytest.approx(0.95, abs=0.01)
    high, low = rng.uniform(2, 3, 500), rng.uniform(0, 1, 700)
    assert ood.auroc(high, low) == 1.0 and ood.fpr_at_tpr(high, low) == 0.0
    assert ood.auroc(low, high) == 0.0 and ood.fpr_at_tpr(low, high) == 1.0
    a, b = rng.normal(0.5, 1, 300), rng.normal(0, 1, 400)
    assert ood.auroc(b, a) == pytest.approx(1 - ood.auroc(a, b))
    assert ood.auroc(np.ones(3), np.ones(5)) == 0.5  # ties count half


def test_auroc_and_fpr95_equal_the_hand_formulas():
    """The oracles: the Mann-Whitney statistic, and the k-th highest ID score (k = ceil(0.95 n)) as the threshold."""
    rng = np.random.default_rng(3)
    for n_id, n_ood in ((20, 5), (37, 41), (200, 3), (1, 1)):
        id_scores, ood_scores = np.round(rng.normal(0.3, 1, n_id), 1), np.round(rng.normal(0, 1, n_ood), 1)  # ties
        ranks = rankdata(np.concatenate([id_scores, ood_scores]))
        by_hand = (ranks[:n_id].sum() - n_id * (n_id + 1) / 2) / (n_id * n_ood)
        assert ood.auroc(id_scores, ood_scores) == pytest.approx(by_hand)
        for tpr in (0.95, 0.5, 1.0):
            threshold = np.sort(id_scores)[::-1][int(np.ceil(tpr * n_id)) - 1]
            assert ood.fpr_at_tpr(id_scores, ood_scores, tpr) == pytest.approx(np.mean(ood_scores >= threshold))


def test_fpr95_is_the_share_of_ood_at_or_above_the_threshold_keeping_95_percent_of_id():
    id_scores = np.arange(1, 21, dtype=float)  # 20 ID scores: keeping 19 of them puts the threshold at 2
    ood_scores = np.array([0.5, 1.5, 2.0, 2.5, 30.0])
    assert ood.fpr_at_tpr(id_scores, ood_scores) == pytest.approx(3 / 5)


def test_scores_rank_a_confident_sample_above_a_flat_one():
    logits = np.array([[10.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    for name, score in ood.SCORES.items():
        values = score(logits)
        assert values[0] > values[1], name
    assert ood.energy(logits)[1] == pytest.approx(1 + np.log(3))
    cosines = logits / 100
    assert ood.mcm(cosines) == pytest.approx(ood.msp(cosines))
    assert ood.mcm(cosines)[0] > ood.mcm(cosines)[1]


def test_shape_bias_counts_shape_and_texture_decisions_and_drops_images_without_conflict():
    from vlm_rationality.metrics.shape_bias import shape_bias

    shapes = np.array(["cat", "cat", "dog", "dog", "car", "car", "bear"])
    textures = np.array(["dog", "car", "cat", "cat", "knife", "car", "oven"])
    decisions = np.array(["cat", "car", "cat", "boat", "car", "car", "oven"])
    # conflict images: 6 (car/car dropped); shape: cat, car = 2; texture: car, cat, oven = 3; other: boat = 1
    result = shape_bias(decisions, shapes, textures)
    assert (result.shape_decisions, result.texture_decisions, result.other_decisions, result.dropped_no_conflict) == (
        2,
        3,
        1,
        1,
    )
    assert result.shape_bias == pytest.approx(2 / 5)
    assert np.isnan(shape_bias(np.array([1]), np.array([0]), np.array([2])).shape_bias)  # no shape or texture decision


def test_the_16_category_mapping_averages_member_probabilities():
    from vlm_rationality.imagenet16 import imagenet16, parse_stimulus
    from vlm_rationality.metrics.shape_bias import category_probabilities

    mapping = imagenet16()
    assert list(mapping) == sorted(mapping) and len(mapping) == 16
    members = [i for indices in mapping.values() for i in indices]
    assert len(members) == len(set(members)) == 207 and all(0 <= i < 1000 for i in members)
    assert mapping["elephant"] == [385, 386] and mapping["knife"] == [499] and len(mapping["dog"]) == 109
    probs = np.full((2, 1000), 0.0)
    probs[0, 385] = 0.3  # elephant: mean of 0.3 and 0 -> 0.15
    probs[0, 499] = 0.2  # knife, a single member: 0.2 -> knife wins though elephant's top class is higher
    probs[1, mapping["cat"]] = 0.1  # every cat class 0.1 -> 0.1
    probs[1, 152] = 0.5  # one dog class of 109 -> 0.0046
    names = list(mapping)
    decided = category_probabilities(probs).argmax(axis=1)
    assert [names[k] for k in decided] == ["knife", "cat"]
    assert category_probabilities(probs)[0, names.index("elephant")] == pytest.approx(0.15)
    assert parse_stimulus("cat7-elephant1.png") == ("cat", "elephant")
    with pytest.raises(ValueError, match="not a cue-conflict stimulus"):
        parse_stimulus("cat7.png")


def test_the_robustness_table_from_a_predictions_file(tmp_path):
    from vlm_rationality.artefacts import read_predictions, write_predictions
    from vlm_rationality.metrics.robustness import robustness_rows
    from vlm_rationality.report.robustness import robustness_markdown

    rng = np.random.default_rng(0)
    z = rng.normal(size=(6000, 5)) * 2

    def drawn(rows):  # labels drawn from softmax(z): the logits 3z are over-confident by exactly T = 3
        p = np.exp(z[rows] - z[rows].max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        return (p.cumsum(1) > rng.uniform(size=(len(p), 1))).argmax(1)

    val, test = np.arange(3000), np.arange(3000, 6000)
    cue_logits = np.eye(5)[[0, 1, 2, 3]] * 10  # decisions 0, 1, 2, 3 on shapes 0, 1, 3, 4 over textures 1, 2, 2, 0
    ood = np.full((500, 5), -50.0)  # uniform and low: below every ID sample in MSP, MCM, max logit and energy
    sets = {
        "val": (3 * z[val], drawn(val), None),
        "test/clean": (3 * z[test], drawn(test), None),
        "test/gaussian_noise-3": (3 * z[test] / 2, drawn(test), None),
        "ood_shape": (ood, np.full(500, -1), None),
        "cue": (cue_logits, np.array([0, 1, 3, 4]), [1, 2, 2, 0]),
    }
    sets["test/clean"][0][0] = np.nan  # one non-finite row: left out, counted
    names, ids, labels, backgrounds, logits = [], [], [], [], []
    for name, (lg, lb, bg) in sets.items():
        names += [name] * len(lg)
        ids += [f"{name}-{i}" for i in range(len(lg))]
        labels.append(lb)
        backgrounds += bg if bg is not None else [None] * len(lg)
        logits.append(lg)
    path = tmp_path / "predictions.parquet"
    write_predictions(
        path,
        sets=names,
        sample_ids=ids,
        labels=np.concatenate(labels),
        backgrounds=backgrounds,
        logits=np.concatenate(logits),
        cosines=np.concatenate(logits) / 10,
        config_hash="x",
        meta={"keys": {"dataset": "d", "model": "m", "method": "zs"}, "logit_scale": 10.0},
    )
    _, read = read_predictions(path)
    np.testing.assert_array_equal(read["val"]["logits"], (3 * z[val]).astype(np.float32))  # float32 kept exactly

    rows = robustness_rows([read_predictions(path)], "val", ["ood_shape"], "cue")
    clean, noisy = rows
    assert (clean["shift"], noisy["shift"]) == ("clean", "gaussian_noise-3")
    assert clean["temperature"] == pytest.approx(3, rel=0.05) and noisy["temperature"] == clean["temperature"]
    assert clean["ece_ts"] < clean["ece"] and clean["nll_ts"] < clean["nll"]
    assert clean["n"] == 2999 and clean["n_nonfinite_logits"] == 1
    assert clean["auroc.ood_shape.msp"] == 1.0 and clean["fpr95.ood_shape.msp"] == 0.0
    assert all(clean[f"auroc.ood_shape.{s}"] == 1.0 for s in ("mcm", "energy", "max_logit"))
    assert "auroc.ood_shape.msp" not in noisy  # OOD detection: the clean row only
    # shape decisions on images 0 and 1, a texture decision on image 2 (its texture class 2), neither on image 3:
    # the shape bias leaves image 3 out (2 of 3), the cue-conflict accuracy counts it (2 of 4)
    assert (clean["shape_decisions"], clean["texture_decisions"]) == (2, 1)
    assert (clean["shape_bias"], clean["cue_conflict_accuracy"]) == (2 / 3, 0.5)
    table = robustness_markdown(rows, ["ood_shape"])
    assert "| d | clean | m | ZS |" in table and "## Shape bias" in table and "| ood_shape |" in table
    for name in ("accuracy", "ece", "ece_ts", "nll", "nll_ts"):  # every test-set metric has its interval
        assert clean[f"{name}_ci_low"] <= clean[name] <= clean[f"{name}_ci_high"], name
    assert clean["auroc.ood_shape.msp_ci_low"] == 1.0 and 0 <= clean["shape_bias_ci_low"] <= 2 / 3
    assert 0 <= clean["cue_conflict_accuracy_ci_low"] <= 0.5 <= clean["cue_conflict_accuracy_ci_high"] <= 1
    assert f"| {100 * clean['accuracy']:.1f} [{100 * clean['accuracy_ci_low']:.1f}, " in table


def test_bootstrap_replicates_with_every_weight_one_are_the_point_estimates():
    from vlm_rationality.metrics.robustness_intervals import auroc_replicates, calibration_replicates

    rng = np.random.default_rng(6)
    logits, labels = rng.normal(size=(400, 5)) * 2, rng.integers(0, 5, 400)
    found = calibration_replicates(logits, labels, 1.7, np.ones((400, 1), np.float32))
    assert found["ece"][0] == pytest.approx(calibration.expected_calibration_error(calibration.softmax(logits), labels))
    assert found["ece_ts"][0] == pytest.approx(
        calibration.expected_calibration_error(calibration.softmax(logits, 1.7), labels)
    )
    assert found["nll_ts"][0] == pytest.approx(calibration.negative_log_likelihood(logits, labels, 1.7))
    assert found["accuracy"][0] == pytest.approx(np.mean(logits.argmax(1) == labels))
    id_scores, ood_scores = rng.normal(0.5, 1, 300), rng.normal(0, 1, 200)
    replicates = auroc_replicates(id_scores, ood_scores, 500, 0)
    assert np.percentile(replicates, 2.5) < ood.auroc(id_scores, ood_scores) < np.percentile(replicates, 97.5)
    assert 0.02 < replicates.std() < 0.05  # about √(AUROC(1 − AUROC)/n) at these sizes


def test_reliability_bins_are_the_bins_ece_sums_over():
    from vlm_rationality.metrics.calibration import expected_calibration_error, reliability_bins

    probs = np.array([[0.25, 0.2, 0.55], [0.55, 0.05, 0.4], [0.1, 0.3, 0.6], [0.9, 0.05, 0.05]])
    labels = np.array([0, 1, 2, 0])
    confidence, accuracy, counts = reliability_bins(probs, labels, bins=3)
    assert counts.tolist() == [0, 3, 1] and np.isnan(confidence[0]) and np.isnan(accuracy[0])
    np.testing.assert_allclose(confidence[1:], [(0.55 + 0.55 + 0.6) / 3, 0.9])
    np.testing.assert_allclose(accuracy[1:], [1 / 3, 1.0])
    gaps = np.nansum(counts / counts.sum() * np.abs(accuracy - confidence))
    assert gaps == pytest.approx(expected_calibration_error(probs, labels, bins=3)) == pytest.approx(0.2)


def test_in_distribution_calibration_is_cross_fitted_and_scaling_helps_an_overconfident_model():
    from vlm_rationality.metrics.robustness import cross_fitted

    rng = np.random.default_rng(1)
    z = rng.normal(size=(4000, 5)) * 2
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    labels = (p.cumsum(1) > rng.uniform(size=(len(p), 1))).argmax(1)
    found = cross_fitted(3 * z, labels)  # over-confident by T = 3
    assert found["id_ece_ts"] < found["id_ece"] / 3 and found["id_nll_ts"] < found["id_nll"]
    calibrated = cross_fitted(z, labels)  # already calibrated: scaling changes little
    assert abs(calibrated["id_nll_ts"] - calibrated["id_nll"]) < 0.01


def _stimuli(root, names):
    from PIL import Image

    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((40, 48, 3), 90, np.uint8)).save(path)
    return root


def test_the_stimuli_folder_labels_shape_and_texture_by_category(tmp_path):
    from vlm_rationality.data import build_dataset
    from vlm_rationality.imagenet16 import imagenet16

    categories = list(imagenet16())
    root = _stimuli(
        tmp_path / "stimuli", ["cat/cat1-elephant2.png", "elephant/elephant3-cat1.png", "cat/cat2-cat4.png"]
    )
    spec = {
        "adapter": "cue_conflict_stimuli",
        "root": str(root),
        "image_size": 32,
        "splits": {"stimuli": {"masks": False}},
    }
    dataset = build_dataset(spec)
    items = dataset.items("stimuli")
    assert [(i.sample_id, i.label, i.annotation["texture"]) for i in items] == [
        ("cat/cat1-elephant2.png", categories.index("cat"), categories.index("elephant")),
        ("cat/cat2-cat4.png", categories.index("cat"), categories.index("cat")),
        ("elephant/elephant3-cat1.png", categories.index("elephant"), categories.index("cat")),
    ]
    sample = next(iter(dataset.load_items("stimuli", items[:1], 0)))
    assert sample.image.shape == (32, 32, 3) and sample.extra["background"] == categories.index("elephant")
    _stimuli(root, ["cat/cat9-zebra1.png"])
    with pytest.raises(ValueError, match="'zebra' is not one of the 16 categories"):
        build_dataset(spec)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no stimuli"):
        build_dataset({**spec, "root": str(tmp_path / "empty")})


def test_an_imagenet_classifier_decides_among_the_16_categories_by_mean_member_probability():
    from vlm_rationality.imagenet16 import imagenet16
    from vlm_rationality.metrics.robustness import cue_decisions

    mapping = imagenet16()
    categories = list(mapping)
    logits = np.zeros((2, 1000))
    logits[0, mapping["bear"]] = 5.0  # every bear class likely
    logits[1, mapping["cat"][0]] = 9.0  # one cat class very likely, the mean of its category still the highest
    assert cue_decisions(logits, "imagenet16").tolist() == [categories.index("bear"), categories.index("cat")]
    assert cue_decisions(np.eye(16)[[3, 5]], "imagenet16").tolist() == [3, 5]  # a 16-way classifier decides itself
    with pytest.raises(ValueError, match="a classifier of 8 classes has no mapping"):
        cue_decisions(np.zeros((1, 8)), "imagenet16")


@pytest.mark.parametrize("head_input", ["cosine", "linear"])
def test_mcm_reads_each_images_cosines_to_the_class_prompts_for_a_linear_head_too(tmp_path, head_input):
    """A linear head (LP/FT) classifies with weight rows of any norm and a bias: its logits / logit_scale are not the
    cosines MCM is defined on. The predictions file keeps the cosines themselves, from the model's own towers."""
    import torch
    import torch.nn.functional as F

    from tests import fixtures
    from vlm_rationality.artefacts import read_predictions
    from vlm_rationality.data.synthetic import SyntheticSpec, generate
    from vlm_rationality.models import build_classifier, build_model
    from vlm_rationality.models.checkpoint import save_classifier
    from vlm_rationality.models.classifier_spec import ClassifierSpec
    from vlm_rationality.predict.run import predict

    spec = {"adapter": "open_clip", "arch": "tiny-vit-32"}
    prompts = [f"a photo of a {name}" for name in SyntheticSpec(image_size=32).class_names]
    samples = list(generate(SyntheticSpec(image_size=32), "test", 12))
    shard = fixtures.prepared_shard(tmp_path / "shard-0000.parquet", samples)
    torch.manual_seed(0)
    model = build_model(spec).eval()
    classifier = build_classifier(model, "linear", prompts, init_from_prompts=False, head_input=head_input)
    with torch.no_grad():
        classifier.head.weight.mul_(7.0)  # rows far from unit norm, as trained ones are
    save_classifier(classifier, tmp_path / "lp.safetensors", {"method": "lp"})
    predict(
        ClassifierSpec(spec, prompts, str(tmp_path / "lp.safetensors")),
        [{"name": "test/clean", "shift": "clean", "shards": [shard]}],
        str(tmp_path / "predictions.parquet"),
        "cpu",
        5,
        "h",
        {"dataset": "d", "model": "m", "method": "lp"},
    )
    read = read_predictions(tmp_path / "predictions.parquet")[1]["test/clean"]
    with torch.no_grad():
        images = model.preprocess(torch.from_numpy(np.stack([s.image for s in samples])))
        expected = F.normalize(model.encode_image(images), dim=-1) @ F.normalize(model.encode_text(prompts), dim=-1).T
        logits = classifier(images)
    np.testing.assert_allclose(read["cosines"], expected.numpy(), atol=1e-5)
    np.testing.assert_allclose(read["logits"], logits.numpy(), atol=1e-4)
    assert np.abs(read["logits"] / model.logit_scale.item() - read["cosines"]).max() > 0.1  # what MCM used to read


def _torchmetrics_rule(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """torchmetrics >= 1.0 by hand: float32 confidences, bins [lo, hi), a confidence of exactly 1.0 a bin apart."""
    confidence = probs.astype(np.float32).max(1)
    correct = probs.argmax(1) == labels
    index = np.searchsorted(np.linspace(0, 1, bins + 1, dtype=np.float32), confidence, side="right") - 1
    gap = np.abs(np.bincount(index, correct, bins + 1) - np.bincount(index, confidence.astype(np.float64), bins + 1))
    return float(gap.sum() / len(labels))


def test_ece_bins_against_the_current_torchmetrics_including_saturated_confidences():
    """Random logits agree to float32 rounding. They part where the top bin mixes float32-saturated confidences (exactly
    1.0: torchmetrics' bin of their own) that are overconfident with unsaturated ones that are underconfident."""
    import torch
    from torchmetrics.functional.classification import multiclass_calibration_error

    from vlm_rationality.metrics.calibration import expected_calibration_error, softmax

    def both(logits: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
        probs32 = torch.softmax(torch.tensor(logits, dtype=torch.float32), dim=1)
        theirs = float(
            multiclass_calibration_error(probs32, torch.tensor(labels), num_classes=10, n_bins=15, norm="l1")
        )
        assert theirs == pytest.approx(_torchmetrics_rule(probs32.numpy(), labels), abs=1e-5)  # float32 sums
        return expected_calibration_error(softmax(logits), labels), theirs

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 4000)
    logits = rng.normal(size=(4000, 10)) * 3
    logits[np.arange(2000), labels[:2000]] += 6
    ours, theirs = both(logits, labels)
    assert ours == pytest.approx(theirs, abs=1e-5)
    # 1,000 images at a logit margin of 100 (float32 confidence 1.0), 90% right; 1,000 at confidence 0.95, all right
    logits = np.zeros((2000, 10))
    logits[:1000, 0], logits[1000:, 0] = 100.0, np.log(0.95 / 0.05 * 9)
    labels = np.zeros(2000, int)
    labels[:100] = 1
    ours, theirs = both(logits, labels)
    assert ours == pytest.approx(abs(900 + 1000 - 1000 - 950) / 2000)  # one bin (14/15, 1]: |0.95 - 0.975|
    assert theirs == pytest.approx((100 + 50) / 2000, abs=1e-4)  # the 1.0 bin (0.1 off) apart from the 0.95 one


def test_reliability_diagrams_show_each_bins_sample_count(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from vlm_rationality.report.robustness import TEST_PREFIX, reliability_figures

    kept = []
    monkeypatch.setattr(plt, "close", kept.append)
    rng = np.random.default_rng(5)
    logits, labels = rng.normal(size=(200, 4)) * 3, rng.integers(0, 4, 200)
    sets = {TEST_PREFIX + "clean": {"logits": logits, "label": labels}}
    rows = [{"dataset": "d", "model": "m", "method": m, "shift": "clean", "temperature": 2.0} for m in ("zs", "ft")]
    predictions = [({"keys": {"dataset": "d", "model": "m", "method": m}}, sets) for m in ("zs", "ft")]
    (written,) = reliability_figures(predictions, rows, "val", tmp_path)
    assert written == tmp_path / "d" / "m.png" and written.read_bytes()[:4] == b"\x89PNG"
    before, after = kept[0].axes[2:]  # the count strips under the two diagrams
    for strip, temperature in ((before, 1.0), (after, 2.0)):
        counts = [patch.get_data()[0] for patch in strip.patches]  # one stairs per method
        assert len(counts) == 2 and all(c.sum() == 200 for c in counts)
        _, _, expected = calibration.reliability_bins(calibration.softmax(logits, temperature), labels)
        assert (counts[0] == expected).all()
    assert before.get_ylabel() == "samples per bin"


def test_id_against_ood_is_a_probit_line_across_classifiers_that_one_outlier_does_not_drag():
    from scipy.stats import norm

    from vlm_rationality.metrics.id_ood import id_ood_rows

    ids = np.array([0.6, 0.7, 0.8, 0.9, 0.95, 0.97])
    shifted = norm.cdf(0.5 * norm.ppf(ids) - 0.2)  # on a line of slope 0.5 in probit space
    shifted[2] = 0.99  # one classifier far off the line
    rows = []
    for k, (x, y) in enumerate(zip(ids, shifted)):
        keys = {"dataset": "d", "model": "m", "method": f"ft{k}"}
        rows += [
            {**keys, "shift": "clean", "accuracy": x, "auroc.ood.msp": y, "auroc.ood.msp_ci_low": 0.0},
            {**keys, "shift": "fog-3", "accuracy": float(y)},
        ]
    rows.append({"dataset": "d", "model": "m", "method": "lonely", "shift": "fog-3", "accuracy": 0.5})  # no clean row
    found = {r["metric"]: r for r in id_ood_rows(rows)}
    assert sorted(found) == ["accuracy@fog-3", "auroc.ood.msp"]  # no interval bound, no NaN shape bias
    fit = found["accuracy@fog-3"]
    assert fit["n_classifiers"] == 6 and fit["spearman"] == pytest.approx(1 - 6 * 12 / (6 * 35))  # ranks 1 2 6 3 4 5
    assert fit["slope"] == pytest.approx(0.5, abs=0.02) and fit["intercept"] == pytest.approx(-0.2, abs=0.02)
    px, py = norm.ppf(ids), norm.ppf(shifted)
    residual = py - fit["intercept"] - fit["slope"] * px  # R² of the robust line, the outlier's residual included
    assert fit["r2"] == pytest.approx(1 - np.sum(residual**2) / np.sum((py - py.mean()) ** 2)) and fit["r2"] < 0.5
    ols = np.polyfit(norm.ppf(ids), norm.ppf(shifted), 1)
    assert abs(ols[0] - 0.5) > 0.2  # least squares is dragged by the one classifier off the line
    two = id_ood_rows(rows[:4])  # two classifiers: a rank, no line
    assert np.isnan(two[0]["slope"]) and two[0]["spearman"] == pytest.approx(1.0)
