rule finetune:
    input:
        shards=lambda wc: shard_files(wc.dataset, config["train_split"]),
        base=lambda wc: base_inputs(wc.model),
    output:
        weights="results/checkpoints/{dataset}/{model}/{method}.safetensors",
        sidecar="results/checkpoints/{dataset}/{model}/{method}.json",
    params:
        model=lambda wc: as_json(model_spec(wc.model)),
        method=lambda wc: as_json(config["methods"][wc.method]),
        prompts=lambda wc: as_json(settings.prompts(config, wc.dataset)),
        device=config["device"],
    log:
        "results/logs/finetune/{dataset}/{model}/{method}.log",
    benchmark:
        "results/benchmarks/finetune/{dataset}/{model}/{method}.tsv"
    threads: config["threads"]
    resources:
        mem_mb=8000,
        runtime=240,
    conda:
        ENV
    shell:
        "python -m vlm_rationality finetune --model {params.model:q} --method {params.method:q}"
        " --prompts {params.prompts:q} --device {params.device} --threads {threads}"
        " --out {output.weights} {input.shards} > {log} 2>&1"
