rule explain:
    input:
        shards=dag.group_shards,
        weights=dag.classifier_weights,
    output:
        "results/heatmaps/{dataset}/{shift}/{model}/{method}/{heatmap}/shards-{group}.parquet",
    log:
        "results/logs/explain/{dataset}/{shift}/{model}/{method}/{heatmap}/shards-{group}.log",
    benchmark:
        "results/benchmarks/explain/{dataset}/{shift}/{model}/{method}/{heatmap}/shards-{group}.tsv"
    conda:
        ENV
    threads: specs.stage_threads(config, "explain")
    resources:
        **dag.sized("explain"),
        # Processes corrupting ahead, out of the job's threads; like threads, not a param: they change no map.
        corruption_workers=lambda wc: (
            config["heatmaps"]["workers"] if wc.shift != "clean" and not dag.prerendered(wc.dataset, wc.shift) else 0
        ),
    params:
        classifier=dag.classifier_args,
        heatmaps=lambda wc: as_json(specs.heatmap_spec(config, wc.heatmap, wc.method)),
        names=lambda wc: as_json({k: wc[k] for k in ("dataset", "shift", "model", "method")}),
        device=config["device"],
        expect=lambda wc: dag.expected_prepared(wc.dataset, [EVAL]),
    shell:
        "python -m vlm_rationality explain {params.classifier} --heatmaps {params.heatmaps:q} --keys {params.names:q}"
        " --device {params.device} --threads {threads} --workers {resources.corruption_workers}"
        " --expect-prepared {params.expect:q} --out {output} {input.shards} > {log} 2>&1"
