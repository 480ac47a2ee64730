"""The training loop end to end on a tiny random Qwen2 (no SFT, for speed): kill/resume,
metrics, outputs. W_REINFORCE is used so every step has non-zero advantages to train on."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import torch

from conftest import demo_config, tiny_cell_dir
from nsr_study.checkpoint import checkpoints
from nsr_study.config import objective_train
from nsr_study.data import read_jsonl


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tiny_cell_dir(tmp_path_factory.mktemp("train"), hidden_size=32, intermediate_size=64, num_layers=1,
                         num_heads=2, num_kv_heads=1)
    cell = cell_config(str(root / "model"), "W_REINFORCE", steps=6, val_every=3, checkpoint_every=2)
    return root, cell


def cell_config(model_id: str, objective: str, **train) -> dict:
    """A cell as the train rule passes it: the demo's settings (schema defaults filled) for
    ``objective`` (train.per_objective applied), small batches, ``train`` overrides."""
    cfg = demo_config()
    settings = objective_train(cfg["train"], objective) | dict(prompts_per_step=4, rollouts_per_prompt=2,
                                                                minibatch_size=4, micro_batch_size=4,
                                                                max_new_tokens=16) | train
    return {"model_name": "t", "model_id": model_id, "objective": objective, "seed": 0, "prompt": cfg["prompt"],
            "train": settings, "grading": cfg["grading"]}


def train_cmd(root: Path, cell: dict, out: str) -> list[str]:
    o = root / out
    return [sys.executable, "-m", "nsr_study", "train", "--cell", json.dumps(cell), "--train", str(root / "train.jsonl"),
            "--val", str(root / "val.jsonl"), "--policy", str(o / "policy"), "--metrics", str(o / "metrics.jsonl"),
            "--work", str(o / "work"), "--tensorboard", str(o / "tb"), "--threads", "1", "--log", str(o / "train.log")]


TRACKER_ENV = dict(WANDB_MODE="offline", WANDB_SILENT="true")  # no network; MLflow's store is set per run


@pytest.fixture(scope="module")
def plain(setup):
    """One uninterrupted run, the reference of the resume tests, logging to every tracker: a
    local MLflow store and an offline W&B run (report.trackers)."""
    root, cell = setup
    cmd = train_cmd(root, cell, "plain") + ["--trackers", "tensorboard", "mlflow", "wandb", "--tracker-project", "t"]
    env = os.environ | TRACKER_ENV | dict(MLFLOW_TRACKING_URI=f"sqlite:///{root / 'mlflow.db'}",
                                          PYTHONPROFILEIMPORTTIME="1")  # every process's imports, on stderr
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    (root / "plain.stderr").write_text(res.stderr)
    return root / "plain"


def rerun_on_a_copy(root: Path, cell: dict, out: str, runtime: dict | None = None) -> subprocess.CompletedProcess:
    """Train ``cell`` in a copy of the plain run's work directory (finished at its last step)."""
    shutil.copytree(root / "plain" / "work", root / out / "work")
    cmd = train_cmd(root, cell, out) + (["--runtime", json.dumps(runtime)] if runtime else [])
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return res


def test_run_writes_policy_metrics_and_tensorboard(plain):
    out = plain
    recs = read_jsonl(out / "metrics.jsonl")
    assert [r["step"] for r in recs] == list(range(7))
    assert [r["step"] for r in recs if "val_accuracy" in r] == [0, 3, 6]
    assert all("val_pass_rate" in r and "val_pass_rate_se" in r for r in recs if "val_accuracy" in r)
    for key in ("reward_mean", "correct_ratio", "kept_fraction", "truncated_rewarded", "loss", "clip_fraction", "entropy",
                "response_length_mean", "truncation_rate", "grad_norm", "lr", "time_rollout", "time_update",
                "rollout_tokens_per_s"):
        assert all(key in r for r in recs[1:]), key
    assert all(r["optimizer_steps"] == 2 for r in recs[1:])  # 8 rollouts / minibatch 4
    assert (out / "policy" / "model.safetensors").is_file() and (out / "policy" / "tokenizer_config.json").is_file()
    assert list((out / "tb").glob("events.out.tfevents.*"))
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(out / "policy")


def test_grading_workers_import_no_torch(setup, plain):
    """``python -m nsr_study train`` runs from the package's ``__main__``, which spawned grading
    workers do not re-import: math-verify is imported by the workers only, torch by the job
    only (each process's first import of a module is one line of ``-X importtime``)."""
    imported = Counter(line.rsplit("|", 1)[1].strip() for line in (setup[0] / "plain.stderr").read_text().splitlines()
                       if line.startswith("import time:") and "|" in line)
    assert imported["math_verify"] >= 1 and imported["torch"] == 1, (imported["math_verify"], imported["torch"])


def test_trackers_get_every_step(setup, plain):
    """MLflow's store holds each step's numbers under the cell's run name; the offline W&B run
    (its records are protobuf, with no reader in the library) holds the run id and every metric."""
    import mlflow

    root, _ = setup
    recs = read_jsonl(plain / "metrics.jsonl")
    client = mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("t").experiment_id])
    assert run.info.run_name == "t/W_REINFORCE/seed0" and run.data.params["train.lr"] == str(recs[1]["lr"])
    assert run.info.run_id == (plain / "work" / "mlflow_run_id").read_text()
    history = client.get_metric_history(run.info.run_id, "reward_mean")
    assert [(m.step, m.value) for m in history] == [(r["step"], r["reward_mean"]) for r in recs[1:]]
    wandb_id = (plain / "work" / "wandb_run_id").read_text()
    (record,) = (plain / "work" / "wandb").glob(f"offline-run-*-{wandb_id}/run-{wandb_id}.wandb")
    assert all(key.encode() in record.read_bytes() for key in ("reward_mean", "val_pass_rate", "t/W_REINFORCE/seed0"))


def test_sigkill_then_rerun_resumes_to_the_same_end(setup, plain):
    root, cell = setup
    proc = subprocess.Popen(train_cmd(root, cell, "killed"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    live = root / "killed" / "work" / "metrics.jsonl"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:  # kill once step 3 is logged: checkpoint-2 exists, step 4 is pending
        if live.is_file() and '"step": 3' in live.read_text():  # text: a line may be half written
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    # the kill lands during step 4, or (on a loaded machine) a step later: never after the end
    newest = checkpoints(root / "killed" / "work")[0].name
    assert newest in ("checkpoint-2", "checkpoint-4")
    assert not (root / "killed" / "metrics.jsonl").exists()
    (root / "killed" / "train.log").unlink()  # as Snakemake does before the rerun

    res = subprocess.run(train_cmd(root, cell, "killed"), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "resuming from " + str(root / "killed" / "work" / newest) in (root / "killed" / "train.log").read_text()
    # each attempt's log survives beside the checkpoints
    attempts = root / "killed" / "work" / "attempts"
    assert sorted(p.name for p in attempts.iterdir()) == ["attempt-1.log", "attempt-2.log"]
    assert "step 3:" in (attempts / "attempt-1.log").read_text()
    assert "resuming from" in (attempts / "attempt-2.log").read_text()
    recs = read_jsonl(root / "killed" / "metrics.jsonl")
    assert [r["step"] for r in recs] == list(range(7))  # one contiguous log, no duplicate step 3
    # RNG, optimizer and data order restored: the resumed run retraces the uninterrupted one
    for a, b in zip(recs, read_jsonl(plain / "metrics.jsonl")):
        assert (a.get("reward_mean"), a.get("prompts_consumed"), a.get("val_accuracy")) == (
            b.get("reward_mean"), b.get("prompts_consumed"), b.get("val_accuracy"))
        assert a.get("loss") == pytest.approx(b.get("loss"), abs=1e-5) if "loss" in b else True


def test_changed_setting_starts_afresh_saying_why(setup, plain):
    root, cell = setup
    changed = cell | {"train": cell["train"] | {"lr": cell["train"]["lr"] * 10}}
    res = rerun_on_a_copy(root, changed, "changed", runtime=dict(keep_checkpoint=False))
    assert "not resuming from" in res.stderr and "changed: train.lr" in res.stderr
    # train.keep_checkpoint false: the checkpoints go once the policy is saved and verified
    assert not list((root / "changed" / "work").glob("checkpoint-*")) and "deleted " in res.stderr
    recs = read_jsonl(root / "changed" / "metrics.jsonl")
    assert [r["step"] for r in recs] == list(range(7)) and all(r["lr"] == changed["train"]["lr"] for r in recs[1:])


def test_more_steps_continue_a_finished_run(setup, plain):
    root, cell = setup
    res = rerun_on_a_copy(root, cell | {"train": cell["train"] | {"steps": 8}}, "longer")
    assert "resuming from" in res.stderr
    recs, ref = read_jsonl(root / "longer" / "metrics.jsonl"), read_jsonl(plain / "metrics.jsonl")
    assert [r["step"] for r in recs] == list(range(9)) and recs[:7] == ref


def test_a_forced_rerun_of_a_finished_cell_trains_from_step_0(setup, plain):
    """Issue 34: `--forcerun` of a finished cell resumed its last checkpoint and returned the old
    policy in seconds. The rerun (same cell, same code) starts at step 0 and says why in one line."""
    root, cell = setup
    res = rerun_on_a_copy(root, cell, "forced")
    assert (f"not resuming from {root / 'forced' / 'work' / 'checkpoint-6'}: it ends a finished run of this cell"
            in res.stderr) and "resuming from " + str(root) not in res.stderr.replace("not resuming from", "")
    recs = read_jsonl(root / "forced" / "metrics.jsonl")
    assert [r["step"] for r in recs] == list(range(7)) and recs[0]["train_prompts"] > 0  # step 0 logged afresh


def test_other_training_code_starts_afresh(setup, plain):
    """A job killed after its last checkpoint (no finished mark) resumes unless the training code
    changed since: here its fingerprint in the manifest is faked."""
    root, cell = setup
    shutil.copytree(root / "plain" / "work", root / "edited" / "work")
    (root / "edited" / "work" / "finished.json").unlink()
    manifest = root / "edited" / "work" / "checkpoint-6" / "manifest.json"
    manifest.write_text(manifest.read_text().replace(json.loads(manifest.read_text())["code"], "0123456789abcdef"))
    res = subprocess.run(train_cmd(root, cell, "edited"), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "it was trained by other training code (source hash 0123456789abcdef" in res.stderr
    assert [r["step"] for r in read_jsonl(root / "edited" / "metrics.jsonl")] == list(range(7))


def test_runtime_only_knobs_do_not_count_as_a_change(setup, plain):
    root, cell = setup
    shutil.copytree(root / "plain" / "work", root / "runtime" / "work")
    (root / "runtime" / "work" / "finished.json").unlink()  # killed after its last checkpoint
    cmd = train_cmd(root, cell, "runtime") + ["--runtime", json.dumps(dict(micro_batch_size=1, logprob_chunk=3,
                                                                             checkpoint_every=1))]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "resuming from" in res.stderr and "not resuming" not in res.stderr
    assert read_jsonl(root / "runtime" / "metrics.jsonl") == read_jsonl(plain / "metrics.jsonl")


def test_the_rollout_engine_syncs_once_per_step_after_the_last_optimizer_step(setup, tmp_path, monkeypatch):
    from nsr_study import rollout, train

    root, cell = setup
    events = []
    monkeypatch.setattr(rollout.HFBackend, "sync", lambda self, model: events.append("sync"))
    step = train.policy_update
    monkeypatch.setattr(train, "policy_update", lambda *a, **k: events.append("update") or step(*a, **k))
    cell = cell | {"train": cell["train"] | {"steps": 2, "val_every": 2}}
    train.run(cell, root / "train.jsonl", root / "val.jsonl", tmp_path / "p", tmp_path / "m.jsonl", tmp_path / "w")
    assert events == ["update", "sync"] * 2  # each update makes 2 optimizer steps (8 rollouts / minibatch 4)


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
    # no checkpoint before the first optimizer step (nsr_study.checkpoint.save): a rerun redoes the same draws
    assert not list((root / "psr" / "work").glob("checkpoint-*")) and (root / "psr" / "policy" / "model.safetensors").is_file()
    assert "no checkpoint at step 2: no optimizer step yet" in (root / "psr" / "train.log").read_text()


def test_gpu_share_check_by_hand():
    """3.086 B parameters need 16 B each = 45.98 GiB; an 80 GiB card at share s leaves 80(1 − s)."""
    from nsr_study.train import check_gpu_share

    n, gpu = 3_086_000_000, 80 * 2**30
    assert check_gpu_share(n, gpu, 0.2, reference_bytes=0) is None  # 64 GiB ≥ 1.3 × 45.98 = 59.8
    warning = check_gpu_share(n, gpu, 0.35, reference_bytes=0)  # 52 GiB: fits the states, not 1.3× them
    assert "leaves 52.0 GiB" in warning and "need 46.0 GiB" in warning and "at most 0.25" in warning
    with pytest.raises(ValueError, match=r"leaves 40\.0 GiB .* lower it to at most 0\.25"):
        check_gpu_share(n, gpu, 0.5, reference_bytes=0)


def test_gpu_share_check_counts_the_reference_model():
    """A bf16 reference adds 2 B per parameter: 18 × 3.086e9 B = 51.73 GiB, so share 0.2
    (64 GiB) now only warns (< 1.3 × 51.73 = 67.3) and 0.4 (48 GiB) is refused; the advice is
    1 − 1.3 × 51.73 / 80 = 0.16."""
    from nsr_study.train import check_gpu_share

    n, gpu = 3_086_000_000, 80 * 2**30
    warning = check_gpu_share(n, gpu, 0.2, reference_bytes=2 * n)
    assert "need 51.7 GiB" in warning and "reference model" in warning and "at most 0.16" in warning
    with pytest.raises(ValueError, match=r"leaves 48\.0 GiB .* need 51\.7 GiB .* at most 0\.16"):
        check_gpu_share(n, gpu, 0.4, reference_bytes=2 * n)


def test_episodes_by_hand():
    """Two prompts × 2 rollouts, rewards [1, 0, 0, 0]: NSR keeps the three wrong samples (−1),
    W-REINFORCE keeps all four (+0.1, −1, −1, −1); a truncated wrong answer is counted."""
    from nsr_study.rollout import Rollouts
    from nsr_study.train import episodes

    ro = Rollouts([[1], [1], [2], [2]], [[5, 9], [6], [7, 7, 7], [8]], ["a"] * 4, [False, False, True, False])
    cfg = demo_config()["train"]
    kept, stats = episodes(ro, [1.0, 0.0, 0.0, 0.0], 2, "NSR", cfg)
    assert [(s.ids, s.advantage) for s in kept] == [([1, 6], -1.0), ([2, 7, 7, 7], -1.0), ([2, 8], -1.0)]
    assert stats["kept_fraction"] == 0.75 and stats["reward_mean"] == 0.25 and stats["truncated_rewarded"] == 0
    kept, stats = episodes(ro, [1.0, 0.0, 1.0, 0.0], 2, "W_REINFORCE", cfg | {"w_reinforce_lambda": 0.1})
    assert [s.advantage for s in kept] == pytest.approx([0.1, -1, 0.1, -1])
    assert stats["truncation_rate"] == 0.25 and stats["truncated_rewarded"] == 1
    kept, _ = episodes(ro, [1.0, 0.0, 1.0, 0.0], 2, "NSR", cfg | {"drop_zero_advantage": []})  # override: keep
    assert len(kept) == 4


def test_entropy_or_kl_terms_train_even_without_advantages():
    from nsr_study.batch import Sample
    from nsr_study.train import has_gradient

    cfg = dict(entropy_coef=0.0, kl_coef=0.0)
    zero = [Sample([1], [2], 0.0)]
    assert not has_gradient(zero, cfg) and not has_gradient([], cfg | dict(kl_coef=1e-3))
    assert has_gradient(zero, cfg | dict(kl_coef=1e-3)) and has_gradient(zero, cfg | dict(entropy_coef=1e-4))
    assert has_gradient([Sample([1], [2], -1.0)], cfg)


def test_reference_model_is_loaded_only_for_cells_with_a_kl_loss(setup):
    """The study config gives GRPO kl_coef 1e-3 and the others 0: only the GRPO cell loads the
    frozen reference model, a copy of the starting weights."""
    from nsr_study.loading import load_tokenizer
    from nsr_study.train import prepare

    root, _ = setup
    tokenizer = load_tokenizer(str(root / "model"))
    for objective, expected in (("GRPO", True), ("NSR", False), ("W_REINFORCE", False)):
        cell = cell_config(str(root / "model"), objective)
        model, ref_model, _, _ = prepare(cell, None, "cpu", tokenizer)
        assert (ref_model is not None) == expected == bool(cell["train"]["kl_coef"]), objective
    policy, ref = model.state_dict(), prepare(cell_config(str(root / "model"), "GRPO"), None, "cpu", tokenizer)[1]
    assert all(torch.equal(t, policy[k]) for k, t in ref.state_dict().items()) and not ref.training
    bf16 = prepare(cell_config(str(root / "model"), "GRPO", dtype="bfloat16"), None, "cpu", tokenizer)[1]
    n = sum(p.numel() for p in bf16.parameters())
    assert {p.dtype for p in bf16.parameters()} == {torch.bfloat16}  # as verl's
    assert {p.dtype for p in model.parameters()} == {torch.float32}


def test_overlong_prompts_are_dropped_and_counted_not_fatal(setup, tmp_path):
    """With train.max_prompt_tokens at the median train prompt length, the longer prompts are
    dropped before training (each logged with its id), counted at step 0, and training runs on
    the rest; the validation prompts are filtered the same way."""
    from nsr_study.loading import load_tokenizer
    from nsr_study.prompts import problem_prompt_ids
    from nsr_study.train import run

    root, _ = setup
    records = {s: read_jsonl(root / f"{s}.jsonl") for s in ("train", "val")}
    cell = cell_config(str(root / "model"), "W_REINFORCE", steps=1, val_every=1, checkpoint_every=1)
    lengths = {s: [len(p) for p in problem_prompt_ids(load_tokenizer(str(root / "model")), r, cell["prompt"])]
               for s, r in records.items()}
    limit = sorted(lengths["train"])[len(lengths["train"]) // 2]
    long = {s: sum(n > limit for n in ls) for s, ls in lengths.items()}
    assert 0 < long["train"] < len(lengths["train"])  # the test can fail
    cell["train"]["max_prompt_tokens"] = limit
    o = tmp_path / "long"
    run(cell, root / "train.jsonl", root / "val.jsonl", o / "policy", o / "metrics.jsonl", o / "work")
    first = read_jsonl(o / "metrics.jsonl")[0]
    assert first["train_prompts_overlong"] == long["train"] and first["val_prompts_overlong"] == long["val"]
    assert first["train_prompts"] == len(lengths["train"]) - long["train"]
    with pytest.raises(ValueError, match="every train prompt is longer than train.max_prompt_tokens = 1"):
        run(cell | {"train": cell["train"] | {"max_prompt_tokens": 1}}, root / "train.jsonl", root / "val.jsonl",
            o / "p2", o / "m2.jsonl", o / "w2")
