# Evaluate stage: each base model once (shared by all its cells) and each trained cell, on the
# sampled test set, in shards of test problems (evaluate.shard_size): one job per shard, so a
# killed evaluation keeps its finished shards and one evaluation's shards run on several GPUs at
# once; merge_evaluation combines them. `shell: python -m` for the same reason as the train rule.

EVAL_CMD = (
    "python -m nsr_study evaluate --model {params.model} --test {input.test} --shard {params.shard}"
    " --config {params.cfg:q} --out {output} --threads {threads} --gpus {resources.gpu} --ranks {resources.ranks} --log {log}"
    " --runtime " + runtime_arg(EVAL_RUNTIME)
)


rule evaluate_base:
    input:
        unpack(model_build_input),
        test="results/data/test.jsonl",
        prompt_lengths="results/data/prompt_lengths/{model}/test.csv",
    output:
        shard_path("results/eval/{model}/base"),
    log:
        "logs/eval/{model}/base/shard{shard}.log",
    benchmark:
        "benchmarks/eval/{model}/base/shard{shard}.tsv"
    conda:
        "../../envs/train-gpu.yaml"
    threads: config["train"]["threads"]
    resources:
        gpu=gpus_per_cell,
        ranks=ranks,
        runtime=lambda w: RUNTIME_MINUTES["evaluate_base"][w.model],
        mem_mb=lambda w: MEM_MB["evaluate_base"][w.model],
    params:
        model=lambda w: MODELS[w.model]["id"],
        cfg=lambda w: eval_config(w.model, "base", None),
        shard=lambda w: f"{w.shard}/{SHARDS}",
    shell:
        EVAL_CMD


rule evaluate_cell:
    input:
        policy=cell_path("train", "policy"),
        test="results/data/test.jsonl",
        prompt_lengths="results/data/prompt_lengths/{model}/test.csv",
    output:
        shard_path(cell_path("eval")),
    log:
        f"logs/eval/{CELL}/shard{{shard}}.log",
    benchmark:
        f"benchmarks/eval/{CELL}/shard{{shard}}.tsv"
    conda:
        "../../envs/train-gpu.yaml"
    threads: config["train"]["threads"]
    resources:
        gpu=gpus_per_cell,
        ranks=ranks,
        runtime=lambda w: RUNTIME_MINUTES["evaluate_cell"][w.model],
        mem_mb=lambda w: MEM_MB["evaluate_cell"][w.model],
    params:
        model=lambda w, input: input.policy,
        cfg=lambda w: eval_config(w.model, w.objective, int(w.seed)),
        shard=lambda w: f"{w.shard}/{SHARDS}",
    shell:
        EVAL_CMD


# One evaluation's shards → its metrics.json and problems.jsonl (a pure function of the shards'
# rows: equal to an unsharded evaluation, problem by problem).
rule merge_evaluation:
    input:
        lambda w: [shard_path(f"results/eval/{w.model}/{w.run}").format(shard=k) for k in range(SHARDS)],
    output:
        metrics="results/eval/{model}/{run}/metrics.json",
        problems="results/eval/{model}/{run}/problems.jsonl",
    log:
        "logs/eval/{model}/{run}/merge.log",
    conda:
        "../../envs/train-gpu.yaml"
    params:
        cfg=lambda w: eval_config(w.model, *run_label(w.run)),
        code=code("nsr_study.summary"),
    shell:
        "python -m nsr_study summary --config {params.cfg:q} --metrics {output.metrics}"
        " --problems {output.problems} --log {log} {input}"
