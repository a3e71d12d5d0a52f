rule report:
    input:
        rules.score.output.parquet,
    output:
        markdown="results/tables/pt_ir.md",
        ablation="results/tables/heatmap_ablation.md",
        figure="results/figures/pt_ir.png",
    log:
        "results/logs/report.log",
    benchmark:
        "results/benchmarks/report.tsv"
    conda:
        ENV
    threads: 1
    resources:
        **sized("report"),
    params:
        methods=as_json(list(config["methods"])),
        models=as_json(list(config["models"])),
        datasets=as_json(list(config["datasets"])),
        heatmap_methods=as_json(config["heatmaps"]["methods"]),
    shell:
        "python -m vlm_rationality report --metrics {input} --methods {params.methods:q}"
        " --models {params.models:q} --datasets {params.datasets:q} --heatmap-methods {params.heatmap_methods:q}"
        " --markdown {output.markdown} --ablation {output.ablation} --figure {output.figure} > {log} 2>&1"


# The synthetic benchmark's calibration curve: drawn when two or more datasets train at different rho.
rule rho_curve:
    input:
        rules.score.output.parquet,
    output:
        "results/figures/rho_curve.png",
    log:
        "results/logs/rho_curve.log",
    conda:
        ENV
    threads: 1
    resources:
        **sized("report"),
    params:
        rhos=as_json(settings.training_rhos(config)),
        methods=as_json(list(config["methods"])),
        models=as_json(list(config["models"])),
        heatmap_methods=as_json(config["heatmaps"]["methods"]),
    shell:
        "python -m vlm_rationality rho-curve --metrics {input} --rhos {params.rhos:q} --methods {params.methods:q}"
        " --models {params.models:q} --heatmap-methods {params.heatmap_methods:q} --figure {output} > {log} 2>&1"


# Not part of `all`: `snakemake --cores 2 protocol_sensitivity` measures each official-code choice alone (protocol.py).
rule protocol_sensitivity:
    input:
        lambda wc: sensitivity_files(),
    output:
        markdown="results/tables/protocol_sensitivity.md",
        csv="results/tables/protocol_sensitivity.csv",
    log:
        "results/logs/protocol_sensitivity.log",
    conda:
        ENV
    threads: 1
    resources:
        **sized("score"),
    params:
        score=as_json(config["score"]),
        switches=as_json(protocol.describe(config)[0]),
        not_run=as_json(protocol.describe(config)[1]),
    shell:
        "python -m vlm_rationality protocol-sensitivity --score {params.score:q} --switches {params.switches:q}"
        " --not-run {params.not_run:q} --markdown {output.markdown} --csv {output.csv} {input} > {log} 2>&1"
