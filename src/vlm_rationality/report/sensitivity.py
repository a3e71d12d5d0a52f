"""The protocol-sensitivity table: how far each single official-code choice moves accuracy, PT and IR.

Each row pairs this project's protocol with one switch turned to the official code's choice (protocol.py), all
else equal: a score switch re-scores the same heatmaps; a method switch reads its variant's heatmaps
(`{method}@{switch}`), which share the base's checkpoint where training does not change.
"""

from __future__ import annotations

import math
import os
from typing import Any, Sequence

import pyarrow as pa

from vlm_rationality.metrics.score import score_table
from vlm_rationality.plan.protocol import SEPARATOR
from vlm_rationality.report.names import ABLATION_ORDER
from vlm_rationality.report.names import METRICS as LABELS

METRICS = tuple((metric, LABELS[metric].short) for metric in ABLATION_ORDER)
KEYS = ("dataset", "shift", "model", "method", "heatmap_method")


def _key(row: dict[str, Any], method: str | None = None) -> tuple[str, ...]:
    return tuple(method if k == "method" and method is not None else row[k] for k in KEYS)


def sensitivity_table(
    heatmap_paths: Sequence[str | os.PathLike], score: dict[str, Any], switches: dict[str, dict[str, Any]]
) -> pa.Table:
    """`score`: this project's score settings (threshold, bootstrap_iterations, seed, undefined_rma); `switches`:
    name -> {official, here, score: overrides} as protocol.SWITCHES states them."""

    def scored(paths: Sequence[str | os.PathLike], overrides: dict[str, Any]) -> dict[tuple[str, ...], dict[str, Any]]:
        settings = {**score, **overrides}
        table = score_table(
            paths, settings["threshold"], settings["bootstrap_iterations"], settings["seed"], settings["undefined_rma"]
        )
        return {_key(row): row for row in table.to_pylist()}

    every = scored(heatmap_paths, {})
    here = {key: row for key, row in every.items() if SEPARATOR not in key[3]}
    rows = []
    for name, switch in switches.items():
        official = scored(heatmap_paths, switch["score"]) if switch["score"] else every
        for key, base in sorted(here.items()):
            other = (
                official.get(key) if switch["score"] else every.get(_key(base, f"{base['method']}{SEPARATOR}{name}"))
            )
            if other is None:
                continue  # the switch does not apply to this method
            row = {k: base[k] for k in KEYS}
            row.update(switch=name, official=switch["official"], here=switch["here"], n=base["n"])
            for metric, _ in METRICS:
                row[f"{metric}_here"], row[f"{metric}_official"] = base[metric], other[metric]
                row[f"{metric}_delta"] = other[metric] - base[metric]
            row["n_undefined_here"], row["n_undefined_official"] = base["n_undefined"], other["n_undefined"]
            rows.append(row)
    if not rows:
        raise ValueError("no protocol switch applies to any scored (dataset, model, method)")
    return pa.Table.from_pylist(rows)


def _points(value: float, signed: bool = False) -> str:
    if value is None or math.isnan(value):
        return "–"
    return f"{100 * value:+.1f}" if signed else f"{100 * value:.1f}"


def sensitivity_markdown(
    rows: Sequence[dict[str, Any]], switches: dict[str, dict[str, Any]], not_run: dict[str, str]
) -> str:
    """One table per switch: here → official for accuracy, PT and IR (%), and the move in points."""
    lines = [
        "# Protocol sensitivity: this project's protocol vs the official code's, one choice at a time",
        "",
        "Each row changes only the named choice; Δ is official − here, in percentage points.",
        "",
    ]
    for name, switch in switches.items():
        chosen = [r for r in rows if r["switch"] == name]
        lines += [f"## {name}: {switch['here']} → {switch['official']}", ""]
        if not chosen:
            lines += [f"Not measured: {not_run.get(name, 'applies to no configured method')}.", ""]
            continue
        header = " | ".join(f"{label} here | {label} official | Δ {label}" for _, label in METRICS)
        lines += [f"| dataset | model | method | heatmap | n | {header} |", "|---|---|---|---|---|" + "---|" * 9]
        for r in chosen:
            cells = " | ".join(
                f"{_points(r[f'{m}_here'])} | {_points(r[f'{m}_official'])} | {_points(r[f'{m}_delta'], True)}"
                for m, _ in METRICS
            )
            lines.append(
                f"| {r['dataset']} | {r['model']} | {r['method']} | {r['heatmap_method']} | {r['n']} | {cells} |"
            )
        lines.append("")
    return "\n".join(lines)
