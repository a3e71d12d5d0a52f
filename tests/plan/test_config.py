"""The config contract: a closed schema whose errors name the key path and the key probably meant, the one
source of defaults, and the checks the schema cannot make (start_block, amp, names)."""

from __future__ import annotations

import copy
import re

import pytest
import yaml

from tests import fixtures
from tests.snakemake_runs import REPO, SCHEMA, TEST_CONFIG
from vlm_rationality.plan.config import ConfigError, check_config, check_files, twins_pool_error
from vlm_rationality.plan.specs import training_rhos

DEFAULT = yaml.safe_load((REPO / "config.yaml").read_text())


def check(change) -> str:
    config = copy.deepcopy(TEST_CONFIG)
    change(config)
    with pytest.raises(ConfigError) as error:
        check_config(config, SCHEMA)
    return str(error.value)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda c: c.update(treads=2), "treads: unknown setting; did you mean threads?"),
        (
            lambda c: c["datasets"]["tiny-synthetic"].update(shard_sise=4),
            "datasets.tiny-synthetic.shard_sise: unknown setting; did you mean shard_size?",
        ),
        (
            lambda c: c["datasets"]["tiny-synthetic"].update(num_clases=4),
            "datasets.tiny-synthetic.num_clases: unknown setting; did you mean num_classes?",
        ),
        (
            lambda c: c["datasets"]["tiny-synthetic"]["splits"]["train"].update(rhoo=0.9),
            "datasets.tiny-synthetic.splits.train.rhoo: unknown setting; did you mean rho?",
        ),
        (
            lambda c: c["models"]["tiny-clip"].update(pretrianed="x"),
            "models.tiny-clip.pretrianed: unknown setting; did you mean pretrained?",
        ),
        (
            lambda c: c["models"]["tiny-clip"]["pretrain"].update(epoch=2),
            "models.tiny-clip.pretrain.epoch: unknown setting; did you mean epochs?",
        ),
        (
            lambda c: c["methods"]["ft"].update(head_int="prompts"),
            "methods.ft.head_int: unknown setting; did you mean head_init?",
        ),
        (
            lambda c: c["methods"]["lp"].update(weight_decai=0.1),
            "methods.lp.weight_decai: unknown setting; did you mean weight_decay?",
        ),
        (lambda c: c["heatmaps"].update(method="chefer"), "heatmaps.method: unknown setting; did you mean methods?"),
        (lambda c: c["score"].update(treshold=0.3), "score.treshold: unknown setting; did you mean threshold?"),
        (lambda c: c.update(resources={"mem": 100}), "resources.mem: unknown setting; did you mean mem_mb?"),
        (
            lambda c: c.update(resources={"images_per_second": {"explian": 3}}),
            "resources.images_per_second.explian: unknown setting; did you mean explain?",
        ),
    ],
    ids=[
        "top",
        "dataset",
        "dataset-adapter-option",
        "split",
        "model",
        "pretrain",
        "method",
        "method-training",
        "heatmaps",
        "score",
        "resources",
        "images-per-second",
    ],
)
def test_a_typo_in_any_map_names_its_path_and_the_key_meant(change, message):
    assert message in check(change)


def test_every_error_is_reported_at_once():
    text = check(lambda c: (c["methods"]["ft"].update(head_int="prompts"), c["score"].update(treshold=0.3)))
    assert text.splitlines() == [
        "methods.ft.head_int: unknown setting; did you mean head_init?",
        "score.treshold: unknown setting; did you mean threshold?",
    ]


def test_a_file_dataset_is_closed_over_its_own_options(tmp_path):
    from tests import fixtures

    root = fixtures.cub(tmp_path / "cub").root
    entry = {
        "adapter": "cub",
        "root": str(root),
        "image_size": 32,
        "shard_size": 4,
        "splits": {"train": {}, "test": {}},
    }
    text = check(lambda c: c["datasets"].update(cub={**entry, "treshold": 100}))
    assert "datasets.cub.treshold: unknown setting; did you mean threshold?" in text
    text = check(lambda c: c["datasets"].update(cub={**entry, "splits": {"train": {"rho": 0.9}, "test": {}}}))
    assert "datasets.cub.splits.train.rho: unknown setting; known: carve, masks" in text


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda c: c["heatmaps"].update(start_block=2),
            r"heatmaps\.start_block: 2 is outside the 2 vision blocks of model 'tiny-clip'",
        ),
        (lambda c: c["heatmaps"].update(start_block=-3), r"heatmaps\.start_block: -3 is outside the 2 vision blocks"),
        (
            lambda c: c["methods"]["flcp"].update(heatmaps={"start_block": 2}),
            r"methods\.flcp\.heatmaps\.start_block: 2 is outside",
        ),
        (
            lambda c: c["methods"]["zs"].update(heatmaps={"amp": "fp16"}),
            r"methods\.zs\.heatmaps\.amp: fp16 is mixed precision on CUDA",
        ),
        (lambda c: c["methods"]["zs"].update(head="linear"), r"methods\.zs\.head: zs classifies with its prompts"),
        (
            lambda c: c["methods"]["ft"].update(head="linear"),
            r"methods\.ft\.head_init: head: linear is the official code's",
        ),
        (
            lambda c: c["heatmaps"].update(amp="fp16"),
            r"heatmaps\.amp: fp16 is mixed precision on CUDA, but device is cpu; use bf16 or none",
        ),
        (lambda c: c["methods"]["zs"].update(lr=0.1), r"methods\.zs\.lr: zs trains nothing"),
        (lambda c: c["methods"].update({"..": {"kind": "zs"}}), r"methods: the name '\.\.' is a path component"),
        (
            lambda c: c["datasets"].update({".": c["datasets"]["tiny-synthetic"]}),
            r"datasets: the name '\.' is a path component",
        ),
        (
            lambda c: c["models"].update({"..": c["models"]["tiny-clip"]}),
            r"models: the name '\.\.' is a path component",
        ),
        (
            lambda c: c["models"]["tiny-clip"].update(tokenizer="x"),
            r"models\.tiny-clip\.tokenizer: unknown setting; "
            r"known: adapter, arch, image_size, input_size, normalization, pretrain, pretrained",
        ),
        (lambda c: c["heatmaps"].update(methods=["lime"]), r"heatmaps\.methods: unknown heatmap method 'lime'"),
        (
            lambda c: (
                c["heatmaps"].update(compile=True),
                c["models"].update(a={"adapter": "albef", "arch": "ALBEF-ViT-B-16"}),
            ),
            r"heatmaps\.compile: model 'a' \(albef\): its adapter's attention does not run under torch\.compile",
        ),
        (lambda c: c["heatmaps"].update(batch_size="max"), r"heatmaps\.batch_size: 'max' does not match '\^auto\$'"),
    ],
    ids=[
        "start-block-too-deep",
        "start-block-too-negative",
        "method-start-block",
        "method-amp-on-cpu",
        "zs-head",
        "linear-head-init",
        "amp-on-cpu",
        "zs-training-setting",
        "dot-method",
        "dot-dataset",
        "dotdot-model",
        "open-clip-tokenizer",
        "unknown-heatmap-method",
        "compile-albef",
        "batch-size-word",
    ],
)
def test_settings_that_cannot_work_fail_at_config_check(change, message):
    assert re.search(message, check(change))


def test_defaults_come_from_the_schema():
    config = copy.deepcopy(DEFAULT)
    del config["heatmaps"]["batch_size"], config["datasets"]["synthetic-rho0"]["splits"]["train"]["rho"]
    check_config(config, SCHEMA)
    assert config["heatmaps"]["batch_size"] == SCHEMA["properties"]["heatmaps"]["properties"]["batch_size"]["default"]
    assert config["datasets"]["synthetic-rho0"]["splits"]["train"]["rho"] == 0.0
    assert config["methods"]["lp"]["processes"] == 1 and config["resources"]["images_per_second"]["explain"] == 300
    assert config["models"]["tiny-clip"]["adapter"] == "open_clip"
    config["heatmaps"]["batch_size"] = "auto"  # the batch the GPU's memory holds (explain/batch_size.py)
    check_config(config, SCHEMA)


def test_registries_read_from_the_source_equal_the_imported_ones():
    from vlm_rationality.explain.base import HEATMAP_METHODS
    from vlm_rationality.finetune.base import FINETUNE_METHODS
    from vlm_rationality.models import MODEL_ADAPTERS
    from vlm_rationality.registry import declared

    methods = declared("vlm_rationality.finetune", "FINETUNE_METHODS")
    assert list(methods) == list(FINETUNE_METHODS) and methods["lp"]["trains"] and not methods["zs"]["trains"]
    assert all(
        FINETUNE_METHODS.get(name).trains == facts["trains"] and FINETUNE_METHODS.get(name).head == facts["head"]
        for name, facts in methods.items()
    )
    assert list(declared("vlm_rationality.explain", "HEATMAP_METHODS")) == list(HEATMAP_METHODS)
    assert list(MODEL_ADAPTERS) == list(declared("vlm_rationality.models", "MODEL_ADAPTERS"))


@pytest.mark.parametrize(
    "spec",
    [
        {"adapter": "open_clip", "arch": "tiny-vit-32"},
        {"adapter": "open_clip", "arch": "ViT-B-16"},
        {"adapter": "albef", "arch": "tiny-albef"},
        {"adapter": "blip", "arch": "BLIP-ViT-B-16"},
    ],
)
def test_architecture_facts_read_as_data_match_the_built_model(spec, tiny_vocab, tmp_path):
    from tests.fixtures import wordpiece_vocab
    from vlm_rationality.models import build_model, model_adapter

    if spec["adapter"] != "open_clip":
        size = 64 if spec["arch"].startswith("tiny") else 30_522
        spec = {**spec, "tokenizer": str(tiny_vocab if size == 64 else wordpiece_vocab(tmp_path, size))}
    model = build_model(spec)
    adapter = model_adapter(spec)
    adapter.check()
    assert adapter.vision_layers() == len(model.vision_blocks())
    assert adapter.input_size() == model.preprocess.image_size
    assert abs(adapter.approx_parameters() / sum(p.numel() for p in model.parameters()) - 1) < 0.1


def test_training_rhos_name_the_datasets_whose_training_split_declares_one():
    config = {
        "train_split": "train",
        "datasets": {
            "spurious": {"adapter": "synthetic", "splits": {"train": {"size": 4, "rho": 0.9}}},
            "clean": {"adapter": "synthetic", "splits": {"train": {"size": 4, "rho": 0}, "test": {"size": 4}}},
            "imagenet": {"adapter": "imagenet", "root": "/data"},
        },
    }
    assert training_rhos(config) == {"spurious": 0.9, "clean": 0.0}


def test_explain_jobs_take_their_own_thread_count():
    from vlm_rationality.plan.specs import heatmap_spec, stage_threads

    config = copy.deepcopy(TEST_CONFIG)
    check_config(config, SCHEMA)
    assert stage_threads(config, "explain") == stage_threads(config, "finetune") == config["threads"]
    config["heatmaps"]["threads"] = 3
    assert stage_threads(config, "explain") == 3 and stage_threads(config, "pretrain") == config["threads"]
    assert "threads" not in heatmap_spec(config, "chefer", "zs")  # the maps do not depend on it: no rerun


def test_the_heatmap_spec_allows_exactly_the_settings_a_map_depends_on():
    import dataclasses

    from vlm_rationality.explain.heatmaps import HeatmapSettings
    from vlm_rationality.plan.specs import MAP_SETTINGS, heatmap_spec

    assert set(MAP_SETTINGS) == {f.name for f in dataclasses.fields(HeatmapSettings)} - {"method"}
    config = copy.deepcopy(TEST_CONFIG)
    config["heatmaps"].update(threads=2, workers=1, shards_per_job=2)
    check_config(config, SCHEMA)
    spec = heatmap_spec(config, "chefer", "ft")
    HeatmapSettings(**spec)  # every key a job gets is a setting it takes
    assert set(spec) <= {"method", *MAP_SETTINGS}


def test_a_method_takes_its_own_thread_count_and_its_checkpoint_does_not_depend_on_it():
    from vlm_rationality.plan.specs import finetune_spec, stage_threads

    config = copy.deepcopy(TEST_CONFIG)
    config["threads"] = 2
    config["methods"]["ft"]["threads"] = 1
    check_config(config, SCHEMA)
    assert stage_threads(config, "finetune", "ft") == 1 and stage_threads(config, "finetune", "lp") == 2
    assert stage_threads(config, "pretrain") == 2
    assert "threads" not in finetune_spec(config, "ft")
    config["methods"]["zs"]["threads"] = 1
    with pytest.raises(ConfigError, match=r"methods\.zs\.threads: zs trains nothing"):
        check_config(config, SCHEMA)


@pytest.mark.parametrize(
    "robustness, message",
    [
        ({"validation": "test"}, "robustness.validation: 'test' is the test split"),
        ({"validation": "train"}, "robustness.validation: 'train' is the training split"),
        ({"validation": "val2"}, "robustness.validation: no dataset has a 'val2' split"),
        ({"validation": "val", "ood": ["ood"]}, "datasets.tiny-synthetic.splits: no 'ood' split (named by robustness)"),
        ({"validation": "val", "oods": ["ood"]}, "robustness.oods: unknown setting; did you mean ood?"),
    ],
)
def test_a_robustness_section_naming_what_is_not_there_fails(robustness, message):
    config = copy.deepcopy(TEST_CONFIG)
    config["datasets"]["tiny-synthetic"]["splits"]["val"] = {"size": 40, "rho": 0.9}
    config["robustness"] = robustness
    with pytest.raises(ConfigError, match=re.escape(message)):
        check_config(config, copy.deepcopy(SCHEMA))


def test_an_ood_folder_that_is_missing_or_empty_fails_naming_its_path(tmp_path):
    config = copy.deepcopy(TEST_CONFIG)
    config["datasets"]["tiny-synthetic"]["splits"].update(
        val={"size": 40, "rho": 0.9}, ood={"size": 8, "kind": "texture_only"}
    )
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "sub" / "notes.txt").write_text("not an image")
    config["robustness"] = {
        "validation": "val",
        "ood": ["ood"],
        "ood_folders": {
            "inat": str(tmp_path / "missing"),
            "places": str(tmp_path / "empty"),
            "ood": str(tmp_path / "empty"),
        },
    }
    with pytest.raises(ConfigError) as error:
        check_config(config, copy.deepcopy(SCHEMA))
    text = str(error.value)
    assert f"robustness.ood_folders.inat: {tmp_path / 'missing'} does not exist; expected layout: images" in text
    assert f"robustness.ood_folders.places: {tmp_path / 'empty'} holds no images" in text
    assert "robustness.ood_folders.ood: an OOD split has this name" in text


def test_ood_folders_are_walked_with_a_bound_and_cannot_share_a_split_file(tmp_path, monkeypatch):
    """`/` is refused at once; a folder above the images is refused after MAX_ENTRIES, not walked to its end; a split
    named like a folder's would share its items file."""
    from tests import fixtures
    from vlm_rationality.data import folders

    for k in range(3):
        fixtures.photo(tmp_path / "ood" / f"{k}" / "a.png")
    monkeypatch.setattr(folders, "MAX_ENTRIES", 5)  # the walk's bound, at the size of a fixture
    config = copy.deepcopy(TEST_CONFIG)
    config["datasets"]["tiny-synthetic"]["splits"].update(val={"size": 40, "rho": 0.9}, **{"folder-inat": {"size": 4}})
    config["robustness"] = {"validation": "val", "ood_folders": {"root": "/", "inat": str(tmp_path / "ood")}}
    with pytest.raises(ConfigError) as error:
        check_config(config, copy.deepcopy(SCHEMA))
    text = str(error.value)
    assert "robustness.ood_folders.root: / is a filesystem root; give the folder that holds the images" in text
    assert f"robustness.ood_folders.inat: {tmp_path / 'ood'} holds more than 5 files and folders" in text
    assert "datasets.tiny-synthetic.splits.folder-inat: robustness prepares a folder as the split 'folder-inat'" in text


def test_a_shifted_test_set_needs_synset_classes_its_layout_and_a_name_of_its_own(tmp_path):
    from vlm_rationality.plan.specs import prediction_sets, prepare_spec, restricted_sets

    root = fixtures.imagenet(tmp_path / "imagenet").root
    fixtures.shifted_imagenet(tmp_path / "r", "r", ["n01443537"])
    fixtures.shifted_imagenet(tmp_path / "v2", "v2", ["tench"])  # not a class index: not V2's layout
    config = copy.deepcopy(TEST_CONFIG)
    config["datasets"]["mini-in"] = {
        "adapter": "imagenet",
        "root": str(root),
        "image_size": 32,
        "shard_size": 8,
        "split_folders": {"test": "val"},
        "splits": {"train": {"masks": False}, "test": {}, "val": {"masks": False}},
        "shifts": ["clean", "gaussian_noise-1"],
    }
    config["datasets"]["tiny-synthetic"]["splits"]["val"] = {"size": 40, "rho": 0.9}
    config["robustness"] = {
        "validation": "val",
        "shifted_sets": {
            "r": {"adapter": "imagenet_r", "root": str(tmp_path / "r")},
            "v2": {"adapter": "imagenet_v2", "root": str(tmp_path / "v2")},
            "gaussian_noise-1": {"adapter": "imagenet_r", "root": str(tmp_path / "r")},
        },
    }
    with pytest.raises(ConfigError) as error:
        check_config(copy.deepcopy(config), copy.deepcopy(SCHEMA))
    text = str(error.value).splitlines()
    assert (
        "robustness.shifted_sets.r: the classes of dataset 'tiny-synthetic' are not ImageNet synsets; a shifted "
        "test set needs them" in text
    )
    assert (
        f"robustness.shifted_sets.v2: {tmp_path / 'v2'}: folders ['tench'] name no class; expected root/<class "
        "index 0-999>/*.jpeg (ImageNet-V2, any of its three samplings)" in text
    )
    assert "robustness.shifted_sets.gaussian_noise-1: dataset 'mini-in' has a shift of this name; rename it" in text
    del config["datasets"]["tiny-synthetic"], config["robustness"]["shifted_sets"]["v2"]
    del config["robustness"]["shifted_sets"]["gaussian_noise-1"]
    config["datasets"]["mini-in"]["shifts"] = ["clean"]
    config["models"]["tiny-clip"].pop("pretrain")
    config["methods"] = {"zs": {"kind": "zs"}}
    check_config(config, copy.deepcopy(SCHEMA))
    assert {"name": "test/r", "split": "shifted-r", "shift": "clean"} in prediction_sets(config, "mini-in")
    spec = prepare_spec(config, "mini-in", "shifted-r")  # labelled by the fixture's two synsets, in its order
    assert spec["adapter"] == "imagenet_r" and spec["synsets"] == ["n01440764", "n01443537"]
    assert restricted_sets(config) == ["test/r"]


def test_the_cue_conflict_stimuli_folder_is_checked_and_given_once(tmp_path):
    config = copy.deepcopy(TEST_CONFIG)
    config["datasets"]["tiny-synthetic"]["splits"].update(
        val={"size": 40, "rho": 0.9}, cue={"size": 8, "kind": "cue_conflict"}
    )
    config["robustness"] = {"validation": "val", "cue_conflict_folder": str(tmp_path / "stimuli")}
    with pytest.raises(
        ConfigError, match=re.escape(f"robustness.cue_conflict_folder: {tmp_path / 'stimuli'} does not exist")
    ):
        check_config(copy.deepcopy(config), copy.deepcopy(SCHEMA))
    config["robustness"]["cue_conflict"] = "cue"
    with pytest.raises(ConfigError, match="give the cue-conflict images once"):
        check_config(config, copy.deepcopy(SCHEMA))


def test_folders_are_prepared_as_splits_of_each_robustness_dataset(tmp_path):
    from PIL import Image

    from vlm_rationality.plan.specs import cue_conflict_set, ood_sets, prediction_sets, prepare_spec

    (tmp_path / "stimuli" / "cat").mkdir(parents=True)
    Image.new("RGB", (20, 20)).save(tmp_path / "stimuli" / "cat" / "cat1-dog1.png")
    (tmp_path / "photos").mkdir()
    Image.new("RGB", (20, 20)).save(tmp_path / "photos" / "x.jpg")
    config = copy.deepcopy(TEST_CONFIG)
    config["datasets"]["tiny-synthetic"]["splits"]["val"] = {"size": 40, "rho": 0.9}
    config["robustness"] = {
        "validation": "val",
        "cue_conflict_folder": str(tmp_path / "stimuli"),
        "ood_folders": {"photos": str(tmp_path / "photos")},
    }
    check_config(config, copy.deepcopy(SCHEMA))
    assert [(s["name"], s["split"]) for s in prediction_sets(config, "tiny-synthetic")] == [
        ("val", "val"),
        ("test/clean", "test"),
        ("stimuli", "stimuli"),
        ("photos", "folder-photos"),
    ]
    assert (ood_sets(config), cue_conflict_set(config)) == (["photos"], "stimuli")
    stimuli = prepare_spec(config, "tiny-synthetic", "stimuli")
    assert (stimuli["adapter"], stimuli["image_size"], stimuli["splits"]) == (
        "cue_conflict_stimuli",
        32,
        {"stimuli": {"masks": False}},
    )
    assert prepare_spec(config, "tiny-synthetic", "folder-photos")["adapter"] == "image_folder"


def test_a_carve_from_the_scored_split_or_without_a_fraction_fails_naming_the_key(tmp_path):
    from tests import fixtures

    root = fixtures.caltech101(tmp_path / "caltech").root
    config = copy.deepcopy(TEST_CONFIG)
    config["datasets"]["cal"] = {
        "adapter": "caltech101",
        "root": str(root),
        "image_size": 32,
        "shard_size": 4,
        "splits": {
            "train": {},
            "test": {},
            "val": {"carve": {"from": "test", "fraction": 0.2}},
            "val2": {"carve": {"from": "train"}},
        },
    }
    config["datasets"]["tiny-synthetic"]["splits"]["val"] = {"size": 40, "carve": {"from": "train", "fraction": 0.2}}
    with pytest.raises(ConfigError) as error:
        check_config(config, copy.deepcopy(SCHEMA))
    text = str(error.value)
    assert (
        "datasets.cal.splits.val.carve.from: 'test' is the split that is scored; "
        "carve from the training split ('train')" in text
    )
    assert "datasets.cal.splits.val2.carve: 'fraction' is a required property" in text
    assert "datasets.tiny-synthetic.splits.val.carve: unknown setting" in text  # generated splits are drawn, not carved


def test_the_config_check_tries_the_cluster_counts_discovery_tries():
    from vlm_rationality.discover.clusters import k_range
    from vlm_rationality.plan.config import RAVL_KS

    for classes in (2, 8, 1000):
        assert range(RAVL_KS[0] * classes, RAVL_KS[1] * classes) == k_range(classes)


def test_a_scored_split_without_masks_is_refused_naming_it(tmp_path):
    """RMA is a map's mass on the object: a scored split without masks would give PT NaN for every method, silently."""
    from tests import fixtures

    root = fixtures.cub(tmp_path / "cub").root
    entry = {"adapter": "cub", "root": str(root), "image_size": 32, "shard_size": 4}
    text = check(lambda c: c["datasets"].update(cub={**entry, "splits": {"train": {}, "test": {"masks": False}}}))
    assert "datasets.cub.splits.test: the scored split has no object masks (masks: false" in text
    text = check(lambda c: c["datasets"]["tiny-synthetic"]["splits"]["test"].update(kind="texture_only"))
    assert "datasets.tiny-synthetic.splits.test: the scored split has no object masks" in text
    assert "datasets.cub" not in check(
        lambda c: (
            c["datasets"].update(cub={**entry, "splits": {"train": {"masks": False}, "test": {}}}),
            c.update(x=1),
        )
    )


def test_a_discovery_section_naming_what_is_not_there_fails():
    config = copy.deepcopy(TEST_CONFIG)
    config["discovery"] = {"methods": ["zs", "ravl"], "split": "discover", "boxes": 3}
    with pytest.raises(ConfigError) as error:
        check_config(config, copy.deepcopy(SCHEMA))
    assert "discovery.boxes: unknown setting" in str(error.value)
    del config["discovery"]["boxes"]
    with pytest.raises(ConfigError) as error:
        check_config(config, copy.deepcopy(SCHEMA))
    text = str(error.value)
    assert "discovery.methods: no method 'ravl' in methods" in text
    assert "datasets.tiny-synthetic.splits: no 'discover' split (named by discovery.split)" in text


def test_a_ravl_method_must_mitigate_a_discovered_fine_tuned_method():
    config = copy.deepcopy(TEST_CONFIG)
    ravl = {"kind": "ravl", "lr": 1e-4, "epochs": 1, "batch_size": 20}
    config["methods"]["ravl"] = dict(ravl)
    with pytest.raises(ConfigError, match="methods.ravl: 'mitigates' is a required property"):
        check_config(copy.deepcopy(config), copy.deepcopy(SCHEMA))
    config["methods"].update(
        ravl={**ravl, "mitigates": "ft"},
        again={**ravl, "mitigates": "ravl"},
        zero={**ravl, "mitigates": "zs"},
        ghost={**ravl, "mitigates": "nope"},
        lora={"kind": "lora", "lr": 1e-4, "epochs": 1, "batch_size": 20},
    )
    with pytest.raises(ConfigError) as error:
        check_config(copy.deepcopy(config), copy.deepcopy(SCHEMA))
    text = str(error.value)
    assert "methods.ravl: ravl reads the discovery of 'ft'; add a `discovery` section" in text
    assert "methods.again.mitigates: 'ravl' must be a fine-tuned method other than ravl" in text
    assert "methods.zero.mitigates: 'zs' must be a fine-tuned method other than ravl" in text
    assert "methods.ghost.mitigates: no method 'nope' in methods" in text
    assert "methods.lora.kind: unknown method 'lora'" in text  # an unknown kind is reported, not a crash
    for name in ("again", "zero", "ghost", "lora"):
        del config["methods"][name]
    config["discovery"] = {"methods": ["zs"]}
    with pytest.raises(ConfigError, match="discovery.methods: add 'ft', the method that methods.ravl mitigates"):
        check_config(copy.deepcopy(config), copy.deepcopy(SCHEMA))
    config["discovery"] = {"methods": ["ft"], "max_regions": 2}
    classes = TEST_CONFIG["datasets"]["tiny-synthetic"].get("num_classes", 4)
    with pytest.raises(ConfigError) as error:  # refused before discovery runs, not after
        check_config(
            copy.deepcopy(
                {**config, "methods": {**config["methods"], "ravl": {**config["methods"]["ravl"], "augment": True}}}
            ),
            copy.deepcopy(SCHEMA),
        )
    assert str(error.value).splitlines() == [
        "methods.ravl.augment: ravl cuts each region at the box its discovery assigned; random crops would move the "
        "boxes, so drop augment",
        f"discovery.max_regions: 2 regions cannot form the {5 * classes - 1} clusters RaVL tries for the {classes} "
        f"classes of dataset 'tiny-synthetic' (K runs {2 * classes}…{5 * classes - 1}); "
        f"give more than {5 * classes - 1}",
    ]
    config["discovery"] = {"methods": ["ft"]}
    check_config(config, copy.deepcopy(SCHEMA))  # fills in the schema's defaults
    assert config["methods"]["ravl"]["region_loss"] == {
        "weight": 0.8,
        "temperature": 0.07,
        "spurious_clusters": 1,
        "denominator": "classes",
        "view": "crop",
        "reduction": "sum",
        "ablate": [],
    }


def test_a_twins_section_is_checked_against_the_pool_of_backgrounds_and_the_mask_variants(tmp_path):
    from tests import fixtures

    root = fixtures.cub(tmp_path / "cub").root
    cub = {"adapter": "cub", "root": str(root), "image_size": 32, "shard_size": 5, "splits": {"train": {}, "test": {}}}

    def twins_on_cub(c):
        c["datasets"] = {"cub": cub}
        c["models"]["tiny-clip"].pop("pretrain")  # its pretraining split was synthetic's
        c["models"]["tiny-clip"]["pretrained"] = None
        c["twins"] = {"backgrounds": 8}

    assert (
        "twins.backgrounds: 8 backgrounds per sample need at least 10 images per explain job, but dataset 'cub' "
        "has 5 (shard_size x heatmaps.shards_per_job); lower twins.backgrounds"
    ) in check(twins_on_cub)
    config = copy.deepcopy(TEST_CONFIG)
    twins_on_cub(config)
    config["twins"]["backgrounds"] = 2
    check_config(config, SCHEMA)  # a full job of 5 images is enough; the split's last job is checked once listed
    assert twins_pool_error(config, "cub", 15) is None
    assert twins_pool_error(config, "cub", 11) == (
        "twins.backgrounds: 2 backgrounds per sample need at least 4 images per explain job, but dataset 'cub' has 1 "
        "(the last explain job of its 11 scored images); lower twins.backgrounds, or choose shard_size and "
        "heatmaps.shards_per_job so that every job holds enough"
    )
    assert "has 3 (the last explain job of its 13 scored images); lower twins.backgrounds to 1," in twins_pool_error(
        config, "cub", 13
    )
    config = copy.deepcopy(TEST_CONFIG)
    config["twins"] = {"backgrounds": 100}
    check_config(config, SCHEMA)  # the synthetic generator renders its own backgrounds: no pool needed
    assert config["twins"] == {
        "backgrounds": 100,
        "agreement": 1.0,
        "masks": ["exact", "dilate-2", "dilate-4", "box"],
        "seed": 0,
        "batch_size": 512,
    }
    assert "twins.masks.0" in check(lambda c: c.update(twins={"masks": ["dilate-0"]}))
    assert "datasets.tiny-synthetic.mask" in check(lambda c: c["datasets"]["tiny-synthetic"].update(mask="boxes"))


def _numeric_paths(value, path=()):
    """Every number of a filled-in config, as a key path (booleans are not numbers here)."""
    if isinstance(value, dict):
        return [p for key, sub in value.items() for p in _numeric_paths(sub, (*path, key))]
    if isinstance(value, list):
        return [p for i, sub in enumerate(value) for p in _numeric_paths(sub, (*path, i))]
    return [path] if isinstance(value, (int, float)) and not isinstance(value, bool) else []


def _key(path) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path).lstrip(".")


def test_nan_and_inf_are_refused_at_every_numeric_key():
    """NaN passes every range (it compares false), so `score.threshold: .nan` would score PT 0.0 everywhere."""
    filled = copy.deepcopy(TEST_CONFIG)
    filled["robustness"] = {"validation": "val"}
    filled["datasets"]["tiny-synthetic"]["splits"]["val"] = {"size": 40, "rho": 0.9}
    check_config(filled, copy.deepcopy(SCHEMA))
    paths = _numeric_paths(filled)
    assert len(paths) > 40 and ("score", "threshold") in paths and ("methods", "ft", "lr") in paths
    for path in paths:
        for bad in (float("nan"), float("inf"), -float("inf")):
            config = copy.deepcopy(filled)
            node = config
            for part in path[:-1]:
                node = node[part]
            node[path[-1]] = bad
            with pytest.raises(ConfigError) as error:
                check_config(config, copy.deepcopy(SCHEMA))
            assert f"{_key(path)}: {bad} is not a finite number; give a finite value" in str(error.value).splitlines()


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda c: c.update(shifts=["clean", "clean"]), "shifts: ['clean', 'clean'] has non-unique elements"),
        (
            lambda c: c["datasets"]["tiny-synthetic"].update(shifts=["clean", "clean"]),
            "datasets.tiny-synthetic.shifts: ['clean', 'clean'] has non-unique elements",
        ),
        (
            lambda c: c["heatmaps"].update(methods=["chefer", "chefer"]),
            "heatmaps.methods: ['chefer', 'chefer'] has non-unique",
        ),
        (
            lambda c: c["datasets"]["tiny-synthetic"]["splits"].update({"..": {"size": 4}}),
            "datasets.tiny-synthetic.splits: the name '..' is a path component",
        ),
        (
            lambda c: c["datasets"]["tiny-synthetic"]["splits"].update({"tr ain": {"size": 4}}),
            "datasets.tiny-synthetic.splits: the name 'tr ain' is a path component",
        ),
        (
            lambda c: c["datasets"]["tiny-synthetic"]["splits"].update({"-x": {"size": 4}}),
            "datasets.tiny-synthetic.splits: the name '-x' is a path component",
        ),
        (lambda c: c["methods"].update({"-ft": c["methods"]["ft"]}), "methods: the name '-ft' is a path component"),
        (
            lambda c: c["datasets"].update({"d" * 300: c["datasets"]["tiny-synthetic"]}),
            "datasets: the name dddddddddddddddddddddddd... is 300 characters; "
            "it becomes part of file names (the filesystem "
            "allows 255 bytes, and the workflow adds suffixes), so use at most 96",
        ),
        (
            lambda c: c["methods"].update({"m" * 235: c["methods"]["ft"]}),
            "methods: the name mmmmmmmmmmmmmmmmmmmmmmmm... is 235",
        ),
        (lambda c: c["methods"]["zs"].update(weight_decay=0.1), "methods.zs.weight_decay: zs trains nothing"),
        (lambda c: c["methods"]["zs"].update(seed=3), "methods.zs.seed: zs trains nothing"),
        (lambda c: c["methods"]["zs"].update(processes=2), "methods.zs.processes: zs trains nothing"),
        (
            lambda c: c["methods"]["ft"].update(mitigates="lp"),
            "methods.ft.mitigates: unknown setting",
        ),
        (
            lambda c: c["methods"]["lp"].update(early_stopping={"split": "val"}),
            "methods.lp.early_stopping: unknown setting",
        ),
        (
            lambda c: c["methods"]["ft"].update(early_stopping={"split": "val"}),
            "methods.ft.early_stopping.split: dataset 'tiny-synthetic' has no split 'val'; add it to "
            "datasets.tiny-synthetic.splits",
        ),
        (
            lambda c: c["methods"]["ft"].update(early_stopping={"split": c["eval_split"]}),
            "methods.ft.early_stopping.split: 'test' is the split that is scored; select on a held-out one",
        ),
        (
            lambda c: c.update(replicates={"reference": "vl-erm"}),
            "replicates.reference: no method 'vl-erm'; use one of flcp, ft, lp, zs",
        ),
        (
            lambda c: c.update(prompt_template="a photo of a {name} in {other}"),
            "prompt_template: 'a photo of a {name} in {other}' cannot be filled in (the placeholder {other}); "
            "only a plain {name} is a placeholder (no format spec or conversion), write a literal brace as {{ or }}",
        ),
        (
            lambda c: c.update(prompt_template="a photo"),
            "prompt_template: 'a photo' cannot be filled in (no {name}: every class would get the same prompt)",
        ),
        (
            lambda c: c.update(prompt_template="{name:>300000000}"),
            "prompt_template: '{name:>300000000}' cannot be filled in (the placeholder {name:>300000000})",
        ),
        (
            lambda c: c["methods"]["zs"].update(templates=["a {name}", "a photo"]),
            "methods.zs.templates[1]: 'a photo' cannot be filled in (no {name}",
        ),
        (
            lambda c: c["methods"]["zs"].update(templates="imagenet-80"),
            "methods.zs.templates: 'imagenet-80' is not valid",
        ),
        (lambda c: c["methods"]["lp"].update(templates="openai-imagenet"), "methods.lp.templates: unknown setting"),
        (
            lambda c: c["datasets"]["tiny-synthetic"].update(image_size=60),
            "datasets.tiny-synthetic.image_size: 60 is not the input size of model 'tiny-clip' (32); "
            "prepare the dataset at 32",
        ),
        (
            lambda c: (
                c["models"]["tiny-clip"].update(input_size="dataset"),
                c["datasets"]["tiny-synthetic"].update(image_size=60),
            ),
            "datasets.tiny-synthetic.image_size: model 'tiny-clip' cannot take it: "
            "image_size 60 is not a multiple of tiny-vit-32's patch size 8",
        ),
        (
            lambda c: c["models"]["tiny-clip"].update(input_size="dataset", image_size=48),
            "models.tiny-clip: give image_size (one size for every dataset) or input_size: dataset, not both",
        ),
        (
            lambda c: c["models"]["tiny-clip"]["pretrain"].update(start_from="tiny-clop"),
            "models.tiny-clip.pretrain.start_from: no model 'tiny-clop' in models",
        ),
        (
            lambda c: c["models"]["tiny-clip"]["pretrain"].update(start_from="tiny-clip"),
            "models.tiny-clip.pretrain.start_from: the models' start_from come back to 'tiny-clip' "
            "(tiny-clip -> tiny-clip)",
        ),
        (
            lambda c: (
                c["models"].update(scratch={"adapter": "open_clip", "arch": "tiny-vit-32"}),
                c["models"]["tiny-clip"]["pretrain"].update(start_from="scratch"),
            ),
            "models.tiny-clip.pretrain.start_from: 'scratch' has no weights to start from (neither pretrain nor "
            "pretrained)",
        ),
    ],
    ids=[
        "shifts",
        "dataset-shifts",
        "heatmap-methods",
        "dotdot-split",
        "space-split",
        "dash-split",
        "dash-method",
        "long-dataset",
        "long-method",
        "zs-weight-decay",
        "zs-seed",
        "zs-processes",
        "ft-mitigates",
        "lp-early-stopping",
        "early-stopping-split-missing",
        "early-stopping-on-the-scored-split",
        "replicates-reference",
        "prompt-placeholder",
        "prompt-no-name",
        "prompt-format-spec",
        "ensemble-no-name",
        "ensemble-unknown-set",
        "ensemble-not-zs",
        "image-size",
        "resampled-size",
        "resampled-and-fixed-size",
        "start-from-unknown",
        "start-from-itself",
        "start-from-no-weights",
    ],
)
def test_a_config_that_would_run_to_wrong_numbers_or_a_late_failure_is_refused(change, message):
    assert message in check(change)


def test_schema_and_registry_errors_are_reported_at_once():
    text = check(
        lambda c: (
            c["score"].update(treshold=0.3),
            c["methods"]["ft"].update(kind="fullft"),
            c["heatmaps"].update(methods=["lime"]),
            c["models"]["tiny-clip"].update(adapter="clap"),
        )
    )
    assert text.splitlines() == [
        "score.treshold: unknown setting; did you mean threshold?",
        "models.tiny-clip.adapter: unknown model adapter 'clap'; known: albef, blip, open_clip",
        "methods.ft.kind: unknown method 'fullft'; "
        "known: clip_adapter, coop, external, flcp, ft, lp, ravl, upsample, vl-erm, vl-ft, vl-gdro, vl-upsample, zs",
        "heatmaps.methods: unknown heatmap method 'lime'; known: chefer, gradcam, rollout",
    ]


def test_a_schema_error_in_one_section_leaves_the_other_sections_checked():
    """One pass: a method's schema error does not hide what the dataset and model checks find."""
    text = check(
        lambda c: (
            c["methods"]["ft"].update(lr="fast"),
            c["datasets"]["tiny-synthetic"].update(image_size=60, mask="dilate-40"),
            c["score"].update(bootstrap_iterations=5),
        )
    )
    assert text.splitlines() == [
        "methods.ft.lr: 'fast' is not of type 'number'",
        "datasets.tiny-synthetic.image_size: 60 is not the input size of model 'tiny-clip' (32); "
        "prepare the dataset at 32",
        "datasets.tiny-synthetic.mask: dilate-40 on 60-px images grows a centred object over the whole image, so "
        "every map would score RMA 1; use dilate-N with N below 30",
        "score.bootstrap_iterations: 5 replicates leave fewer than 3 a side of a 95% interval; use at least 100, or 0 "
        "for no intervals (the tables then say so)",
    ]


def test_a_config_expanding_past_its_budget_is_refused_before_any_check(tmp_path):
    """Nested YAML aliases: nine lines standing for 10^9 values, refused at once instead of walked."""
    import time

    laughs = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]\n" for i in range(8)
    )
    config = {**copy.deepcopy(TEST_CONFIG), "methods": yaml.safe_load(laughs)["i"]}
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=r"config: more than 100,000 values .* nested YAML aliases"):
        check_config(config, SCHEMA)
    assert time.perf_counter() - start < 2
    big = tmp_path / "big.yaml"
    big.write_text("# padding\n" * 200_000)
    with pytest.raises(ConfigError, match=rf"{big}: 2,000,000 bytes; a config is a few KiB"):
        check_files([str(big)])


def test_a_sweep_of_too_many_variants_is_refused_before_expanding():
    text = check(
        lambda c: c["methods"]["ft"].update(
            {key: [1, 2, 3, 4, 5, 6, 7, 8] for key in ("lr", "epochs", "seed", "batch_size")}
        )
    )
    assert "methods.ft: its swept lists (batch_size, epochs, lr, seed) make 4,096 variants" in text


def test_a_partial_configfile_says_how_to_overlay_it():
    with pytest.raises(ConfigError) as error:
        check_config({"threads": 1}, copy.deepcopy(SCHEMA))
    assert "config: 'datasets' is a required property" in str(error.value)
    assert "give config.yaml first and yours after it (snakemake --configfile config.yaml mine.yaml)" in str(
        error.value
    )


def test_a_key_given_twice_in_a_config_file_is_refused_with_both_lines(tmp_path):
    from vlm_rationality.plan.config import check_files

    path = tmp_path / "mine.yaml"
    path.write_text(
        "threads: 1\nscore:\n  threshold: 0.5\n  seed: 1\n  threshold: 0.3\nbase: &b {a: 1}\nother:\n  <<: *b\n  a: 2\n"
    )
    with pytest.raises(ConfigError) as error:
        check_files([str(path)])
    assert str(error.value) == (
        f"{path}: the key 'threshold' is given twice, on lines 3 and 5; keep one (YAML would silently keep the last)"
    )
    check_files([str(REPO / "config.yaml"), *map(str, sorted((REPO / "config").glob("*.yaml")))])


def test_a_method_is_closed_over_the_options_its_kind_declares_at_registration():
    from vlm_rationality.registry import declared

    config = copy.deepcopy(TEST_CONFIG)
    config["methods"]["adapter"] = {"kind": "clip_adapter", "lr": 1e-3, "epochs": 1, "batch_size": 8}
    config["methods"]["context"] = {"kind": "coop", "lr": 1e-3, "epochs": 1, "batch_size": 8}
    check_config(config, SCHEMA)
    declared_options = declared("vlm_rationality.finetune", "FINETUNE_METHODS")["clip_adapter"]["options"]
    assert config["methods"]["adapter"]["adapter"] == {"reduction": 4, "ratio": 0.2}  # the declared defaults
    assert declared_options["adapter"]["properties"]["reduction"]["default"] == 4
    assert config["methods"]["context"]["context"] == {"length": 16, "init": "random", "class_specific": False}
    config = copy.deepcopy(TEST_CONFIG)
    config["methods"]["ft"]["adapter"] = {"reduction": 2}  # another kind's option
    config["methods"]["ravl"] = {"kind": "ravl", "lr": 1e-3, "epochs": 1, "batch_size": 8}  # its required key missing
    with pytest.raises(ConfigError) as error:
        check_config(config, SCHEMA)
    assert "methods.ft.adapter: unknown setting" in str(error.value)
    assert "methods.ravl: 'mitigates' is a required property" in str(error.value)


def test_too_few_bootstrap_replicates_are_refused_and_none_is_said_in_the_table():
    from vlm_rationality.report.tables import report_markdown

    assert "score.bootstrap_iterations: 20 replicates leave fewer than 3 a side" in check(
        lambda c: c["score"].update(bootstrap_iterations=20)
    )
    config = copy.deepcopy(TEST_CONFIG)
    config["score"]["bootstrap_iterations"] = 0
    check_config(config, SCHEMA)  # 0: no intervals, allowed
    row = {"dataset": "d", "shift": "clean", "model": "m", "method": "zs", "heatmap_method": "chefer"}
    row.update(threshold=0.5, accuracy=0.5, accuracy_ci_low=float("nan"), accuracy_ci_high=float("nan"))
    assert "without intervals (score.bootstrap_iterations is 0)" in report_markdown([row], ["zs"], ["m"], ["d"], [])


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("VLM_RATIONALITY_JOBS_PER_GPU", "0", "VLM_RATIONALITY_JOBS_PER_GPU='0': give a whole number of jobs per GPU"),
        ("VLM_RATIONALITY_JOBS_PER_GPU", "abc", "VLM_RATIONALITY_JOBS_PER_GPU='abc': give a whole number"),
        ("VLM_RATIONALITY_PROGRESS_SECONDS", "-1", "VLM_RATIONALITY_PROGRESS_SECONDS='-1': give a positive number"),
        ("VLM_RATIONALITY_GPU_LOCKS", "{file}/locks", "is a file, not a folder; point the variable at a folder"),
    ],
)
def test_environment_variables_are_checked_with_the_config_naming_the_variable(
    name, value, message, monkeypatch, tmp_path
):
    (tmp_path / "file").write_text("")
    monkeypatch.setenv(name, value.format(file=tmp_path / "file"))
    assert f"environment: {name}=" in check(lambda c: None) and message in check(lambda c: None)


def test_a_dilation_that_covers_the_image_is_refused_naming_the_key():
    message = check(lambda c: c["datasets"]["tiny-synthetic"].update(mask="dilate-9999"))
    assert "datasets.tiny-synthetic.mask: dilate-9999 on 32-px images grows a centred object over the whole" in message
    message = check(lambda c: c.update(twins={"masks": ["exact", "dilate-16"]}))
    assert "twins.masks (tiny-synthetic): dilate-16 on 32-px images" in message and "below 16" in message


def test_a_sweep_whose_variant_names_exceed_a_file_name_is_refused_before_training():
    message = check(lambda c: c["methods"]["lp"].update(seed=[10**200, 1]))  # lp.seed=1000…: 209 characters
    assert "methods.lp: its variant lp.seed=" in message and "is 209 characters, a file name" in message
    config = copy.deepcopy(TEST_CONFIG)
    config["methods"]["a" * 90] = {"kind": "lp", "lr": [0.01, 0.02], "epochs": 1, "batch_size": 20}
    check_config(config, SCHEMA)  # a long name with short variants stays within the bound


def test_the_factor_table_takes_configured_datasets_whose_adapter_has_factor_annotations(tmp_path):
    def caltech(config):
        config["datasets"]["caltech"] = {
            "adapter": "caltech101",
            "root": str(fixtures.caltech101(tmp_path / "caltech").root),
            "image_size": 32,
            "shard_size": 8,
            "splits": {"train": {"masks": False}, "test": {}},
        }
        config["factors"] = {"datasets": ["tiny-synthetic", "caltech", "imagenet-x"]}

    text = check(caltech)
    assert "factors.datasets: 'imagenet-x' is not a configured dataset: tiny-synthetic, caltech" in text
    assert (
        "factors.datasets: 'caltech' (caltech101) has no visual-factor annotations; adapters that have them: " in text
    )
    assert "imagenet, synthetic" in text
    config = copy.deepcopy(TEST_CONFIG)
    config["factors"] = {"datasets": ["tiny-synthetic"]}
    check_config(config, SCHEMA)
