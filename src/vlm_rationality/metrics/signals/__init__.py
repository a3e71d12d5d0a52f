"""Rationale signals behind one contract (base.py): each signal file registers itself, and the registry imports the
one the validity stage asks for (registry.py)."""

from vlm_rationality.metrics.signals.base import SIGNALS, Evidence, Signal

__all__ = ["SIGNALS", "Evidence", "Signal"]
