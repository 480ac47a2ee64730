# Evaluate stage: each base model once (shared by all its cells) and each trained cell, on the
# sampled test set. `shell: python -m` for the same reason as the train rule.

EVAL_CMD = (
    "python -m nsr_study.evaluate --model {params.model} --test {input.test} --config {params.cfg:q}"
    " --metrics {output.metrics} --problems {output.problems} --threads {threads} --gpus {resources.gpu} --ranks {resources.ranks}"
    " --log {log}"
    " --runtime " + runtime_arg(EVAL_RUNTIME)
)


rule evaluate_base:
    input:
        unpack(model_build_input),
        test="results/data/test.jsonl",
        prompt_lengths="results/data/prompt_lengths.csv",
    output:
        metrics="results/eval/{model}/base/metrics.json",
        problems="results/eval/{model}/base/problems.jsonl",
    log:
        "logs/eval/{model}/base.log",
    benchmark:
        "benchmarks/eval/{model}/base.tsv"
    conda:
        "../../envs/train-gpu.yaml"
    threads: config["train"]["threads"]
    resources:
        gpu=gpus_per_cell,
        ranks=ranks,
    params:
        model=lambda w: MODELS[w.model]["id"],
        cfg=lambda w: eval_config(w, "base", None),
    shell:
        EVAL_CMD


rule evaluate_cell:
    input:
        policy=cell_path("train", "policy"),
        test="results/data/test.jsonl",
        prompt_lengths="results/data/prompt_lengths.csv",
    output:
        metrics=cell_path("eval", "metrics.json"),
        problems=cell_path("eval", "problems.jsonl"),
    log:
        f"logs/eval/{CELL}.log",
    benchmark:
        f"benchmarks/eval/{CELL}.tsv"
    conda:
        "../../envs/train-gpu.yaml"
    threads: config["train"]["threads"]
    resources:
        gpu=gpus_per_cell,
        ranks=ranks,
    params:
        model=lambda w, input: input.policy,
        cfg=lambda w: eval_config(w, w.objective, int(w.seed)),
    shell:
        EVAL_CMD
