# Grid helpers, wildcard constraints and target lists. No rules here.

import json
import re

MODELS = {m["name"]: m for m in config["models"]}
OBJECTIVES = config["objectives"]
SEEDS = config["seeds"]
DATA = config["data"]


wildcard_constraints:
    model="|".join(re.escape(m) for m in MODELS),
    objective="|".join(OBJECTIVES),
    seed=r"\d+",


def data_source_files():
    """Input files of prepare_data: none for the hub, the local or synthetic files otherwise."""
    if DATA["source"] == "local":
        return {"train": DATA["local"]["train"], "test": DATA["local"]["test"]}
    if DATA["source"] == "synthetic":
        out = rules.synthetic_data.output
        return {"train": out.train, "test": out.test}
    return {}


def data_targets():
    return [
        "results/data/train.jsonl",
        "results/data/val.jsonl",
        "results/data/test.jsonl",
        "results/data/strata.csv",
        "results/data/strata.png",
    ]


CELL = "{model}/{objective}/seed{seed}"


def cell_path(kind, name=""):
    """results/<kind>/<model>/<objective>/seed<seed>[/name]: one folder per grid cell."""
    return f"results/{kind}/{CELL}/{name}" if name else f"results/{kind}/{CELL}"


def model_build_input(wildcards):
    """A tiny demo model must be built before use; hub models need nothing."""
    model = MODELS[wildcards.model]
    return {"model": model["id"]} if "tiny" in model else {}


def cell_config(wildcards) -> str:
    """Everything one training job needs besides its paths, as JSON (a change reruns the cell)."""
    model = MODELS[wildcards.model]
    return json.dumps({
        "model_name": wildcards.model,
        "model_id": model["id"],
        "objective": wildcards.objective,
        "seed": int(wildcards.seed),
        "train": config["train"],
        "grading": config["grading"],
    }, sort_keys=True)


def gpus_per_cell():
    return 0 if config["train"]["device"] == "cpu" else 1


def train_targets():
    return expand(cell_path("train", "metrics.jsonl"), model=MODELS, objective=OBJECTIVES, seed=SEEDS)


def eval_config(wildcards, objective, seed) -> str:
    """Evaluation settings (device, dtype and batch sizes shared with training) and the label."""
    t = config["train"]
    shared = {k: t[k] for k in ("device", "dtype", "max_prompt_tokens", "micro_batch_size", "generation_batch_size")}
    return json.dumps({
        "evaluate": shared | config["evaluate"],
        "grading": config["grading"],
        "label": {"model": wildcards.model, "objective": objective, "seed": seed},
    }, sort_keys=True)


def eval_targets():
    base = expand("results/eval/{model}/base/metrics.json", model=MODELS)
    cells = expand(cell_path("eval", "metrics.json"), model=MODELS, objective=OBJECTIVES, seed=SEEDS)
    return base + cells


FIGURES = ["training_curves_smoothed", "final_performance_comparison", "passk_curves", "model_size"]
TABLES = ["train_metrics", "final_metrics", "passk", "breakdown"]


def report_targets():
    return (expand("results/tables/{table}.csv", table=TABLES)
            + expand("results/figures/{figure}.{ext}", figure=FIGURES, ext=["png", "svg"]))
