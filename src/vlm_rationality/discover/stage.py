"""RaVL's Stage 1 as stages: regions of the scored split clustered (discover), a training split's regions assigned
to those clusters (assign-regions, what Stage 2 reads), and the discovery table over every discovered method."""

from __future__ import annotations

import argparse
import json
from typing import Any

from vlm_rationality.io import config_hash
from vlm_rationality.models.classifier_spec import ClassifierSpec
from vlm_rationality.stages import Stage, json_argument, set_threads


def _regions_arguments(p: argparse.ArgumentParser, keys: str) -> None:
    """What the region stages share: the classifier and how regions are drawn."""
    ClassifierSpec.add_arguments(p, json_argument)
    p.add_argument(
        "--settings", type=json_argument, required=True, help="{background_boxes, box_fraction, grid, seed} (JSON)"
    )
    p.add_argument("--keys", type=json_argument, required=True, help=f"{keys} names (JSON)")
    p.add_argument("--batch-size", type=int, required=True, help="images through the model at once")


def _classifier(args: argparse.Namespace) -> tuple[ClassifierSpec, Any, Any]:
    """(spec, the classifier on its device, the device)."""
    from vlm_rationality.device import resolve_device

    set_threads(args.threads)
    spec, device = ClassifierSpec.from_args(args), resolve_device(args.device)
    return spec, spec.load(device), device


def _discover_arguments(p: argparse.ArgumentParser) -> None:
    _regions_arguments(p, "dataset/model/method")
    p.add_argument("--shards", type=json_argument, required=True, help="the scored split's prepared shards (JSON list)")
    p.add_argument(
        "--cue",
        type=json_argument,
        default=None,
        help="what the dataset ties to its classes (JSON): {tied: class -> background} or {sticker: class}, if known",
    )
    p.add_argument(
        "--labels",
        type=json_argument,
        required=True,
        help="{classes, backgrounds} (JSON): the names of a region's feature ids, for the figure",
    )
    p.add_argument("--out", required=True, help="the regions file (Parquet; the summary in its metadata)")
    p.add_argument("--png", required=True, help="the top cluster's regions as an image grid")


def _discover(args: argparse.Namespace) -> None:
    from vlm_rationality.artefacts import write_discovery
    from vlm_rationality.discover.run import discover
    from vlm_rationality.report.discovery import region_caption, region_grid

    spec, classifier, device = _classifier(args)
    summary, regions, clusters, crops = discover(
        classifier, args.shards, args.cue, args.settings, device, args.batch_size, args.keys["dataset"]
    )
    settings = config_hash([*spec.identity(), args.settings, args.cue, args.keys])
    write_discovery(args.out, regions, summary, clusters, args.keys, settings)
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


def _assign_arguments(p: argparse.ArgumentParser) -> None:
    _regions_arguments(p, "dataset/split/model/method")
    p.add_argument("--discovery", required=True, help="the discovery regions file of the method being mitigated")
    p.add_argument(
        "--discovered", type=json_argument, required=True, help="the prepared shards it clustered (JSON list)"
    )
    p.add_argument("--out", required=True, help="the training regions file (Parquet)")
    p.add_argument("shards", nargs="+", help="the training split's prepared shards")


def _assign(args: argparse.Namespace) -> None:
    from vlm_rationality.artefacts import write_training_regions
    from vlm_rationality.discover.assign import assign_regions

    spec, classifier, device = _classifier(args)
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
    settings = config_hash([*spec.identity(), args.settings, args.keys])
    write_training_regions(args.out, regions, summary, ranked, args.keys, settings)
    print(f"{args.out}: {json.dumps(summary)}")


def _table_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--class-names", type=json_argument, required=True, help="dataset -> class names (JSON)")
    for name in ("parquet", "csv", "markdown"):
        p.add_argument(f"--{name}", required=True)
    p.add_argument("regions", nargs="+")


def _table(args: argparse.Namespace) -> None:
    import pyarrow as pa

    from vlm_rationality.artefacts import DISCOVERY, read_discovery_summary, write_metrics
    from vlm_rationality.io import atomic_path
    from vlm_rationality.report.discovery import discovery_markdown

    rows = [read_discovery_summary(path) for path in args.regions]
    write_metrics(pa.Table.from_pylist(rows), args.parquet, args.csv, config_hash([]), DISCOVERY)
    with atomic_path(args.markdown) as tmp:
        tmp.write_text(discovery_markdown(rows, args.class_names))
    print(f"{args.parquet}: {len(rows)} rows")


STAGES = (
    Stage(
        "discover",
        "RaVL's Stage 1 for one (dataset, model, method) on the scored split",
        _discover_arguments,
        _discover,
        gpu=True,
        size="discover",
    ),
    Stage(
        "assign-regions",
        "a training split's regions, each assigned to a discovered cluster (what RaVL's Stage 2 reads)",
        _assign_arguments,
        _assign,
        gpu=True,
        size="assign_regions",
    ),
    Stage("discovery", "the discovery table from the regions files", _table_arguments, _table, size="bookkeeping"),
)
