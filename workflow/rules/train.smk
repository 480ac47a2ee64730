# Train stage: one job per (model × objective × seed) cell.
# `shell: python -m` (not `script:`), so editing or touching code never re-plans training;
# the cell's whole config is a param, so changing a hyper-parameter does.


rule train:
    input:
        unpack(model_build_input),
        train="results/data/train.jsonl",
        val="results/data/val.jsonl",
    output:
        policy=directory(cell_path("train", "policy")),
        metrics=cell_path("train", "metrics.jsonl"),
    params:
        cell=cell_config,
        work=f"work/{CELL}",
        tensorboard=cell_path("tensorboard"),
    threads: config["train"]["threads"]
    resources:
        gpu=gpus_per_cell(),
    log:
        f"logs/train/{CELL}.log",
    benchmark:
        f"benchmarks/train/{CELL}.tsv"
    conda:
        "../../envs/train-gpu.yaml"
    shell:
        "python -m nsr_study.train --cell {params.cell:q} --train {input.train} --val {input.val}"
        " --policy {output.policy} --metrics {output.metrics} --work {params.work}"
        " --tensorboard {params.tensorboard} --threads {threads} --log {log}"
