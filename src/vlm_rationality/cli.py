"""`vlm-rationality <command>`: one command per workflow stage, plus `inspect` for any artefact.

Stage commands take their settings as JSON (`--spec`, `--model`, …): the workflow passes each rule's params
through unchanged, and the hash of those settings goes into every file the command writes.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from vlm_rationality.io import config_hash, read_metadata
from vlm_rationality.metrics.rationality import UNDEFINED_POLICIES

# The checkout's workflow schema (the package runs from its checkout: pip install -e, or the workflow's PYTHONPATH).
SCHEMA = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not valid JSON ({err}): {text[:80]}") from err


def _threads(args: argparse.Namespace) -> None:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)


def cmd_items(args: argparse.Namespace) -> None:
    from vlm_rationality.data.prepare import write_item_index

    print(
        f"{args.out}: {write_item_index(args.spec, args.split, args.out, config_hash([args.spec, args.split]))} items"
    )


def cmd_prepare(args: argparse.Namespace) -> None:
    from vlm_rationality.data.prepare import prepare_shard

    counts = prepare_shard(
        args.spec,
        args.split,
        args.shard,
        args.items,
        args.out,
        config_hash([args.spec, args.split]),
        args.shift,
        args.imagenet_c,
        args.clean_shard,
    )
    print(f"{args.out}: {json.dumps(counts)}")


def cmd_prepare_report(args: argparse.Namespace) -> None:
    from vlm_rationality.data.prepare import split_report

    print(json.dumps(split_report(args.shards, args.out)))


def cmd_pretrain(args: argparse.Namespace) -> None:
    from vlm_rationality.finetune.run import pretrain_base

    _threads(args)
    sidecar = pretrain_base(args.model, args.train, args.shards, args.out, args.device, args.training_data)
    print(json.dumps(sidecar["metrics"]), f"({sidecar['seconds']} s on {sidecar['device']})")


def cmd_finetune(args: argparse.Namespace) -> None:
    from vlm_rationality.finetune.run import finetune

    if args.processes > 1 and "LOCAL_RANK" not in os.environ:  # data-parallel: this command again, once per rank
        argv = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={args.processes}",
            "-m",
            "vlm_rationality",
            *sys.argv[1:],
        ]
        os.execv(sys.executable, argv)
    args.threads = max(1, args.threads // args.processes) if args.threads else 0  # --threads: the whole job's
    _threads(args)
    sidecar = finetune(args.model, args.method, args.prompts, args.shards, args.out, args.device, args.training_data)
    print(json.dumps(sidecar["metrics"]), f"({sidecar['seconds']} s on {sidecar['device']})")


def cmd_explain(args: argparse.Namespace) -> None:
    from vlm_rationality.explain.run import explain

    args.threads = max(1, args.threads - args.workers) if args.threads else 0  # the rest run the corruption workers
    _threads(args)
    settings = [*_classifier_identity(args), args.heatmaps, args.keys]
    summary = explain(
        args.model,
        args.prompts,
        args.checkpoint,
        args.heatmaps,
        args.shards,
        args.out,
        args.device,
        args.keys,
        config_hash(settings),
        args.workers,
    )
    print(f"{args.out}: {json.dumps(summary)}")


def cmd_predict(args: argparse.Namespace) -> None:
    from vlm_rationality.predict.run import predict

    _threads(args)
    meta = predict(
        args.model,
        args.prompts,
        args.checkpoint,
        args.sets,
        args.out,
        args.device,
        args.batch_size,
        config_hash([*_classifier_identity(args), args.sets, args.keys]),
        args.keys,
    )
    print(f"{args.out}: {json.dumps(meta['counts'])}")


def cmd_twins(args: argparse.Namespace) -> None:
    from vlm_rationality.predict.twins import predict_twins

    _threads(args)
    summary = predict_twins(
        args.model,
        args.prompts,
        args.checkpoint,
        args.dataset,
        args.split,
        args.shards,
        args.settings,
        args.out,
        args.device,
        args.batch_size,
        config_hash([*_classifier_identity(args), args.dataset, args.split, args.settings, args.keys]),
        args.keys,
    )
    print(f"{args.out}: {json.dumps(summary)}")


def cmd_validity(args: argparse.Namespace) -> None:
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
    write_metrics(
        pa.Table.from_pylist(rows),
        args.parquet,
        args.csv,
        config_hash([args.masks, args.threshold, args.agreement, args.reference, args.iterations, args.seed]),
        schema=VALIDITY,
    )
    with atomic_path(args.markdown) as tmp:
        tmp.write_text(validity.markdown(rows, gaps, summary))
    validity.figure(rows, summary, args.figure, args.trained)
    meeting = [validity.signal_name(s) for s in summary if s["meets_goal"]]
    print(f"{args.parquet}: {len(rows)} rows; signals meeting the goal: {', '.join(meeting) or 'none'}")


def _classifier_identity(args: argparse.Namespace) -> list:
    """What a file made by a classifier's job depends on, for its settings hash: the model, the prompts and the
    fine-tuning that made the checkpoint (its sidecar's method; none for the model's own weights)."""
    from vlm_rationality.models.checkpoint import read_sidecar

    return [args.model, args.prompts, read_sidecar(args.checkpoint)["method"] if args.checkpoint else None]


def _region_classifier(args: argparse.Namespace):
    """(the method's classifier on its device, the device) for the region stages."""
    from vlm_rationality.device import resolve_device
    from vlm_rationality.models.checkpoint import method_classifier

    _threads(args)
    device = resolve_device(args.device)
    return method_classifier(args.model, args.prompts, args.checkpoint).to(device).eval(), device


def cmd_discover(args: argparse.Namespace) -> None:
    from vlm_rationality.artefacts import write_discovery
    from vlm_rationality.discover.run import discover
    from vlm_rationality.report.discovery import region_caption, region_grid

    classifier, device = _region_classifier(args)
    summary, regions, clusters, crops = discover(
        classifier, args.shards, args.cue, args.settings, device, args.batch_size, args.keys["dataset"]
    )
    write_discovery(
        args.out,
        regions,
        summary,
        clusters,
        args.keys,
        config_hash([*_classifier_identity(args), args.settings, args.cue, args.keys]),
    )
    ranked = sorted(
        (r for r in range(len(regions["rank"])) if regions["rank"][r] >= 0), key=regions["rank"].__getitem__
    )
    captions = [region_caption(regions["kind"][r], regions["feature"][r], args.labels) for r in ranked[: len(crops)]]
    names, tied = args.keys, summary["tied_class"]
    region_grid(
        crops,
        captions,
        f"{names['dataset']} · {names['model']} · {names['method']}: top cluster (tied to "
        f"{'none' if tied is None else args.labels['classes'][tied]}, Precision@10 {summary['precision_at_10']})",
        args.png,
    )
    print(f"{args.out}: {json.dumps(summary)}")


def cmd_assign_regions(args: argparse.Namespace) -> None:
    from vlm_rationality.artefacts import write_training_regions
    from vlm_rationality.discover.assign import assign_regions

    classifier, device = _region_classifier(args)
    regions, summary, ranked = assign_regions(
        classifier,
        args.shards,
        args.discovery,
        args.discovered,
        args.settings,
        device,
        args.batch_size,
        args.keys["dataset"],
    )
    write_training_regions(
        args.out,
        regions,
        summary,
        ranked,
        args.keys,
        config_hash([*_classifier_identity(args), args.settings, args.keys]),
    )
    print(f"{args.out}: {json.dumps(summary)}")


def cmd_discovery(args: argparse.Namespace) -> None:
    import pyarrow as pa

    from vlm_rationality.artefacts import DISCOVERY, read_discovery_summary, write_metrics
    from vlm_rationality.io import atomic_path
    from vlm_rationality.report.discovery import discovery_markdown

    rows = [read_discovery_summary(path) for path in args.regions]
    write_metrics(pa.Table.from_pylist(rows), args.parquet, args.csv, config_hash([]), DISCOVERY)
    with atomic_path(args.markdown) as tmp:
        tmp.write_text(discovery_markdown(rows, args.class_names))
    print(f"{args.parquet}: {len(rows)} rows")


def cmd_robustness(args: argparse.Namespace) -> None:
    import pyarrow as pa

    from vlm_rationality.artefacts import ROBUSTNESS, read_predictions, write_metrics
    from vlm_rationality.io import atomic_path
    from vlm_rationality.metrics.robustness import robustness_rows
    from vlm_rationality.report.robustness import reliability_figures, robustness_markdown

    predictions = [read_predictions(path) for path in args.predictions]  # read once: the table and the figures
    rows = robustness_rows(
        predictions, args.validation, args.ood, args.cue_conflict, args.cue_categories, args.iterations, args.seed
    )
    write_metrics(
        pa.Table.from_pylist(rows),
        args.parquet,
        args.csv,
        config_hash([args.validation, args.ood, args.cue_conflict, args.cue_categories, args.iterations, args.seed]),
        ROBUSTNESS,
    )
    with atomic_path(args.markdown) as tmp:
        tmp.write_text(robustness_markdown(rows, args.ood))
    figures = reliability_figures(predictions, rows, args.validation, args.reliability)
    print(f"{args.parquet}: {len(rows)} rows; {len(figures)} reliability diagrams")


def cmd_score(args: argparse.Namespace) -> None:
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


def cmd_plan(args: argparse.Namespace) -> None:
    import yaml

    from vlm_rationality.plan.config import check_config, check_files
    from vlm_rationality.plan.cost import markdown, plan

    check_files(args.configfile)
    config: dict[str, Any] = {}
    for path in args.configfile:  # later files overlay earlier ones, as Snakemake merges --configfile
        _overlay(config, yaml.safe_load(Path(path).read_text()) or {})
    assumed: list[str] = []  # what is not on disk yet: noted, priced at published sizes
    check_config(config, yaml.safe_load(Path(args.schema).read_text()), assumed)
    print(markdown(plan(config, assumed), config, assumed))


def _overlay(base: dict[str, Any], update: dict[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _overlay(base[key], value)
        else:
            base[key] = value


def cmd_report(args: argparse.Namespace) -> None:
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
        table = pa.Table.from_pylist(
            found,
            schema=pa.schema(
                [(c, pa.string()) for c in columns[:text_columns]] + [(c, pa.float64()) for c in columns[text_columns:]]
            ),
        )
        with atomic_path(path) as tmp:
            pacsv.write_csv(table, tmp)
    pt_ir_figure(rows, *order, args.figure)
    print(
        f"wrote {args.markdown}, {args.latex}, {args.html}, {args.csv}, {args.ablation}, {args.ablations_markdown} "
        f"(and its LaTeX and CSV) and {args.figure}"
    )


def cmd_gallery(args: argparse.Namespace) -> None:
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


def cmd_shift_curves(args: argparse.Namespace) -> None:
    from vlm_rationality.artefacts import read_metrics
    from vlm_rationality.report.figures import shift_figure

    shift_figure(read_metrics(args.metrics), args.dataset, args.model, args.heatmap, args.methods, args.figure)
    print(f"wrote {args.figure}")


def cmd_protocol_sensitivity(args: argparse.Namespace) -> None:
    import pyarrow.csv as pacsv

    from vlm_rationality.io import atomic_path
    from vlm_rationality.report.sensitivity import sensitivity_markdown, sensitivity_table

    table = sensitivity_table(args.heatmaps, args.score, args.switches)
    with atomic_path(args.markdown) as tmp:
        tmp.write_text(sensitivity_markdown(table.to_pylist(), args.switches, args.not_run))
    with atomic_path(args.csv) as tmp:
        pacsv.write_csv(table, tmp)
    print(f"wrote {args.markdown} and {args.csv}: {table.num_rows} rows")


def cmd_rho_curve(args: argparse.Namespace) -> None:
    from vlm_rationality.artefacts import read_metrics
    from vlm_rationality.report.figures import rho_figure

    rho_figure(read_metrics(args.metrics), args.rhos, args.methods, args.models, args.heatmap_methods, args.figure)
    print(f"wrote {args.figure}")


def cmd_breakdowns(args: argparse.Namespace) -> None:
    import pyarrow as pa

    from vlm_rationality.artefacts import PER_CLASS, THRESHOLDS, write_metrics
    from vlm_rationality.io import config_hash
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


def cmd_inspect(args: argparse.Namespace) -> None:
    if args.sample is not None or args.png is not None:
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
        return
    from vlm_rationality.report.inspect import describe

    print(describe(args.path, args.rows))


class _Version(argparse.Action):
    """`--version`: computed only when asked (it runs git), unlike argparse's own version action's string."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        from vlm_rationality.provenance import describe, provenance

        print(describe(provenance()))
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vlm-rationality", description=__doc__)
    parser.add_argument("--version", action=_Version, help="the version, its git commit and the libraries', and exit")
    sub = parser.add_subparsers(dest="command", required=True)

    def stage(name: str, run, help_text: str, device: bool = False) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(run=run)
        if device:  # a model stage: it reads prepared shards
            p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda or cuda:N")
            p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
            p.add_argument(
                "--expect-prepared",
                type=_json,
                default=None,
                help="split -> config hash (JSON): every prepared shard read must be of one of them",
            )
        return p

    def classifier(p: argparse.ArgumentParser) -> None:
        """What every job that loads a classifier takes (explain, predict, twins, discover, assign-regions)."""
        group = p.add_argument_group("classifier")
        group.add_argument("--model", type=_json, required=True, help="model config (JSON)")
        group.add_argument("--prompts", type=_json, required=True, help="class prompts (JSON list)")
        group.add_argument(
            "--checkpoint",
            default=None,
            help="a fine-tuned classifier (safetensors, its sidecar beside it); without it the model's own weights "
            "classify with the prompts (zero-shot)",
        )

    def regions_of(p: argparse.ArgumentParser, keys: str) -> None:
        """What the region stages (discover, assign-regions) share: how regions are drawn."""
        p.add_argument(
            "--settings", type=_json, required=True, help="{background_boxes, box_fraction, grid, seed} (JSON)"
        )
        p.add_argument("--keys", type=_json, required=True, help=f"{keys} names (JSON)")
        p.add_argument("--batch-size", type=int, required=True, help="images through the model at once")

    p = stage("items", cmd_items, "list a dataset split once into its item index")
    p.add_argument("--spec", type=_json, required=True, help="dataset config (JSON)")
    p.add_argument("--split", required=True)
    p.add_argument("--out", required=True)

    p = stage("prepare", cmd_prepare, "write one prepared-sample shard of a dataset split from its item index")
    p.add_argument("--spec", type=_json, required=True, help="dataset config (JSON)")
    p.add_argument("--split", required=True)
    p.add_argument("--shard", type=int, required=True)
    p.add_argument("--items", required=True, help="the split's item index")
    p.add_argument("--shift", default="clean", help="a corruption-severity read from --imagenet-c")
    p.add_argument(
        "--imagenet-c", default=None, help="the published ImageNet-C folders (<corruption>/<severity>/<wnid>/...)"
    )
    p.add_argument(
        "--clean-shard", default=None, help="with --imagenet-c: this shard prepared clean (its samples are kept)"
    )
    p.add_argument("--out", required=True)

    p = stage("prepare-report", cmd_prepare_report, "sum a split's prepared shards' counts into one JSON report")
    p.add_argument("--out", required=True)
    p.add_argument("shards", nargs="+")

    def training_data(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--training-data",
            type=_json,
            default=None,
            help="the config's training_data (JSON): when to stream the split from its shards; default in memory",
        )

    p = stage("pretrain", cmd_pretrain, "contrastively pretrain a base model on captioned shards", device=True)
    p.add_argument("--model", type=_json, required=True, help="model config (JSON)")
    p.add_argument("--train", type=_json, required=True, help="pretraining settings (JSON)")
    training_data(p)
    p.add_argument("--out", required=True)
    p.add_argument("shards", nargs="+")

    p = stage(
        "finetune", cmd_finetune, "fine-tune a model with one method; writes a checkpoint and sidecar", device=True
    )
    p.add_argument("--model", type=_json, required=True, help="model config (JSON)")
    p.add_argument("--method", type=_json, required=True, help="method config (JSON)")
    p.add_argument("--prompts", type=_json, required=True, help="class prompts (JSON list)")
    training_data(p)
    p.add_argument(
        "--processes",
        type=int,
        default=1,
        help="data-parallel processes (torchrun, one per GPU; gloo on CPU), sharing --threads",
    )
    p.add_argument("--out", required=True)
    p.add_argument("shards", nargs="*", help="the training split's prepared shards (none: a method that loads)")

    p = stage(
        "explain",
        cmd_explain,
        "heatmaps, predictions and RMA for a group of prepared shards, into one file",
        device=True,
    )
    classifier(p)
    p.add_argument("--heatmaps", type=_json, required=True, help="heatmap settings (JSON)")
    p.add_argument(
        "--workers",
        type=int,
        default=0,
        help="processes corrupting the next batches of a shifted job (out of --threads)",
    )
    p.add_argument("--keys", type=_json, required=True, help="dataset/shift/model/method names (JSON)")
    p.add_argument("--out", required=True)
    p.add_argument("shards", nargs="+", help="prepared shards, explained in this order")

    p = stage(
        "predict", cmd_predict, "float32 logits of one (dataset, model, method) on the robustness sets", device=True
    )
    classifier(p)
    p.add_argument("--sets", type=_json, required=True, help="[{name, shift, shards}] (JSON)")
    p.add_argument("--keys", type=_json, required=True, help="dataset/model/method names (JSON)")
    p.add_argument("--batch-size", type=int, required=True, help="images through the model at once")
    p.add_argument("--out", required=True)

    p = stage(
        "twins",
        cmd_twins,
        "one (dataset, model, method) on the counterfactual twins of a group of scored shards: predictions only",
        device=True,
    )
    classifier(p)
    p.add_argument("--dataset", type=_json, required=True, help="the dataset config of the scored split (JSON)")
    p.add_argument("--split", required=True, help="the scored split")
    p.add_argument("--settings", type=_json, required=True, help="{backgrounds, seed} (JSON)")
    p.add_argument("--keys", type=_json, required=True, help="dataset/model/method names (JSON)")
    p.add_argument("--batch-size", type=int, required=True, help="images through the model at once")
    p.add_argument("--out", required=True)
    p.add_argument("shards", nargs="+", help="the group's prepared shards (also the pool of other backgrounds)")

    p = stage(
        "validity",
        cmd_validity,
        "RMA's PT/IR and per-sample signal against the twins' truth, per heatmap method and mask variant",
    )
    p.add_argument("--masks", type=_json, required=True, help="mask variants (JSON list: exact, dilate-N, box)")
    p.add_argument("--threshold", type=float, required=True)
    p.add_argument("--agreement", type=float, required=True)
    p.add_argument("--rhos", type=_json, default={}, help="dataset -> its training rho (JSON): the rho gaps")
    p.add_argument("--trained", type=_json, default=[], help="the methods that train (JSON list): the goal's scope")
    p.add_argument("--reference", default="", help="the method whose twins set the floor of the beyond-zs truth (ZS)")
    p.add_argument("--iterations", type=int, default=1000, help="bootstrap iterations of the intervals")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap and the cross-validation folds")
    p.add_argument("--threads", type=int, default=1, help="processes, one (classifier, heatmap method) each")
    p.add_argument("--twins", nargs="+", required=True)
    p.add_argument("--parquet", required=True)
    p.add_argument("--csv", required=True)
    p.add_argument("--markdown", required=True)
    p.add_argument("--figure", required=True)
    p.add_argument("heatmaps", nargs="+", help="heatmap files (clean ones are read)")

    p = stage(
        "discover", cmd_discover, "RaVL's Stage 1 for one (dataset, model, method) on the scored split", device=True
    )
    classifier(p)
    p.add_argument("--shards", type=_json, required=True, help="the scored split's prepared shards (JSON list)")
    p.add_argument(
        "--cue",
        type=_json,
        default=None,
        help="what the dataset ties to its classes (JSON): {tied: class -> background} or {sticker: class}, if known",
    )
    p.add_argument(
        "--labels",
        type=_json,
        required=True,
        help="{classes, backgrounds} (JSON): the names of a region's feature ids, for the figure",
    )
    regions_of(p, "dataset/model/method")
    p.add_argument("--out", required=True, help="the regions file (Parquet; the summary in its metadata)")
    p.add_argument("--png", required=True, help="the top cluster's regions as an image grid")

    p = stage(
        "assign-regions",
        cmd_assign_regions,
        "a training split's regions, each assigned to a discovered cluster (what RaVL's Stage 2 reads)",
        device=True,
    )
    classifier(p)
    p.add_argument("--discovery", required=True, help="the discovery regions file of the method being mitigated")
    p.add_argument("--discovered", type=_json, required=True, help="the prepared shards it clustered (JSON list)")
    regions_of(p, "dataset/split/model/method")
    p.add_argument("--out", required=True, help="the training regions file (Parquet)")
    p.add_argument("shards", nargs="+", help="the training split's prepared shards")

    p = stage("discovery", cmd_discovery, "the discovery table from the regions files")
    p.add_argument("--class-names", type=_json, required=True, help="dataset -> class names (JSON)")
    p.add_argument("--parquet", required=True)
    p.add_argument("--csv", required=True)
    p.add_argument("--markdown", required=True)
    p.add_argument("regions", nargs="+")

    p = stage("robustness", cmd_robustness, "calibration, OOD detection and shape bias from predictions files")
    p.add_argument("--validation", required=True, help="the set temperature scaling is fitted on")
    p.add_argument("--ood", type=_json, required=True, help="OOD set names (JSON list)")
    p.add_argument("--cue-conflict", default=None, help="the cue-conflict set, if any")
    p.add_argument(
        "--cue-categories",
        choices=["imagenet16"],
        default=None,
        help="the cue-conflict labels are the 16 stimulus categories: ImageNet-1k logits decide among them",
    )
    p.add_argument("--parquet", required=True)
    p.add_argument("--csv", required=True)
    p.add_argument("--markdown", required=True)
    p.add_argument("--reliability", required=True, help="folder of the reliability diagrams (<dataset>/<model>.png)")
    p.add_argument("--iterations", type=int, default=1000, help="bootstrap replicates of every interval")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("predictions", nargs="+")

    p = stage("score", cmd_score, "PT, IR, quadrants and CIs per (dataset, shift, model, method, heatmap method)")
    p.add_argument("--threshold", type=float, required=True)
    p.add_argument("--iterations", type=int, required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument(
        "--undefined-rma",
        default="exclude",
        choices=UNDEFINED_POLICIES,
        help="what an undefined RMA counts as (default: exclude it from the quadrants)",
    )
    p.add_argument("--sweeps", type=_json, default={}, help="swept variant -> {method, values} (JSON): setting columns")
    p.add_argument(
        "--groups",
        type=_json,
        default={},
        help="dataset -> {tied, shards} (JSON): worst-group accuracy over class x tied cue present/absent",
    )
    p.add_argument("--twins", nargs="*", default=[], help="twins files: the true rationale (PT*, IR*) per clean row")
    p.add_argument("--agreement", type=float, default=1.0, help="share of twins a grounded prediction survives")
    p.add_argument("--parquet", required=True)
    p.add_argument("--csv", required=True)
    p.add_argument("heatmaps", nargs="+")

    p = stage(
        "protocol-sensitivity",
        cmd_protocol_sensitivity,
        "how far each official-code choice, alone, moves accuracy, PT and IR (protocol.py)",
    )
    p.add_argument("--score", type=_json, required=True, help="this project's score settings (JSON)")
    p.add_argument("--switches", type=_json, required=True, help="switch -> {official, here, score} (JSON)")
    p.add_argument("--not-run", type=_json, required=True, help="switch -> why it made no variant (JSON)")
    p.add_argument("--markdown", required=True)
    p.add_argument("--csv", required=True)
    p.add_argument("heatmaps", nargs="+", help="heatmap files of the configured methods and their variants")

    p = stage("plan", cmd_plan, "jobs, device hours, memory and disk of a config's grid, before any job runs")
    p.add_argument(
        "--configfile",
        nargs="+",
        default=["config.yaml"],
        help="the workflow's config file(s), later ones overlaying earlier ones (default: config.yaml)",
    )
    p.add_argument("--schema", default=str(SCHEMA), help="the workflow's config schema")

    p = stage(
        "report",
        cmd_report,
        "Table 2 per heatmap method (Markdown, LaTeX, CSV), the heatmap-method ablation table and the PT/IR figure",
    )
    p.add_argument("--metrics", required=True)
    for name in ("methods", "models", "datasets", "heatmap-methods"):
        p.add_argument(
            f"--{name}", type=_json, required=True, help=f"{name.replace('-', ' ')} in table order (JSON list)"
        )
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

    p = stage(
        "breakdowns",
        cmd_breakdowns,
        "Table 2 broken down, from the heatmap files: PT and IR against the RMA threshold, the RMA distribution per "
        "method, and accuracy, PT and IR per class (tables and figures)",
    )
    p.add_argument("--iterations", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--undefined-rma", default="exclude", help="what an undefined RMA counts as, as in score")
    p.add_argument("--threshold", type=float, default=0.5, help="the configured threshold, marked in the figures")
    for name in ("methods", "models", "datasets", "heatmap-methods"):
        p.add_argument(f"--{name}", type=_json, required=True, help=f"{name.replace('-', ' ')} in table order (JSON)")
    p.add_argument("--class-names", type=_json, required=True, help="dataset -> its class names in label order (JSON)")
    for name in ("parquet", "csv", "per-class-parquet", "per-class-csv", "curves", "distributions", "per-class"):
        p.add_argument(f"--{name}", required=True)
    p.add_argument("heatmaps", nargs="+")

    p = stage("rho-curve", cmd_rho_curve, "accuracy, PT and IR against the training split's spurious strength rho")
    p.add_argument("--metrics", required=True)
    p.add_argument("--rhos", type=_json, required=True, help="dataset -> rho of its training split (JSON)")
    for name in ("methods", "models", "heatmap-methods"):
        p.add_argument(f"--{name}", type=_json, required=True, help=f"{name.replace('-', ' ')} (JSON list)")
    p.add_argument("--figure", required=True)

    p = stage(
        "gallery",
        cmd_gallery,
        "the paper's Figure 3: heatmaps of samples every method got right, and RW "
        "samples per method, for one (dataset, model, heatmap method)",
    )
    p.add_argument("--heatmaps", nargs="+", required=True, help="heatmap files, one or more per method")
    p.add_argument("--prepared", nargs="+", required=True, help="the prepared shards they explain")
    p.add_argument("--methods", type=_json, required=True, help="methods in column order (JSON list)")
    p.add_argument("--class-names", type=_json, required=True, help="class names by label (JSON list)")
    p.add_argument("--threshold", type=float, required=True, help="RMA threshold of valid evidence")
    p.add_argument("--samples", type=int, required=True, help="samples per gallery")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--title", required=True)
    p.add_argument("--all-right", required=True, help="PNG: samples every method got right")
    p.add_argument("--rw", required=True, help="PNG: right-for-the-wrong-reason samples per method")

    p = stage(
        "shift-curves", cmd_shift_curves, "the paper's Figures 4-5: PT, IR and accuracy against corruption severity"
    )
    p.add_argument("--metrics", required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--heatmap", required=True, help="heatmap method")
    p.add_argument("--methods", type=_json, required=True, help="methods, one line each (JSON list)")
    p.add_argument("--figure", required=True)

    p = stage(
        "inspect",
        cmd_inspect,
        "what a file of a run is: a Parquet artefact's schema, metadata and first rows, a checkpoint's header and "
        "tensor shapes, a sidecar, a CSV table; or draw one sample of a heatmap file (as RMA sees it) or of a "
        "prepared shard (its object and cue)",
    )
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
    return parser


def _prepared_paths(args: argparse.Namespace) -> list[str]:
    """The prepared shards a model stage reads: its positional shards, or discover's and assign's lists, or
    predict's sets."""
    paths = list(getattr(args, "shards", None) or []) + list(getattr(args, "discovered", None) or [])
    return paths + [path for entry in getattr(args, "sets", None) or [] for path in entry["shards"]]


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("vlm_rationality").setLevel(logging.INFO)  # e.g. the checkpoint tensors a model leaves unused
    args = build_parser().parse_args(argv)
    if args.run is cmd_plan:  # a config error is one message, not a traceback
        from vlm_rationality.plan.config import ConfigError

        try:
            args.run(args)
        except (ConfigError, FileNotFoundError) as err:
            print(f"config error:\n{err}", file=sys.stderr)
            return 2
        return 0
    if getattr(args, "expect_prepared", None):
        from vlm_rationality.artefacts import check_prepared

        check_prepared(_prepared_paths(args), args.expect_prepared)
    if getattr(args, "device", None) is None:
        args.run(args)
        return 0
    from vlm_rationality.device import gpu_slot

    with gpu_slot(args.device) as args.device:  # one GPU per job, held while it runs
        args.run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
