# Grid helpers, wildcard constraints and target lists. No rules here.

import json
import os
import re
import shlex
import sys

from snakemake.exceptions import WorkflowError

from nsr_study.config import RUNTIME_ONLY, objective_train
from nsr_study.paper import load_reference
from nsr_study.cost import eval_shards, rule_minutes
from nsr_study.devices import gpu_shortfall, pool
from nsr_study.host_memory import rule_mem_mb
from nsr_study.synthetic import LONGER_FILE, RARE_FILE
from nsr_study.sources import source_hash

MODELS = {m["name"]: m for m in config["models"]}
OBJECTIVES = config["objectives"]
SEEDS = config["seeds"]
DATA = config["data"]
BENCHMARKS = config["benchmarks"]


wildcard_constraints:
    model="|".join(re.escape(m) for m in MODELS),
    objective="|".join(OBJECTIVES),
    seed=r"\d+",
    shard=r"\d+",
    run="base|(" + "|".join(OBJECTIVES) + r")/seed\d+",


def code(*modules, script=None):
    """A cheap rule's params entry: the source hash of the package modules it runs and of its
    script (nsr_study.sources). The default profile has no `code` trigger, so this is what makes
    an edit of the statistics, tables or figures rerun the rules that use them, and nothing
    else; GPU and data rules never get one (a checkpoint records the training code instead)."""
    files = (os.path.join(workflow.basedir, "workflow", "scripts", script),) if script else ()
    return source_hash(*modules, files=files)


def data_source_files(side):
    """Input files of prepare_data (`side` train: MATH's train file) or prepare_test (test: both
    MATH files, for the strata of both splits, and each local file of `benchmarks`); none from
    the hub."""
    splits = ["train"] if side == "train" else ["train", "test"]
    files = {f"benchmark_{b['name']}": b["local"] for b in BENCHMARKS if "local" in b} if side == "test" else {}
    if DATA["source"] == "local":
        return files | {s: DATA["local"][s] for s in splits}
    if DATA["source"] == "synthetic":
        return files | {s: getattr(rules.synthetic_data.output, s) for s in splits}
    return files


def data_targets():
    return [
        "results/data/train.jsonl",
        "results/data/val.jsonl",
        "results/data/test.jsonl",
        "results/data/strata.csv",
        "results/data/strata.png",
        "results/data/benchmarks.csv",
    ] + expand("results/data/prompt_lengths/{model}/{split}.csv", model=MODELS, split=["train", "test"])


CELL = "{model}/{objective}/seed{seed}"


def cell_path(kind, name=""):
    """results/<kind>/<model>/<objective>/seed<seed>[/name]: one folder per grid cell."""
    return f"results/{kind}/{CELL}/{name}" if name else f"results/{kind}/{CELL}"


def model_build_input(wildcards):
    """A tiny demo model must be built before use; hub models need nothing."""
    model = MODELS[wildcards.model]
    return {"model": model["id"]} if "tiny" in model else {}


def results_settings(section: dict) -> dict:
    """A train/evaluate section without its runtime-only knobs (nsr_study.config.RUNTIME_ONLY)."""
    return {k: v for k, v in section.items() if k not in RUNTIME_ONLY}


def runtime_arg(section: dict) -> str:
    """The runtime-only knobs as a quoted JSON argument, written into the shell command (code,
    not params: the default profile's rerun triggers leave code out, so changing a batch size
    or the thread count reruns nothing)."""
    knobs = json.dumps({k: v for k, v in section.items() if k in RUNTIME_ONLY}, sort_keys=True)
    return shlex.quote(knobs).replace("{", "{{").replace("}", "}}")


def cell_config(wildcards) -> str:
    """Everything one training job's results depend on besides its paths, as JSON (a change
    reruns the cell, and its checkpoints are not resumed). Its train section is that of the
    cell's objective (``train.per_objective`` applied), so an objective's own settings rerun
    only its cells."""
    model = MODELS[wildcards.model]
    return json.dumps(
        {
            "model_name": wildcards.model,
            "model_id": model["id"],
            "objective": wildcards.objective,
            "seed": int(wildcards.seed),
            "prompt": config["prompt"],
            "train": results_settings(objective_train(config["train"], wildcards.objective)),
            "grading": config["grading"],
        },
        sort_keys=True,
    )


def ranks(wildcards):
    """Processes of one of this model's train or evaluate jobs: its `gpus` (nsr_study.distributed)."""
    return MODELS[wildcards.model]["gpus"]


def gpus_per_cell(wildcards):
    """GPUs of one training or evaluation job, one per rank; the job claims that many distinct
    devices itself (`--gpus {resources.gpu}`, nsr_study.devices), as Snakemake's local executor
    assigns none. With train.device cpu the ranks are CPU processes and ask for no GPU."""
    return 0 if config["train"]["device"] == "cpu" else ranks(wildcards)


def gpu_limit():
    """The run's `--resources gpu` limit (profiles/default sets 1); None when unlimited."""
    value = workflow.global_resources.get("gpu").value
    return None if value is None else int(value)


def node_gpus():
    """Devices a local run's jobs can claim (nsr_study.devices.pool); None on a cluster, or
    when none is visible (jobs then run on the CPU)."""
    return (len(pool(os.environ)) or None) if workflow.local_exec else None


# A model whose gpus exceed what the run or the node allows is refused here, before any job:
# Snakemake would lower its jobs' gpu to the limit, and they would fail at their start.
if workflow.is_main_process and config["train"]["device"] != "cpu":
    GPU_SHORTFALL = gpu_shortfall({m: MODELS[m]["gpus"] for m in MODELS}, gpu_limit(), node_gpus(), sys.argv)
    if GPU_SHORTFALL:
        raise WorkflowError(GPU_SHORTFALL)


def train_targets():
    return expand(cell_path("train", "metrics.jsonl"), model=MODELS, objective=OBJECTIVES, seed=SEEDS)


EVAL_RUNTIME = {
    k: config["train"][k]
    for k in ("micro_batch_size", "generation_batch_size", "logprob_chunk", "collective_timeout_min")
} | {"gpu_memory_utilization": config["evaluate"]["gpu_memory_utilization"]}


def eval_benchmarks() -> dict:
    """{test set: {n, max_new_tokens}}: each set's own or the evaluate section's."""
    ev = config["evaluate"]
    return {b["name"]: {k: b.get(k, ev[k]) for k in ("n", "max_new_tokens")} for b in BENCHMARKS}


# Every evaluation's shards of test problems (evaluate.shard_size; nsr_study.cost counts the
# problems of every test set from the config), and each GPU rule's SLURM runtime per model: the
# plan's estimate with a margin (nsr_study.cost.rule_minutes).
SHARDS = eval_shards(config)
RUNTIME_MINUTES = rule_minutes(config)
# Each GPU rule's SLURM memory per model: its host memory estimate (nsr_study.host_memory).
MEM_MB = rule_mem_mb(config)


def shard_path(evaluation: str) -> str:
    """<evaluation folder>/shards/<k>-of-<K>.json: K in the name, so another shard size never
    reuses a shard of other rows."""
    return f"{evaluation}/shards/{{shard}}-of-{SHARDS}.json"


def run_label(run: str) -> tuple:
    """(objective, seed) of an evaluation folder's tail: "base" or "<objective>/seed<seed>"."""
    if run == "base":
        return "base", None
    objective, seed = run.split("/")
    return objective, int(seed.removeprefix("seed"))


def eval_config(model, objective, seed) -> str:
    """Evaluation settings (device, dtype and hf_compiled shared with training) and the label. No prompt
    limit: evaluation sizes its context for the longest test prompt (nsr_study.evaluate)."""
    t = config["train"]
    shared = {k: t[k] for k in ("device", "dtype", "hf_compiled")}
    return json.dumps(
        {
            "evaluate": shared | results_settings(config["evaluate"]) | {"benchmarks": eval_benchmarks()},
            "prompt": config["prompt"],
            "grading": config["grading"],
            "label": {"model": model, "objective": objective, "seed": seed},
        },
        sort_keys=True,
    )


def eval_labels():
    """{model, objective, seed} of every evaluation, in eval_targets() order."""
    base = [{"model": m, "objective": "base", "seed": None} for m in MODELS]
    return base + [{"model": m, "objective": o, "seed": s} for m in MODELS for o in OBJECTIVES for s in SEEDS]


def eval_path(label, name):
    """results/eval/<model>/base/<name> for a base model, the cell's folder otherwise."""
    if label["seed"] is None:
        return f"results/eval/{label['model']}/base/{name}"
    return cell_path("eval", name).format(**label)


def eval_targets():
    return [eval_path(lb, "metrics.json") for lb in eval_labels()]


def eval_problems():
    return [eval_path(lb, "problems.jsonl") for lb in eval_labels()]


FIGURES = ["training_curves_smoothed", "final_performance_comparison", "passk_curves", "model_size"]
TABLES = ["train_metrics", "final_metrics", "passk", "breakdown"]


# The report's front page: workflow/report/workflow.rst, and once the findings rule has run, its
# copy followed by the findings in words (the Snakefile's `report:` picks that when it exists).
FRONT_PAGE_TEMPLATE = os.path.join(workflow.basedir, "workflow", "report", "workflow.rst")
FRONT_PAGE = "results/report/front_page.rst"


# Models of the grid that are the paper's own (Table 1, nsr_study.paper): each gets its pass@k set
# beside the paper's (rule paper_comparison).
PAPER_MODELS = [name for name, m in MODELS.items() if m["id"] == load_reference()["model"]]


def paper_targets():
    return [f"results/tables/paper_comparison_{m}.csv" for m in PAPER_MODELS] + [
        f"results/figures/paper_comparison_{m}.{ext}" for m in PAPER_MODELS for ext in ("png", "svg")
    ]


# The positive control's task (config/control.yaml) tags every sample with its strategy.
STRATEGY_TASK = DATA["source"] == "synthetic" and DATA["synthetic"]["task"] == "strategies"


def strategy_targets():
    if not STRATEGY_TASK:
        return []
    return ["results/tables/strategy_share.csv"] + expand("results/figures/strategy_share.{ext}", ext=["png", "svg"])


def report_targets():
    return (
        expand("results/tables/{table}.csv", table=TABLES + ["findings", "findings_trend"])
        + expand("results/figures/{figure}.{ext}", figure=FIGURES + ["findings_verdicts"], ext=["png", "svg"])
        + paper_targets()
        + [FRONT_PAGE]
        + strategy_targets()
    )
