"""bench/gpu_check.sh, the GPU check prepared before a GPU comes: its smoke run (the same code on
the CPU, tiny shapes) writes a throughput file that passes its own check and that the plan
prices the study from, and the one-rank FSDP2 path gives the plain path's numbers."""

import os
import subprocess
import sys

import pytest
import yaml

from conftest import REPO
from nsr_study.plan import main as plan

sys.path.insert(0, str(REPO / "bench"))


def gpu_check(*args, status=0, **env) -> subprocess.CompletedProcess:
    env = os.environ | {"PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}"} | env  # this interpreter
    res = subprocess.run(["bash", "bench/gpu_check.sh", *map(str, args)], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=900)
    assert res.returncode == status, res.stdout[-3000:] + res.stderr[-3000:]
    assert status or "schema and figures OK" in res.stdout
    return res


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """One smoke run (about a minute on an idle 2-core CPU) for the tests below."""
    out = tmp_path_factory.mktemp("gpu_check")
    gpu_check("--smoke", out)
    return out / "gpu_check.yaml"


def test_smoke_run_measures_everything_planned(smoke):
    data = yaml.safe_load(smoke.read_text())
    checks = data["checks"]
    done = [m["name"] for m in checks["measurements"] if "figures" in m]
    assert done == checks["planned"] and len(done) == 15
    assert checks["machine"]["card"] == "cpu-smoke" and "SMOKE RUN" in smoke.read_text()
    assert {(e["backend"], e["shape"]) for e in data["generation"]} == {
        ("hf", "0.5b"), ("hf", "1.5b"), ("hf", "3b"), ("hf-compiled", "0.5b")}
    assert all(e["batch"] == 4 for e in data["decoding"])  # generation_batch_size's stand-in, one call
    # plain calls time each decoding step (stamp to stamp: all steps after the prefill but the last)
    rollouts = {m["name"]: m["figures"] for m in checks["measurements"] if m["name"].startswith("rollout-")}
    for name, f in rollouts.items():
        assert f["tokens"] == f["batch"] * f["new_tokens"]  # random weights: every row to the limit
        assert f["step_ms"] is None if "compiled" in name else f["step_ms"]["timed_steps"] == f["new_tokens"] - 2


def test_one_rank_fsdp2_gives_the_plain_step_and_dcp_reads_back(smoke):
    """fp32 on one gloo rank: FSDP2 must give the plain path's loss, gradient norm and
    log-probs exactly, and the DCP checkpoint must read back into fresh shards unchanged."""
    figures = {m["name"]: m["figures"] for m in yaml.safe_load(smoke.read_text())["checks"]["measurements"]}
    step, dcp = figures["fsdp-1.5b"]["step"], figures["fsdp-1.5b"]["dcp"]
    assert step["dtype"] == "float32"
    assert step["loss_relative_difference"] == step["grad_norm_relative_difference"] == 0
    assert step["old_logp_max_abs_difference"] == 0
    assert dcp["rejection"] is None and dcp["weights_max_abs_difference"] == dcp["moments_max_abs_difference"] == 0
    assert figures["train-step-3b-grpo"]["kl_coef"] == 1e-3 and figures["train-step-3b-grpo"]["reference"]
    assert figures["fsdp-7b-peak"]["out_of_memory"] is False


def test_the_plan_prices_the_study_from_the_smoke_file(smoke, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    plan(["--configfile", "config/config.yaml", "--throughput", str(smoke), "--card", "cpu-smoke", "--backend", "hf"])
    out = capsys.readouterr().out
    assert "unmeasured" not in out and "INCOMPLETE" not in out
    assert f"Rates from {smoke}:" in out
    date = yaml.safe_load(smoke.read_text())["checks"]["machine"]["date"]
    assert "cpu-smoke, hf, torch" in out and f"measured {date}: bash bench/gpu_check.sh --smoke --only " \
        "rollout-0.5b-plain-eval DIR" in out
    assert "256 × 1024 ← 4 × 8 scaled × 64" in out  # the evaluation's calls from the measured call
    plan(["--configfile", "config/config.yaml", "--throughput", str(smoke), "--card", "cpu-smoke",
          "--backend", "hf-compiled"])
    out = capsys.readouterr().out
    assert "hf-compiled" in out and "no hf-compiled measurement of Qwen/Qwen2.5-3B-Instruct on cpu-smoke" in out


def test_the_check_names_what_is_missing(smoke, tmp_path):
    from gpu_check import check

    data = yaml.safe_load(smoke.read_text())
    data["checks"]["measurements"][0]["figures"].pop("mfu")
    data["checks"]["measurements"][1] = {"name": data["checks"]["measurements"][1]["name"], "command": "c",
                                         "skipped": "budget"}
    del data["checks"]["measurements"][2]
    data["checks"]["measurements"][3] |= {"error": "OutOfMemoryError: boom"}
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    assert check(path, smoke=True) == [
        "train-step-0.5b: figures ['mfu'] missing", "train-step-1.5b: skipped (budget)", "train-step-3b: missing",
        "rollout-1.5b-plain-train: failed: OutOfMemoryError: boom"]
    assert check(path, smoke=False)[1:] == ["train-step-3b: missing",
                                            "rollout-1.5b-plain-train: failed: OutOfMemoryError: boom"]
    compiled = next(m for m in data["checks"]["measurements"] if m["name"] == "rollout-0.5b-compiled-eval")
    compiled["figures"]["graphs_compiled"] = {"warm_up": 1, "timed": 2}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    assert check(path, smoke=False)[-1] == ("rollout-0.5b-compiled-eval: the timed call compiled 2 graphs: its time "
                                            "includes compilation")
    compiled["figures"]["graphs_compiled"] = {"warm_up": 0, "timed": 0}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    assert check(path, smoke=False)[-1] == "rollout-0.5b-compiled-eval: nothing was compiled: the compiled path ran eagerly"
    assert check(tmp_path / "absent.yaml", smoke=False) == [f"{tmp_path / 'absent.yaml'}: not written (the run failed "
                                                            "before its first measurement ended)"]


def test_only_adds_to_the_file(smoke, tmp_path):
    """A second call with --only (what a first call skipped for time) keeps every other figure."""
    (tmp_path / "gpu_check.yaml").write_text(smoke.read_text())
    gpu_check("--smoke", "--only", "sampling-cost", tmp_path)
    before, after = (yaml.safe_load(p.read_text())["checks"] for p in (smoke, tmp_path / "gpu_check.yaml"))
    assert after["planned"] == before["planned"]
    assert [m for m in after["measurements"] if m["name"] != "sampling-cost"] == \
        [m for m in before["measurements"] if m["name"] != "sampling-cost"]
    sampled = next(m for m in after["measurements"] if m["name"] == "sampling-cost")
    assert sampled["figures"]["calls"] == 3 and sampled != next(m for m in before["measurements"]
                                                                 if m["name"] == "sampling-cost")
    assert "--only: unknown ['nothing']" in gpu_check("--smoke", "--only", "nothing", tmp_path, status=2).stderr


def test_a_measurement_without_time_left_is_skipped_and_named(tmp_path):
    """With no budget left nothing runs: each measurement is listed as skipped with the time it
    needed, the command to add it later is printed, and the smoke check (none may be skipped) fails."""
    res = gpu_check("--smoke", "--only", "sampling-cost,fsdp-7b-peak", tmp_path, status=1, NSR_GPU_CHECK_BUDGET_S="0")
    measured = yaml.safe_load((tmp_path / "gpu_check.yaml").read_text())["checks"]["measurements"]
    from gpu_check import NEEDS_S

    assert [(m["name"], m["skipped"].split(", ")[1]) for m in measured] == [
        ("sampling-cost", f"{NEEDS_S['sampling-cost']} s needed"), ("fsdp-7b-peak", f"{NEEDS_S['fsdp-7b']} s needed")]
    assert "bash bench/gpu_check.sh --smoke --only sampling-cost,fsdp-7b-peak DIR" in res.stdout
    assert "sampling-cost: skipped (" in res.stdout


def test_a_machine_with_python3_alone_runs_the_check(tmp_path):
    """A GPU image may have ``python3`` and no ``python``: the script falls back to it."""
    import shutil

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "mkdir", "timeout"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    (bin_dir / "python3").write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    (bin_dir / "python3").chmod(0o755)
    res = gpu_check("--smoke", "--only", "nothing", tmp_path / "out", status=2, PATH=str(bin_dir))
    assert "--only: unknown ['nothing']" in res.stderr  # gpu_check.py ran, under python3
    (bin_dir / "python3").unlink()
    res = gpu_check("--smoke", "--only", "nothing", tmp_path / "out", status=3, PATH=str(bin_dir))
    assert "gpu_check: no python or python3 on PATH" in res.stderr
