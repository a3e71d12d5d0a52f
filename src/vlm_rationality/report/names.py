"""How a method and a metric are named, and a value written, in tables and figures."""

from __future__ import annotations

import math
import re
from typing import Any, NamedTuple, Sequence


class Label(NamedTuple):
    short: str  # a column or a figure panel
    title: str  # a table block


# The one table of metric labels every table and figure reads.
METRICS = {
    "accuracy": Label("accuracy", "Accuracy"),
    "prediction_trustworthiness": Label(
        "PT", "Prediction trustworthiness, the paper's protocol (PT = RR / (RR + RW), valid evidence: RMA ≥ threshold)"
    ),
    "inference_reliability": Label("IR", "Inference reliability (IR = RR / (RR + WR))"),
    "pt_true": Label("PT*", "True prediction trustworthiness (PT* = RR* / (RR* + RW*), object-grounded by the twins)"),
    "ir_true": Label("IR*", "True inference reliability (IR* = RR* / (RR* + WR*))"),
    "pt_true_cue": Label(
        "PT*_cue",
        "True prediction trustworthiness, the rationale this benchmark endorses (PT*_cue: a right prediction is "
        "ungrounded when a twin is predicted as the class its cue is tied to)",
    ),
    "ir_true_cue": Label("IR*_cue", "True inference reliability under the same truth (IR*_cue)"),
    "cue_mass": Label("cue mass", "Cue relevance mass (Σ(H⊙M_cue) / ΣH, mean over the images that carry the cue)"),
    "cue_over_object": Label(
        "cue > object", "Right predictions whose map holds more mass on the cue than on the object"
    ),
}
TABLE2_ORDER = ("prediction_trustworthiness", "inference_reliability", "accuracy")  # Table 2's blocks, the figures
ABLATION_ORDER = ("accuracy", "prediction_trustworthiness", "inference_reliability")  # the ablation tables' columns
TEX_ESCAPES = {"\\": r"\textbackslash{}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def display_name(method: str) -> str:
    """`ft` -> `FT`; a sweep's variant keeps its settings as written: `ft.lr=0.005.optimizer=sgd` ->
    `FT.lr=0.005.optimizer=sgd`; a protocol variant `lp@head` -> `LP@head`."""
    cut = min((i for i in (method.find("."), method.find("@")) if i >= 0), default=len(method))
    return method[:cut].upper() + method[cut:]


def number(value: Any, percent: bool = False) -> str:
    """A table cell: '–' for a missing value, a share as a percentage with one decimal, else three decimals."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{100 * value:.1f}" if percent else f"{value:.3f}"


def metric_value(row: dict[str, Any] | None, metric: str) -> float:
    value = None if row is None else row.get(metric)
    return math.nan if value is None else value


def as_percent(value: float) -> str:
    return "–" if value is None or math.isnan(value) else f"{100 * value:.1f}"


def broken(row: dict[str, Any] | None) -> str:
    """'' for a sound classifier; for one with non-finite logits, what a cell says of it (never a bare –)."""
    count = (row or {}).get("n_nonfinite_logits") or 0
    return f"broken: {count} non-finite logits" if count else ""


def cell_text(row: dict[str, Any] | None, metric: str) -> str:
    if row is None:
        return "–"
    low, high = metric_value(row, f"{metric}_ci_low"), metric_value(row, f"{metric}_ci_high")
    interval = "" if math.isnan(low) else f" [{as_percent(low)}, {as_percent(high)}]"
    return marked(row, as_percent(row[metric]) + interval)


def marked(row: dict[str, Any] | None, shown: str) -> str:
    mark = broken(row)
    return shown if not mark else mark if shown == "–" else f"{shown} ({mark})"


def shift_order(rows: Sequence[dict[str, Any]]) -> list[str]:
    return sorted({r["shift"] for r in rows}, key=lambda s: (s != "clean", s))


def tex(text: str) -> str:
    """Text safe in a LaTeX cell (names like `synthetic-rho0.9` or `gaussian_noise-3`)."""
    return re.sub(r"[\\&%$#_{}~^]", lambda m: TEX_ESCAPES.get(m.group(), "\\" + m.group()), text)


def rounded(value: float) -> float | None:
    return None if value is None or math.isnan(value) else round(100 * value, 2)
