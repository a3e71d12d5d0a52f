# What every rules file shares: the DAG's input, params and resources functions (plan/dag.py, bound here to the
# checked config and the rules), the jobs' shell prefix and the wildcards' shapes.
import shlex

from vlm_rationality.plan import protocol
from vlm_rationality.plan.dag import Dag, as_json

ENV = "../../envs/vlm-rationality.yaml"
# Jobs run the package of this checkout, also from an environment that does not have it installed
# (--sdm conda), on a cluster too; strict bash as Snakemake's default prefix has it. (Snakemake formats the prefix
# like a command, hence the doubled braces.)
shell.prefix(f"set -euo pipefail; export PYTHONPATH={shlex.quote(SRC)}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; ")
EVAL = config["eval_split"]
dag = Dag(config, rules, checkpoints)


wildcard_constraints:
    dataset="[^/]+",
    split="[^/]+",
    model="[^/]+",
    method="[^/]+",
    shift="[^/]+",
    heatmap="[^/]+",
    shard="[0-9]{4}",
    group="[0-9]{4}-[0-9]{4}",
