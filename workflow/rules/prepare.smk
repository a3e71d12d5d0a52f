rule prepare:
    output:
        "results/data/{dataset}/{split}/shard-{shard}.parquet",
    log:
        "results/logs/prepare/{dataset}/{split}/shard-{shard}.log",
    benchmark:
        "results/benchmarks/prepare/{dataset}/{split}/shard-{shard}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        **sized("prepare"),
    params:
        spec=lambda wc: as_json(settings.prepare_spec(config, wc.dataset, wc.split)),
    shell:
        "python -m vlm_rationality prepare --spec {params.spec:q} --split {wildcards.split}"
        " --shard {wildcards.shard} --out {output} > {log} 2>&1"


rule prepare_report:
    input:
        lambda wc: shard_files(wc.dataset, wc.split),
    output:
        "results/data/{dataset}/{split}/report.json",
    log:
        "results/logs/prepare_report/{dataset}/{split}.log",
    benchmark:
        "results/benchmarks/prepare_report/{dataset}/{split}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "python -m vlm_rationality prepare-report --out {output} {input} > {log} 2>&1"
