# The ground truth for the rationale (config section `twins`): each scored sample's counterfactual twins through each
# classifier (logits only), then RMA's PT/IR set against the truth per heatmap method and mask variant.


rule twins:
    input:
        shards=lambda wc: dag.shard_files(wc.dataset, EVAL, "clean", *map(int, wc.group.split("-"))),
        weights=dag.classifier_weights,
    output:
        "results/twins/{dataset}/{model}/{method}/shards-{group}.parquet",
    log:
        "results/logs/twins/{dataset}/{model}/{method}/shards-{group}.log",
    benchmark:
        "results/benchmarks/twins/{dataset}/{model}/{method}/shards-{group}.tsv"
    conda:
        ENV
    threads: config["threads"]
    resources:
        **dag.sized("twins"),
    params:
        classifier=dag.classifier_args,
        dataset=lambda wc: as_json(specs.prepare_spec(config, wc.dataset, EVAL)),
        settings=as_json({k: config.get("twins", {}).get(k) for k in ("backgrounds", "seed")}),
        names=lambda wc: as_json({k: wc[k] for k in ("dataset", "model", "method")}),
        batch_size=lambda wc: config["twins"]["batch_size"],
        device=config["device"],
        split=EVAL,
        expect=lambda wc: dag.expected_prepared(wc.dataset, [EVAL]),
    shell:
        "python -m vlm_rationality twins {params.classifier}"
        " --dataset {params.dataset:q} --split {params.split} --settings {params.settings:q}"
        " --keys {params.names:q} --batch-size {params.batch_size} --device {params.device}"
        " --threads {threads} --expect-prepared {params.expect:q} --out {output} {input.shards} > {log} 2>&1"


rule validity:
    input:
        heatmaps=lambda wc: dag.heatmap_files(clean_only=True),
        twins=lambda wc: dag.twin_files(),
        prepared=lambda wc: [path for dataset in config["datasets"] for path in dag.shard_files(dataset, EVAL)],
    output:
        parquet="results/metrics/validity.parquet",
        csv=report(
            "results/metrics/validity.csv",
            caption="../report/validity.rst",
            category="1. Metrics (score)",
            labels={"metrics": "validity of RMA against the twins"},
        ),
        markdown=report(
            "results/tables/validity.md",
            caption="../report/validity.rst",
            category="2. Tables (report)",
            labels={"table": "validity of the rationale metric", "format": "Markdown"},
        ),
        figure=report(
            "results/figures/validity.png",
            caption="../report/validity.rst",
            category="3. Figures (report)",
            subcategory="validity",
            labels={"figure": "PT against PT*, per-sample AUROC"},
        ),
    log:
        "results/logs/validity.log",
    benchmark:
        "results/benchmarks/validity.tsv"
    localrule: True
    conda:
        ENV
    threads: 2
    resources:
        **dag.sized("validity"),
    params:
        masks=as_json(config.get("twins", {}).get("masks", [])),
        threshold=config["score"]["threshold"],
        agreement=config.get("twins", {}).get("agreement", 1.0),
        rhos=as_json(specs.training_rhos(config)),
        trained=as_json([method for method in config["methods"] if specs.trains(config, method)]),
        reference=next((m for m, spec in config["methods"].items() if spec["kind"] == "zs"), ""),
        iterations=config["score"]["bootstrap_iterations"],
        seed=config["score"]["seed"],
    shell:
        "python -m vlm_rationality validity --masks {params.masks:q} --threshold {params.threshold}"
        " --agreement {params.agreement} --rhos {params.rhos:q} --trained {params.trained:q}"
        " --reference {params.reference:q} --iterations {params.iterations} --seed {params.seed} --threads {threads}"
        " --twins {input.twins}"
        " --parquet {output.parquet} --csv {output.csv} --markdown {output.markdown} --figure {output.figure}"
        " {input.heatmaps} > {log} 2>&1"
