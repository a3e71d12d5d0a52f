"""Sweeps: list-valued training settings expand into named variants at config check."""

from __future__ import annotations

import copy

import pytest

from tests.snakemake_runs import SCHEMA, TEST_CONFIG
from vlm_rationality.plan.config import ConfigError, check_config
from vlm_rationality.plan.specs import finetune_spec
from vlm_rationality.plan.sweep import variant_name


def _checked(methods: dict) -> dict:
    config = copy.deepcopy(TEST_CONFIG)
    config["methods"] = methods
    check_config(config, copy.deepcopy(SCHEMA))
    return config


def test_a_two_by_two_sweep_makes_four_named_variants_with_their_values():
    config = _checked(
        {
            "zs": {"kind": "zs"},
            "ft": {"kind": "ft", "optimizer": ["adamw", "sgd"], "lr": [1.0e-5, 1.0e-4], "epochs": 1, "batch_size": 20},
        }
    )
    assert list(config["methods"]) == [
        "zs",
        "ft.lr=1e-05.optimizer=adamw",
        "ft.lr=1e-05.optimizer=sgd",
        "ft.lr=0.0001.optimizer=adamw",
        "ft.lr=0.0001.optimizer=sgd",
    ]
    variant = config["methods"]["ft.lr=0.0001.optimizer=sgd"]
    assert (variant["optimizer"], variant["lr"], variant["epochs"]) == ("sgd", 1.0e-4, 1)
    assert variant["sweep"] == {"method": "ft", "values": {"lr": 1.0e-4, "optimizer": "sgd"}}
    # the label is not a training setting: the checkpoint is the one a hand-written entry would make
    by_hand = _checked({"ft": {"kind": "ft", "optimizer": "sgd", "lr": 1.0e-4, "epochs": 1, "batch_size": 20}})
    assert finetune_spec(config, "ft.lr=0.0001.optimizer=sgd") == finetune_spec(by_hand, "ft")
    again = copy.deepcopy(config)
    check_config(again, copy.deepcopy(SCHEMA))  # checking an expanded config again changes nothing
    assert again == config


def test_a_variant_name_depends_only_on_its_own_values():
    assert variant_name("ft", {"augment": True, "epochs": 3, "lr": 0.002}) == "ft.augment=true.epochs=3.lr=0.002"
    written = {"kind": "ft", "optimizer": ["adamw", "sgd"], "lr": [0.1, 0.2], "epochs": 1, "batch_size": 20}
    reordered = dict(reversed(list(written.items())))  # how the YAML orders the keys does not rename a variant
    assert list(_checked({"ft": written})["methods"]) == list(_checked({"ft": reordered})["methods"])
    one = _checked({"lp": {"kind": "lp", "lr": [0.01, 0.1], "epochs": 1, "batch_size": 20}})
    other = _checked({"lp": {"kind": "lp", "lr": [0.01, 0.2], "epochs": 1, "batch_size": 20}})
    assert one["methods"]["lp.lr=0.01"] == other["methods"]["lp.lr=0.01"]
    assert set(one["methods"]) ^ set(other["methods"]) == {"lp.lr=0.1", "lp.lr=0.2"}


@pytest.mark.parametrize(
    "method, messages",
    [
        (
            {"kind": "ft", "optimizer": ["adamw", "adam"], "lr": 1.0e-4, "epochs": 1, "batch_size": 20},
            ["methods.ft.optimizer: 'adam' is not one of ['adamw', 'sgd'] (variant ft.optimizer=adam)"],
        ),
        (
            {"kind": "ft", "lr": [1.0e-4, -1], "epochs": [1, 2], "batch_size": 20},
            ["methods.ft.lr: -1 is less than or equal to the minimum of 0 (variant ft.epochs=1.lr=-1)"],
        ),
        (
            {"kind": ["ft", "lp"], "lr": 1.0e-4, "epochs": 1, "batch_size": 20},
            ["methods.ft.kind: `kind` cannot be swept"],
        ),
        ({"kind": "ft", "lr": [], "epochs": 1, "batch_size": 20}, ["methods.ft.lr: an empty list sweeps nothing"]),
        (
            {"kind": "ft", "lr": [0.1, 0.1], "epochs": 1, "batch_size": 20},
            ["methods.ft.lr: the swept values [0.1, 0.1] repeat"],
        ),
        (
            {"kind": "ft", "optimizer": ["sgd", "a/b"], "lr": 0.1, "epochs": 1, "batch_size": 20},
            ["methods.ft.optimizer: 'a/b' cannot be part of a path"],
        ),
    ],
)
def test_a_bad_swept_value_fails_naming_the_key_the_user_wrote(method, messages):
    with pytest.raises(ConfigError) as error:
        _checked({"ft": method})
    text = str(error.value)
    for message in messages:
        assert message in text
    assert text.count("\n") == len(messages) - 1  # reported once, not once per variant


def test_a_variant_may_not_take_a_configured_methods_name():
    with pytest.raises(ConfigError, match="methods.lp: its variant 'lp.lr=0.1' has the name of a configured method"):
        _checked(
            {
                "lp": {"kind": "lp", "lr": [0.1, 0.2], "epochs": 1, "batch_size": 20},
                "lp.lr=0.1": {"kind": "lp", "lr": 0.1, "epochs": 1, "batch_size": 20},
            }
        )


def test_a_list_a_method_kind_declares_is_one_value_and_its_prompts_fill_every_template():
    from vlm_rationality.plan.specs import prompts

    config = copy.deepcopy(TEST_CONFIG)
    config["methods"]["zs-ensemble"] = {"kind": "zs", "templates": ["a photo of a {name}", "a drawing of a {name}"]}
    config["methods"]["zs-openai"] = {"kind": "zs", "templates": "openai-imagenet"}
    check_config(config, SCHEMA)
    assert "zs-ensemble" in config["methods"]  # not swept into variants
    single = prompts(config, "tiny-synthetic", "zs")
    pairs = prompts(config, "tiny-synthetic", "zs-ensemble")
    assert [pair[0] for pair in pairs] == single and pairs[0][1] == single[0].replace("a photo of", "a drawing of")
    openai = prompts(config, "tiny-synthetic", "zs-openai")  # open_clip's 80 templates, filled with each class
    assert len(openai) == len(single) and {len(p) for p in openai} == {80}
    assert openai[0][0] == single[0].replace("a photo of", "a bad photo of") + "."
