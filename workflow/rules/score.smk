rule score:
    input:
        heatmaps=lambda wc: dag.heatmap_files(),
        prepared=lambda wc: [path for spec in dag.cue_groups().values() for path in spec["shards"]],
        twins=lambda wc: dag.twin_files() if "twins" in config else [],
    output:
        parquet="results/metrics/rationality.parquet",
        csv=report(
            "results/metrics/rationality.csv",
            caption="../report/rationality.rst",
            category="1. Metrics (score)",
            labels={"metrics": "quadrants, PT, IR, accuracy, intervals"},
        ),
    log:
        "results/logs/score.log",
    benchmark:
        "results/benchmarks/score.tsv"
    conda:
        ENV
    threads: 1
    resources:
        **dag.sized("score"),
    params:
        threshold=config["score"]["threshold"],
        iterations=config["score"]["bootstrap_iterations"],
        seed=config["score"]["seed"],
        undefined=config["score"]["undefined_rma"],
        sweeps=as_json(dag.sweep_labels()),
        groups=lambda wc: as_json(dag.cue_groups()),
        twins=lambda wc, input: f"--twins {' '.join(input.twins)}" if "twins" in config else "",
        agreement=f"--agreement {config['twins']['agreement']}" if "twins" in config else "",
    shell:
        "python -m vlm_rationality score --threshold {params.threshold} --iterations {params.iterations}"
        " --seed {params.seed} --undefined-rma {params.undefined} --sweeps {params.sweeps:q} --groups {params.groups:q}"
        " {params.twins} {params.agreement}"
        " --parquet {output.parquet} --csv {output.csv} {input.heatmaps} > {log} 2>&1"
