"""The whole DAG end to end on a micro version of the demo (two tiny models, all four
objectives, two training steps), then what a user does next: rerun one cell, touch code,
build the report. Plans of the real study are dry runs."""

import json
import os
import re
import shutil
import time
from datetime import datetime
from itertools import combinations

import pandas as pd
import yaml

import pytest

from conftest import MICRO, MICRO_GPUS, MICRO_MISSING, REPO, snakemake
from nsr_study.cost import count_benchmark_problems, shard_count

CELL_TRAIN = "results/train/tiny-b/NSR/seed0/metrics.jsonl"
BENCHMARKS = [b["name"] for b in MICRO["benchmarks"]]  # math, and AIME 2025 and AMC 23 where ../shared has them


def shards(size: int) -> int:
    """Shards per micro evaluation with ``evaluate.shard_size`` = size: 20 sampled test problems
    and every other test set's rows."""
    return shard_count(20 + count_benchmark_problems(MICRO["benchmarks"], MICRO["data"]), size)


def jobs(dry_run_output: str) -> dict[str, int]:
    """The 'Job stats' table of a dry run as {rule: count}."""
    table = dry_run_output.split("Job stats:")[1].split("total")[0]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", table, re.M)}


def test_study_dry_run_plans_base_evals_and_every_cell():
    res = snakemake("-n", "--cores", "all", "--resources", "gpu=1")
    assert res.returncode == 0, res.stderr
    k = 20  # 1,250 test problems in shards of 64 (evaluate.shard_size)
    assert jobs(res.stdout) == {"prepare_data": 1, "prepare_test": 1, "prompt_lengths": 3, "test_prompt_lengths": 3, "train": 3 * 4 * 3,
                                "evaluate_base": 3 * k, "evaluate_cell": 36 * k, "merge_evaluation": 3 + 36,
                                "aggregate": 1, "figures": 1, "findings": 1, "all": 1}


def test_micro_demo_writes_every_table_and_figure(micro):
    tables = micro / "results/tables"
    final = pd.read_csv(tables / "final_metrics.csv")
    expected = {(b, m, o) for b in BENCHMARKS for m in ("tiny-a", "tiny-b") for o in ["base"] + MICRO["objectives"]}
    assert set(zip(final["benchmark"], final["model"], final["objective"])) == expected
    assert len(final) == len(expected) and final["parameters"].nunique() == 2
    train = pd.read_csv(tables / "train_metrics.csv")
    assert len(train) == 2 * 4 * 3  # cells × steps 0..2
    assert set(train.groupby(["model", "objective"])["step"].apply(tuple)) == {(0, 1, 2)}
    passk = pd.read_csv(tables / "passk.csv")
    assert set(passk["k"]) == {1, 2} and len(passk) == 2 * len(expected)
    breakdown = pd.read_csv(tables / "breakdown.csv")
    assert set(breakdown["by"]) == {"level", "subject"} and set(breakdown["benchmark"]) == set(BENCHMARKS)
    for fig in ("training_curves_smoothed", "final_performance_comparison", "passk_curves", "model_size",
                "findings_verdicts"):
        for ext in ("png", "svg"):
            assert (micro / f"results/figures/{fig}.{ext}").stat().st_size > 5000, fig


def test_micro_demo_tests_every_claim_on_both_models(micro):
    from nsr_study.findings import CLAIMS, VERDICTS

    findings = pd.read_csv(micro / "results/tables/findings.csv")
    assert set(zip(findings["benchmark"], findings["claim"], findings["model"])) == {
        (b, c, m) for b in BENCHMARKS for c in CLAIMS for m in ("tiny-a", "tiny-b")}
    assert set(findings["verdict"]) <= set(VERDICTS) and (findings["lo"] <= findings["hi"]).all()
    assert findings.groupby("benchmark")["problems"].unique().map(list).to_dict() == {
        b: [p] for b, p in {"math": 20, "aime2025": 30, "amc23": 40}.items() if b in BENCHMARKS}
    assert set(findings["k_max"]) == {2}
    trend = pd.read_csv(micro / "results/tables/findings_trend.csv")
    assert sorted(trend["claim"]) == sorted(list(CLAIMS) * 2 * len(BENCHMARKS)) and set(trend["models"]) == {2}
    assert set(trend["axis"]) == {"log10 parameters", "base pass@1"}
    assert set(findings["covers"]) == {"test problems only (one seed)"} and set(findings["verdict_holm"]) <= set(VERDICTS)
    front = (micro / "results/report/front_page.rst").read_text()
    assert front.startswith("Negative vs positive reinforcement") and "11 of the paper's claims × 2 models = 22 verdicts" in front


def test_micro_demo_reads_the_competition_sets_and_reports_them_per_set(micro):
    """AIME 2025 and AMC 23 (local files from ../shared) beside the synthetic sample: every gold
    parses, each set has its rows in every table and its own row of panels in the figures, and
    the breakdown says that they have no levels or subjects."""
    if MICRO_MISSING:
        pytest.skip("; ".join(MICRO_MISSING))
    sets = pd.read_csv(micro / "results/data/benchmarks.csv").set_index("benchmark")
    assert sets["problems"].to_dict() == {"math": 20, "aime2025": 30, "amc23": 40} and (sets["dropped"] == 0).all()
    test = [json.loads(line) for line in (micro / "results/data/test.jsonl").read_text().splitlines()]
    assert [r["benchmark"] for r in test] == ["math"] * 20 + ["aime2025"] * 30 + ["amc23"] * 40
    problems = [json.loads(line) for line in (micro / "results/eval/tiny-a/NSR/seed0/problems.jsonl").open()]
    assert [r["benchmark"] for r in problems] == [r["benchmark"] for r in test]
    passk = pd.read_csv(micro / "results/tables/passk.csv")
    assert passk.groupby("benchmark").size().to_dict() == {b: 2 * 5 * 2 for b in BENCHMARKS}  # models × evals × k
    breakdown = pd.read_csv(micro / "results/tables/breakdown.csv")
    comp = breakdown[breakdown["benchmark"] != "math"]
    assert set(comp["group"]) == {"(none: this test set has no levels)", "(none: this test set has no subjects)"}
    from PIL import Image

    for fig in ("passk_curves", "final_performance_comparison", "model_size"):
        with Image.open(micro / f"results/figures/{fig}.png") as png:
            assert png.height > 2 * 3.8 * 130, fig  # three rows of panels (≥ 3.8 in at 130 dpi each), one per set
    front = (micro / "results/report/front_page.rst").read_text()
    assert all(f"Findings on {b}" in front for b in BENCHMARKS)


CLAIMED = re.compile(r"GPU (\S+) claimed by pid (\d+) \((.+?)\) at (\S+) after waiting")
EXITED = re.compile(r"GPU (\S+) held by pid (\d+) until its exit at (\S+)")


def test_gpu_jobs_held_distinct_gpus_side_by_side(micro):
    """The micro run had 28 GPU jobs (8 trainings, 10 evaluations of 2 shards with ../shared's test sets), two cores and two
    (made-up) GPUs: from each job's log, the GPU it claimed and from when to when; jobs that ran
    at the same time held different GPUs, each GPU was used, and the outputs name the job's GPU."""
    held, k = [], shards(MICRO["evaluate"]["shard_size"])
    shard_logs = sorted((micro / "logs/eval").rglob("shard*.log"))
    for path in sorted((micro / "logs/train").rglob("*.log")) + shard_logs:
        text = path.read_text()
        claimed, exited = CLAIMED.search(text), EXITED.search(text)
        assert claimed and exited and claimed[1] == exited[1] and claimed[2] == exited[2], path
        job = path.relative_to(micro / "logs").with_suffix("")  # train/tiny-a/NSR/seed0, eval/tiny-a/base, …
        held.append((claimed[1], datetime.fromisoformat(claimed[4]), datetime.fromisoformat(exited[3]), job))
        if job.parts[0] == "train":
            records = [json.loads(ln) for ln in (micro / "results" / job / "metrics.jsonl").read_text().splitlines()]
            assert {(r["gpus"], r["device"]) for r in records} == {(claimed[1], "cpu")}, job
            assert claimed[0] in (micro / "work" / job.relative_to("train") / "attempts/attempt-1.log").read_text()
        else:  # eval/<evaluation>/shard<k>: the shard's output names its GPU
            shard = micro / "results" / job.parent / f"shards/{job.name.removeprefix('shard')}-of-{k}.json"
            facts = json.loads(shard.read_text())["facts"]
            assert (facts["gpus"], facts["device"]) == (claimed[1], "cpu"), job
    assert len(held) == 2 * 4 + (2 + 2 * 4) * k
    assert {gpu for gpu, *_ in held} == set(MICRO_GPUS)
    together = [(a, b) for a, b in combinations(held, 2) if a[1] < b[2] and b[1] < a[2]]
    assert together, "no two GPU jobs ran at the same time, so this run shows nothing"
    assert [(a[3], b[3]) for a, b in together if a[0] == b[0]] == []


def test_forcerun_one_cell_replans_only_that_cell_and_the_report(micro):
    res = snakemake("-n", "--cores", "2", "-d", micro, "--configfile", micro / "micro.yaml",
                    "--forcerun", CELL_TRAIN)
    assert res.returncode == 0, res.stderr
    k = shards(MICRO["evaluate"]["shard_size"])
    assert jobs(res.stdout) == {"train": 1, "evaluate_cell": k, "merge_evaluation": 1, "aggregate": 1, "figures": 1,
                                "findings": 1, "all": 1}
    outputs = [ln.strip() for ln in res.stdout.splitlines() if ln.strip().startswith("output: results/")]
    cells = sorted(o for o in outputs if "results/train/" in o or "results/eval/" in o)
    assert cells == [
        "output: results/eval/tiny-b/NSR/seed0/metrics.json, results/eval/tiny-b/NSR/seed0/problems.jsonl",
        *(f"output: results/eval/tiny-b/NSR/seed0/shards/{i}-of-{k}.json" for i in range(k)),
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


TINY_C = {"name": "tiny-c", "id": "results/models/tiny-c", "tiny": MICRO["models"][0]["tiny"]}
REPORT = {"aggregate": 1, "figures": 1, "findings": 1, "all": 1}


def test_a_change_plans_only_the_jobs_whose_inputs_it_changes(micro):
    """Dry runs on the finished micro run (2 models × 4 objectives × 1 seed, evaluations in 2
    shards), one per kind of change, counted per rule. A model, seed or objective plans only its
    own jobs; an evaluation setting reruns every evaluation but no training; the shard size
    re-plans the shards (the results would be the same: per-problem seeds). Dropping an objective
    plans no cell: the others' jobs never read the objective list."""
    def plan(**changes):
        cfg = micro / "changed.yaml"
        cfg.write_text(yaml.safe_dump(MICRO | changes))
        res = snakemake("-n", "--cores", "2", "-d", micro, "--configfile", cfg)
        assert res.returncode == 0, res.stderr
        return jobs(res.stdout)

    k = shards(MICRO["evaluate"]["shard_size"])
    assert plan(models=MICRO["models"] + [TINY_C]) == REPORT | {
        "build_tiny_model": 1, "prompt_lengths": 1, "test_prompt_lengths": 1, "train": 4, "evaluate_base": k,
        "evaluate_cell": 4 * k, "merge_evaluation": 1 + 4}
    assert plan(seeds=[0, 1]) == REPORT | {"train": 8, "evaluate_cell": 8 * k, "merge_evaluation": 8}
    assert plan(objectives=["GRPO", "PSR", "NSR"]) == REPORT
    assert plan(evaluate=MICRO["evaluate"] | {"max_new_tokens": 12}) == REPORT | {
        "test_prompt_lengths": 2, "evaluate_base": 2 * k, "evaluate_cell": 8 * k, "merge_evaluation": 10}
    assert plan(evaluate=MICRO["evaluate"] | {"shard_size": 200}) == REPORT | {
        "evaluate_base": 2 * shards(200), "evaluate_cell": 8 * shards(200), "merge_evaluation": 10}


def plan_with(micro, **changes) -> dict[str, int]:
    """Jobs of a dry run on the finished micro run with ``changes`` to its config."""
    cfg = micro / "changed.yaml"
    cfg.write_text(yaml.safe_dump(MICRO | changes))
    res = snakemake("-n", "--cores", "2", "-d", micro, "--configfile", cfg)
    assert res.returncode == 0, res.stderr
    return {} if "Nothing to be done" in res.stdout else jobs(res.stdout)


def test_a_test_set_is_added_or_resampled_without_retraining(micro):
    """Issue 34: prepare_data's params held the test sets, and it rewrote train.jsonl, so adding
    a test set planned 3 build_tiny_model and 12 train jobs on the demo. Now only the test side:
    prepare_test, the test prompt lengths, every evaluation (test.jsonl changed), merges, report."""
    longer = sum(1 for _ in open(micro / "results/data/synthetic/longer.jsonl"))
    others = count_benchmark_problems(MICRO["benchmarks"], MICRO["data"])

    def test_side(problems):
        k = shard_count(problems, MICRO["evaluate"]["shard_size"])
        return REPORT | {"prepare_test": 1, "test_prompt_lengths": 2, "evaluate_base": 2 * k, "evaluate_cell": 8 * k,
                         "merge_evaluation": 10}

    added = {"name": "longer", "local": "results/data/synthetic/longer.jsonl", "gold": "solution"}
    assert plan_with(micro, benchmarks=MICRO["benchmarks"] + [added]) == test_side(20 + others + longer)
    assert plan_with(micro, data=MICRO["data"] | {"test_fraction": 0.3}) == test_side(30 + others)
    assert plan_with(micro, data=MICRO["data"] | {"val_size": 10})["train"] == 8  # the train side still retrains


@pytest.fixture
def edited(micro):
    """Append a comment to a module of the checkout, restored (bytes and times) afterwards."""
    saved = []

    def edit(module: str):
        path = REPO / "src" / "nsr_study" / f"{module}.py"
        saved.append((path, path.read_bytes(), path.stat()))
        path.write_bytes(saved[-1][1] + b"\n# an edit (tests/test_pipeline.py)\n")

    yield edit
    for path, text, st in saved:
        path.write_bytes(text)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.mark.parametrize("module", ["intervals", "findings"])
def test_editing_the_statistics_reruns_the_findings_and_nothing_upstream(micro, edited, module):
    """Issue 34: rules ran `python -m`/`script:` without the code trigger, so an edit of the
    statistics left the old verdicts in findings.csv. Their params hold the source hash of the
    modules they run (nsr_study.sources): the findings and the figures (which draw the claims)
    rerun, no training, evaluation or merge."""
    assert plan_with(micro) == {}
    edited(module)
    assert plan_with(micro) == {"findings": 1, "figures": 1, "all": 1}


def test_a_test_problem_the_model_cannot_hold_stops_the_run_before_any_model_work(micro, tmp_path):
    """evaluate.max_new_tokens 2000 leaves no room in the tiny models' 2048 positions: rule
    prompt_lengths fails naming each model and its longest test problem, and no evaluation
    (which the new setting would rerun) starts. On a copy, so the other tests keep their outputs."""
    root = tmp_path / "copy"
    shutil.copytree(micro, root, symlinks=True)
    cfg = root / "long.yaml"
    cfg.write_text(yaml.safe_dump(MICRO | {"evaluate": MICRO["evaluate"] | {"max_new_tokens": 2000}}))
    res = snakemake("--cores", "2", "-d", root, "--configfile", cfg)
    out = res.stdout + res.stderr
    assert res.returncode != 0
    for model in ("tiny-a", "tiny-b"):
        log = (root / f"logs/data/prompt_lengths/{model}/test.log").read_text()
        assert re.search(rf"model {model}: test problem test-\d+: its prompt has \d+ tokens, which with "
                         r"evaluate.max_new_tokens = 2000 exceeds the model's context of 2048 tokens", log), log
    assert "rule test_prompt_lengths" in out and not re.search(r"rule (evaluate_base|evaluate_cell|train):", out), out


def test_report_holds_every_figure_and_caption(micro):
    res = snakemake("--cores", "1", "-d", micro, "--configfile", micro / "micro.yaml",
                    "--report", micro / "report.html", timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    html = (micro / "report.html").read_text(errors="replace")
    for name in ("training_curves_smoothed", "final_performance_comparison", "passk_curves", "model_size",
                 "final_metrics.csv", "strata.png", "findings.csv", "findings_trend.csv", "findings_verdicts"):
        assert name in html, name
    assert "Does training trade breadth for precision?" in html
    assert "2 models = 22 verdicts, each from its own 95 % interval" in html  # the front page
