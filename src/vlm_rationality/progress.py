"""Where a long job is: a log line at a steady pace, and a tqdm bar when the command runs in a terminal.

Jobs write their stderr to the rule's log, so `tail -f results/logs/...` shows these lines: the first batch (the
job has started and how fast it goes), then one every `PROGRESS_SECONDS` (env `VLM_RATIONALITY_PROGRESS_SECONDS`),
then the last. Under torchrun only rank 0 reports.
"""

from __future__ import annotations

import logging
import sys
import time
from datetime import timedelta

from tqdm import tqdm

from vlm_rationality.environment import progress_seconds

log = logging.getLogger(__name__)
PROGRESS_SECONDS = progress_seconds()


def _duration(seconds: float) -> str:
    return str(timedelta(seconds=round(seconds))) if seconds == seconds and seconds != float("inf") else "?"


class Progress:
    """Counts images through a job of `total` images and reports rate, ETA and the caller's running figures."""

    def __init__(self, what: str, total: int, enabled: bool = True, every: float | None = None) -> None:
        self.what, self.total, self.enabled = what, total, enabled
        self.every = PROGRESS_SECONDS if every is None else every
        self.done = self.logged = 0
        self.where, self.figures = "", {}
        self.start = self.last = time.monotonic()
        self.lines = 0
        self.bar = tqdm(total=total, desc=what, unit="img", leave=False) if enabled and sys.stderr.isatty() else None

    def update(self, images: int, where: str = "", **figures: float | None) -> None:
        """`images` more are done; `where` (e.g. "epoch 3/12") and `figures` (loss=…, acc=…) go into the line."""
        self.done += images
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(images)
        now = time.monotonic()
        if self.lines == 0 or now - self.last >= self.every or self.done >= self.total:
            self._line(now, where, figures)
        self.where, self.figures = where, figures

    def _line(self, now: float, where: str, figures: dict[str, float | None]) -> None:
        self.last, self.logged = now, self.done
        self.lines += 1
        elapsed = now - self.start
        rate = self.done / elapsed if elapsed > 0 else float("inf")
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        shown = [f"{k} {v:.4f}" for k, v in figures.items() if v is not None]
        parts = [
            self.what,
            where,
            f"{self.done}/{self.total} img ({100 * self.done / max(self.total, 1):.0f}%)",
            *shown,
            f"{rate:.1f} img/s",
            f"elapsed {_duration(elapsed)}",
            f"ETA {_duration(eta)}",
        ]
        log.info(" · ".join(p for p in parts if p))

    def close(self) -> None:
        """The last line (if the last update did not write it) and the end of the bar."""
        if self.enabled and self.done != self.logged:
            self._line(time.monotonic(), self.where, self.figures)
        if self.bar is not None:
            self.bar.close()
