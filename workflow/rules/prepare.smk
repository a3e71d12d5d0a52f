# A split's files are listed once, here; shard counts and each prepare job's slice come from the index. A checkpoint:
# where the config alone does not tell a split's size (on-disk datasets), the DAG is completed once it exists.
checkpoint items:
    output:
        "results/data/{dataset}/{split}/items.parquet",
    log:
        "results/logs/items/{dataset}/{split}.log",
    benchmark:
        "results/benchmarks/items/{dataset}/{split}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        **dag.sized("items"),
    params:
        spec=lambda wc: as_json(specs.prepare_spec(config, wc.dataset, wc.split)),
    shell:
        "python -m vlm_rationality items --spec {params.spec:q} --split {wildcards.split} --out {output} > {log} 2>&1"


rule prepare:
    input:
        index=rules.items.output[0],
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
        **dag.sized("prepare"),
    params:
        spec=lambda wc: as_json(specs.prepare_spec(config, wc.dataset, wc.split)),
    shell:
        "python -m vlm_rationality prepare --spec {params.spec:q} --split {wildcards.split}"
        " --shard {wildcards.shard} --items {input.index} --out {output} > {log} 2>&1"


# A shift read from the published ImageNet-C folders (datasets.<name>.imagenet_c) is prepared like a split: the clean
# shard's samples, their images from <imagenet_c>/<corruption>/<severity>/, masks through ImageNet-C's 256/224 crop.
rule prepare_shift:
    input:
        index=rules.items.output[0],
        clean=rules.prepare.output[0],
    output:
        "results/data/{dataset}/{split}/{shift}/shard-{shard}.parquet",
    log:
        "results/logs/prepare/{dataset}/{split}/{shift}/shard-{shard}.log",
    benchmark:
        "results/benchmarks/prepare/{dataset}/{split}/{shift}/shard-{shard}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        **dag.sized("prepare"),
    params:
        spec=lambda wc: as_json(specs.prepare_spec(config, wc.dataset, wc.split)),
        imagenet_c=lambda wc: config["datasets"][wc.dataset]["imagenet_c"],
    shell:
        "python -m vlm_rationality prepare --spec {params.spec:q} --split {wildcards.split} --shift {wildcards.shift}"
        " --imagenet-c {params.imagenet_c:q} --clean-shard {input.clean} --shard {wildcards.shard} --items {input.index}"
        " --out {output} > {log} 2>&1"


# Sums the shards' counts: a second of work. A shell job, not `run:`: Snakemake runs a `run:` block in a new Snakemake
# process that parses the workflow and builds its DAG again (3-6 s a report, measured), where this starts one interpreter.
rule prepare_report:
    input:
        lambda wc: dag.shard_files(wc.dataset, wc.split),
    output:
        "results/data/{dataset}/{split}/report.json",
    log:
        "results/logs/prepare_report/{dataset}/{split}.log",
    localrule: True
    conda:
        ENV
    threads: 1
    resources:
        **dag.sized("prepare_report"),
    shell:
        "python -m vlm_rationality prepare-report --out {output} {input} > {log} 2>&1"
