# Report stage: tidy CSVs from every log, figures from the CSVs only, report captions.


rule aggregate:
    input:
        train=train_targets(),
        evals=eval_targets(),
    output:
        **{t: f"results/tables/{t}.csv" for t in TABLES if t != "final_metrics"},
        final_metrics=report(
            "results/tables/final_metrics.csv",
            caption="../report/final_metrics.rst",
            category="Tables",
        ),
    params:
        train_labels=[
            {"model": m, "objective": o, "seed": s} for m in MODELS for o in OBJECTIVES for s in SEEDS
        ],
    log:
        "logs/report/aggregate.log",
    conda:
        "../../envs/analysis.yaml"
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
    params:
        objectives=OBJECTIVES,
        window=config["report"]["smoothing_window"],
    log:
        "logs/report/figures.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/figures.py"
