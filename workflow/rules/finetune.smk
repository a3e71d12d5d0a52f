rule finetune:
    input:
        # A method that loads its classifier (kind external) reads no training split, only its files.
        shards=lambda wc: [] if specs.loads(config, wc.method) else dag.shard_files(wc.dataset, config["train_split"]),
        base=lambda wc: dag.base_inputs(wc.model),
        regions=dag.training_regions,
        validation=dag.validation_shards,
        loaded=lambda wc: list(dag.loaded_files(wc).values()),
    output:
        weights="results/checkpoints/{dataset}/{model}/{method}.safetensors",
        sidecar="results/checkpoints/{dataset}/{model}/{method}.json",
    log:
        "results/logs/finetune/{dataset}/{model}/{method}.log",
    benchmark:
        "results/benchmarks/finetune/{dataset}/{model}/{method}.tsv"
    # Longest jobs first: every ready fine-tuning job before any explain job, so the cores finish together instead
    # of one core waiting alone on an explain job queued behind the last fine-tuning.
    priority: 1
    conda:
        ENV
    threads: lambda wc: specs.stage_threads(config, "finetune", wc.method) * dag.method_entry(wc.method)["processes"]
    resources:
        **dag.sized("finetune"),
        # Neither the job's threads nor its data-parallel processes change the checkpoint: not params, so changing
        # them re-trains nothing (the CLI starts torchrun itself for processes > 1).
        processes=lambda wc: dag.method_entry(wc.method)["processes"],
    params:
        model=lambda wc: as_json(dag.model_spec(wc.model, wc.method, wc.dataset)),
        # RaVL's regions file travels in its spec, so the method reads it and its hash is in the sidecar's inputs.
        method=lambda wc: as_json(
            {
                **specs.finetune_spec(config, wc.method),
                **{"regions": path for path in dag.training_regions(wc)},
                **dag.validation_spec(wc),
                **dag.loaded_files(wc),
            }
        ),
        prompts=lambda wc: dag.class_prompts(wc.dataset),
        training_data=as_json(config["training_data"]),
        expect=lambda wc: dag.expected_prepared(wc.dataset, [config["train_split"], *dag.validation_split(wc.method)]),
        device=config["device"],
    shell:
        "python -m vlm_rationality finetune --model {params.model:q} --method {params.method:q}"
        " --prompts {params.prompts:q} --training-data {params.training_data:q} --device {params.device}"
        " --processes {resources.processes} --threads {threads}"
        " --expect-prepared {params.expect:q} --out {output.weights} {input.shards} > {log} 2>&1"
