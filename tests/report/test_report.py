"""The report stage's galleries, shift curves, LaTeX/CSV tables and progress lines, on real Parquet files."""

from __future__ import annotations

import logging
import math
import re

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from vlm_rationality.artefacts import (
    PreparedShard,
    read_heatmaps,
    write_heatmap_shard,
    write_prepared_shard,
)
from vlm_rationality.metrics.rma import relevance_mass_accuracy
from vlm_rationality.progress import Progress
from vlm_rationality.report import figures, gallery, tables

METHODS = ("zs", "lp", "ft")


def test_the_overlay_is_the_heatmap_rma_weighs():
    grid = np.array([[0.0, 1.0], [2.0, 3.0]], np.float32)
    view = gallery.heatmap_view(grid.ravel(), (2, 2), (4, 4))
    # Bilinear, align_corners=False, 2 -> 4: output pixel i samples input coordinate (i + 0.5) / 2 - 0.5, clamped.
    axis = np.clip((np.arange(4) + 0.5) / 2 - 0.5, 0, 1)
    expected = (axis[:, None] * 2 + axis[None, :]) / 3  # value = 2·row + col, min 0, max 3
    np.testing.assert_allclose(view, expected, atol=1e-6)
    mask = np.zeros((4, 4), bool)
    mask[2:, 1:3] = True
    rma, _ = relevance_mass_accuracy(torch.from_numpy(grid)[None], torch.from_numpy(mask)[None])
    assert (view * mask).sum() / view.sum() == pytest.approx(float(rma[0]), abs=1e-6)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """A prepared shard of 40 samples and, per method, a heatmap file whose predictions and RMAs are known."""
    root = tmp_path_factory.mktemp("gallery")
    rng = np.random.default_rng(0)
    n, size = 40, 8
    ids = [f"s{k:03d}" for k in range(n)]
    labels = rng.integers(0, 3, n)
    masks = np.zeros((n, size, size), bool)
    masks[:, 2:6, 2:6] = True
    prepared = root / "shard-0000.parquet"
    write_prepared_shard(
        prepared,
        sample_ids=ids,
        labels=labels,
        images=rng.integers(0, 255, (n, size, size, 3), dtype=np.uint8),
        masks=masks,
        sources=ids,
        config_hash="x",
        class_names=["disc", "ring", "star"],
    )
    paths = []
    for m, method in enumerate(METHODS):
        preds = np.where(rng.random(n) < 0.7, labels, (labels + 1) % 3)
        heat = rng.random((n, 16)).astype(np.float32)
        rma = rng.random(n).astype(np.float32)
        rma[m] = np.nan  # undefined for one sample per method: never drawn
        path = root / method / "shards-0000-0000.parquet"
        path.parent.mkdir()
        write_heatmap_shard(
            path,
            sample_ids=ids,
            labels=labels,
            preds=preds,
            logits=rng.random((n, 3)),
            heatmaps=heat,
            rma=rma,
            rma_status=np.where(np.isnan(rma), 1, 0),
            explained_class=labels,
            cue_rma=1 - rma,
            keys={"dataset": "d", "shift": "clean", "model": "m", "method": method, "heatmap_method": "chefer"},
            config_hash="x",
            meta={"grid_size": [4, 4], "source_shards": [str(prepared)]},
        )
        paths.append(path)
    return prepared, paths


def _truth(paths):
    """sample_id -> (label, pred, rma) per method, read back from the heatmap files."""
    out = {}
    for path in paths:
        meta, table = read_heatmaps(path, ["sample_id", "label", "pred", "rma"])
        out[meta["keys"]["method"]] = {r["sample_id"]: r for r in table.to_pylist()}
    return out


def test_the_galleries_draw_only_samples_of_their_kind_and_the_same_ones_every_run(shards, tmp_path):
    prepared, paths = shards
    truth = _truth(paths)
    drawn = gallery.galleries(
        paths, [prepared], list(METHODS), ["a", "b", "c"], 0.5, 5, 0, "d", tmp_path / "r.png", tmp_path / "rw.png"
    )
    every_right = {
        s
        for s in truth["zs"]
        if all(
            truth[m][s]["pred"] == truth[m][s]["label"]
            and truth[m][s]["rma"] is not None
            and not math.isnan(truth[m][s]["rma"])
            for m in METHODS
        )
    }
    assert len(every_right) > 5 and len(drawn["all_right"]) == 5 and set(drawn["all_right"]) <= every_right
    for method in METHODS:
        rows = truth[method]
        assert len(drawn["rw"][method]) == 5
        assert all(rows[s]["pred"] == rows[s]["label"] and rows[s]["rma"] < 0.5 for s in drawn["rw"][method])
    again = gallery.galleries(
        paths, [prepared], list(METHODS), ["a", "b", "c"], 0.5, 5, 0, "d", tmp_path / "r2.png", tmp_path / "rw2.png"
    )
    assert again == drawn
    for name in ("r.png", "rw.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"


def test_a_gallery_with_no_candidate_says_so_instead_of_failing(shards, tmp_path):
    prepared, paths = shards
    drawn = gallery.galleries(
        paths, [prepared], list(METHODS), ["a", "b", "c"], 0.0, 5, 0, "d", tmp_path / "r.png", tmp_path / "rw.png"
    )
    assert drawn["rw"] == {m: [] for m in METHODS}  # nothing is below a threshold of 0
    assert (tmp_path / "rw.png").read_bytes()[:4] == b"\x89PNG"


def test_inspect_draws_one_sample_of_a_heatmap_file_or_a_prepared_shard(shards, tmp_path, capsys):
    from vlm_rationality.cli import main

    prepared, paths = shards
    main(["inspect", str(paths[0]), "--sample", "s007", "--png", str(tmp_path / "one.png")])
    assert (tmp_path / "one.png").read_bytes()[:4] == b"\x89PNG"
    assert PreparedShard(prepared).read()["sample_id"][7] == "s007"
    with pytest.raises(SystemExit, match="no sample 'nope'"):
        main(["inspect", str(paths[0]), "--sample", "nope", "--png", str(tmp_path / "two.png")])
    main(["inspect", str(prepared), "--sample", "s003", "--png", str(tmp_path / "one.png")])  # a PNG: redrawn
    label = int(PreparedShard(prepared).read()["label"][3])
    assert capsys.readouterr().out.strip().endswith(f"s003 label {label} ({['disc', 'ring', 'star'][label]})")
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit, match="notes.txt exists and is not a PNG"):
        main(["inspect", str(prepared), "--sample", "s003", "--png", str(tmp_path / "notes.txt")])
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_inspect_says_what_any_file_is_and_never_to_delete_one_it_did_not_write(shards, tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch

    from vlm_rationality.cli import main
    from vlm_rationality.models.checkpoint import save_state_dict

    prepared, paths = shards

    def shown(path) -> str:
        main(["inspect", str(path)])
        return capsys.readouterr().out

    heatmaps = shown(paths[0])
    assert (
        '"schema": "heatmaps/3"' in heatmaps and "first 5 row(s) (array columns left out: heatmap, logits)" in heatmaps
    )
    assert heatmaps.splitlines()[-7].startswith("sample_id")  # the rows as a table: header, rule, five rows
    assert heatmaps.splitlines()[-7].rstrip().endswith("label_name  pred_name")  # named from the source shard
    named = PreparedShard(prepared).read()["label"][:5]
    assert [line.split()[-2] for line in heatmaps.splitlines()[-5:]] == [["disc", "ring", "star"][k] for k in named]
    save_state_dict({"w": torch.zeros(3, 4)}, tmp_path / "ft.safetensors", {"head_kind": "linear"})
    (tmp_path / "ft.json").write_text('{"model": {"arch": "tiny"}, "metrics": {"train_loss": 0.5}}')
    checkpoint = shown(tmp_path / "ft.safetensors")
    assert (
        "1 tensors, 12 numbers" in checkpoint and "a classifier checkpoint of this project (head: linear)" in checkpoint
    )
    assert "(3, 4)" in checkpoint and "a checkpoint sidecar" in checkpoint
    (tmp_path / "table.csv").write_text("a,b\n1,x\n2,y\n")
    assert "CSV, 2 rows, columns: a, b" in shown(tmp_path / "table.csv")
    pq.write_table(pa.table({"x": [1, 2]}), tmp_path / "foreign.parquet")
    assert "not an artefact of this project (no vlm_rationality.schema" in shown(tmp_path / "foreign.parquet")
    (tmp_path / "config.cfg").write_text("[x]")
    (tmp_path / "broken.parquet").write_bytes(b"not parquet")
    (tmp_path / "broken.safetensors").write_bytes(b"\xff" * 16)
    for name in ("config.cfg", "broken.parquet", "broken.safetensors"):
        assert "delete" not in shown(tmp_path / name)


def _row(shift: str, method: str, value: float) -> dict:
    row = {"dataset": "d", "shift": shift, "model": "m", "method": method, "heatmap_method": "chefer", "threshold": 0.5}
    for metric, _ in figures.METRICS:
        row.update({metric: value, f"{metric}_ci_low": value - 0.05, f"{metric}_ci_high": value + 0.05})
    return row


def test_shift_curves_have_one_point_per_severity_present(tmp_path, monkeypatch):
    kept = []
    monkeypatch.setattr(plt, "close", kept.append)
    rows = [
        _row("clean", "ft", 0.9),
        _row("gaussian_noise-1", "ft", 0.8),
        _row("gaussian_noise-3", "ft", 0.5),
        _row("clean", "zs", 0.7),
        _row("gaussian_noise-3", "zs", 0.4),
        _row("fog-5", "zs", 0.2),
    ]
    figures.shift_figure(rows, "d", "m", "chefer", ["zs", "ft"], tmp_path / "shift.png")
    panels = kept[0].axes
    assert [ax.get_title() for ax in panels] == [
        f"{m} · {c}" for c in ("fog", "gaussian_noise") for m in ("PT", "IR", "accuracy")
    ]
    fog, noise = panels[0], panels[3]
    (zs_fog,) = fog.get_lines()  # ft has no fog rows, so no line there
    assert list(zs_fog.get_xdata()) == [0, 5] and list(zs_fog.get_ydata()) == pytest.approx([0.7, 0.2])
    zs, ft = noise.get_lines()
    assert list(zs.get_xdata()) == [0, 3] and list(ft.get_xdata()) == [0, 1, 3]
    assert list(ft.get_ydata()) == pytest.approx([0.9, 0.8, 0.5])
    with pytest.raises(ValueError, match="no corrupted shift"):
        figures.shift_figure([_row("clean", "ft", 0.9)], "d", "m", "chefer", ["ft"], tmp_path / "none.png")


def _two_datasets(values: dict[str, tuple[float, float]]) -> list[dict]:
    rows = []
    for method, pair in values.items():
        for dataset, value in zip(("data_a", "data_b"), pair):
            row = _row("clean", method, value)
            row["dataset"] = dataset
            rows.append(row)
    return rows


def test_the_latex_table_is_balanced_keeps_the_intervals_and_bolds_a_separated_best_average():
    rows = _two_datasets({"zs": (0.2, 0.4), "lp": (0.6, 0.8), "ft": (0.5, 0.5)})
    tex = tables.latex_tables(rows, ["zs", "lp", "ft"], ["m"], ["data_a", "data_b"], ["chefer"])
    assert tex.count(r"\begin{tabular}") == tex.count(r"\end{tabular}") == 1
    assert tex.count(r"\begin{table}") == tex.count(r"\end{table}") == 1
    spec = re.search(r"\\begin\{tabular\}\{(\w+)\}", tex).group(1)
    body = tex.split(r"\toprule", 1)[1].split(r"\bottomrule", 1)[0]
    lines = [x for x in body.splitlines() if x.endswith(r"\\") and "multicolumn" not in x]
    assert lines and all(x.count("&") == len(spec) - 1 for x in lines)
    assert r"data\_a" in lines[0] and tex.count("{") == tex.count("}")
    by_method = {x.split(" & ")[0]: x.split(" & ")[-1] for x in lines[1:4]}  # the PT block's averages
    # each dataset's interval is ±5 points, so the mean of two has ±5·√2/2 = ±3.5
    assert by_method == {
        "ZS": r"30.0 {\scriptsize [26.5, 33.5]} \\",
        "LP": r"\textbf{70.0 {\scriptsize [66.5, 73.5]}} \\",
        "FT": r"50.0 {\scriptsize [46.5, 53.5]} \\",
    }
    assert r"20.0 {\scriptsize [15.0, 25.0]}" in lines[1]  # a dataset's cell keeps its interval
    assert tex.count(r"\textbf") == len(tables.BLOCKS) and r"\underline" not in tex


def test_no_average_is_bold_where_its_interval_reaches_the_next_one():
    rows = _two_datasets({"zs": (0.5, 0.5), "lp": (0.52, 0.54), "ft": (0.2, 0.2)})
    table = tables.markdown_table(rows, ["zs", "lp", "ft"], ["m"], ["data_a", "data_b"], "clean")
    assert "**" not in table  # LP's 53.0 [49.5, 56.5] reaches ZS's 50.0 [46.5, 53.5]
    assert "| LP | m | 52.0 [47.0, 57.0] | 54.0 [49.0, 59.0] | 53.0 [49.5, 56.5] |" in table


def test_the_csv_table_has_every_cell_and_the_average(tmp_path):
    rows = [_row("clean", "zs", 0.25), _row("clean", "ft", 0.5)]
    out = tables.csv_rows(rows, ["zs", "ft"], ["m"], ["d"], ["chefer"])
    assert len(out) == 2 * 2 * len(tables.BLOCKS)  # (d, average) per method and metric
    first = out[0]
    assert (first["metric"], first["method"], first["dataset"], first["value"], first["ci_low"]) == (
        "prediction_trustworthiness",
        "zs",
        "d",
        25.0,
        20.0,
    )
    assert out[1]["dataset"] == "average" and (out[1]["ci_low"], out[1]["ci_high"]) == (20.0, 30.0)  # one dataset


def test_progress_logs_the_first_and_last_step_and_at_its_pace(caplog):
    caplog.set_level(logging.INFO, logger="vlm_rationality.progress")
    progress = Progress("train", 100, every=3600)
    for _ in range(9):
        progress.update(10, "epoch 1/1", loss=0.5, acc=None)
    progress.close()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and lines[0].startswith("train · epoch 1/1 · 10/100 img (10%) · loss 0.5000 · ")
    assert "img/s" in lines[0] and "ETA" in lines[0] and "90/100" in lines[1]
    caplog.clear()
    steady = Progress("explain", 30, every=0)
    for _ in range(3):
        steady.update(10)
    assert len(caplog.records) == 3


def test_method_names_upper_case_the_method_and_keep_a_variants_settings():
    from vlm_rationality.report.names import display_name

    assert display_name("ft") == "FT"
    assert display_name("ft.lr=0.005.optimizer=sgd") == "FT.lr=0.005.optimizer=sgd"
    assert display_name("lp@head") == "LP@head"


def test_the_pt_ir_figure_is_in_percent_and_leads_with_pt_true_cue_where_twins_give_it(tmp_path, monkeypatch):
    kept = []
    monkeypatch.setattr(plt, "close", kept.append)
    rows = [_row("clean", "zs", 0.4), _row("clean", "ft", 0.6)]
    for row in rows:
        row.update(pt_true_cue=0.9, pt_true_cue_ci_low=0.85, pt_true_cue_ci_high=0.95)
    figures.pt_ir_figure(rows, ["zs", "ft"], ["m"], ["d"], ["chefer"], tmp_path / "pt_ir.png")
    (ax,) = kept[0].axes
    assert ax.get_ylim() == (0, 100) and ax.get_ylabel().startswith("%")
    bars = [patch.get_height() for patch in ax.patches]
    assert bars == pytest.approx([90, 90, 40, 60, 40, 60, 40, 60])  # PT*_cue, then PT, IR, accuracy per method
    assert [t.get_text() for t in kept[0].legends[0].get_texts()] == ["PT*_cue", "PT", "IR", "accuracy"]
