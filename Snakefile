# vlm-rationality: prepare -> finetune -> explain -> score -> report.
# `snakemake --cores 2` runs the embedded synthetic benchmark of config.yaml.

import sys
from pathlib import Path

import yaml
from snakemake.utils import min_version

min_version("8.0")
# The workflow runs the package of this checkout (jobs get it through common.smk's shell prefix).
SRC = str(Path(workflow.basedir, "src"))
sys.path.insert(0, SRC)

from vlm_rationality.plan import config as settings
from vlm_rationality.plan import specs

# A config given with --configfile replaces the default (merging would keep the default's datasets and models
# in the grid); `--config key=value` alone still overrides single keys of it, and `--configfile config.yaml mine.yaml`
# overlays mine.yaml on the default.
if not workflow.config_settings.configfiles:

    configfile: "config.yaml"


# A key given twice in a config file is refused (YAML would keep the last without a word).
settings.check_files(workflow.config_settings.configfiles or ["config.yaml"])
# Closed schema: an unknown key fails here, named with its path and the key probably meant; defaults filled in.
settings.check_config(config, yaml.safe_load(Path(workflow.basedir, "workflow/schemas/config.schema.yaml").read_text()))


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"


# Every other rules file: a new stage is its declaration (its folder's stage.py) and its rule, nothing here.
for rules_file in sorted(Path(workflow.basedir, "workflow/rules").glob("*.smk")):
    if rules_file.name != "common.smk":

        include: rules_file


rule all:
    default_target: True
    input:
        dag.get_final_output(),
    localrule: True
