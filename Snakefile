# vlm-rationality: prepare -> finetune -> explain -> score -> report.
# `snakemake --cores 2` runs the embedded synthetic benchmark of config.yaml.

from snakemake.utils import min_version, validate

min_version("8.0")


configfile: "config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/prepare.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/finetune.smk"
include: "workflow/rules/explain.smk"
include: "workflow/rules/score.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        "results/tables/pt_ir.md",
        "results/tables/heatmap_ablation.md",
        "results/figures/pt_ir.png",
        "results/metrics/rationality.parquet",
        "results/metrics/rationality.csv",
        prepare_reports(),
    default_target: True
