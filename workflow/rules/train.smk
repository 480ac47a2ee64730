# Train stage: one job per (model × objective × seed) cell.
# `shell: python -m` (not `script:`), so editing or touching code never re-plans training;
# the cell's config is a param, so changing a hyper-parameter does; runtime-only knobs
# (threads, batch sizes) and the trackers (report.trackers) are part of the command, so changing
# them does not.

TRACKERS = config["report"]["trackers"]
TRAIN_CMD = (
    "python -m nsr_study train --cell {params.cell:q} --train {input.train} --val {input.val}"
    " --policy {output.policy} --metrics {output.metrics} --work {params.work}"
    " --tensorboard {params.tensorboard} --threads {threads} --gpus {resources.gpu} --ranks {resources.ranks} --log {log}"
    f" --trackers {' '.join(TRACKERS)} --tracker-project {shlex.quote(config['report']['tracker_project'])}"
    " --runtime " + runtime_arg(config["train"])
)


rule train:
    input:
        unpack(model_build_input),
        train="results/data/train.jsonl",
        val="results/data/val.jsonl",
        prompt_lengths="results/data/prompt_lengths/{model}/train.csv",
    output:
        policy=directory(cell_path("train", "policy")),
        metrics=cell_path("train", "metrics.jsonl"),
    log:
        f"logs/train/{CELL}.log",
    benchmark:
        f"benchmarks/train/{CELL}.tsv"
    conda:
        "../../envs/train-gpu.yaml"
    threads: config["train"]["threads"]
    resources:
        gpu=gpus_per_cell,
        ranks=ranks,
        runtime=lambda w: RUNTIME_MINUTES["train"][w.model],
        mem_mb=lambda w: MEM_MB["train"][w.model],
    params:
        cell=cell_config,
        work=f"work/{CELL}",
        tensorboard=cell_path("tensorboard"),
    shell:
        TRAIN_CMD
