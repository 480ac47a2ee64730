# Report stage: tidy CSVs from every log, figures from the CSVs only, report captions.


rule aggregate:
    input:
        train=train_targets(),
        evals=eval_targets(),
        problems=eval_problems(),
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
        code=code("nsr_study.aggregate", "nsr_study.logs", script="aggregate.py"),
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
        code=code("nsr_study.figures", "nsr_study.logs", script="figures.py"),
    script:
        "../scripts/figures.py"


rule findings:
    input:
        final="results/tables/final_metrics.csv",
        problems=eval_problems(),
        front_page=FRONT_PAGE_TEMPLATE,
    output:
        **{
            f"figure_{ext}": report(
                f"results/figures/findings_verdicts.{ext}",
                caption="../report/findings_verdicts.rst",
                category="Findings",
                labels={"findings": "verdict figure", "format": ext},
            )
            for ext in ("png", "svg")
        },
        findings=report(
            "results/tables/findings.csv",
            caption="../report/findings.rst",
            category="Findings",
            labels={"findings": "verdicts per claim and model"},
        ),
        trend=report(
            "results/tables/findings_trend.csv",
            caption="../report/findings_trend.rst",
            category="Findings",
            labels={"findings": "trend over model size and prior"},
        ),
        front_page=FRONT_PAGE,
    log:
        "logs/report/findings.log",
    conda:
        "../../envs/analysis.yaml"
    params:
        labels=eval_labels(),
        benchmarks=[b["name"] for b in BENCHMARKS],
        confidence=config["report"]["findings"]["confidence"],
        margin=config["report"]["findings"]["noninferiority_margin"],
        code=code("nsr_study.findings", "nsr_study.figures", "nsr_study.data", "nsr_study.logs", script="findings.py"),
    script:
        "../scripts/findings.py"


# A run of the paper's own model: our pass@k beside the paper's Table 1 (nsr_study.paper).
rule paper_comparison:
    input:
        passk="results/tables/passk.csv",
    output:
        **{
            f"figure_{ext}": report(
                f"results/figures/paper_comparison_{{model}}.{ext}",
                caption="../report/paper_comparison.rst",
                category="Paper",
                subcategory="{model}",
                labels={"paper": "figure", "format": ext},
            )
            for ext in ("png", "svg")
        },
        table=report(
            "results/tables/paper_comparison_{model}.csv",
            caption="../report/paper_comparison.rst",
            category="Paper",
            subcategory="{model}",
            labels={"paper": "Table 1 beside ours"},
        ),
    log:
        "logs/report/paper_comparison_{model}.log",
    conda:
        "../../envs/analysis.yaml"
    params:
        confidence=config["report"]["findings"]["confidence"],
        code=code("nsr_study.paper", "nsr_study.logs", script="paper_comparison.py"),
    script:
        "../scripts/paper_comparison.py"


# The positive control's mechanism (data.synthetic.task strategies): which strategy the samples
# of every evaluation use, per test set (nsr_study.aggregate.strategy_table, figures.strategy_share).
rule strategy_share:
    input:
        problems=eval_problems(),
    output:
        **{
            f"figure_{ext}": report(
                f"results/figures/strategy_share.{ext}",
                caption="../report/strategy_share.rst",
                category="Positive control",
                labels={"control": "strategy share figure", "format": ext},
            )
            for ext in ("png", "svg")
        },
        table=report(
            "results/tables/strategy_share.csv",
            caption="../report/strategy_share.rst",
            category="Positive control",
            labels={"control": "strategy share table"},
        ),
    log:
        "logs/report/strategy_share.log",
    conda:
        "../../envs/analysis.yaml"
    params:
        labels=eval_labels(),
        objectives=OBJECTIVES,
    script:
        "../scripts/strategy_share.py"
