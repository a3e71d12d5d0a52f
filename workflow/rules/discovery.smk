# RaVL's Stage 1 (config section `discovery`): regions of the scored split, clustered; which cluster the errors follow.
# assign_regions hands a discovery to Stage 2: the training split's regions, each in its nearest discovered cluster.

# How regions are drawn, the same for discovery and for the training regions assigned to its clusters.
REGION_SETTINGS = as_json(
    {k: v for k, v in config.get("discovery", {}).items() if k not in ("methods", "batch_size", "split")}
)


rule discover:
    input:
        shards=lambda wc: dag.shard_files(wc.dataset, config["discovery"]["split"]),
        weights=dag.classifier_weights,
    output:
        regions="results/discovery/{dataset}/{model}/{method}.parquet",
        png=report(
            "results/figures/discovery/{dataset}/{model}/{method}.png",
            caption="../report/discovery.rst",
            category="3. Figures (report)",
            subcategory="RaVL discovery",
            labels={"dataset": "{dataset}", "model": "{model}", "method": "{method}"},
        ),
    log:
        "results/logs/discover/{dataset}/{model}/{method}.log",
    benchmark:
        "results/benchmarks/discover/{dataset}/{model}/{method}.tsv"
    conda:
        ENV
    threads: config["threads"]
    resources:
        **dag.sized("discover"),
    params:
        classifier=dag.classifier_args,
        shards=lambda wc, input: as_json(list(input.shards)),
        cue=lambda wc: as_json(specs.cue_tie(config, wc.dataset)),
        labels=lambda wc: as_json(specs.region_names(config, wc.dataset)),
        settings=REGION_SETTINGS,
        names=lambda wc: as_json({k: wc[k] for k in ("dataset", "model", "method")}),
        batch_size=lambda wc: config["discovery"]["batch_size"],
        device=config["device"],
        expect=lambda wc: dag.expected_prepared(wc.dataset, [config["discovery"]["split"]]),
    shell:
        "python -m vlm_rationality discover {params.classifier}"
        " --shards {params.shards:q} --cue {params.cue:q} --labels {params.labels:q}"
        " --settings {params.settings:q}"
        " --keys {params.names:q} --batch-size {params.batch_size} --device {params.device}"
        " --threads {threads} --expect-prepared {params.expect:q} --out {output.regions} --png {output.png} > {log} 2>&1"


rule assign_regions:
    input:
        shards=lambda wc: dag.shard_files(wc.dataset, wc.split),
        discovery=rules.discover.output.regions,
        discovered=lambda wc: dag.shard_files(wc.dataset, config["discovery"]["split"]),
        weights=dag.classifier_weights,
    output:
        "results/regions/{dataset}/{split}/{model}/{method}.parquet",
    log:
        "results/logs/assign_regions/{dataset}/{split}/{model}/{method}.log",
    benchmark:
        "results/benchmarks/assign_regions/{dataset}/{split}/{model}/{method}.tsv"
    conda:
        ENV
    threads: config["threads"]
    resources:
        **dag.sized("assign_regions"),
    params:
        classifier=dag.classifier_args,
        discovered=lambda wc, input: as_json(list(input.discovered)),
        settings=REGION_SETTINGS,
        names=lambda wc: as_json({k: wc[k] for k in ("dataset", "split", "model", "method")}),
        batch_size=lambda wc: config["discovery"]["batch_size"],
        device=config["device"],
        expect=lambda wc: dag.expected_prepared(wc.dataset, {wc.split, config["discovery"]["split"]}),
    shell:
        "python -m vlm_rationality assign-regions {params.classifier}"
        " --discovery {input.discovery} --discovered {params.discovered:q}"
        " --settings {params.settings:q} --keys {params.names:q} --batch-size {params.batch_size}"
        " --device {params.device} --threads {threads} --expect-prepared {params.expect:q} --out {output} {input.shards}"
        " > {log} 2>&1"


rule discovery:
    input:
        lambda wc: dag.discovery_files(),
    output:
        parquet="results/metrics/discovery.parquet",
        csv=report(
            "results/metrics/discovery.csv",
            caption="../report/discovery.rst",
            category="1. Metrics (score)",
            labels={"metrics": "RaVL discovery"},
        ),
        markdown=report(
            "results/tables/discovery.md",
            caption="../report/discovery.rst",
            category="2. Tables (report)",
            labels={"table": "RaVL discovery", "format": "Markdown"},
        ),
    log:
        "results/logs/discovery.log",
    benchmark:
        "results/benchmarks/discovery.tsv"
    localrule: True
    conda:
        ENV
    threads: 1
    resources:
        **dag.sized("discovery"),
    params:
        names=as_json({d: specs.class_names(config, d) for d in config["datasets"]}),
    shell:
        "python -m vlm_rationality discovery --class-names {params.names:q} --parquet {output.parquet}"
        " --csv {output.csv} --markdown {output.markdown} {input} > {log} 2>&1"
