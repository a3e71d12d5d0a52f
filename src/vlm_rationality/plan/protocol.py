"""The official code's evaluation choices as single switches, so that each one's effect on the numbers is measured
on its own (the protocol-sensitivity table) rather than argued about.

Facts read from deep-real/vlm-pred-rationality, folder `prediction_rationality/`: `utils/xml_analysis.py` rolls
out ZS/FLCP attention from the last block only (`start_layer=-1`) and scores with `0 if es < 0.5 else 1`, so a
NaN RMA (constant or all-zero map) counts as valid; `utils/xml_analysis_lp.py` rolls out every block for LP/FT;
`utils/lp_model.py` puts a default-initialised `Linear(512, C)` on the unnormalised image features; ZS/FLCP
CLIP runs in fp16 on CUDA; the data loaders normalise with ImageNet's mean/std. The dataset-level choices
(resize/crop, class names, mask rules, the Caltech split) are settings of the dataset adapters, selected in
config/paper-official.yaml; they need their own prepare run, so they are not switches here (and do not apply to
the synthetic benchmark, whose images are generated at input size with exact masks and one name per class).

A switch yields a *variant* of a (model, method) pair named `{method}@{switch}`: an overlay on the method entry
and on the model entry. A variant whose training settings equal its base's re-uses the base's checkpoint; a
score-only switch re-uses the base's heatmaps. This module imports nothing heavy: the workflow reads it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Callable

IMAGENET_NORMALIZATION = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
SEPARATOR = "@"  # not allowed in config names, so a variant never collides with a configured method

Entry = dict[str, Any]


@dataclass(frozen=True)
class Switch:
    """One official-code choice: where it acts and what it changes. `method(kind, entry, device)` returns the
    method overlay, or None where the switch does not apply to that method (or equals what it does already)."""

    name: str
    official: str
    here: str
    method: Callable[[str, Entry, str], Entry | None] = lambda kind, entry, device: {}
    model: Entry = field(default_factory=dict)
    score: Entry = field(default_factory=dict)


def _heatmaps(entry: Entry, **settings: Any) -> Entry | None:
    current = entry.get("heatmaps", {})
    if all(current.get(key) == value for key, value in settings.items()):
        return None
    return {"heatmaps": {**current, **settings}}


def _rollout_depth(kind: str, entry: Entry, device: str) -> Entry | None:
    return _heatmaps(entry, start_block=-1) if kind in ("zs", "flcp") else None


def _head(kind: str, entry: Entry, device: str) -> Entry | None:
    if kind not in ("lp", "ft") or entry.get("head") == "linear":
        return None
    return {"head": "linear", "head_init": None}  # None removes the key: the official head has nn.Linear's init


def _precision(kind: str, entry: Entry, device: str) -> Entry | None:
    if kind not in ("zs", "flcp") or not device.startswith("cuda"):
        return None  # fp16 needs CUDA; with device auto, set device: cuda to include this switch
    return _heatmaps(entry, amp="fp16")


SWITCHES: dict[str, Switch] = {
    switch.name: switch
    for switch in (
        Switch(
            "undefined_rma",
            "a NaN RMA counts as valid; an empty mask as invalid",
            "excluded, counted",
            score={"undefined_rma": "valid"},
        ),
        Switch("rollout_depth", "ZS/FLCP: the last block only (start_block -1)", "every block", method=_rollout_depth),
        Switch(
            "head", "LP/FT: nn.Linear on unnormalised features, default init", "cosine head × logit scale", method=_head
        ),
        Switch("precision", "ZS/FLCP in fp16 (CUDA)", "fp32", method=_precision),
        Switch(
            "normalization",
            "ImageNet mean/std",
            "the model's own mean/std",
            method=lambda kind, entry, device: {},
            model={"normalization": IMAGENET_NORMALIZATION},
        ),
    )
}


def _overlay(entry: Entry, overlay: Entry) -> Entry:
    out = copy.deepcopy(entry)
    for key, value in overlay.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = copy.deepcopy(value)
    return out


def split_variant(method: str) -> tuple[str, str | None]:
    """`flcp@rollout_depth` -> ('flcp', 'rollout_depth'); a configured method -> (method, None)."""
    base, _, switch = method.partition(SEPARATOR)
    if switch and switch not in SWITCHES:
        raise KeyError(f"unknown protocol switch {switch!r} in {method!r}; known: {', '.join(SWITCHES)}")
    return base, switch or None


def method_entry(config: Entry, method: str) -> Entry:
    """The method's config entry, a variant's with its switch applied."""
    base, switch = split_variant(method)
    entry = config["methods"][base]
    if switch is None:
        return entry
    overlay = SWITCHES[switch].method(entry["kind"], entry, config["device"])
    if overlay is None:
        raise KeyError(f"protocol switch {switch!r} does not apply to method {base!r}")
    return _overlay(entry, overlay)


def model_entry(config: Entry, model: str, method: str) -> Entry:
    """The model's config entry as the (variant) method sees it."""
    _, switch = split_variant(method)
    entry = config["models"][model]
    return _overlay(entry, SWITCHES[switch].model) if switch else entry


def chosen(config: Entry) -> dict[str, Switch]:
    """The switches `protocol_sensitivity.switches` names (all of them by default)."""
    names = config.get("protocol_sensitivity", {}).get("switches", list(SWITCHES))
    return {name: SWITCHES[name] for name in names}


def variants(config: Entry) -> dict[str, list[str]]:
    """Chosen switch -> the variant method names it makes (none for a score-only switch: it re-uses heatmaps)."""
    out: dict[str, list[str]] = {}
    for name, switch in chosen(config).items():
        out[name] = []
        for method, entry in config["methods"].items():
            overlay = switch.method(entry["kind"], entry, config["device"])
            if overlay is None or (not overlay and not switch.model):
                continue  # does not apply, or changes nothing this method's heatmaps depend on
            out[name].append(f"{method}{SEPARATOR}{name}")
    return out


def applies(config: Entry, switch: str, method: str) -> bool:
    """Whether `switch` changes anything for `method` (a score switch applies to every method)."""
    if SWITCHES[switch].score:
        return True
    return f"{method}{SEPARATOR}{switch}" in variants(config).get(switch, [])


def describe(config: Entry) -> tuple[dict[str, Entry], dict[str, str]]:
    """The switches as the sensitivity report states them, and why a switch that makes no variant was not run."""
    made = variants(config)
    stated = {name: {"official": s.official, "here": s.here, "score": s.score} for name, s in chosen(config).items()}
    not_run = {}
    for name, switch in chosen(config).items():
        if not switch.score and not made[name]:
            cuda = name == "precision" and not config["device"].startswith("cuda")
            not_run[name] = (
                "fp16 heatmaps need CUDA; run with device: cuda"
                if cuda
                else "no configured method differs from the official choice here"
            )
    return stated, not_run
