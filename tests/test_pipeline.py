"""The whole DAG end to end on a micro version of the demo (two tiny models, all four
objectives, two training steps), then what a user does next: rerun one cell, touch code,
build the report. Plans of the real study are dry runs."""

import os
import re
import shutil
import time

import pandas as pd
import yaml

from conftest import MICRO, REPO, snakemake

CELL_TRAIN = "results/train/tiny-b/NSR/seed0/metrics.jsonl"


def jobs(dry_run_output: str) -> dict[str, int]:
    """The 'Job stats' table of a dry run as {rule: count}."""
    table = dry_run_output.split("Job stats:")[1].split("total")[0]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", table, re.M)}


def test_study_dry_run_plans_base_evals_and_every_cell():
    res = snakemake("-n", "--cores", "all", "--resources", "gpu=1")
    assert res.returncode == 0, res.stderr
    assert jobs(res.stdout) == {"prepare_data": 1, "prompt_lengths": 1, "train": 3 * 4 * 3, "evaluate_base": 3, "evaluate_cell": 36,
                                "aggregate": 1, "figures": 1, "all": 1}


def test_micro_demo_writes_every_table_and_figure(micro):
    tables = micro / "results/tables"
    final = pd.read_csv(tables / "final_metrics.csv")
    expected = {(m, o) for m in ("tiny-a", "tiny-b") for o in ["base"] + MICRO["objectives"]}
    assert set(zip(final["model"], final["objective"])) == expected and len(final) == len(expected)
    assert final["parameters"].nunique() == 2
    train = pd.read_csv(tables / "train_metrics.csv")
    assert len(train) == 2 * 4 * 3  # cells × steps 0..2
    assert set(train.groupby(["model", "objective"])["step"].apply(tuple)) == {(0, 1, 2)}
    passk = pd.read_csv(tables / "passk.csv")
    assert set(passk["k"]) == {1, 2} and len(passk) == 2 * len(expected)
    breakdown = pd.read_csv(tables / "breakdown.csv")
    assert set(breakdown["by"]) == {"level", "subject"}
    for fig in ("training_curves_smoothed", "final_performance_comparison", "passk_curves", "model_size"):
        for ext in ("png", "svg"):
            assert (micro / f"results/figures/{fig}.{ext}").stat().st_size > 5000, fig


def test_forcerun_one_cell_replans_only_that_cell_and_the_report(micro):
    res = snakemake("-n", "--cores", "2", "-d", micro, "--configfile", micro / "micro.yaml",
                    "--forcerun", CELL_TRAIN)
    assert res.returncode == 0, res.stderr
    assert jobs(res.stdout) == {"train": 1, "evaluate_cell": 1, "aggregate": 1, "figures": 1, "all": 1}
    outputs = [ln.strip() for ln in res.stdout.splitlines() if ln.strip().startswith("output: results/")]
    cells = sorted(o for o in outputs if "results/train/" in o or "results/eval/" in o)
    assert cells == [
        "output: results/eval/tiny-b/NSR/seed0/metrics.json, results/eval/tiny-b/NSR/seed0/problems.jsonl",
        "output: results/train/tiny-b/NSR/seed0/policy, results/train/tiny-b/NSR/seed0/metrics.jsonl",
    ], outputs


def test_touching_code_plans_no_retraining(micro):
    for f in ("src/nsr_study/train.py", "src/nsr_study/evaluate.py", "workflow/scripts/figures.py"):
        os.utime(REPO / f)
    time.sleep(0.01)
    res = snakemake("-n", "--cores", "2", "-d", micro, "--configfile", micro / "micro.yaml")
    assert res.returncode == 0, res.stderr
    assert "Nothing to be done" in res.stdout, res.stdout[-3000:]


def test_runtime_knobs_plan_no_rerun_but_a_hyper_parameter_reruns_every_cell_and_an_objectives_own_only_its(micro):
    def plan(**train):
        cfg = micro / "changed.yaml"
        cfg.write_text(yaml.safe_dump(MICRO | {"train": MICRO["train"] | train}))
        res = snakemake("-n", "--cores", "2", "-d", micro, "--configfile", cfg)
        assert res.returncode == 0, res.stderr
        return res.stdout

    assert "Nothing to be done" in plan(micro_batch_size=2, threads=2, checkpoint_every=2, generation_batch_size=7)
    assert jobs(plan(lr=2.0e-4))["train"] == 8
    assert jobs(plan(per_objective={"NSR": {"lr": 2.0e-4}}))["train"] == 2  # NSR's cells of the two models


def test_a_test_problem_the_model_cannot_hold_stops_the_run_before_any_model_work(micro, tmp_path):
    """evaluate.max_new_tokens 1000 leaves no room in the tiny models' 512 positions: rule
    prompt_lengths fails naming each model and its longest test problem, and no evaluation
    (which the new setting would rerun) starts. On a copy, so the other tests keep their outputs."""
    root = tmp_path / "copy"
    shutil.copytree(micro, root, symlinks=True)
    cfg = root / "long.yaml"
    cfg.write_text(yaml.safe_dump(MICRO | {"evaluate": MICRO["evaluate"] | {"max_new_tokens": 1000}}))
    res = snakemake("--cores", "2", "-d", root, "--configfile", cfg)
    out = res.stdout + res.stderr
    assert res.returncode != 0
    log = (root / "logs/data/prompt_lengths.log").read_text()
    for model in ("tiny-a", "tiny-b"):
        assert re.search(rf"model {model}: test problem test-\d+: its prompt has \d+ tokens, which with "
                         r"evaluate.max_new_tokens = 1000 exceeds the model's context of 512 tokens", log), log
    assert "rule prompt_lengths" in out and not re.search(r"rule (evaluate_base|evaluate_cell|train):", out), out


def test_report_holds_every_figure_and_caption(micro):
    res = snakemake("--cores", "1", "-d", micro, "--configfile", micro / "micro.yaml",
                    "--report", micro / "report.html", timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    html = (micro / "report.html").read_text(errors="replace")
    for name in ("training_curves_smoothed", "final_performance_comparison", "passk_curves", "model_size",
                 "final_metrics.csv", "strata.png"):
        assert name in html, name
    assert "Does training trade breadth for precision?" in html
