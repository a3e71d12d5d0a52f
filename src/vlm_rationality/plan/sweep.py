"""Sweeps: a method entry whose training settings are lists stands for one method per combination.

`ft: {kind: ft, optimizer: [adamw, sgd], lr: [1.0e-5, 1.0e-4]}` becomes four methods, `ft.lr=1e-05.optimizer=adamw`
and so on: the swept keys in alphabetical order, each value as YAML would write it back. The name depends on
nothing but the base name and the variant's own values (not on how the YAML orders its keys), so editing one
value of a list renames (and reruns) only the variants that carry it. Each variant is an ordinary method entry,
plus a `sweep` label (`{method: ft, values: {...}}`) that the score table turns into columns and the ablation
table into blocks; the label is not a training setting, so a variant's checkpoint is the one the same entry written
by hand would make.
A list is a value, not a sweep, where the method's kind declares the option a list (`templates` of zs).
The expansion runs before the schema check, which then checks every variant's values. No torch here.
"""

from __future__ import annotations

import itertools
import math
import re
from typing import Any

from vlm_rationality.registry import declared

Entry = dict[str, Any]
LABEL = "sweep"
NOT_SWEPT = ("kind", "processes", "threads", "heatmaps", LABEL)  # a sweep varies how a method trains, not what it is
MAX_VARIANTS = 1000  # of one swept method: each trains a classifier (the largest study sweeps 6)
VALUE_TEXT = re.compile(r"^[A-Za-z0-9_+-][A-Za-z0-9_.+-]*$")


class SweepError(ValueError):
    """A sweep that cannot be expanded; the message names `methods.<name>.<key>`."""


def value_text(value: Any) -> str:
    """How a swept value appears in a variant's name: `1e-05`, `0.002`, `sgd`, `true`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = repr(value) if isinstance(value, float) else str(value)
    if not isinstance(value, (int, float, str)) or not VALUE_TEXT.match(text):
        raise ValueError(f"{value!r} cannot be part of a path; sweep plain numbers and names")
    return text


SEED = re.compile(r"\.seed=-?\d+(?=\.|$)")  # a seed variant's part of its name


def family(method: str) -> str:
    """`vl-erm.seed=2` -> `vl-erm`: the method a seed variant replicates (a method without one is its own)."""
    return SEED.sub("", method)


def variant_name(method: str, values: Entry) -> str:
    return ".".join([method, *(f"{key}={value_text(value)}" for key, value in values.items())])


def list_options(kind: Any) -> set[str]:
    """The options a method's kind declares as lists at registration (zs's `templates`): a list there is one value,
    not a sweep."""
    facts = declared("vlm_rationality.finetune", "FINETUNE_METHODS").get(kind, {}) if isinstance(kind, str) else {}
    return {
        key
        for key, schema in facts.get("options", {}).items()
        if "array" in [schema.get("type"), *(choice.get("type") for choice in schema.get("oneOf", []))]
    }


def expand_method(name: str, entry: Entry) -> dict[str, Entry]:
    """`name` -> its entry if nothing is swept, else one entry per combination of its list values."""
    values = list_options(entry.get("kind"))
    swept = {key: entry[key] for key in sorted(entry) if isinstance(entry[key], list) and key not in values}
    if not swept:
        return {name: entry}
    errors = []
    for key, values in swept.items():
        where = f"methods.{name}.{key}"
        if key in NOT_SWEPT:
            errors.append(
                f"{where}: `{key}` cannot be swept; a sweep varies training settings (write one method per {key})"
            )
        elif not values:
            errors.append(f"{where}: an empty list sweeps nothing; give at least one value")
        else:
            texts = []
            for value in values:
                try:
                    texts.append(value_text(value))
                except ValueError as err:
                    errors.append(f"{where}: {err}")
            if len(set(texts)) < len(texts):
                errors.append(f"{where}: the swept values {values} repeat one; each value names one variant")
    count = math.prod(len(values) for values in swept.values())
    if count > MAX_VARIANTS:
        errors.append(
            f"methods.{name}: its swept lists ({', '.join(sorted(swept))}) make {count:,} variants, each a "
            f"fine-tuning; sweep at most {MAX_VARIANTS} (split the sweep into several methods, or run it in parts)"
        )
    if errors:
        raise SweepError("\n".join(errors))
    variants = {}
    for combination in itertools.product(*swept.values()):
        values = dict(zip(swept, combination))
        variants[variant_name(name, values)] = {**entry, **values, LABEL: {"method": name, "values": values}}
    return variants


def expand(methods: dict[str, Entry]) -> tuple[dict[str, Entry], dict[str, str]]:
    """The methods with every swept entry replaced, in place, by its variants; and variant -> swept method."""
    out: dict[str, Entry] = {}
    origin: dict[str, str] = {}
    errors = []
    for name, entry in methods.items():
        try:
            variants = expand_method(name, entry) if isinstance(entry, dict) else {name: entry}
        except SweepError as err:
            errors.append(str(err))
            continue
        for variant, spec in variants.items():
            if variant in methods and variant != name:
                errors.append(
                    f"methods.{name}: its variant {variant!r} has the name of a configured method; rename one"
                )
            out[variant] = spec
            if LABEL in spec:  # also an entry expanded by an earlier check: checking twice changes nothing
                origin[variant] = spec[LABEL]["method"]
    if errors:
        raise SweepError("\n".join(errors))
    return out, origin
