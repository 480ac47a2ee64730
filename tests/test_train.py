"""The training loop end to end on a tiny random Qwen2 (no SFT, for speed): kill/resume,
metrics, outputs. W_REINFORCE is used so every step has non-zero advantages to train on."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import REPO, tiny_cell_dir
from nsr_study.data import read_jsonl


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tiny_cell_dir(tmp_path_factory.mktemp("train"), hidden_size=32, intermediate_size=64, num_layers=1,
                         num_heads=2, num_kv_heads=1)
    cell = cell_config(str(root / "model"), "W_REINFORCE", steps=6, val_every=3, checkpoint_every=2)
    return root, cell


def cell_config(model_id: str, objective: str, **train) -> dict:
    """A schema-checked cell config: the demo's training settings, small batches, overrides."""
    from snakemake.utils import validate

    base = yaml.safe_load((REPO / "config/config.yaml").read_text())
    cfg = {"models": [{"name": "t", "id": model_id}], "objectives": [objective], "seeds": [0],
           "train": yaml.safe_load((REPO / "config/demo.yaml").read_text())["train"], "grading": base["grading"]}
    validate(cfg, str(REPO / "workflow/schemas/config.schema.yaml"))
    cfg["train"].update(dict(prompts_per_step=4, rollouts_per_prompt=2, minibatch_size=4, micro_batch_size=4,
                             max_new_tokens=16) | train)
    return {"model_name": "t", "model_id": model_id, "objective": objective, "seed": 0,
            "train": cfg["train"], "grading": cfg["grading"]}


def train_cmd(root: Path, cell: dict, out: str) -> list[str]:
    o = root / out
    return [sys.executable, "-m", "nsr_study.train", "--cell", json.dumps(cell), "--train", str(root / "train.jsonl"),
            "--val", str(root / "val.jsonl"), "--policy", str(o / "policy"), "--metrics", str(o / "metrics.jsonl"),
            "--work", str(o / "work"), "--tensorboard", str(o / "tb"), "--threads", "1", "--log", str(o / "train.log")]


def test_run_writes_policy_metrics_and_tensorboard(setup):
    root, cell = setup
    res = subprocess.run(train_cmd(root, cell, "plain"), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    out = root / "plain"
    recs = read_jsonl(out / "metrics.jsonl")
    assert [r["step"] for r in recs] == list(range(7))
    assert [r["step"] for r in recs if "val_accuracy" in r] == [0, 3, 6]
    for key in ("reward_mean", "correct_ratio", "kept_fraction", "loss", "clip_fraction", "entropy",
                "response_length_mean", "truncation_rate", "grad_norm", "lr", "time_rollout", "time_update",
                "rollout_tokens_per_s"):
        assert all(key in r for r in recs[1:]), key
    assert all(r["optimizer_steps"] == 2 for r in recs[1:])  # 8 rollouts / minibatch 4
    assert (out / "policy" / "model.safetensors").is_file() and (out / "policy" / "tokenizer_config.json").is_file()
    assert list((out / "tb").glob("events.out.tfevents.*"))
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(out / "policy")


def test_sigkill_then_rerun_resumes_to_the_same_end(setup):
    root, cell = setup
    proc = subprocess.Popen(train_cmd(root, cell, "killed"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    live = root / "killed" / "work" / "metrics.jsonl"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:  # kill once step 3 is logged: checkpoint-2 exists, step 4 is pending
        if live.is_file() and any(r["step"] >= 3 for r in read_jsonl(live)):
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (root / "killed" / "work" / "latest").read_text() == "checkpoint-2"
    assert not (root / "killed" / "metrics.jsonl").exists()

    res = subprocess.run(train_cmd(root, cell, "killed"), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "resuming from checkpoint-2 (step 2" in (root / "killed" / "train.log").read_text()
    recs = read_jsonl(root / "killed" / "metrics.jsonl")
    assert [r["step"] for r in recs] == list(range(7))  # one contiguous log, no duplicate step 3
    # RNG, optimizer and data order restored: the resumed run retraces the uninterrupted one
    plain = read_jsonl(root / "plain" / "metrics.jsonl")
    for a, b in zip(recs, plain):
        assert (a.get("reward_mean"), a.get("prompts_consumed"), a.get("val_accuracy")) == (
            b.get("reward_mean"), b.get("prompts_consumed"), b.get("val_accuracy"))
        assert a.get("loss") == pytest.approx(b.get("loss"), abs=1e-5) if "loss" in b else True


def test_psr_without_correct_samples_skips_updates_and_goes_on(setup):
    root, cell = setup
    cell = cell | {"objective": "PSR", "train": cell["train"] | {"steps": 2, "val_every": 2}}
    res = subprocess.run(train_cmd(root, cell, "psr"), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    recs = read_jsonl(root / "psr" / "metrics.jsonl")
    steps = [r for r in recs if r["step"] > 0]
    assert [r["step"] for r in recs] == [0, 1, 2]
    # an untrained model is never right: nothing to reinforce, so no optimizer step is taken
    assert all(r["correct_ratio"] == 0 and r["skipped"] and r["optimizer_steps"] == 0 for r in steps)
    assert all(r["kept_fraction"] == 0 for r in steps)  # PSR drops its zero-advantage samples
    assert "update skipped" in (root / "psr" / "train.log").read_text()


def test_gpu_share_check_by_hand():
    """3.086 B parameters need 16 B each = 45.98 GiB; an 80 GiB card at share s leaves 80(1 − s)."""
    from nsr_study.train import check_gpu_share

    n, gpu = 3_086_000_000, 80 * 2**30
    assert check_gpu_share(n, gpu, 0.2) is None  # 64 GiB ≥ 1.3 × 45.98 = 59.8
    warning = check_gpu_share(n, gpu, 0.35)  # 52 GiB: fits the states, not 1.3× them
    assert "leaves 52.0 GiB" in warning and "need 46.0 GiB" in warning and "at most 0.25" in warning
    with pytest.raises(ValueError, match=r"leaves 40\.0 GiB .* lower it to at most 0\.25"):
        check_gpu_share(n, gpu, 0.5)
