# Models stage: the demo's tiny Qwen2-architecture models, built locally with a short SFT
# prior (nsr_study.tiny). Real models are hub ids and need no rule.


rule build_tiny_model:
    input:
        train="results/data/train.jsonl",
        val="results/data/val.jsonl",
    output:
        directory("results/models/{model}"),
    log:
        "logs/models/{model}.log",
    benchmark:
        "benchmarks/models/{model}.tsv"
    # every job of a model waits on its build: all builds first, or a build left for later runs
    # alone on the critical path (the demo once started tiny-m's SFT at 343 s of 557, a core idle)
    priority: 1
    conda:
        "../../envs/train-gpu.yaml"
    threads: 1
    params:
        spec=lambda w: MODELS[w.model]["tiny"],
        prompt=config["prompt"],
        seed=0,  # fixed artefacts like a hub revision; the study's seeds vary the RL runs only
        grading_workers=config["grading"]["workers"],
    script:
        "../scripts/build_tiny_model.py"
