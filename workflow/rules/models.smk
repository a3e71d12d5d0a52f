rule pretrain_base:
    input:
        shards=lambda wc: dag.shard_files(
            config["models"][wc.model]["pretrain"]["dataset"],
            config["models"][wc.model]["pretrain"]["split"],
        ),
        start=lambda wc: dag.pretrain_inputs(wc.model),
    output:
        weights="results/models/{model}/base.safetensors",
        sidecar="results/models/{model}/base.json",
    log:
        "results/logs/pretrain_base/{model}.log",
    benchmark:
        "results/benchmarks/pretrain_base/{model}.tsv"
    conda:
        ENV
    threads: config["threads"]
    resources:
        **dag.sized("pretrain"),
    params:
        model=lambda wc: as_json(dag.pretrain_spec(wc.model)),
        train=lambda wc: as_json(config["models"][wc.model]["pretrain"]),
        training_data=as_json(config["training_data"]),
        expect=lambda wc: dag.expected_prepared(
            config["models"][wc.model]["pretrain"]["dataset"], [config["models"][wc.model]["pretrain"]["split"]]
        ),
        device=config["device"],
    shell:
        "python -m vlm_rationality pretrain --model {params.model:q} --train {params.train:q}"
        " --training-data {params.training_data:q} --device {params.device} --threads {threads}"
        " --expect-prepared {params.expect:q} --out {output.weights} {input.shards} > {log} 2>&1"
