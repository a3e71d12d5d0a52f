# Calibration, OOD detection and shape bias (config section `robustness`): logits only, no heatmaps.


rule predict:
    input:
        shards=dag.predict_shards,
        weights=dag.classifier_weights,
    output:
        "results/predictions/{dataset}/{model}/{method}.parquet",
    log:
        "results/logs/predict/{dataset}/{model}/{method}.log",
    benchmark:
        "results/benchmarks/predict/{dataset}/{model}/{method}.tsv"
    conda:
        ENV
    threads: config["threads"]
    resources:
        **dag.sized("predict"),
    params:
        classifier=dag.classifier_args,
        sets=lambda wc: as_json(dag.prediction_sets(wc.dataset)),
        names=lambda wc: as_json({k: wc[k] for k in ("dataset", "model", "method")}),
        batch_size=lambda wc: config["robustness"]["batch_size"],
        device=config["device"],
        expect=lambda wc: dag.expected_prepared(
            wc.dataset, sorted({s["split"] for s in specs.prediction_sets(config, wc.dataset)})
        ),
    shell:
        "python -m vlm_rationality predict {params.classifier}"
        " --sets {params.sets:q} --keys {params.names:q}"
        " --batch-size {params.batch_size} --device {params.device} --threads {threads}"
        " --expect-prepared {params.expect:q} --out {output} > {log} 2>&1"


rule robustness:
    input:
        lambda wc: dag.prediction_files(),
    output:
        parquet="results/metrics/robustness.parquet",
        csv=report(
            "results/metrics/robustness.csv",
            caption="../report/robustness.rst",
            category="1. Metrics (score)",
            labels={"metrics": "calibration, OOD detection, shape bias"},
        ),
        markdown=report(
            "results/tables/robustness.md",
            caption="../report/robustness.rst",
            category="2. Tables (report)",
            labels={"table": "robustness", "format": "Markdown"},
        ),
        id_ood_parquet="results/metrics/id_ood.parquet",
        id_ood_csv="results/metrics/id_ood.csv",
        id_ood_figure=report(
            "results/figures/id_ood.png",
            caption="../report/robustness.rst",
            category="3. Figures (report)",
            labels={"figure": "ID against OOD across classifiers"},
        ),
        reliability=report(
            expand(
                "results/figures/reliability/{dataset}/{model}.png",
                dataset=specs.robustness_datasets(config),
                model=config["models"],
            ),
            caption="../report/reliability.rst",
            category="3. Figures (report)",
            subcategory="reliability diagrams",
        ),
    log:
        "results/logs/robustness.log",
    benchmark:
        "results/benchmarks/robustness.tsv"
    localrule: True
    conda:
        ENV
    threads: 1
    resources:
        **dag.sized("robustness"),
    params:
        validation=config.get("robustness", {}).get("validation", ""),
        ood=as_json(specs.ood_sets(config)),
        restricted=(
            f" --restricted {shlex.quote(as_json(specs.restricted_sets(config)))}"
            if specs.restricted_sets(config)
            else ""
        ),
        cue=(
            f"--cue-conflict {specs.cue_conflict_set(config)}"
            + (" --cue-categories imagenet16" if "cue_conflict_folder" in config.get("robustness", {}) else "")
            if specs.cue_conflict_set(config)
            else ""
        ),
        iterations=config["score"]["bootstrap_iterations"],
        seed=config["score"]["seed"],
    shell:
        "python -m vlm_rationality robustness --validation {params.validation} --ood {params.ood:q} {params.cue}"
        "{params.restricted}"
        " --iterations {params.iterations} --seed {params.seed}"
        " --parquet {output.parquet} --csv {output.csv} --markdown {output.markdown}"
        " --id-ood-parquet {output.id_ood_parquet} --id-ood-csv {output.id_ood_csv} --id-ood-figure {output.id_ood_figure}"
        " --reliability results/figures/reliability {input} > {log} 2>&1"
