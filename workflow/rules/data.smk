# Data stage: (synthetic MATH-format problems for the demo) → stratified train/val/test.


rule synthetic_data:
    output:
        train="results/data/synthetic/train.jsonl",
        test="results/data/synthetic/test.jsonl",
        longer=LONGER_FILE,
        rare=RARE_FILE,
    log:
        "logs/data/synthetic_data.log",
    conda:
        "../../envs/analysis.yaml"
    params:
        synthetic=DATA["synthetic"],
    script:
        "../scripts/synthetic_data.py"


# Training data and test sets are prepared by separate rules: a change to `benchmarks`,
# `data.test_fraction` or a test set's settings rewrites only test.jsonl, so it plans test-side
# jobs (test prompt lengths, evaluations, merges, tables) and no model build or training.
# prepare_test also draws the train sample again (the same seeded draw) for the strata table of
# both splits: a train-side change retrains everything anyway.
rule prepare_data:
    input:
        unpack(lambda wildcards: data_source_files("train")),
    output:
        train="results/data/train.jsonl",
        val="results/data/val.jsonl",
    log:
        "logs/data/prepare_data.log",
    conda:
        "../../envs/analysis.yaml"
    params:
        hub=DATA["hub"] if DATA["source"] == "hub" else None,
        train_fraction=DATA["train_fraction"],
        val_size=DATA["val_size"],
        seed=DATA["seed"],
    script:
        "../scripts/prepare_data.py"


rule prepare_test:
    input:
        unpack(lambda wildcards: data_source_files("test")),
    output:
        test="results/data/test.jsonl",
        strata=report(
            "results/data/strata.csv",
            caption="../report/strata_table.rst",
            category="Data",
            labels={"data": "strata table"},
        ),
        figure=report(
            "results/data/strata.png",
            caption="../report/strata.rst",
            category="Data",
            labels={"data": "strata figure"},
        ),
        benchmarks=report(
            "results/data/benchmarks.csv",
            caption="../report/benchmarks.rst",
            category="Data",
            labels={"data": "test sets"},
        ),
    log:
        "logs/data/prepare_test.log",
    conda:
        "../../envs/analysis.yaml"
    params:
        hub=DATA["hub"] if DATA["source"] == "hub" else None,
        train_fraction=DATA["train_fraction"],
        val_size=DATA["val_size"],
        test_fraction=DATA["test_fraction"],
        seed=DATA["seed"],
        benchmarks=BENCHMARKS[1:],
        timeout_s=config["grading"]["timeout_s"],
    script:
        "../scripts/prepare_test.py"


# Prompt lengths per model (each model's own tokenizer and chat template), one model per job so
# that adding a model measures only its own prompts: how many prompts training drops as overlong
# (train jobs depend on it), the longest test prompt (evaluations depend on it, so an evaluation
# setting reruns no training). Each fails before the jobs that depend on it, where they would fail.
rule prompt_lengths:
    input:
        unpack(model_build_input),
        train="results/data/train.jsonl",
        val="results/data/val.jsonl",
    output:
        "results/data/prompt_lengths/{model}/train.csv",
    log:
        "logs/data/prompt_lengths/{model}/train.log",
    conda:
        "../../envs/train-gpu.yaml"
    params:
        model=lambda w: MODELS[w.model]["id"],
        prompt=config["prompt"],
        max_prompt_tokens=config["train"]["max_prompt_tokens"],
    script:
        "../scripts/prompt_lengths.py"


rule test_prompt_lengths:
    input:
        unpack(model_build_input),
        test="results/data/test.jsonl",
    output:
        "results/data/prompt_lengths/{model}/test.csv",
    log:
        "logs/data/prompt_lengths/{model}/test.log",
    conda:
        "../../envs/train-gpu.yaml"
    params:
        model=lambda w: MODELS[w.model]["id"],
        prompt=config["prompt"],
        eval_max_new_tokens={name: b["max_new_tokens"] for name, b in eval_benchmarks().items()},
    script:
        "../scripts/prompt_lengths.py"
