# Grid helpers, wildcard constraints and target lists. No rules here.

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
