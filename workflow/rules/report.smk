rule report:
    input:
        "results/metrics/rationality.parquet",
    output:
        markdown="results/tables/pt_ir.md",
        figure="results/figures/pt_ir.png",
    params:
        methods=as_json(list(config["methods"])),
        models=as_json(list(config["models"])),
        datasets=as_json(list(config["datasets"])),
    log:
        "results/logs/report.log",
    benchmark:
        "results/benchmarks/report.tsv"
    threads: 1
    resources:
        **sized("report"),
    conda:
        ENV
    shell:
        "python -m vlm_rationality report --metrics {input} --methods {params.methods:q}"
        " --models {params.models:q} --datasets {params.datasets:q}"
        " --markdown {output.markdown} --figure {output.figure} > {log} 2>&1"
