"""How a method is named, and a value written, in tables and figures."""

from __future__ import annotations

import math
from typing import Any


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
