rule explain:
    input:
        shard=f"results/data/{{dataset}}/{EVAL}/shard-{{shard}}.parquet",
        weights=explain_weights,
    output:
        "results/heatmaps/{dataset}/{shift}/{model}/{method}/shard-{shard}.parquet",
    params:
        model=lambda wc: as_json(model_spec(wc.model)),
        method=lambda wc: as_json(config["methods"][wc.method]),
        prompts=lambda wc: as_json(settings.prompts(config, wc.dataset)),
        heatmaps=as_json(config["heatmaps"]),
        names=lambda wc: as_json({k: wc[k] for k in ("dataset", "shift", "model", "method")}),
        checkpoint=lambda wc, input: (
            f"--checkpoint {input.weights[0]}" if settings.trains(config, wc.method) else ""
        ),
        device=config["device"],
    log:
        "results/logs/explain/{dataset}/{shift}/{model}/{method}/shard-{shard}.log",
    benchmark:
        "results/benchmarks/explain/{dataset}/{shift}/{model}/{method}/shard-{shard}.tsv"
    threads: config["threads"]
    resources:
        mem_mb=8000,
        runtime=120,
    conda:
        ENV
    shell:
        "python -m vlm_rationality explain --model {params.model:q} --method {params.method:q}"
        " --prompts {params.prompts:q} --heatmaps {params.heatmaps:q} --keys {params.names:q}"
        " {params.checkpoint} --device {params.device} --threads {threads}"
        " --shard {input.shard} --out {output} > {log} 2>&1"
