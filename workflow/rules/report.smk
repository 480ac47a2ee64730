# Report stage: tidy CSVs from every log, figures from the CSVs only, report captions.


rule aggregate:
    input:
        train=train_targets(),
        evals=eval_targets(),
        problems=[p.replace("metrics.json", "problems.jsonl") for p in eval_targets()],
    output:
        **{
            t: report(f"results/tables/{t}.csv", caption=f"../report/{t}.rst", category="Tables", labels={"table": t})
            for t in TABLES
        },
    log:
        "logs/report/aggregate.log",
    conda:
        "../../envs/analysis.yaml"
    params:
        train_labels=[{"model": m, "objective": o, "seed": s} for m in MODELS for o in OBJECTIVES for s in SEEDS],
    script:
        "../scripts/aggregate.py"


rule figures:
    input:
        **{t: f"results/tables/{t}.csv" for t in ("train_metrics", "final_metrics", "passk")},
    output:
        **{
            f"{f}_{ext}": report(
                f"results/figures/{f}.{ext}",
                caption=f"../report/{f}.rst",
                category="Figures",
                labels={"figure": f, "format": ext},
            )
            for f in FIGURES
            for ext in ("png", "svg")
        },
    log:
        "logs/report/figures.log",
    conda:
        "../../envs/analysis.yaml"
    params:
        objectives=OBJECTIVES,
        window=config["report"]["smoothing_window"],
    script:
        "../scripts/figures.py"
