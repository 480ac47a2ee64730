"""Zhu et al. 2025 decomposed RLVR objectives (GRPO, PSR, NSR, W-REINFORCE) across model
sizes on MATH. `snakemake --cores all` runs config/config.yaml (the Qwen2.5 study);
`--configfile config/demo.yaml` is the offline CPU demo. See README.md."""

import os
import sys

from snakemake.utils import min_version, validate

min_version("9.0")

# The library lives in src/; jobs (scripts, conda envs, cluster nodes) find it through
# PYTHONPATH, so the workflow runs from a plain checkout too.
SRC = os.path.join(workflow.basedir, "src")
sys.path.insert(0, SRC)
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [SRC, os.environ.get("PYTHONPATH")]))

from nsr_study.config import check_config


# Absolute, so `--directory elsewhere --configfile x.yaml` overlays the same base config.
configfile: os.path.join(workflow.basedir, "config", "config.yaml")


SCHEMA = os.path.join(workflow.basedir, "workflow", "schemas", "config.schema.yaml")
check_config(config, SCHEMA, fill_defaults=lambda c: validate(c, SCHEMA))


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        data_targets(),
        report_targets(),
    default_target: True
