"""The report's figures from hand-made metric rows: every series drawn where its rows are, NaN where not."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pytest

from vlm_rationality.report import figures


def _row(dataset: str, method: str, value: float) -> dict:
    row = {"dataset": dataset, "shift": "clean", "model": "m", "method": method, "heatmap_method": "chefer"}
    for metric, _ in figures.METRICS:
        row.update({metric: value, f"{metric}_ci_low": value - 0.05, f"{metric}_ci_high": value + 0.05})
    return row


def test_rho_figure_draws_a_line_per_method_in_rho_order(tmp_path, monkeypatch):
    drawn = []
    monkeypatch.setattr(plt, "close", drawn.append)  # keep the figure to look at its lines
    rows = [_row("r9", "ft", 0.3), _row("r0", "ft", 0.9), _row("r5", "ft", 0.6), _row("r0", "zs", 0.5)]
    figures.rho_figure(rows, {"r9": 0.9, "r0": 0.0, "r5": 0.5}, ["zs", "ft"], ["m"], ["chefer"], tmp_path / "rho.png")
    assert (tmp_path / "rho.png").read_bytes()[:4] == b"\x89PNG"
    panels = drawn[0].axes
    assert [ax.get_title() for ax in panels] == ["PT (chefer)", "IR (chefer)", "accuracy (chefer)"]
    zs, ft = panels[0].get_lines()
    assert list(ft.get_xdata()) == [0.0, 0.5, 0.9] and list(ft.get_ydata()) == pytest.approx([0.9, 0.6, 0.3])
    assert zs.get_ydata()[0] == 0.5 and all(v != v for v in zs.get_ydata()[1:])  # no rows: NaN, not zero
