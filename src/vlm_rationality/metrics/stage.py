"""The metric stages: Table 2's scores (score), their breakdowns by threshold, class and visual factor, the validity
verdict against the twins' truth, and the robustness axes (calibration, OOD detection, shape bias)."""

from __future__ import annotations

import argparse
import functools

from vlm_rationality.io import config_hash
from vlm_rationality.metrics.rationality import UNDEFINED_POLICIES
from vlm_rationality.stages import Stage, json_argument


def _bootstrap(p: argparse.ArgumentParser, required: bool = False) -> None:
    p.add_argument("--iterations", type=int, required=required, default=1000, help="bootstrap iterations")
    p.add_argument("--seed", type=int, required=required, default=0, help="seed of the bootstrap (and the folds)")


def _outputs(p: argparse.ArgumentParser, *names: str) -> None:
    for name in names:
        p.add_argument(f"--{name}", required=True)


def _score_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threshold", type=float, required=True)
    _bootstrap(p, required=True)
    p.add_argument(
        "--undefined-rma",
        default="exclude",
        choices=UNDEFINED_POLICIES,
        help="what an undefined RMA counts as (default: exclude it from the quadrants)",
    )
    p.add_argument(
        "--sweeps", type=json_argument, default={}, help="swept variant -> {method, values} (JSON): setting columns"
    )
    p.add_argument(
        "--groups",
        type=json_argument,
        default={},
        help="dataset -> {tied, shards} (JSON): worst-group accuracy over class x tied cue present/absent",
    )
    p.add_argument("--twins", nargs="*", default=[], help="twins files: the true rationale (PT*, IR*) per clean row")
    p.add_argument("--agreement", type=float, default=1.0, help="share of twins a grounded prediction survives")
    _outputs(p, "parquet", "csv")
    p.add_argument("heatmaps", nargs="+")


def _score(args: argparse.Namespace) -> None:
    from vlm_rationality.artefacts import write_metrics
    from vlm_rationality.metrics.score import score_table

    table = score_table(
        args.heatmaps,
        args.threshold,
        args.iterations,
        args.seed,
        args.undefined_rma,
        args.sweeps,
        args.groups,
        args.twins,
        args.agreement,
    )
    settings = [
        args.threshold,
        args.iterations,
        args.seed,
        args.undefined_rma,
        args.sweeps,
        {d: g.get("tied", g.get("sticker")) for d, g in args.groups.items()},
    ]
    write_metrics(table, args.parquet, args.csv, config_hash(settings + ([args.agreement] if args.twins else [])))
    print(f"{args.parquet}: {table.num_rows} rows")


def _breakdowns_arguments(p: argparse.ArgumentParser) -> None:
    _bootstrap(p)
    p.add_argument("--undefined-rma", default="exclude", help="what an undefined RMA counts as, as in score")
    p.add_argument("--threshold", type=float, default=0.5, help="the configured threshold, marked in the figures")
    for name in ("methods", "models", "datasets", "heatmap-methods"):
        p.add_argument(
            f"--{name}", type=json_argument, required=True, help=f"{name.replace('-', ' ')} in table order (JSON)"
        )
    p.add_argument(
        "--class-names", type=json_argument, required=True, help="dataset -> its class names in label order (JSON)"
    )
    _outputs(p, "parquet", "csv", "per-class-parquet", "per-class-csv", "curves", "distributions", "per-class")
    p.add_argument("heatmaps", nargs="+")


def _breakdowns(args: argparse.Namespace) -> None:
    import pyarrow as pa

    from vlm_rationality.artefacts import PER_CLASS, THRESHOLDS, write_metrics
    from vlm_rationality.metrics.thresholds import per_class_rows, stored_rma, threshold_rows
    from vlm_rationality.report.thresholds import per_class_figure, rma_figure, threshold_figure

    stored = stored_rma(args.heatmaps, args.undefined_rma)
    rows = threshold_rows(stored, args.iterations, args.seed)
    classes = per_class_rows(stored, args.class_names, args.threshold, args.iterations, args.seed)
    settings = config_hash([args.iterations, args.seed, args.undefined_rma, args.threshold])
    write_metrics(pa.Table.from_pylist(rows), args.parquet, args.csv, settings, THRESHOLDS)
    write_metrics(pa.Table.from_pylist(classes), args.per_class_parquet, args.per_class_csv, settings, PER_CLASS)
    order = (args.methods, args.models, args.datasets, args.heatmap_methods, args.threshold)
    threshold_figure(rows, *order, args.curves)
    rma_figure(stored, *order, args.distributions)
    per_class_figure(classes, args.methods, args.models, args.datasets, args.heatmap_methods[0], args.per_class)
    print(
        f"wrote {args.parquet}, {args.per_class_parquet} (and their CSV), {args.curves}, {args.distributions}, "
        f"{args.per_class}"
    )


def _factors_arguments(p: argparse.ArgumentParser) -> None:
    _bootstrap(p)
    p.add_argument("--threshold", type=float, required=True)
    p.add_argument("--undefined-rma", default="exclude", choices=UNDEFINED_POLICIES, help="as in score")
    p.add_argument("--agreement", type=float, default=1.0, help="share of twins a grounded prediction survives")
    p.add_argument(
        "--datasets",
        type=json_argument,
        required=True,
        help="dataset -> its config narrowed to the scored split (JSON): its adapter reads the factor annotations",
    )
    p.add_argument("--split", required=True, help="the scored split")
    p.add_argument("--twins", nargs="*", default=[], help="twins files: PT* and PT*_cue per factor")
    _outputs(p, "parquet", "csv", "markdown", "figure")
    p.add_argument("heatmaps", nargs="+", help="heatmap files (clean ones are read)")


def _factors(args: argparse.Namespace) -> None:
    import pyarrow as pa

    from vlm_rationality.artefacts import FACTORS, write_metrics
    from vlm_rationality.data import build_dataset
    from vlm_rationality.io import atomic_path
    from vlm_rationality.metrics.factors import factors_table
    from vlm_rationality.report.factors import factors_figure, factors_markdown

    annotate = {
        name: functools.partial(build_dataset(dataset).factors, args.split) for name, dataset in args.datasets.items()
    }
    rows = factors_table(
        args.heatmaps,
        args.twins,
        annotate,
        args.undefined_rma,
        args.threshold,
        args.agreement,
        args.iterations,
        args.seed,
    )
    settings = [args.iterations, args.seed, args.threshold, args.undefined_rma, args.agreement, args.datasets]
    write_metrics(pa.Table.from_pylist(rows), args.parquet, args.csv, config_hash(settings), FACTORS)
    with atomic_path(args.markdown) as tmp:
        tmp.write_text(factors_markdown(rows))
    factors_figure(rows, args.figure)
    print(f"{args.parquet}: {len(rows)} rows")


def _validity_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--masks", type=json_argument, required=True, help="mask variants (JSON list: exact, dilate-N, box)")
    p.add_argument("--threshold", type=float, required=True)
    p.add_argument("--agreement", type=float, required=True)
    p.add_argument("--rhos", type=json_argument, default={}, help="dataset -> its training rho (JSON): the rho gaps")
    p.add_argument(
        "--trained", type=json_argument, default=[], help="the methods that train (JSON list): the goal's scope"
    )
    p.add_argument("--reference", default="", help="the method whose twins set the floor of the beyond-zs truth (ZS)")
    _bootstrap(p)
    p.add_argument("--threads", type=int, default=1, help="processes, one (classifier, heatmap method) each")
    p.add_argument("--twins", nargs="+", required=True)
    _outputs(p, "parquet", "csv", "markdown", "figure")
    p.add_argument("heatmaps", nargs="+", help="heatmap files (clean ones are read)")


def _validity(args: argparse.Namespace) -> None:
    import pyarrow as pa

    from vlm_rationality.artefacts import VALIDITY, write_metrics
    from vlm_rationality.io import atomic_path
    from vlm_rationality.metrics.validity import validity_rows
    from vlm_rationality.report import validity

    rows = validity_rows(
        args.heatmaps,
        args.twins,
        args.masks,
        args.threshold,
        args.agreement,
        args.reference or None,
        args.iterations,
        args.seed,
        args.threads,
    )
    if not rows:
        raise SystemExit("validity: no (dataset, model, method) has both clean heatmaps and twins")
    gaps = validity.rho_gaps(rows, args.rhos)
    summary = validity.signal_summary(rows, gaps, args.trained)
    settings = config_hash([args.masks, args.threshold, args.agreement, args.reference, args.iterations, args.seed])
    write_metrics(pa.Table.from_pylist(rows), args.parquet, args.csv, settings, schema=VALIDITY)
    with atomic_path(args.markdown) as tmp:
        tmp.write_text(validity.markdown(rows, gaps, summary))
    validity.figure(rows, summary, args.figure, args.trained)
    meeting = [validity.signal_name(s) for s in summary if s["meets_goal"]]
    print(f"{args.parquet}: {len(rows)} rows; signals meeting the goal: {', '.join(meeting) or 'none'}")


def _robustness_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--validation", required=True, help="the set temperature scaling is fitted on")
    p.add_argument("--ood", type=json_argument, required=True, help="OOD set names (JSON list)")
    p.add_argument("--cue-conflict", default=None, help="the cue-conflict set, if any")
    p.add_argument(
        "--restricted",
        type=json_argument,
        default=[],
        help="sets scored on their own classes' logits only (JSON list: ImageNet-R, -A)",
    )
    p.add_argument(
        "--cue-categories",
        choices=["imagenet16"],
        default=None,
        help="the cue-conflict labels are the 16 stimulus categories: ImageNet-1k logits decide among them",
    )
    _outputs(p, "parquet", "csv", "markdown", "id-ood-parquet", "id-ood-csv", "id-ood-figure")
    p.add_argument("--reliability", required=True, help="folder of the reliability diagrams (<dataset>/<model>.png)")
    _bootstrap(p)
    p.add_argument("predictions", nargs="+")


def _robustness(args: argparse.Namespace) -> None:
    import pyarrow as pa

    from vlm_rationality.artefacts import ID_OOD, ROBUSTNESS, read_predictions, write_metrics
    from vlm_rationality.io import atomic_path
    from vlm_rationality.metrics.id_ood import id_ood_rows
    from vlm_rationality.metrics.robustness import robustness_rows
    from vlm_rationality.report.robustness import id_ood_figure, reliability_figures, robustness_markdown

    predictions = [read_predictions(path) for path in args.predictions]  # read once: the table and the figures
    sets = (args.validation, args.ood, args.cue_conflict, args.cue_categories)
    rows = robustness_rows(predictions, *sets, args.iterations, args.seed, args.restricted)
    settings = config_hash([*sets, args.iterations, args.seed, *([args.restricted] if args.restricted else [])])
    write_metrics(pa.Table.from_pylist(rows), args.parquet, args.csv, settings, ROBUSTNESS)
    lines = id_ood_rows(rows)
    write_metrics(pa.Table.from_pylist(lines), args.id_ood_parquet, args.id_ood_csv, settings, ID_OOD)
    id_ood_figure(rows, lines, args.id_ood_figure)
    with atomic_path(args.markdown) as tmp:
        tmp.write_text(robustness_markdown(rows, args.ood, lines))
    figures = reliability_figures(predictions, rows, args.validation, args.reliability)
    print(f"{args.parquet}: {len(rows)} rows; {len(figures)} reliability diagrams")


STAGES = (
    Stage(
        "score",
        "PT, IR, quadrants and CIs per (dataset, shift, model, method, heatmap method)",
        _score_arguments,
        _score,
    ),
    Stage(
        "breakdowns",
        "Table 2 broken down, from the heatmap files: PT and IR against the RMA threshold, the RMA distribution per "
        "method, and accuracy, PT and IR per class (tables and figures)",
        _breakdowns_arguments,
        _breakdowns,
    ),
    Stage(
        "factors",
        "accuracy, error ratio, PT and IR (and with twins PT*) per visual factor (ImageNet-X's, or the synthetic "
        "generator's), and factor accuracy against overall accuracy on probit axes",
        _factors_arguments,
        _factors,
    ),
    Stage(
        "validity",
        "RMA's PT/IR and per-sample signal against the twins' truth, per heatmap method and mask variant",
        _validity_arguments,
        _validity,
    ),
    Stage(
        "robustness",
        "calibration, OOD detection and shape bias from predictions files",
        _robustness_arguments,
        _robustness,
        size="bookkeeping",
    ),
)
