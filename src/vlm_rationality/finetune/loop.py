"""The one training loop every method uses: seeded shuffling, AdamW or SGD, warm-up + cosine decay, and optionally
model selection on held-out data with early stopping."""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch
from torch import nn

from vlm_rationality.finetune.data import TrainingSplit
from vlm_rationality.finetune.distributed import sum_gradients, world
from vlm_rationality.models.base import VisionLanguageModel
from vlm_rationality.progress import Progress

# A step gets a global batch's indices and returns its mean loss and number of correct predictions (or None);
# under torchrun it encodes only `distributed.share(index)` and gathers the outputs (see distributed.py).
Step = Callable[[torch.Tensor], tuple[torch.Tensor, "int | None"]]
OPTIMIZERS = {"adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}
# Linear warm-up over the first steps, then cosine decay: transformers trained from scratch without warm-up
# can stay stuck at the uniform-prediction loss (seen on the tiny synthetic CLIP at lr 3e-3).
WARMUP_FRACTION = 0.1


@dataclass(frozen=True)
class Selection:
    """Model selection: `score()` (higher is better, e.g. accuracy on a validation split) after every epoch; training
    stops once `patience` epochs in a row have not beaten the best (and the warm-up is over), and the best epoch's
    parameters are restored."""

    score: Callable[[], float]
    patience: int


@dataclass(frozen=True)
class TrainSettings:
    lr: float
    epochs: int
    batch_size: int
    optimizer: str = "adamw"
    weight_decay: float = 0.0
    seed: int = 0
    amp: str = "none"  # bf16: each step's forward under bf16 autocast (bf16 needs no loss scaling, so no fp16)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "TrainSettings":
        fields = {key: config[key] for key in cls.__dataclass_fields__ if key in config}
        settings = cls(**fields)
        if settings.optimizer not in OPTIMIZERS:
            raise KeyError(f"unknown optimizer {settings.optimizer!r}; use one of {', '.join(OPTIMIZERS)}")
        if settings.amp not in ("none", "bf16"):
            raise KeyError(f"training amp must be none or bf16, got {settings.amp!r}")
        if settings.lr <= 0 or settings.epochs < 1 or settings.batch_size < 1 or settings.weight_decay < 0:
            raise ValueError(
                f"training settings must have lr > 0, epochs >= 1, batch_size >= 1, weight_decay >= 0: {settings}"
            )
        return settings


def make_optimizer(parameters: Iterable[nn.Parameter], settings: TrainSettings) -> torch.optim.Optimizer:
    kwargs: dict[str, Any] = {"lr": settings.lr, "weight_decay": settings.weight_decay}
    if settings.optimizer == "sgd":
        kwargs["momentum"] = 0.9
    else:
        # On CPU torch defaults to a Python loop over the parameters, a few small operations each (the tiny CLIP
        # has ~90); the foreach path does the same arithmetic per element, bit for bit (SGD's does not).
        kwargs["foreach"] = True
    return OPTIMIZERS[settings.optimizer]([p for p in parameters if p.requires_grad], **kwargs)


def untouched_rows_decay(settings: TrainSettings) -> bool:
    """Whether a parameter row whose gradient is zero in every step changes only by the weight decay's factor:
    AdamW's moments of such a row stay zero and add exactly nothing, while SGD's weight decay enters its momentum."""
    return settings.optimizer == "adamw" or settings.weight_decay == 0


@contextmanager
def text_vocabulary(
    model: VisionLanguageModel, texts: Sequence[str], settings: TrainSettings
) -> Iterator[list[torch.Tensor]]:
    """Train the text tower on the token embeddings of `texts` only (`VisionLanguageModel.training_vocabulary`),
    where that gives the same weights as training the whole vocabulary; yields the untouched rows for `fit`."""
    if not untouched_rows_decay(settings):
        yield []
        return
    with model.training_vocabulary(texts) as untouched:
        yield untouched


def fit(
    parameters: list[nn.Parameter],
    step: Step,
    split: TrainingSplit,
    settings: TrainSettings,
    what: str = "train",
    weights: torch.Tensor | None = None,
    untouched: Sequence[torch.Tensor] = (),
    select: Selection | None = None,
) -> dict[str, Any]:
    """Train `parameters` with `step` over `split`; returns the last epoch's mean loss and accuracy. Progress
    (epoch, running loss and accuracy, images/s, ETA) goes to the job log as `what`. `weights`: draw each epoch's
    samples with replacement in proportion to them (TrainingSplit.batches), instead of a shuffle. `untouched`:
    rows of trained parameters that no step reads (`text_vocabulary`); they get each step's weight decay at the
    end, as the optimizer would have given them step by step. `select`: score every epoch, stop early and keep the
    best epoch (`epochs` is then the most it may run; the cosine decay spans it, as when the paper stops early)."""
    optimizer = make_optimizer(parameters, settings)
    steps = settings.epochs * math.ceil(len(split) / settings.batch_size)
    warmup = max(1, int(WARMUP_FRACTION * steps))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda i: min((i + 1) / warmup, 0.5 * (1 + math.cos(math.pi * i / steps)))
    )
    generator = torch.Generator().manual_seed(settings.seed)
    rank, ranks = world()
    progress = Progress(what, settings.epochs * len(split), enabled=rank == 0)
    device_type = parameters[0].device.type if parameters else "cpu"
    decays: list[float] = []
    selection = _Best(select.patience) if select is not None else None
    for epoch in range(settings.epochs):
        total_loss, total_correct, seen, counted = 0.0, 0, 0, True
        for index in split.batches(settings.batch_size, generator, weights):
            with torch.autocast(device_type, torch.bfloat16, enabled=settings.amp == "bf16"):
                loss, correct = step(index)  # the global batch's loss, the same on every rank
            optimizer.zero_grad(set_to_none=True)
            (loss / ranks).backward()
            sum_gradients(parameters)  # data-parallel: summed over ranks, the global batch's gradient
            optimizer.step()
            decays.append(1 - optimizer.param_groups[0]["lr"] * settings.weight_decay)  # AdamW's own expression
            schedule.step()
            total_loss += float(loss.detach()) * len(index)
            seen += len(index)
            if correct is None:
                counted = False
            else:
                total_correct += correct
            progress.update(
                len(index),
                f"epoch {epoch + 1}/{settings.epochs}",
                loss=total_loss / seen,
                acc=total_correct / seen if counted else None,
            )
        if not math.isfinite(total_loss):
            raise FloatingPointError(f"training diverged in epoch {epoch} (loss {total_loss}); lower the lr")
        # Never before the warm-up is over: at the paper's lr 5e-5 the first epochs barely move a model, and a flat,
        # noisy validation score would otherwise stop it there (seen: two of three seeds stopped after 6 epochs).
        if (
            select is not None
            and not selection.record(select.score(), parameters, len(decays))
            and len(decays) >= warmup
        ):
            break
    progress.close()
    metrics = {
        "train_loss": total_loss / seen,
        "train_accuracy": total_correct / seen if counted else None,
        "epochs": epoch + 1,
        "steps": len(decays),
    }
    if select is not None:
        decays = decays[: selection.restore(parameters)]
        metrics.update(selection.summary())
    _decay(untouched, decays)
    return metrics


class _Best:
    """The best epoch so far: its score, a copy of the trained parameters and how many steps had been taken."""

    def __init__(self, patience: int) -> None:
        self.patience, self.scores = patience, []
        self.epoch, self.steps, self.state = -1, 0, []

    def record(self, score: float, parameters: Sequence[nn.Parameter], steps: int) -> bool:
        """Keep this epoch if it beats every earlier one (ties keep the earlier); False once it is time to stop."""
        self.scores.append(float(score))
        if self.epoch < 0 or score > self.scores[self.epoch]:
            self.epoch, self.steps = len(self.scores) - 1, steps
            self.state = [p.detach().clone() for p in parameters]
        return len(self.scores) - 1 - self.epoch < self.patience

    @torch.no_grad()
    def restore(self, parameters: Sequence[nn.Parameter]) -> int:
        """Put the best epoch's parameters back; returns the steps taken up to it."""
        for parameter, kept in zip(parameters, self.state):
            parameter.copy_(kept)
        return self.steps

    def summary(self) -> dict[str, Any]:
        return {"best_epoch": self.epoch + 1, "validation": self.scores}


@torch.no_grad()
def _decay(rows: Sequence[torch.Tensor], decays: list[float]) -> None:
    """Multiply `rows` by each step's factor in turn (the float32 products step-by-step decay makes), one block
    that fits the cache at a time."""
    if all(factor == 1 for factor in decays):
        return
    for tensor in rows:
        for block in tensor.view(-1).split(1 << 16):
            for factor in decays:
                block.mul_(factor)
