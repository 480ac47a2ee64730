"""Zhu et al. 2025 decomposed RLVR objectives (GRPO, PSR, NSR, W-REINFORCE) across model
sizes on MATH. `snakemake --cores all` runs config/config.yaml (the Qwen2.5 study);
`--configfile config/demo.yaml` is the offline CPU demo. See README.md."""

import os
import shlex
import sys

from snakemake.utils import min_version, validate

# 9.19: the first Snakemake that reads profiles/*/profile.yaml (older ones look for config.yaml).
min_version("9.19")

# The library lives in src/, so the workflow runs from a plain checkout with the code of that
# checkout: the Snakefile imports it from there, and every job's shell puts src/ first on
# PYTHONPATH. An inherited PYTHONPATH would not do: Snakemake strips it from jobs that run in a
# conda env (`--sdm conda`), whose environments hold the dependencies but not this package.
SRC = os.path.join(workflow.basedir, "src")
sys.path.insert(0, SRC)
shell.prefix(f"set -euo pipefail; export PYTHONPATH={shlex.quote(SRC)}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; ")

from nsr_study.config import check_config, sorted_keys
from nsr_study.offline import offline_env


# Absolute, so `--directory elsewhere --configfile x.yaml` overlays the same base config.
configfile: os.path.join(workflow.basedir, "config", "config.yaml")


SCHEMA = os.path.join(workflow.basedir, "workflow", "schemas", "config.schema.yaml")
check_config(config, SCHEMA, fill_defaults=lambda c: validate(c, SCHEMA))
config.update(sorted_keys(config))  # params compare equal whatever order a YAML file wrote them in
# Jobs inherit this environment: no network calls when the config needs no hub.
os.environ.update(offline_env(config))


include: "workflow/rules/common.smk"


# The report's front page (`snakemake --report`, common.smk); each result's caption is in its rule.
report: os.path.abspath(FRONT_PAGE) if os.path.exists(FRONT_PAGE) else FRONT_PAGE_TEMPLATE


include: "workflow/rules/data.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        data_targets(),
        report_targets(),
