import numpy as np
import pytest
import torch

from vlm_rationality.data.synthetic import SyntheticSpec, generate
from vlm_rationality.finetune.augment import random_resized_crop_flip
from vlm_rationality.finetune.base import build_method
from vlm_rationality.finetune.data import TrainingSplit
from vlm_rationality.finetune.losses import contrastive_loss
from vlm_rationality.models import build_model


def test_augmentation_is_seeded_in_range_and_flips():
    ramp = torch.linspace(-1, 1, 16).expand(64, 3, 16, 16).contiguous()  # brightness grows left to right
    torch.manual_seed(0)
    a = random_resized_crop_flip(ramp)
    torch.manual_seed(0)
    b = random_resized_crop_flip(ramp)
    torch.testing.assert_close(a, b)
    assert a.shape == ramp.shape and a.min() >= -1 - 1e-6 and a.max() <= 1 + 1e-6
    direction = (a[..., -1] - a[..., 0]).mean(dim=(1, 2))
    assert (direction < 0).any() and (direction > 0).any()  # some images flipped, some not
    assert not torch.allclose(a[0], ramp[0])  # cropped: no longer the full ramp


def test_contrastive_loss_treats_equal_groups_as_positives():
    image = torch.eye(4)
    text = torch.eye(4)
    text[1] = text[0]  # samples 0 and 1 share a caption
    groups = torch.tensor([0, 0, 1, 2])
    aligned = contrastive_loss(torch.stack([text[0], text[0], text[2], text[3]]), text, torch.tensor(10.0), groups)
    shuffled = contrastive_loss(image[[2, 3, 0, 1]], text, torch.tensor(10.0), groups)
    assert aligned < shuffled


@pytest.fixture(scope="module")
def split():
    samples = list(generate(SyntheticSpec(image_size=32), "train", 48, rho=0.9))
    return TrainingSplit(
        torch.from_numpy(np.stack([s.image for s in samples])),
        torch.tensor([s.label for s in samples]),
        None,
        [s.sample_id for s in samples],
    )


@pytest.mark.parametrize(
    "config",
    [
        {"kind": "lp", "lr": 0.1, "epochs": 3, "batch_size": 16},
        {"kind": "ft", "lr": 1e-3, "epochs": 2, "batch_size": 16, "augment": True},
        {"kind": "flcp", "lr": 1e-3, "epochs": 2, "batch_size": 16, "augment": True},
        {"kind": "clip_adapter", "lr": 1e-2, "epochs": 3, "batch_size": 16, "adapter": {"reduction": 4, "ratio": 0.2}},
        {
            "kind": "coop",
            "optimizer": "sgd",
            "lr": 2e-3,
            "epochs": 2,
            "batch_size": 16,
            "prompt_template": "a photo of a {name}",
            "context": {"length": 4, "init": "random", "class_specific": True},
        },
    ],
)
def test_methods_train_and_are_deterministic(split, prompts, config):
    results = []
    for _ in range(2):
        torch.manual_seed(0)
        model = build_model({"arch": "tiny-vit-32"})
        classifier, metrics = build_method(config).fit(model, prompts, split, torch.device("cpu"))
        assert np.isfinite(metrics["train_loss"]) and 0 <= metrics["train_accuracy"] <= 1
        with torch.no_grad():
            results.append(classifier(model.preprocess(split.images[:8])))
    torch.testing.assert_close(results[0], results[1], rtol=0, atol=0)


def test_lp_refuses_augmentation(split, prompts):
    with pytest.raises(ValueError, match="augment"):
        build_method({"kind": "lp", "lr": 0.1, "epochs": 1, "batch_size": 16, "augment": True}).fit(
            build_model({"arch": "tiny-vit-32"}), prompts, split, torch.device("cpu")
        )


def test_clip_adapter_trains_only_its_adapter_and_round_trips_through_its_checkpoint(
    split, prompts, tmp_path, any_tiny_model
):
    from vlm_rationality.models.checkpoint import load_classifier, load_state_dict, save_classifier
    from vlm_rationality.models.heads import build_classifier

    model = any_tiny_model
    before = {k: v.clone() for k, v in model.backbone_state_dict().items()}
    zero_shot = build_classifier(model, "prompt", prompts)
    images = model.preprocess(split.images[:8])
    with torch.no_grad():
        frozen_logits = zero_shot(images)
    config = {
        "kind": "clip_adapter",
        "lr": 1e-2,
        "epochs": 3,
        "batch_size": 16,
        "adapter": {"reduction": 4, "ratio": 0.2},
    }
    torch.manual_seed(0)
    classifier, _ = build_method(config).fit(model, prompts, split, torch.device("cpu"))
    after = model.backbone_state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the backbone is bit-identical
    torch.testing.assert_close(classifier.head.weight, zero_shot.head.weight, rtol=0, atol=0)  # the prompts too
    trainable = [n for n, p in classifier.named_parameters() if p.requires_grad]
    assert trainable == ["adapter.mlp.0.weight", "adapter.mlp.2.weight"]  # what trained: the adapter alone
    with torch.no_grad():
        adapted = classifier(images)
        classifier.adapter.ratio = 0.0  # α = 0 is the zero-shot model
        torch.testing.assert_close(classifier(images), frozen_logits)
        classifier.adapter.ratio = 0.2
    assert not torch.allclose(adapted, frozen_logits)

    path = tmp_path / "clip_adapter.safetensors"
    save_classifier(classifier, path, {"method": config})
    assert sorted(k for k in load_state_dict(path) if not k.startswith("model.")) == [
        "adapter.mlp.0.weight",
        "adapter.mlp.2.weight",
        "head.weight",
    ]
    reloaded = load_classifier(model.describe(), path)
    assert (reloaded.adapter.reduction, reloaded.adapter.ratio) == (4, 0.2)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(images), adapted)


COOP = {
    "kind": "coop",
    "optimizer": "sgd",
    "lr": 2e-2,
    "epochs": 3,
    "batch_size": 16,
    "prompt_template": "a photo of a {name}",
    "context": {"init": "template", "class_specific": False},
}


def test_coop_with_the_templates_words_as_context_is_the_zero_shot_classifier(split, prompts, any_tiny_model):
    from vlm_rationality.finetune.coop import class_texts, initial_context
    from vlm_rationality.models.heads import PromptContext, build_classifier

    model = any_tiny_model
    words, texts = class_texts(prompts, COOP["prompt_template"])
    assert words == "a photo of a" and texts[0] == prompts[0].removeprefix("a photo of a ")
    context = PromptContext(initial_context(model, words, COOP["context"], texts), texts)
    images = model.preprocess(split.images[:8])
    with torch.no_grad():
        torch.testing.assert_close(context.text_features(model), model.encode_text(prompts), rtol=0, atol=1e-5)
        zero_shot = build_classifier(model, "prompt", prompts)(images)
        from vlm_rationality.models.heads import ImageClassifier, prompt_head

        coop = ImageClassifier(model, prompt_head(model, context), "prompt", context=context)(images)
    torch.testing.assert_close(coop, zero_shot, rtol=0, atol=1e-5)


def test_coop_trains_only_its_context_and_round_trips_through_its_checkpoint(split, prompts, tmp_path, any_tiny_model):
    from vlm_rationality.models.checkpoint import load_classifier, load_state_dict, save_classifier
    from vlm_rationality.models.heads import build_classifier, prompt_head

    model = any_tiny_model
    before = {k: v.clone() for k, v in model.backbone_state_dict().items()}
    images = model.preprocess(split.images[:8])
    with torch.no_grad():
        zero_shot = build_classifier(model, "prompt", prompts)(images)
    torch.manual_seed(0)
    classifier, metrics = build_method(COOP).fit(model, prompts, split, torch.device("cpu"))
    after = model.backbone_state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # both towers bit-identical
    assert [n for n, p in classifier.named_parameters() if p.requires_grad] == ["context.context"]
    with torch.no_grad():
        trained = classifier(images)
    # it trained: the context left the template's words (slowly on a random tiny BERT, whose class texts all
    # embed alike), and so did the logits
    assert not torch.equal(classifier.context.context.detach(), model.word_embeddings("a photo of a"))
    assert not torch.equal(trained, zero_shot)

    path = tmp_path / "coop.safetensors"
    save_classifier(classifier, path, {"method": COOP})
    assert sorted(k for k in load_state_dict(path) if not k.startswith("model.")) == ["context.context", "head.weight"]
    reloaded = load_classifier(model.describe(), path)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(images), trained)
        # the stored head is the frozen text tower's embedding of the stored context
        torch.testing.assert_close(prompt_head(reloaded.model, reloaded.context).weight, reloaded.head.weight)


def test_a_coop_context_longer_than_the_text_tower_fails_naming_its_length(split, prompts, tiny_model):
    config = {**COOP, "context": {"length": 16, "init": "random", "class_specific": False}}
    with pytest.raises(ValueError, match="16 context tokens .* exceed the text context of tiny-vit-32 \\(16 tokens\\)"):
        build_method(config).fit(tiny_model, prompts, split, torch.device("cpu"))


def test_bf16_training_runs_the_steps_in_bf16_and_learns_what_fp32_learns(split, prompts):
    """bf16 autocast changes the arithmetic (so the weights differ from fp32) but not what is learnt."""
    results = {}
    for amp in ("none", "bf16"):
        torch.manual_seed(0)
        model = build_model({"arch": "tiny-vit-32"})
        config = {"kind": "ft", "lr": 1e-3, "epochs": 3, "batch_size": 16, "amp": amp}
        _, results[amp] = build_method(config).fit(model, prompts, split, torch.device("cpu"))
        results[amp]["weight"] = model.backbone_state_dict()["visual.positional_embedding"].clone()
    assert results["bf16"]["train_loss"] == pytest.approx(results["none"]["train_loss"], rel=0.05)
    assert not torch.equal(results["bf16"]["weight"], results["none"]["weight"])
    with pytest.raises(KeyError, match="none or bf16"):
        build_method({"kind": "ft", "lr": 1e-3, "epochs": 1, "batch_size": 16, "amp": "fp16"})


def test_training_the_texts_vocabulary_only_ends_where_training_the_whole_table_ends(split, prompts):
    """The token table cut to the prompts' rows (what pretraining and FLCP train) gives every weight bit for bit
    as training all 49,408 rows does, the rows no step reads included (their weight decay applied at the end)."""
    from vlm_rationality.finetune.loop import TrainSettings, fit, text_vocabulary

    settings = TrainSettings(lr=1e-3, epochs=2, batch_size=16, weight_decay=0.1)
    states = []
    for cut in (False, True):
        torch.manual_seed(0)
        model = build_model({"arch": "tiny-vit-32"}).train().requires_grad_(True)
        initial = model.model.token_embedding.weight.detach().clone()

        def step(index):
            target = split.labels[index]
            text = model.encode_text(prompts)
            return contrastive_loss(
                model.encode_image(model.preprocess(split.images[index])), text[target], model.logit_scale, target
            ), None

        if cut:
            with text_vocabulary(model, prompts, settings) as untouched:
                assert len(model.model.token_embedding.weight) < 50 and len(untouched[0]) > 49_000
                with pytest.raises(ValueError, match="outside the training vocabulary"):
                    model.encode_text(["an unseen zebra"])
                fit(list(model.parameters()), step, split, settings, untouched=untouched)
        else:
            fit(list(model.parameters()), step, split, settings)
        states.append(model.backbone_state_dict())
    assert type(build_model({"arch": "tiny-vit-32"}).model.token_embedding) is type(model.model.token_embedding)
    for key, value in states[0].items():
        assert torch.equal(value, states[1][key]), key
    read = torch.zeros(len(initial), dtype=torch.bool)
    read[model._tokens(prompts).unique()] = True
    trained = states[1]["token_embedding.weight"]
    assert not torch.equal(trained[~read], initial[~read])  # decayed, a little
    torch.testing.assert_close(trained[~read], initial[~read], rtol=0.01, atol=0)


def test_a_continued_pretraining_starts_from_the_other_base_at_its_own_size(tiny_model, tmp_path):
    """`pretrain.start_from`: the job builds the model from the source's weights (at 48 px here, the 32-px position
    grid resampled) and trains on; with a negligible learning rate it writes the resampled source back."""
    from vlm_rationality.data.prepare import prepare_shard, write_item_index
    from vlm_rationality.finetune.run import pretrain_base
    from vlm_rationality.models.checkpoint import load_state_dict, save_state_dict

    data = {"adapter": "synthetic", "image_size": 48, "shard_size": 16, "seed": 0, "splits": {"pretrain": {"size": 16}}}
    write_item_index(data, "pretrain", tmp_path / "items.parquet", "h")
    prepare_shard(data, "pretrain", 0, tmp_path / "items.parquet", tmp_path / "shard.parquet", "h")
    source = tmp_path / "source.safetensors"
    save_state_dict(tiny_model.backbone_state_dict(), source)
    spec = {"adapter": "open_clip", "arch": "tiny-vit-32", "image_size": 48, "pretrained": str(source)}
    train = {"lr": 1e-3, "epochs": 1, "batch_size": 8, "weight_decay": 0.1, "seed": 0}
    resampled = build_model(spec).backbone_state_dict()
    for lr, name in ((1e-9, "still.safetensors"), (1e-3, "moved.safetensors")):
        pretrain_base(spec, {**train, "lr": lr}, [str(tmp_path / "shard.parquet")], str(tmp_path / name), "cpu")
    still, moved = load_state_dict(tmp_path / "still.safetensors"), load_state_dict(tmp_path / "moved.safetensors")
    assert still["visual.positional_embedding"].shape == (37, 64)  # 6x6 patches and the class token
    for key, value in resampled.items():
        torch.testing.assert_close(still[key], value, rtol=0, atol=1e-6, msg=key)
    assert not torch.equal(moved["visual.positional_embedding"], resampled["visual.positional_embedding"])


def test_early_stopping_stops_after_patience_and_restores_the_best_epoch():
    """Scores 0.2, 0.6, 0.6, 0.5 with patience 2: epoch 2 is best (a tie keeps the earlier), training stops after
    epoch 4, and the parameter is put back to where it stood after epoch 2; never before the warm-up is over."""
    from vlm_rationality.finetune.loop import Selection, TrainSettings, fit

    weight = torch.nn.Parameter(torch.tensor([4.0]))
    split = TrainingSplit(
        torch.zeros(4, 1, 1, 3, dtype=torch.uint8), torch.zeros(4, dtype=torch.long), None, list("abcd")
    )
    scores, seen = iter([0.2, 0.6, 0.6, 0.5, 0.9, 0.9]), []

    def score() -> float:
        seen.append(weight.item())
        return next(scores)

    settings = TrainSettings(lr=0.1, epochs=6, batch_size=2, optimizer="sgd")
    metrics = fit([weight], lambda index: ((weight**2).sum(), None), split, settings, select=Selection(score, 2))
    assert metrics["epochs"] == 4 and metrics["best_epoch"] == 2 and metrics["validation"] == [0.2, 0.6, 0.6, 0.5]
    assert len(set(seen)) == 4 and weight.item() == seen[1]
    # 30 epochs of one step: the warm-up spans 3 steps, so patience 1 cannot stop training before epoch 3
    falling = iter([0.5, 0.4, 0.3, 0.2, 0.1])
    settings = TrainSettings(lr=0.1, epochs=30, batch_size=4, optimizer="sgd")
    metrics = fit(
        [weight], lambda index: ((weight**2).sum(), None), split, settings, select=Selection(falling.__next__, 1)
    )
    assert metrics["epochs"] == 3 and metrics["best_epoch"] == 1


def test_a_method_with_early_stopping_keeps_the_epoch_best_on_its_validation_split(tmp_path):
    """FT selects on a held-out split's shards: the classifier it returns scores, on that split, the best of the
    epochs it recorded: its accuracy, or the accuracy of its worst (class, own background present) group."""
    from tests import fixtures
    from vlm_rationality.data.synthetic import class_prompts
    from vlm_rationality.finetune.base import correct
    from vlm_rationality.finetune.data import load_split
    from vlm_rationality.metrics.groups import cue_present, worst_group

    spec = SyntheticSpec(image_size=32, num_classes=2, num_textures=2)  # 4 (class, own background) groups
    prompts = class_prompts(spec)
    train = fixtures.prepared_shard(tmp_path / "train.parquet", list(generate(spec, "train", 48, rho=0.9)))
    held_out = list(generate(spec, "val", 160, rho=0.5))
    backgrounds = [s.extra["background"] for s in held_out]
    val = fixtures.prepared_shard(tmp_path / "val.parquet", held_out, extra={"background": backgrounds})
    tied = [spec.own_texture(label) for label in range(spec.num_classes)]
    labels = np.array([s.label for s in held_out])
    present = cue_present(labels, np.array(backgrounds), tied)
    scores_of = {
        "accuracy": lambda hits: float(hits.mean()),
        "worst_group": lambda hits: worst_group(hits, labels, present)["acc_worst_group"],
    }
    for metric, score in scores_of.items():
        config = {"kind": "ft", "lr": 3e-3, "epochs": 5, "batch_size": 16, "head_init": "prompts"}
        config["early_stopping"] = {"split": "val", "patience": 2, "metric": metric}
        torch.manual_seed(0)
        model = build_model({"arch": "tiny-vit-32"})
        if metric == "accuracy":
            with pytest.raises(KeyError, match="early_stopping needs `validation`"):
                build_method(config).fit(model, prompts, load_split([train]), torch.device("cpu"))
        config.update(validation=[str(val)], validation_groups={"tied": tied})
        if metric == "worst_group":  # a split as spurious as the training split: its minority groups are too small
            spurious = list(generate(spec, "val-0.9", 40, rho=0.9))
            small = fixtures.prepared_shard(
                tmp_path / "small.parquet", spurious, extra={"background": [s.extra["background"] for s in spurious]}
            )
            with pytest.raises(ValueError, match=r"split 'val' has \d+ \(class, cue present\) groups under 10 samples"):
                build_method({**config, "validation": [str(small)]}).selection(None, torch.device("cpu"))
        classifier, metrics = build_method(config).fit(model, prompts, load_split([train]), torch.device("cpu"))
        scores = metrics["validation"]
        assert len(scores) == metrics["epochs"] and metrics["best_epoch"] == scores.index(max(scores)) + 1
        hits = correct(classifier, load_split([val]), torch.device("cpu"))
        assert score(hits) == max(scores), metric
        if metric == "accuracy":
            assert len(set(scores)) > 1  # the epochs differ, so keeping the best is a choice
        else:  # the four (class, own background) groups, counted here from the samples themselves
            own = np.array([s.extra["background"] == spec.own_texture(s.label) for s in held_out])
            groups = [hits[(labels == y) & (own == cue)] for y in (0, 1) for cue in (False, True)]
            assert all(len(g) for g in groups) and max(scores) == min(g.mean() for g in groups)
