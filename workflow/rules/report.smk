rule report:
    input:
        lambda wc: rules.score.output.parquet,
    output:
        markdown=report(
            "results/tables/pt_ir.md",
            caption="../report/table2.rst",
            category="2. Tables (report)",
            labels={"table": "Table 2", "format": "Markdown"},
        ),
        latex=report(
            "results/tables/pt_ir.tex",
            caption="../report/table2.rst",
            category="2. Tables (report)",
            labels={"table": "Table 2", "format": "LaTeX (booktabs)"},
        ),
        html=report(
            "results/tables/pt_ir.html",
            caption="../report/table2.rst",
            category="2. Tables (report)",
            labels={"table": "Table 2", "format": "HTML"},
        ),
        csv=report(
            "results/tables/pt_ir.csv",
            caption="../report/table2.rst",
            category="2. Tables (report)",
            labels={"table": "Table 2", "format": "CSV"},
        ),
        ablation=report(
            "results/tables/heatmap_ablation.md",
            caption="../report/ablation.rst",
            category="2. Tables (report)",
            labels={"table": "heatmap-method ablation", "format": "Markdown"},
        ),
        ablations_md=report(
            "results/tables/ablations.md",
            caption="../report/ablations.rst",
            category="2. Tables (report)",
            labels={"table": "ablations (Table 3)", "format": "Markdown"},
        ),
        ablations_tex=report(
            "results/tables/ablations.tex",
            caption="../report/ablations.rst",
            category="2. Tables (report)",
            labels={"table": "ablations (Table 3)", "format": "LaTeX (booktabs)"},
        ),
        ablations_csv=report(
            "results/tables/ablations.csv",
            caption="../report/ablations.rst",
            category="2. Tables (report)",
            labels={"table": "ablations (Table 3)", "format": "CSV"},
        ),
        figure=report(
            "results/figures/pt_ir.png",
            caption="../report/pt_ir.rst",
            category="3. Figures (report)",
            subcategory="PT, IR, accuracy",
            labels={"figure": "PT, IR and accuracy per method"},
        ),
    log:
        "results/logs/report.log",
    benchmark:
        "results/benchmarks/report.tsv"
    localrule: True
    conda:
        ENV
    threads: 1
    resources:
        **dag.sized("report"),
    params:
        methods=as_json(list(config["methods"])),
        models=as_json(list(config["models"])),
        datasets=as_json(list(config["datasets"])),
        heatmap_methods=as_json(config["heatmaps"]["methods"]),
    shell:
        "python -m vlm_rationality report --metrics {input} --methods {params.methods:q}"
        " --models {params.models:q} --datasets {params.datasets:q} --heatmap-methods {params.heatmap_methods:q}"
        " --markdown {output.markdown} --latex {output.latex} --html {output.html} --csv {output.csv} --ablation {output.ablation}"
        " --ablations-markdown {output.ablations_md} --ablations-latex {output.ablations_tex} --ablations-csv {output.ablations_csv}"
        " --figure {output.figure} > {log} 2>&1"


# Table 2 broken down, from the heatmap files (as score reads them): PT and IR against the RMA threshold (whether a
# method ordering is the paper's 0.5 or the data), the RMA distributions behind them, and every class's numbers.
rule breakdowns:
    input:
        heatmaps=lambda wc: dag.heatmap_files(),
    output:
        parquet="results/metrics/thresholds.parquet",
        csv="results/metrics/thresholds.csv",
        per_class_parquet="results/metrics/per_class.parquet",
        per_class_csv="results/metrics/per_class.csv",
        curves=report(
            "results/figures/pt_ir_threshold.png",
            caption="../report/breakdowns.rst",
            category="3. Figures (report)",
            subcategory="PT, IR, accuracy",
            labels={"figure": "PT and IR against the RMA threshold"},
        ),
        distributions=report(
            "results/figures/rma_distribution.png",
            caption="../report/breakdowns.rst",
            category="3. Figures (report)",
            subcategory="PT, IR, accuracy",
            labels={"figure": "RMA per method, right and wrong predictions"},
        ),
        per_class=report(
            "results/figures/per_class.png",
            caption="../report/breakdowns.rst",
            category="3. Figures (report)",
            subcategory="PT, IR, accuracy",
            labels={"figure": "accuracy and PT per class"},
        ),
    log:
        "results/logs/breakdowns.log",
    benchmark:
        "results/benchmarks/breakdowns.tsv"
    conda:
        ENV
    threads: 1
    resources:
        **dag.sized("score"),
    params:
        iterations=config["score"]["bootstrap_iterations"],
        seed=config["score"]["seed"],
        undefined=config["score"]["undefined_rma"],
        threshold=config["score"]["threshold"],
        methods=as_json(list(config["methods"])),
        models=as_json(list(config["models"])),
        datasets=as_json(list(config["datasets"])),
        heatmap_methods=as_json(config["heatmaps"]["methods"]),
        class_names=as_json({dataset: specs.class_names(config, dataset) for dataset in config["datasets"]}),
    shell:
        "python -m vlm_rationality breakdowns --iterations {params.iterations} --seed {params.seed}"
        " --undefined-rma {params.undefined} --threshold {params.threshold} --methods {params.methods:q}"
        " --models {params.models:q} --datasets {params.datasets:q} --heatmap-methods {params.heatmap_methods:q}"
        " --class-names {params.class_names:q} --parquet {output.parquet} --csv {output.csv}"
        " --per-class-parquet {output.per_class_parquet} --per-class-csv {output.per_class_csv}"
        " --curves {output.curves} --distributions {output.distributions} --per-class {output.per_class}"
        " {input.heatmaps} > {log} 2>&1"


# The paper's Figure 3, from heatmap and prepared shards only: adding it reruns no explain or training job.
rule gallery:
    input:
        heatmaps=lambda wc: dag.heatmap_group(wc.dataset, wc.shift, wc.model, wc.heatmap),
        prepared=lambda wc: dag.shard_files(wc.dataset, EVAL, wc.shift),
    output:
        all_right=report(
            "results/figures/gallery/{dataset}/{shift}/{model}/{heatmap}/all_right.png",
            caption="../report/gallery_all_right.rst",
            category="3. Figures (report)",
            subcategory="Galleries",
            labels={
                "gallery": "every method right",
                "dataset": "{dataset}",
                "model": "{model}",
                "heatmap": "{heatmap}",
            },
        ),
        rw=report(
            "results/figures/gallery/{dataset}/{shift}/{model}/{heatmap}/rw.png",
            caption="../report/gallery_rw.rst",
            category="3. Figures (report)",
            subcategory="Galleries",
            labels={
                "gallery": "right for the wrong reason",
                "dataset": "{dataset}",
                "model": "{model}",
                "heatmap": "{heatmap}",
            },
        ),
    log:
        "results/logs/gallery/{dataset}/{shift}/{model}/{heatmap}.log",
    localrule: True
    conda:
        ENV
    threads: 1
    resources:
        **dag.sized("report"),
    params:
        methods=as_json(list(config["methods"])),
        class_names=lambda wc: dag.class_names(wc.dataset),
        threshold=config["score"]["threshold"],
        samples=config["report"]["gallery_samples"],
        seed=config["report"]["seed"],
        title=lambda wc: f"{wc.dataset} · {wc.shift} · {wc.model} · {wc.heatmap}",
    shell:
        "python -m vlm_rationality gallery --heatmaps {input.heatmaps} --prepared {input.prepared}"
        " --methods {params.methods:q} --class-names {params.class_names:q} --threshold {params.threshold}"
        " --samples {params.samples} --seed {params.seed} --title {params.title:q}"
        " --all-right {output.all_right} --rw {output.rw} > {log} 2>&1"


# The paper's Figures 4-5: drawn for every dataset that is explained under a corruption.
rule shift_curves:
    input:
        lambda wc: rules.score.output.parquet,
    output:
        report(
            "results/figures/shifts/{dataset}/{model}/{heatmap}.png",
            caption="../report/shift_curves.rst",
            category="3. Figures (report)",
            subcategory="Shift curves",
            labels={"dataset": "{dataset}", "model": "{model}", "heatmap": "{heatmap}"},
        ),
    log:
        "results/logs/shift_curves/{dataset}/{model}/{heatmap}.log",
    localrule: True
    conda:
        ENV
    threads: 1
    resources:
        **dag.sized("report"),
    params:
        methods=as_json(list(config["methods"])),
    shell:
        "python -m vlm_rationality shift-curves --metrics {input} --dataset {wildcards.dataset}"
        " --model {wildcards.model} --heatmap {wildcards.heatmap} --methods {params.methods:q}"
        " --figure {output} > {log} 2>&1"


# The synthetic benchmark's calibration curve: drawn when two or more datasets train at different rho.
rule rho_curve:
    input:
        lambda wc: rules.score.output.parquet,
    output:
        report(
            "results/figures/rho_curve.png",
            caption="../report/rho_curve.rst",
            category="3. Figures (report)",
            subcategory="PT, IR, accuracy",
            labels={"figure": "against the training split's rho"},
        ),
    log:
        "results/logs/rho_curve.log",
    localrule: True
    conda:
        ENV
    threads: 1
    resources:
        **dag.sized("report"),
    params:
        rhos=as_json(specs.training_rhos(config)),
        methods=as_json(list(config["methods"])),
        models=as_json(list(config["models"])),
        heatmap_methods=as_json(config["heatmaps"]["methods"]),
    shell:
        "python -m vlm_rationality rho-curve --metrics {input} --rhos {params.rhos:q} --methods {params.methods:q}"
        " --models {params.models:q} --heatmap-methods {params.heatmap_methods:q} --figure {output} > {log} 2>&1"


# Not part of `all`: `snakemake --cores 2 protocol_sensitivity` measures each official-code choice alone (protocol.py).
rule protocol_sensitivity:
    input:
        lambda wc: dag.sensitivity_files(),
    output:
        markdown=report(
            "results/tables/protocol_sensitivity.md",
            caption="../report/protocol_sensitivity.rst",
            category="2. Tables (report)",
            labels={"table": "protocol sensitivity", "format": "Markdown"},
        ),
        csv=report(
            "results/tables/protocol_sensitivity.csv",
            caption="../report/protocol_sensitivity.rst",
            category="2. Tables (report)",
            labels={"table": "protocol sensitivity", "format": "CSV"},
        ),
    log:
        "results/logs/protocol_sensitivity.log",
    localrule: True
    conda:
        ENV
    threads: 1
    resources:
        **dag.sized("score"),
    params:
        score=as_json(config["score"]),
        switches=as_json(protocol.describe(config)[0]),
        not_run=as_json(protocol.describe(config)[1]),
    shell:
        "python -m vlm_rationality protocol-sensitivity --score {params.score:q} --switches {params.switches:q}"
        " --not-run {params.not_run:q} --markdown {output.markdown} --csv {output.csv} {input} > {log} 2>&1"


# Along which visual factor do accuracy and the rationale break (config section `factors`)? ImageNet-X's factors, or
# the synthetic generator's own, from the clean heatmap files, with the twins' truth where the config has twins.
rule factors:
    input:
        heatmaps=lambda wc: dag.heatmap_files(clean_only=True),
        twins=lambda wc: dag.twin_files() if "twins" in config else [],
    output:
        parquet="results/metrics/factors.parquet",
        csv=report(
            "results/metrics/factors.csv",
            caption="../report/factors.rst",
            category="1. Metrics (score)",
            labels={"metrics": "per visual factor"},
        ),
        markdown=report(
            "results/tables/factors.md",
            caption="../report/factors.rst",
            category="2. Tables (report)",
            labels={"table": "visual factors", "format": "Markdown"},
        ),
        figure=report(
            "results/figures/factors.png",
            caption="../report/factors.rst",
            category="3. Figures (report)",
            subcategory="visual factors",
            labels={"figure": "accuracy and the rationale per visual factor"},
        ),
    log:
        "results/logs/factors.log",
    benchmark:
        "results/benchmarks/factors.tsv"
    conda:
        ENV
    threads: 1
    resources:
        **dag.sized("factors"),
    params:
        iterations=config["score"]["bootstrap_iterations"],
        seed=config["score"]["seed"],
        undefined=config["score"]["undefined_rma"],
        threshold=config["score"]["threshold"],
        agreement=config.get("twins", {}).get("agreement", 1.0),
        split=EVAL,
        datasets=lambda wc: as_json(
            {d: specs.prepare_spec(config, d, EVAL) for d in config.get("factors", {}).get("datasets", [])}
        ),
        twins=lambda wc, input: f"--twins {' '.join(input.twins)}" if input.twins else "",
    shell:
        "python -m vlm_rationality factors --iterations {params.iterations} --seed {params.seed}"
        " --undefined-rma {params.undefined} --threshold {params.threshold} --agreement {params.agreement}"
        " --datasets {params.datasets:q} --split {params.split} {params.twins} --parquet {output.parquet}"
        " --csv {output.csv} --markdown {output.markdown} --figure {output.figure} {input.heatmaps} > {log} 2>&1"


# Outcomes over runs (the `replicates` section): each method over bases x seeds, and against a reference.
rule replicates:
    input:
        lambda wc: rules.score.output.parquet,
    output:
        markdown=report(
            "results/tables/replicates.md",
            caption="../report/replicates.rst",
            category="2. Tables (report)",
            labels={"table": "outcomes over bases and seeds", "format": "Markdown"},
        ),
        csv="results/tables/replicates.csv",
    log:
        "results/logs/replicates.log",
    localrule: True
    conda:
        ENV
    threads: 1
    resources:
        **dag.sized("report"),
    params:
        reference=lambda wc: config.get("replicates", {}).get("reference", ""),
    shell:
        "python -m vlm_rationality replicates --metrics {input} --reference {params.reference:q}"
        " --markdown {output.markdown} --csv {output.csv} > {log} 2>&1"
