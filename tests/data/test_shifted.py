"""The shifted test sets (ImageNet-V2, -R, -A, -Sketch) read from fixtures in their published layouts, labelled by
the classes of the dataset the classifier was made for; the 200-class protocol of ImageNet-R/-A on a hand case."""

from __future__ import annotations

import re

import numpy as np
import pytest

from tests import fixtures
from vlm_rationality.data import DATASET_ADAPTERS, Sample, Skipped, build_dataset
from vlm_rationality.data.imagenet_x import imagenet_synsets
from vlm_rationality.metrics.calibration import negative_log_likelihood
from vlm_rationality.metrics.robustness import restrict

TENCH, GOLDFISH, SHARK = imagenet_synsets()[:3]  # ImageNet-1K's first three classes, canonical order


def read(adapter: str, root, synsets=None) -> tuple[dict[str, int], dict[str, str]]:
    spec = {"adapter": adapter, "root": str(root), "image_size": 32, "shard_size": 8, "splits": {"test": {}}}
    dataset = build_dataset({**spec, **({"synsets": synsets} if synsets else {})})
    entries = list(dataset.samples("test", 0, dataset.split_size("test")))
    labels = {e.sample_id: e.label for e in entries if isinstance(e, Sample)}
    return labels, {e.sample_id: e.reason for e in entries if isinstance(e, Skipped)}


def test_imagenet_v2_class_index_folders_are_labelled_by_the_parent_dataset_classes(tmp_path):
    root = fixtures.shifted_imagenet(tmp_path / "v2", "v2", [0, 1, 2])
    labels, skipped = read("imagenet_v2", root)  # ImageNet-1K's own order: the folder is the label
    assert sorted(set(labels.values())) == [0, 1, 2] and len(labels) == 6 and not skipped
    # a dataset of two classes, in its own order: folder 1 (goldfish) is its class 0; folder 2 is not its class
    labels, skipped = read("imagenet_v2", root, synsets=[GOLDFISH, TENCH])
    assert {name.split("/")[0]: label for name, label in labels.items()} == {"0": 1, "1": 0}
    assert skipped == {"2/v2_2_0.jpeg": "class_not_in_dataset", "2/v2_2_1.png": "class_not_in_dataset"}


@pytest.mark.parametrize("adapter", ["imagenet_r", "imagenet_a", "imagenet_sketch"])
def test_wnid_folders_are_labelled_by_their_synset(tmp_path, adapter):
    root = fixtures.shifted_imagenet(tmp_path / adapter, "r", [SHARK, GOLDFISH])
    labels, skipped = read(adapter, root)
    assert {name.split("/")[0]: label for name, label in labels.items()} == {SHARK: 2, GOLDFISH: 1} and not skipped
    labels, skipped = read(adapter, root, synsets=[TENCH, GOLDFISH])
    assert set(labels.values()) == {1} and set(skipped.values()) == {"class_not_in_dataset"} and len(skipped) == 2
    assert DATASET_ADAPTERS.get(adapter).restricted == (adapter != "imagenet_sketch")  # R and A: 200 classes


@pytest.mark.parametrize("adapter, folder", [("imagenet_v2", "1000"), ("imagenet_r", "tench"), ("imagenet_v2", "x")])
def test_a_folder_outside_the_layout_fails_naming_the_root_and_the_layout(tmp_path, adapter, folder):
    fixtures.shifted_imagenet(tmp_path / "set", "v2", [folder])
    message = f"{tmp_path / 'set'}: folders ['{folder}'] name no class; expected root/"
    with pytest.raises(ValueError, match=re.escape(message)):
        build_dataset({"adapter": adapter, "root": str(tmp_path / "set"), "image_size": 32, "splits": {"test": {}}})


def test_a_restricted_set_keeps_its_classes_logits_so_an_outside_class_never_wins():
    # five classes; the set has classes 1 and 3; class 4's logit is the largest everywhere
    logits = np.array([[0.0, 2.0, 0.0, 1.0, 9.0], [0.0, 1.0, 0.0, 3.0, 9.0], [5.0, 0.5, 0.0, 0.0, 9.0]])
    labels = np.array([1, 3, 3])
    kept, positions = restrict(logits, labels)
    assert kept.tolist() == [[2.0, 1.0], [1.0, 3.0], [0.5, 0.0]] and positions.tolist() == [0, 1, 1]
    assert (kept.argmax(1) == positions).tolist() == [True, True, False]  # not 4, and not 0 in the third row
    by_hand = -np.mean([2 - np.log(np.exp(2) + np.exp(1)), 3 - np.log(np.exp(1) + np.exp(3)), -np.log(1 + np.exp(0.5))])
    assert negative_log_likelihood(kept, positions) == pytest.approx(by_hand)  # a softmax over the set's classes
