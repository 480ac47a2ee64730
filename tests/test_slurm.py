"""SLURM: how the profiles are read (always), and the micro demo on a real single-node
cluster started by ops/slurm-local/up.sh (NSR_TEST_SLURM=1, root, ~10 min on 2 cores; .ci/run
sets it when it runs as root).

Profile facts are checked through Snakemake's own command-line parser, so a Snakemake that
reads profiles differently fails here rather than on a user's cluster."""

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import MICRO, REPO, snakemake
from nsr_study.checkpoint import checkpoints

pytest.importorskip("snakemake_executor_plugin_slurm", reason="pip install snakemake-executor-plugin-slurm")
from snakemake.cli import parse_args  # noqa: E402  (after the skip: parsing `executor: slurm` needs the plugin)

LOCAL = ["--profile", "profiles/slurm", "--workflow-profile", "ops/slurm-local"]
GPU_RULES = ("train", "evaluate_base", "evaluate_cell")


def parsed(argv, monkeypatch):
    """The arguments Snakemake would run with, for `snakemake <argv>` typed in the repository."""
    monkeypatch.chdir(REPO)
    return parse_args([str(a) for a in argv])[1]


def readme_slurm_commands() -> list[list[str]]:
    """Every `snakemake … profiles/slurm …` command line of the README and docs/running.md."""
    lines = "\n".join((REPO / f).read_text() for f in ("README.md", "docs/running.md")).splitlines()
    return [ln.split("#")[0].split()[1:] for ln in lines if re.match(r"\s*snakemake .*profiles/slurm", ln)]


def test_readme_runs_slurm_without_the_default_profiles_gpu_cap(monkeypatch):
    commands = readme_slurm_commands()
    assert commands, "README.md and docs/running.md show no `snakemake … profiles/slurm` command"
    for argv in commands:
        args = parsed(argv, monkeypatch)
        assert args.executor == "slurm", argv
        assert "gpu" not in args.resources, f"{argv}: GPU jobs capped at {args.resources['gpu']} at a time"


def test_profile_flag_alone_would_serialise_gpu_jobs(monkeypatch):
    """Why the README says --workflow-profile: profiles/default is loaded beside --profile, and wins."""
    args = parsed(["--profile", "profiles/slurm"], monkeypatch)
    assert args.executor == "slurm" and args.resources["gpu"].value == 1


def test_slurm_profile_keeps_the_default_profiles_rerun_rules():
    default = yaml.safe_load((REPO / "profiles/default/profile.yaml").read_text())
    slurm = yaml.safe_load((REPO / "profiles/slurm/profile.yaml").read_text())
    assert {k: slurm.get(k) for k in default if k != "resources"} == {k: v for k, v in default.items() if k != "resources"}
    assert slurm["retries"] >= 1 and slurm["latency-wait"] >= 30


def test_slurm_runtime_of_gpu_rules_comes_from_the_plan(monkeypatch):
    """The SLURM profile sets no runtime for the GPU rules, so each rule's own resource applies:
    the plan's estimate per model with a margin (nsr_study.cost.rule_minutes)."""
    args = parsed(["--workflow-profile", "profiles/slurm"], monkeypatch)
    assert all("runtime" not in args.set_resources[rule] for rule in GPU_RULES)
    text = (REPO / "workflow/rules/train.smk").read_text() + (REPO / "workflow/rules/evaluate.smk").read_text()
    assert text.count('runtime=lambda w: RUNTIME_MINUTES["') == len(GPU_RULES)


def test_local_overlay_maps_gpu_rules_to_one_gpu_slot_each(monkeypatch):
    args = parsed(LOCAL, monkeypatch)
    assert args.executor == "slurm" and "gpu" not in args.resources
    for rule in GPU_RULES:
        res = args.set_resources[rule]
        assert res["gpu"].value == 1 and args.set_threads[rule].value == 1, rule
    assert "slurm_account" in args.default_resources


# ---------------------------------------------------------------- on a real cluster


# A mark, not a fixture's skip: the session's local micro demo would be built first otherwise.
on_cluster = pytest.mark.skipif(
    not os.environ.get("NSR_TEST_SLURM") or os.geteuid() != 0,
    reason="the micro demo through SLURM takes ~10 min on 2 cores and starts daemons: run as root with NSR_TEST_SLURM=1",
)


@pytest.fixture(scope="module")
def cluster():
    """The local cluster of ops/slurm-local/up.sh, or a skip saying why it is not there."""
    if not (shutil.which("slurmctld") or shutil.which("apt-get")):
        pytest.skip("no SLURM packages and no apt-get to install them")
    res = subprocess.run(["bash", REPO / "ops/slurm-local/up.sh"], capture_output=True, text=True, timeout=900)
    if res.returncode != 0:
        pytest.skip(f"SLURM could not be started: {res.stderr[-2000:]}")
    return True


def run_on_slurm(workdir: Path, *targets, configs=("micro.yaml",), extra=(), log: Path, watch=None) -> int:
    """`snakemake --profile profiles/slurm --workflow-profile ops/slurm-local` on the micro demo,
    at nice 10 (the jobs inherit it: PropagatePrioProcess). ``watch(log_text)`` is polled while it runs.
    SIGINT is given back its default action in the child: a shell without job control (CI run in
    the background, nohup) starts its children with SIGINT ignored, and Snakemake would then wait
    forever for a job the watcher cancelled instead of stopping at the watcher's Ctrl-C."""
    cmd = ["nice", "-n", "10", sys.executable, "-m", "snakemake", "-s", REPO / "Snakefile", *LOCAL, *targets,
           "-d", workdir, *extra, "--configfile", *(workdir / c for c in configs)]
    with open(log, "w") as out:
        proc = subprocess.Popen([str(c) for c in cmd], cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        while proc.poll() is None:
            if watch:
                watch(log.read_text(), proc)
            time.sleep(0.5)
    return proc.returncode


def slurm_jobs(log_text: str) -> dict[str, list[int]]:
    """{rule: SLURM job ids} from the submission lines of a Snakemake log."""
    jobs: dict[str, list[int]] = {}
    for jobid, rule in re.findall(r"submitted with SLURM jobid (\d+) \(log: .*?/rule_(\w+?)/", log_text):
        jobs.setdefault(rule, []).append(int(jobid))
    return jobs


def planned_jobs(workdir: Path, configs=("micro.yaml",)) -> dict[str, int]:
    """{rule: jobs} that a run in the fresh ``workdir`` will make, from Snakemake's own dry run
    (the evaluation shards depend on which test sets are present), less the target rule
    ``all``, which runs nothing and is never submitted."""
    res = snakemake("-n", "-d", workdir, "--configfile", *(workdir / c for c in configs), cwd=workdir)
    assert res.returncode == 0, res.stderr[-3000:]
    table = res.stdout.split("Job stats:")[-1].split("Reasons:")[0]
    counts = {rule: int(n) for rule, n in re.findall(r"^(\w+)\s+(\d+)\s*$", table, re.M)}
    assert counts.pop("total") == sum(counts.values()), table
    return {rule: n for rule, n in counts.items() if rule != "all"}


def sacct(jobids) -> pd.DataFrame:
    out = subprocess.run(["sacct", "-X", "-n", "-P", "-o", "JobID,State,Start,End,AllocTRES",
                          "-j", ",".join(map(str, jobids))], capture_output=True, text=True, check=True).stdout
    rows = [ln.split("|") for ln in out.splitlines() if ln]
    df = pd.DataFrame(rows, columns=["jobid", "state", "start", "end", "tres"]).astype({"jobid": int})
    return df.assign(start=pd.to_datetime(df["start"]), end=pd.to_datetime(df["end"]))


def most_at_once(intervals: pd.DataFrame) -> int:
    """The largest number of [start, end) intervals that overlap at one moment."""
    events = sorted([(t, 1) for t in intervals["start"]] + [(t, -1) for t in intervals["end"]])
    running = best = 0
    for _, step in events:
        running += step
        best = max(best, running)
    return best


@pytest.fixture(scope="module")
def slurm_demo(cluster, tmp_path_factory):
    root = tmp_path_factory.mktemp("slurm")
    (root / "micro.yaml").write_text(yaml.safe_dump(MICRO))
    planned = planned_jobs(root)
    start = time.monotonic()
    rc = run_on_slurm(root, log=root / "snakemake.log")
    wall = time.monotonic() - start
    text = (root / "snakemake.log").read_text()
    assert rc == 0, text[-4000:]
    jobs = slurm_jobs(text)
    record = {"wall_s": round(wall), "slurm_jobs": jobs}
    (root / "slurm_run.json").write_text(json.dumps(record, indent=1))
    print(f"SLURM micro demo in {root}: {record}")
    return root, jobs, planned


@on_cluster
def test_every_job_goes_through_sbatch_with_its_resources(slurm_demo):
    root, jobs, planned = slurm_demo
    assert {r: len(ids) for r, ids in jobs.items()} == planned
    acct = sacct([i for ids in jobs.values() for i in ids]).set_index("jobid")
    assert (acct["state"] == "COMPLETED").all(), acct
    for rule in GPU_RULES:
        assert all("gres/gpu=1" in acct.loc[i, "tres"] for i in jobs[rule]), rule
    assert not any("gres/gpu" in acct.loc[i, "tres"] for i in jobs["prepare_data"] + jobs["figures"])


@on_cluster
def test_gpu_jobs_run_side_by_side(slurm_demo):
    """No global gpu cap: two jobs holding a GPU slot at the same moment. Which two is SLURM's
    choice: on 2 cores a slow evaluation of the base model can hold one slot while every
    training job runs in the other, so the jobs of all GPU rules are counted together."""
    root, jobs, _ = slurm_demo
    gpu = sacct([i for rule in GPU_RULES for i in jobs.get(rule, [])])
    print(gpu.to_string())
    assert most_at_once(gpu) >= 2, gpu


@on_cluster
def test_slurm_tables_equal_the_local_run(slurm_demo, micro):
    root, _, _ = slurm_demo
    timing = re.compile(r"time|per_s|^gpus$")  # wall-clock measurements and a job's GPU ids differ between runs
    for table in ("train_metrics", "final_metrics", "passk", "breakdown"):
        slurm, local = (pd.read_csv(d / f"results/tables/{table}.csv") for d in (root, micro))
        cols = [c for c in local.columns if not timing.search(c)]
        assert list(slurm.columns) == list(local.columns), table
        pd.testing.assert_frame_equal(slurm[cols], local[cols], obj=table)


@on_cluster
def test_cancelled_training_job_resumes_from_its_checkpoint_on_rerun(slurm_demo):
    """scancel a training job after its second checkpoint; the run fails (no retries), or is
    stopped with Ctrl-C if it goes on waiting for the job (executor plugin 2.8.0 does not
    recognise sacct's "CANCELLED by <uid>" as a failure); the rerun resubmits that job alone
    and it continues from the checkpoint. The cancelled run is set to 1,000 steps, so its job
    cannot finish before the cancel however slowly the watcher polls; the rerun asks for 4
    steps past the checkpoint it was cancelled at (a checkpoint is resumed whatever
    ``train.steps``, up to it)."""
    root, _, _ = slurm_demo
    cfg = yaml.safe_load((root / "micro.yaml").read_text())

    def with_steps(name: str, steps: int) -> str:
        # key order kept: Snakemake compares params by their repr, so reordered keys would rerun the data stage
        (root / name).write_text(yaml.safe_dump(cfg | {"train": cfg["train"] | {"steps": steps}}, sort_keys=False))
        return name

    cell = "tiny-b/NSR/seed0"
    work, target = root / "work" / cell, f"results/train/{cell}/metrics.jsonl"
    shutil.rmtree(work, ignore_errors=True)  # the demo's finished checkpoint would end the longer run at once
    cancelled, interrupted = [], []

    def newest_checkpoint() -> int:
        found = checkpoints(work)
        return int(found[0].name.split("-")[1]) if found else 0

    def cancel_after_second_checkpoint(text, proc):
        job = re.search(r"submitted with SLURM jobid (\d+) \(log: .*?/rule_train/tiny-b_NSR_0/", text)
        if not cancelled and job and newest_checkpoint() >= 2:
            subprocess.run(["scancel", job[1]], check=True)
            cancelled.append((int(job[1]), time.monotonic()))
        elif cancelled and not interrupted and time.monotonic() - cancelled[0][1] > 90:
            proc.send_signal(signal.SIGINT)  # what a user does when the run keeps waiting
            interrupted.append(True)

    first = run_on_slurm(root, target, configs=["micro.yaml", with_steps("endless.yaml", 1000)], extra=["--retries", "0"],
                         log=root / "cancel.log", watch=cancel_after_second_checkpoint)
    assert cancelled and first != 0, (root / "cancel.log").read_text()[-3000:]
    cancelled = [jobid for jobid, _ in cancelled]
    assert sacct(cancelled)["state"].str.startswith("CANCELLED").all()
    resumed_from = newest_checkpoint()
    steps = resumed_from + 4

    second = run_on_slurm(root, target, configs=["micro.yaml", with_steps("long.yaml", steps)], log=root / "rerun.log")
    text = (root / "rerun.log").read_text()
    assert second == 0, text[-3000:]
    rerun_ids = slurm_jobs(text)
    assert list(rerun_ids) == ["train"] and rerun_ids["train"][0] != cancelled[0]
    log = (root / "logs/train" / f"{cell}.log").read_text()
    assert re.search(rf"resuming from \S*/checkpoint-{resumed_from}\n", log), log[-2000:]
    logged = [json.loads(ln)["step"] for ln in (root / target).read_text().splitlines()]
    assert logged == list(range(steps + 1)), logged
    print(f"cancelled SLURM job {cancelled[0]} at checkpoint-{resumed_from}"
          f"{' (run stopped with Ctrl-C)' if interrupted else ''}; rerun job {rerun_ids['train'][0]} resumed"
          f" and finished {steps} steps")


def test_gpu_jobs_ask_slurm_for_their_host_memory():
    """Qwen2.5-7B-Instruct (7,615,616,512 parameters) with gpus: 4 (config/qwen7b.yaml) under the
    SLURM profile: rank 0 alone reads the fp32 weights (30.46 GB) and each of the 4 ranks' processes
    takes 8 GB (nsr_study.host_memory): 62.46 GB × 1.25 = 74,462 MiB for a train job; evaluation
    reads bf16 (15.23 GB): 56,305 MiB. A 1-GPU model asks for its own (b14a05b gave every GPU job
    64,000 MB, while its 4 ranks each read the policy and the reference: 183 GB for GRPO)."""
    from conftest import snakemake

    res = snakemake("-n", "--workflow-profile", "profiles/slurm", "--configfile", "config/config.yaml",
                    "config/qwen7b.yaml", timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    asked = {}
    for block in res.stdout.split("\nrule ")[1:]:
        model = re.search(r"model=([\w.-]+)", block)
        mem = re.search(r"mem_mb=(\d+)", block)
        if model and mem:
            asked.setdefault((block.split(":")[0], model[1]), set()).add(int(mem[1]))
    assert asked[("train", "qwen2.5-7b")] == {74_462} and asked[("evaluate_base", "qwen2.5-7b")] == {56_305}
    assert asked[("train", "qwen2.5-0.5b")] == {math.ceil((4 * 494_000_000 + 8 * 10**9) * 1.25 / 2**20)}
