"""The report stages: Table 2 and its ablation tables, the paper's figures (galleries, shift curves, the rho
curve), the official-protocol sensitivity table, and `inspect`, which says what any file of a run is."""

from __future__ import annotations

import argparse
from pathlib import Path

from vlm_rationality.stages import Stage, json_argument

ORDER = ("methods", "models", "datasets", "heatmap-methods")  # the table order the workflow passes as JSON lists


def _order(p: argparse.ArgumentParser, names: tuple[str, ...] = ORDER) -> None:
    for name in names:
        p.add_argument(
            f"--{name}", type=json_argument, required=True, help=f"{name.replace('-', ' ')} in table order (JSON list)"
        )


def _report_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--metrics", required=True)
    _order(p)
    p.add_argument("--markdown", required=True)
    p.add_argument("--latex", required=True, help="Table 2 as booktabs LaTeX")
    p.add_argument("--html", required=True, help="Table 2 as an HTML page (shown inline by snakemake --report)")
    p.add_argument("--csv", required=True, help="Table 2 in long form")
    p.add_argument("--ablation", required=True, help="the heatmap-method ablation table (Markdown)")
    for suffix, what in (("markdown", "Markdown"), ("latex", "booktabs LaTeX"), ("csv", "CSV, long form")):
        p.add_argument(
            f"--ablations-{suffix}",
            required=True,
            help=f"the ablation table (fine-tuning family, sweeps, explanation method) as {what}",
        )
    p.add_argument("--figure", required=True)


def _report(args: argparse.Namespace) -> None:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from vlm_rationality.artefacts import read_metrics
    from vlm_rationality.io import atomic_path, read_provenance
    from vlm_rationality.provenance import made_by_lines, provenance
    from vlm_rationality.report import ablations
    from vlm_rationality.report.figures import pt_ir_figure
    from vlm_rationality.report.tables import (
        CSV_COLUMNS,
        ablation_markdown,
        csv_rows,
        html_tables,
        latex_tables,
        report_markdown,
    )

    rows = read_metrics(args.metrics)
    order = (args.methods, args.models, args.datasets, args.heatmap_methods)
    made_by = made_by_lines([read_provenance(args.metrics), provenance()])
    texts = (
        (args.markdown, report_markdown(rows, *order) + "".join(f"\n\n_Made by {line}._" for line in made_by) + "\n"),
        (args.latex, latex_tables(rows, *order)),
        (args.html, html_tables(rows, *order, made_by=made_by)),
        (args.ablation, ablation_markdown(rows, *order)),
    )
    blocks, threshold = ablations.blocks(rows, *order), rows[0]["threshold"] if rows else 0.5
    texts += (
        (args.ablations_markdown, ablations.markdown(blocks, threshold)),
        (args.ablations_latex, ablations.latex(blocks, threshold)),
    )
    for path, text in texts:
        with atomic_path(path) as tmp:
            tmp.write_text(text)
    tables = (
        (args.csv, csv_rows(rows, *order), CSV_COLUMNS, 6),
        (args.ablations_csv, ablations.csv_rows(blocks), ablations.CSV_COLUMNS, 8),
    )
    for path, found, columns, text_columns in tables:
        types = [(c, pa.string()) for c in columns[:text_columns]] + [(c, pa.float64()) for c in columns[text_columns:]]
        with atomic_path(path) as tmp:
            pacsv.write_csv(pa.Table.from_pylist(found, schema=pa.schema(types)), tmp)
    pt_ir_figure(rows, *order, args.figure)
    print(
        f"wrote {args.markdown}, {args.latex}, {args.html}, {args.csv}, {args.ablation}, {args.ablations_markdown} "
        f"(and its LaTeX and CSV) and {args.figure}"
    )


def _gallery_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--heatmaps", nargs="+", required=True, help="heatmap files, one or more per method")
    p.add_argument("--prepared", nargs="+", required=True, help="the prepared shards they explain")
    p.add_argument("--methods", type=json_argument, required=True, help="methods in column order (JSON list)")
    p.add_argument("--class-names", type=json_argument, required=True, help="class names by label (JSON list)")
    p.add_argument("--threshold", type=float, required=True, help="RMA threshold of valid evidence")
    p.add_argument("--samples", type=int, required=True, help="samples per gallery")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--title", required=True)
    p.add_argument("--all-right", required=True, help="PNG: samples every method got right")
    p.add_argument("--rw", required=True, help="PNG: right-for-the-wrong-reason samples per method")


def _gallery(args: argparse.Namespace) -> None:
    from vlm_rationality.report.gallery import galleries

    drawn = galleries(
        args.heatmaps,
        args.prepared,
        args.methods,
        args.class_names,
        args.threshold,
        args.samples,
        args.seed,
        args.title,
        args.all_right,
        args.rw,
    )
    print(f"all methods right: {len(drawn['all_right'])} samples drawn: {', '.join(drawn['all_right'])}")
    for method, samples in drawn["rw"].items():
        print(f"RW of {method}: {len(samples)} samples drawn: {', '.join(samples)}")


def _shift_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--metrics", required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--heatmap", required=True, help="heatmap method")
    p.add_argument("--methods", type=json_argument, required=True, help="methods, one line each (JSON list)")
    p.add_argument("--figure", required=True)


def _shift_curves(args: argparse.Namespace) -> None:
    from vlm_rationality.artefacts import read_metrics
    from vlm_rationality.report.figures import shift_figure

    shift_figure(read_metrics(args.metrics), args.dataset, args.model, args.heatmap, args.methods, args.figure)
    print(f"wrote {args.figure}")


def _rho_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--metrics", required=True)
    p.add_argument("--rhos", type=json_argument, required=True, help="dataset -> rho of its training split (JSON)")
    _order(p, ("methods", "models", "heatmap-methods"))
    p.add_argument("--figure", required=True)


def _rho_curve(args: argparse.Namespace) -> None:
    from vlm_rationality.artefacts import read_metrics
    from vlm_rationality.report.figures import rho_figure

    rho_figure(read_metrics(args.metrics), args.rhos, args.methods, args.models, args.heatmap_methods, args.figure)
    print(f"wrote {args.figure}")


def _sensitivity_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--score", type=json_argument, required=True, help="this project's score settings (JSON)")
    p.add_argument("--switches", type=json_argument, required=True, help="switch -> {official, here, score} (JSON)")
    p.add_argument("--not-run", type=json_argument, required=True, help="switch -> why it made no variant (JSON)")
    p.add_argument("--markdown", required=True)
    p.add_argument("--csv", required=True)
    p.add_argument("heatmaps", nargs="+", help="heatmap files of the configured methods and their variants")


def _sensitivity(args: argparse.Namespace) -> None:
    import pyarrow.csv as pacsv

    from vlm_rationality.io import atomic_path
    from vlm_rationality.report.sensitivity import sensitivity_markdown, sensitivity_table

    table = sensitivity_table(args.heatmaps, args.score, args.switches)
    with atomic_path(args.markdown) as tmp:
        tmp.write_text(sensitivity_markdown(table.to_pylist(), args.switches, args.not_run))
    with atomic_path(args.csv) as tmp:
        pacsv.write_csv(table, tmp)
    print(f"wrote {args.markdown} and {args.csv}: {table.num_rows} rows")


def _replicates_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--metrics", required=True, help="the score table (Parquet)")
    p.add_argument("--reference", default="", help="the method the others are compared with (none: no differences)")
    p.add_argument("--markdown", required=True)
    p.add_argument("--csv", required=True)


def _replicates(args: argparse.Namespace) -> None:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from vlm_rationality.artefacts import read_metrics
    from vlm_rationality.io import atomic_path
    from vlm_rationality.report.replicates import replicate_table, replicates_markdown

    reference = args.reference or None
    table = replicate_table(read_metrics(args.metrics), reference)
    with atomic_path(args.markdown) as tmp:
        tmp.write_text(replicates_markdown(table, reference))
    with atomic_path(args.csv) as tmp:
        pacsv.write_csv(pa.Table.from_pylist(table), tmp)
    print(f"wrote {args.markdown} and {args.csv}: {len(table)} rows")


def _inspect_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("path")
    p.add_argument("--rows", type=int, default=5)
    p.add_argument("--sample", default=None, help="a sample_id of the heatmap file or prepared shard (with --png)")
    p.add_argument("--png", default=None, help="where to draw it (a new file, or an existing PNG)")
    p.add_argument(
        "--prepared",
        nargs="+",
        default=None,
        help="prepared shards holding the sample (default: the heatmap file's source_shards)",
    )


def _inspect(args: argparse.Namespace) -> None:
    if args.sample is None and args.png is None:
        from vlm_rationality.report.inspect import describe

        print(describe(args.path, args.rows))
        return
    from vlm_rationality.io import read_metadata
    from vlm_rationality.report.gallery import render_prepared, render_sample

    if args.sample is None or args.png is None:
        raise SystemExit("inspect: --sample and --png go together (one sample, drawn to a PNG)")
    png = Path(args.png)
    if png.exists() and png.read_bytes()[:8] != b"\x89PNG\r\n\x1a\n":
        raise SystemExit(f"inspect: {png} exists and is not a PNG; name another file for --png")
    schema = read_metadata(args.path).get("schema", "") if str(args.path).endswith(".parquet") else ""
    if schema.startswith("prepared-samples/"):
        print(render_prepared(args.path, args.sample, png))
    else:
        print(render_sample(args.path, args.sample, png, args.prepared))


STAGES = (
    Stage(
        "report",
        "Table 2 per heatmap method (Markdown, LaTeX, CSV), the heatmap-method ablation table and the PT/IR figure",
        _report_arguments,
        _report,
    ),
    Stage(
        "gallery",
        "the paper's Figure 3: heatmaps of samples every method got right, and RW samples per method, for one "
        "(dataset, model, heatmap method)",
        _gallery_arguments,
        _gallery,
    ),
    Stage(
        "shift-curves",
        "the paper's Figures 4-5: PT, IR and accuracy against corruption severity",
        _shift_arguments,
        _shift_curves,
    ),
    Stage(
        "rho-curve",
        "accuracy, PT and IR against the training split's spurious strength rho",
        _rho_arguments,
        _rho_curve,
    ),
    Stage(
        "protocol-sensitivity",
        "how far each official-code choice, alone, moves accuracy, PT and IR (protocol.py)",
        _sensitivity_arguments,
        _sensitivity,
    ),
    Stage(
        "replicates",
        "outcomes over runs: each method over bases x seeds (mean, t-interval) and against a reference, paired",
        _replicates_arguments,
        _replicates,
    ),
    Stage(
        "inspect",
        "what a file of a run is: a Parquet artefact's schema, metadata and first rows, a checkpoint's header and "
        "tensor shapes, a sidecar, a CSV table; or draw one sample of a heatmap file (as RMA sees it) or of a "
        "prepared shard (its object and cue)",
        _inspect_arguments,
        _inspect,
    ),
)
