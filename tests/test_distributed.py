"""One cell on two ranks (FSDP2, gloo, CPU) against the single-process trainer."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rank_update import CASES, reference, tiny_model

from nsr_study.distributed import share

HERE = Path(__file__).parent


def torchrun(script: str, *args, ranks: int = 2, timeout: int = 300) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(ranks),
           str(HERE / script), *map(str, args)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=HERE)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-5000:]
    return res


def relative(got: dict, want: dict, scale: dict) -> float:
    """Largest |got − want| over every parameter, relative to the largest |scale|."""
    return max((got[k] - want[k]).abs().max().item() for k in want) / max(scale[k].abs().max().item() for k in scale)


def l2_relative(got: dict, want: dict, scale: dict) -> float:
    """‖got − want‖₂ over all parameters together, relative to ‖scale‖₂."""
    return (sum((got[k] - want[k]).square().sum() for k in want) / sum(scale[k].square().sum() for k in scale)).sqrt().item()


def test_share_splits_in_rank_order():
    items = list(range(7))
    parts = [share(items, r, 3) for r in range(3)]
    assert parts == [[0, 1, 2], [3, 4], [5, 6]]
    assert share([1], 1, 2) == []


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ranks") / "update.pt"
    torchrun("rank_update.py", out, json.dumps(list(CASES)))
    return torch.load(out)


@pytest.mark.parametrize("case", list(CASES))
def test_two_ranks_equal_one_process(two_ranks, case):
    """The same minibatches give the same gradients and, after every optimizer step of the
    update (2-3 AdamW steps, partial minibatches, a rank with only a stand-in), the same
    parameters on 2 FSDP2 ranks as in one process (fp32, ≤ 1e-5 relative). Relative to how far
    the update moved them, the parameters agree to ≤ 1e-4 in L2 over all of them (measured 2e-6
    to 1.2e-5), not entry by entry: AdamW divides by √v, so a gradient entry near 0 (3e-9 to
    6e-8 at the worst entries, rounding noise) turns its last-bit rounding (reduction order) into
    a step of up to lr. That moves 2-3 of the 25,184 entries by 1.5e-4 to 1.3e-3 of the largest
    movement, depending on the CPU's kernels (AVX2 here; 2e-4 to 7e-4 on the machine of the
    first measurement). A wrong minibatch or scale moves them all."""
    want, got = reference(case), two_ranks[case]
    init = dict(tiny_model(0).named_parameters())
    moved = {k: want["params"][k] - init[k].detach() for k in want["params"]}
    assert max(v.abs().max().item() for v in moved.values()) > 1e-4  # the update did move them
    assert relative(got["grads"], want["grads"], want["grads"]) <= 1e-5
    assert relative(got["params"], want["params"], want["params"]) <= 1e-5
    assert l2_relative(got["params"], want["params"], moved) <= 1e-4
    assert got["stats"]["optimizer_steps"] == want["stats"]["optimizer_steps"] >= 2
    for k in ("grad_norm", "loss", "pg_loss", "clip_fraction", "entropy", "kl"):
        assert got["stats"][k] == pytest.approx(want["stats"][k], rel=1e-5, abs=1e-7), k


# ---------------------------------------------------------------- checkpoints across rank counts

def same(a, b) -> bool:
    """Nested state dicts equal, tensors exactly."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(map(same, a, b))
    return torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b


def test_checkpoints_reshard_between_one_and_two_ranks_and_no_rank_holds_the_whole(tmp_path):
    """One process's checkpoint (after two AdamW steps) loads on 2 FSDP2 ranks, and theirs back
    in one process: weights, moments, steps and param groups equal exactly both ways (DCP
    reshards; 2 → 2 is the killed run below). On 2 ranks each rank holds, and writes to its
    own .distcp file, half of the 12 bytes a parameter of training state: none gathers it.
    A shard that rank 1 cannot write fails the save on both ranks, naming rank 1, and leaves
    the previous checkpoint alone."""
    import rank_checkpoint as rc

    from nsr_study import checkpoint

    model = rc.model(0)
    opt = rc.optimizer(model)
    ids = torch.arange(64).reshape(2, 32)
    for _ in range(2):
        model(ids, labels=ids).loss.backward()
        opt.step()
        opt.zero_grad()
    checkpoint.save(tmp_path / "one", model, opt, 2, 16, rc.CELL)
    torchrun("rank_checkpoint.py", tmp_path / "one" / "checkpoint-2", tmp_path / "two", tmp_path / "out.pt")
    out, saved = torch.load(tmp_path / "out.pt"), rc.full_state(model, opt)
    assert same(out["loaded"], saved)  # 1 → 2
    back = rc.model(2)
    back_opt = rc.optimizer(back)
    checkpoint.load_state(tmp_path / "two" / "checkpoint-3", back, back_opt)
    assert same(rc.full_state(back, back_opt), saved)  # 2 → 1
    assert checkpoint.load_progress(tmp_path / "two" / "checkpoint-3") == (3, 24)

    state = 12 * sum(p.numel() for p in model.parameters())  # fp32 weights and two AdamW moments
    assert all(0.5 <= b / state < 0.501 for b in out["held"]), out["held"]  # + the replicated step counts
    whole = (tmp_path / "one" / "checkpoint-2" / "__0_0.distcp").stat().st_size
    manifest = json.loads((tmp_path / "two" / "checkpoint-3" / "manifest.json").read_text())
    shards = {n: f["bytes"] / whole for n, f in manifest["files"].items() if n.endswith(".distcp")}
    assert manifest["ranks"] == 2 and sorted(shards) == ["__0_0.distcp", "__1_0.distcp"]
    assert all(0.5 < x < 0.53 for x in shards.values()), shards  # DCP's ~1.7 kB a tensor are not halved

    # each rank hashed its own shard for the manifest, rank 0 the rest (b14a05b: rank 0 all of them)
    assert out["hashed"] == [[".metadata", "__0_0.distcp", "trainer_state.pt"], ["__1_0.distcp"]], out["hashed"]

    assert out["errors"][0] == out["errors"][1]
    assert re.fullmatch(r"writing checkpoint .*checkpoint-4 failed \(rank 1: OSError: \[Errno 28\] No space left on "
                        r"device\); the previous checkpoint checkpoint-3 is intact", out["errors"][0]), out["errors"]
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["checkpoint-3"]
    assert checkpoint.rejection(tmp_path / "two" / "checkpoint-3", rc.CELL) is None


# ---------------------------------------------------------------- the trainer on two ranks

from conftest import demo_config  # noqa: E402
from test_train import cell_config, setup, train_cmd  # noqa: E402,F401  (setup: the tiny cell fixture)

from nsr_study.checkpoint import checkpoints  # noqa: E402
from nsr_study.data import read_jsonl  # noqa: E402


def rank_pids(launcher: int) -> dict[int, int]:
    """{rank: pid} of the processes the elastic launcher ``launcher`` started."""
    out = {}
    for child in Path(f"/proc/{launcher}/task/{launcher}/children").read_text().split():
        env = dict(v.split("=", 1) for v in Path(f"/proc/{child}/environ").read_bytes().decode().split("\0") if "=" in v)
        if "RANK" in env:
            out[int(env["RANK"])] = int(child)
    return out


@pytest.fixture(scope="module")
def two_rank_run(setup):
    """An uninterrupted 2-rank run of the tiny GRPO cell with a KL loss (the reference sharded too)."""
    root, _ = setup
    cell = cell_config(str(root / "model"), "GRPO", steps=4, val_every=2, checkpoint_every=2, kl_coef=0.01)
    res = subprocess.run(train_cmd(root, cell, "two") + ["--ranks", "2"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return root, cell


def test_two_rank_run_writes_one_log_and_a_plain_policy(two_rank_run):
    root, _ = two_rank_run
    recs = read_jsonl(root / "two" / "metrics.jsonl")
    assert [r["step"] for r in recs] == list(range(5)) and all(r["ranks"] == 2 for r in recs)
    assert all(r["optimizer_steps"] == 2 for r in recs[1:])  # 8 gathered rollouts / minibatch 4
    from transformers import AutoModelForCausalLM

    policy = AutoModelForCausalLM.from_pretrained(root / "two" / "policy")
    base = AutoModelForCausalLM.from_pretrained(root / "model")
    assert not all(torch.equal(a, b) for a, b in zip(policy.parameters(), base.parameters()))  # trained and whole


def test_one_and_two_ranks_draw_the_same_rollouts(two_rank_run):
    """Per-prompt seeds keyed by position in the step: the same cell on one rank draws the same
    samples at every step (rewards, lengths, truncations, validation problem by problem) and
    updates to the same losses and gradient norms up to rounding (measured: ≤ 2e-5 relative for
    the grad norm, KL values of 1e-5 to 1e-4 relative)."""
    root, cell = two_rank_run
    res = subprocess.run(train_cmd(root, cell, "single"), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    one, two = read_jsonl(root / "single" / "metrics.jsonl"), read_jsonl(root / "two" / "metrics.jsonl")
    assert len(one) == len(two) == 5
    exact = ("reward_mean", "correct_ratio", "advantage_mean", "kept_fraction", "response_length_mean",
             "truncation_rate", "truncated_rewarded", "grading", "prompts_consumed", "optimizer_steps", "val_accuracy",
             "val_pass_rate", "val_pass_rates", "val_grading")
    for a, b in zip(one, two):
        assert {k: a.get(k) for k in exact} == {k: b.get(k) for k in exact}
        if a["step"] == 0:
            continue
        for k in ("loss", "pg_loss", "entropy", "grad_norm", "clip_fraction"):
            assert a[k] == pytest.approx(b[k], rel=1e-4, abs=1e-9), (a["step"], k)
        assert a["kl"] == pytest.approx(b["kl"], rel=1e-3, abs=1e-9)


def test_a_dying_rank_ends_the_job_which_resumes_on_two_or_one_ranks(two_rank_run):
    """SIGKILL one rank after step 3: the launcher stops the other and the job fails (no hang);
    the rerun resumes checkpoint-2 (each rank's DCP shards) and ends as the uninterrupted run
    did, to the same final weights bit for bit; the same checkpoint also resumes on one rank
    (DCP reshards), to the same samples and weights up to rounding (measured: 3.1e-7 of the
    largest weight, 2e-4 of how far training moved them)."""
    root, cell = two_rank_run
    cmd = train_cmd(root, cell, "killed") + ["--ranks", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    live = root / "killed" / "work" / "metrics.jsonl"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not (live.is_file() and any(r["step"] >= 3 for r in read_jsonl(live))):
        time.sleep(0.05)
    os.kill(rank_pids(proc.pid)[1], signal.SIGKILL)
    assert proc.wait(timeout=60) == 1
    assert [p.name for p in checkpoints(root / "killed" / "work")] == ["checkpoint-2"]
    shutil.copytree(root / "killed" / "work", root / "one" / "work")

    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "resuming from " + str(root / "killed" / "work" / "checkpoint-2") in (root / "killed" / "train.log").read_text()
    recs, plain = read_jsonl(root / "killed" / "metrics.jsonl"), read_jsonl(root / "two" / "metrics.jsonl")
    assert [r["step"] for r in recs] == list(range(5))
    for a, b in zip(recs, plain):
        assert (a.get("reward_mean"), a.get("prompts_consumed"), a.get("val_accuracy")) == (
            b.get("reward_mean"), b.get("prompts_consumed"), b.get("val_accuracy"))
        assert a.get("loss") == pytest.approx(b.get("loss"), abs=1e-5) if "loss" in b else True

    res = subprocess.run(train_cmd(root, cell, "one"), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "resuming from " + str(root / "one" / "work" / "checkpoint-2") in (root / "one" / "train.log").read_text()
    recs = read_jsonl(root / "one" / "metrics.jsonl")
    assert [r["step"] for r in recs] == list(range(5)) and [r["ranks"] for r in recs[3:]] == [1, 1]
    assert [r.get("reward_mean") for r in recs] == [r.get("reward_mean") for r in plain]

    from safetensors.torch import load_file

    two, killed, one = (load_file(root / run / "policy" / "model.safetensors") for run in ("two", "killed", "one"))
    assert same(killed, two)
    assert relative(one, {k: two[k] for k in one}, one) <= 1e-5  # one rank's policy leaves out the tied lm_head


def eval_cmd(root: Path, out: str, ranks: int) -> list[str]:
    """One evaluation shard (all 8 validation problems, 1/1) of the tiny model."""
    from nsr_study.config import RUNTIME_ONLY

    cfg = demo_config()
    t = cfg["train"]
    settings = {k: t[k] for k in ("device", "dtype")} | {k: v for k, v in cfg["evaluate"].items() if k not in RUNTIME_ONLY}
    config = {"evaluate": settings | dict(n=4, max_new_tokens=16, backend="hf", hf_compiled=False), "prompt": cfg["prompt"],
              "grading": cfg["grading"], "label": {"model": "t", "objective": "base", "seed": None}}
    runtime = {k: t[k] for k in ("micro_batch_size", "logprob_chunk", "collective_timeout_min")} | dict(generation_batch_size=8)
    return [sys.executable, "-m", "nsr_study", "evaluate", "--model", str(root / "model"), "--test",
            str(root / "val.jsonl"), "--shard", "0/1", "--config", json.dumps(config), "--runtime", json.dumps(runtime),
            "--out", str(root / out / "shard.json"), "--threads", "1", "--ranks", str(ranks)]


def test_two_rank_evaluation_equals_one_rank_problem_by_problem(setup):
    """8 problems split 4 + 4, 4 samples each seeded by problem id: the same rows."""
    root, _ = setup
    for ranks in (1, 2):
        res = subprocess.run(eval_cmd(root, f"eval{ranks}", ranks), capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr[-3000:]
    one, two = (json.loads((root / f"eval{r}" / "shard.json").read_text()) for r in (1, 2))
    assert one["problems"] == two["problems"] and len(one["problems"]) == 8
    assert (one["facts"].pop("ranks"), two["facts"].pop("ranks")) == (1, 2) and one["facts"] == two["facts"]


# ---------------------------------------------------------------- a micro cell through Snakemake

def test_a_two_gpu_micro_cell_runs_through_snakemake(tmp_path):
    """The micro demo cut to one model with ``gpus: 2``, one objective and its own test set (one
    shard per evaluation: the competition sets' shards are test_pipeline's), on a made-up 2-GPU
    node (conftest.MICRO_GPUS): its train and evaluate jobs ask for gpu=2, claim both ids and
    run 2 gloo ranks on the CPU; the outputs are the usual ones."""
    import yaml

    from conftest import MICRO, MICRO_GPUS, snakemake

    config = MICRO | {"models": [MICRO["models"][0] | {"gpus": 2}], "objectives": ["NSR"], "benchmarks": [{"name": "math"}]}
    (tmp_path / "micro.yaml").write_text(yaml.safe_dump(config))
    env = os.environ | {"CUDA_VISIBLE_DEVICES": ",".join(MICRO_GPUS), "NSR_GPU_LOCK_DIR": str(tmp_path / "locks")}
    model = config["models"][0]["name"]
    targets = [f"results/eval/{model}/NSR/seed0/metrics.json", f"results/eval/{model}/base/metrics.json"]
    res = snakemake(*targets, "--cores", "2", "--resources", "gpu=2", "-d", tmp_path, "--configfile",
                    tmp_path / "micro.yaml", timeout=600, env=env)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    recs = read_jsonl(tmp_path / f"results/train/{model}/NSR/seed0/metrics.jsonl")
    assert [r["step"] for r in recs] == list(range(config["train"]["steps"] + 1))
    assert {(r["ranks"], r["gpus"]) for r in recs} == {(2, ",".join(MICRO_GPUS))}
    for target in targets:
        summary = json.loads((tmp_path / target).read_text())
        assert summary["ranks"] == 2 and set(summary["gpus"].split(",")) == set(MICRO_GPUS)  # each shard's claim
    assert "launching 2 ranks of nsr_study train" in (tmp_path / f"logs/train/{model}/NSR/seed0.log").read_text()


def test_memory_check_per_rank_for_the_7b():
    """Qwen2.5-7B (7.62e9 parameters, bf16 reference 15.2 GB) on 80 GB GPUs: one GPU cannot hold
    the 137 GB, the message naming the gpus that would; 2 ranks fit the 68.5 GB with too
    little room for activations (a warning); 4 ranks (34.3 GB each) fit."""
    from nsr_study.train import check_gpu_share

    params, ref, gpu = 7_615_616_512, 2 * 7_615_616_512, 80 * 10**9
    with pytest.raises(ValueError, match=r"more than the whole GPU: give the model gpus: 2 or more"):
        check_gpu_share(params, gpu, 0.0, ref, ranks=1)
    assert "per GPU on 2 ranks" in check_gpu_share(params, gpu, 0.0, ref, ranks=2)
    assert check_gpu_share(params, gpu, 0.0, ref, ranks=4) is None


def test_the_vllm_share_must_hold_the_whole_7b_and_one_sequence():
    """Qwen2.5-7B's engine on every rank: 7.62e9 × 2 B = 15.23 GB of bf16 weights, and KV cache
    of 2 × 28 layers × 4 KV heads × 128 × 2 B = 57,344 B per token, 0.23 GB for 4,096 tokens:
    15.47 GB, 0.1934 of an 80 GB GPU. 0.19 is refused naming 0.20; the overlays' shares pass."""
    from transformers import Qwen2Config

    from nsr_study.train import check_engine_share, kv_bytes_per_token

    shape = Qwen2Config(hidden_size=3584, num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4)
    kv = kv_bytes_per_token(shape, 2)
    assert kv == 57_344
    params, gpu = 7_615_616_512, 80 * 10**9
    with pytest.raises(ValueError, match=r"needs 14\.2 GiB for the model's weights and 0\.22 GiB .* at least 0\.20"):
        check_engine_share(params, kv, 4096, gpu, 0.19, 2)
    for share in (0.25, 0.35):  # config/qwen7b.yaml, config/paper.yaml
        check_engine_share(params, kv, 4096, gpu, share, 2)


def test_the_7b_overlay_loads_and_multi_rank_models_refuse_only_hf_compiled():
    """vLLM runs one engine per rank (tests/test_vllm.py), so a model on several ranks takes
    either backend; hf_compiled's unsharded copy is refused while an hf backend would use it."""
    from conftest import study_config
    from nsr_study.config import semantic_errors

    cfg = study_config("config/qwen7b.yaml")
    assert [m["gpus"] for m in cfg["models"]] == [1, 1, 1, 4] and not semantic_errors(cfg)
    assert (cfg["train"]["backend"], cfg["evaluate"]["backend"]) == ("vllm", "vllm")
    cfg["train"]["hf_compiled"] = True
    assert not semantic_errors(cfg)  # unused by vllm
    cfg["evaluate"]["backend"] = "hf"
    assert semantic_errors(cfg) == ["models[3].gpus: 4 ranks cannot decode from train.hf_compiled's unsharded copy "
                                    "(evaluate.backend hf); set train.hf_compiled false, or use the vllm backend"]


# ---------------------------------------------------------------- collectives a GPU node's backends carry

FAKE_CUDA = HERE / "fake_cuda"


def fake_cuda_env(folder: Path) -> dict:
    """The environment of a job whose ranks join a ``cuda`` cell's process group and whose every
    collective refuses a tensor the group's backend would not carry there (tests/fake_cuda)."""
    folder.mkdir(parents=True, exist_ok=True)
    src = str(HERE.parent / "src")
    return os.environ | dict(NSR_FAKE_CUDA=str(folder),
                             PYTHONPATH=os.pathsep.join([str(FAKE_CUDA), src, os.environ.get("PYTHONPATH", "")]))


def fake_cuda_records(folder: Path) -> list[dict]:
    records = [json.loads((folder / f"rank{r}.json").read_text()) for r in (0, 1)]
    from nsr_study.distributed import backend

    assert all(r["requested"]["backend"] == backend("cuda") and r["requested"]["device"] == "cuda" for r in records)
    return records


def test_a_gpu_cells_collectives_are_carried_by_its_group(setup):
    """The 2-rank GRPO cell (reference sharded, a checkpoint, validation) and a 2-rank
    evaluation, their ranks joining the group a ``cuda`` cell asks for: no collective hands a
    backend a tensor it cannot carry (at b14a05b the NCCL-only group refused the host tensors of
    ``all_max``, in the step-0 validation's first ``generate``). Each collective is recorded
    with its tensors' device on a GPU node: FSDP2's on the GPU (NCCL), objects and the
    package's scalars in host memory (gloo); the list is docs/running.md's."""
    root, _ = setup
    cell = cell_config(str(root / "model"), "GRPO", steps=2, val_every=2, checkpoint_every=1, kl_coef=0.01)
    res = subprocess.run(train_cmd(root, cell, "fakecuda") + ["--ranks", "2"], capture_output=True, text=True,
                         timeout=300, env=fake_cuda_env(root / "fakecuda" / "collectives"))
    assert res.returncode == 0, res.stderr[-3000:]
    train = fake_cuda_records(root / "fakecuda" / "collectives")
    res = subprocess.run(eval_cmd(root, "fakecuda_eval", 2), capture_output=True, text=True, timeout=300,
                         env=fake_cuda_env(root / "fakecuda_eval" / "collectives"))
    assert res.returncode == 0, res.stderr[-3000:]
    evaluation = fake_cuda_records(root / "fakecuda_eval" / "collectives")
    seen = {(c["name"], c["device"], c["path"].split(" > ")[-1]) for r in train + evaluation for c in r["collectives"]}
    assert {("all_reduce", "cpu", "distributed.all_sum"), ("all_reduce", "cpu", "distributed.all_max"),
            ("all_gather", "cpu", "distributed.gather"), ("broadcast", "cpu", "distributed.broadcast"),
            ("all_gather_single", "cuda", "update.accumulate_gradients"),  # FSDP2's parameter gathers
            ("reduce_scatter_single", "cuda", "update.accumulate_gradients"),  # and gradient reductions
            ("funcol.all_reduce", "cuda", "update.policy_update"),  # the gradient norm of clipping
            ("all_reduce", "cuda", "rollout.generate"),  # HF generate's synced_gpus flag
            ("funcol.all_gather_single", "cuda", "distributed.full_state_dict"),
            ("all_gather", "cpu", "checkpoint._dcp")} <= seen, sorted(seen)
    assert {c["path"].split(" > ")[0] for r in evaluation for c in r["collectives"]} == {"evaluate.main"}
    # a timeout sized for one rank's file work (b14a05b: torch's 10 minutes), and the policy
    # written by rank 0 after the group is left (b14a05b: while rank 1 waited in finish's barrier)
    timeout = 60 * cell["train"]["collective_timeout_min"]
    assert {r["requested"]["timeout_s"] for r in train + evaluation} == {timeout} and timeout >= 1800
    assert train[0]["requested"]["policy_written_in_group"] is False
    assert "policy_written_in_group" not in train[1]["requested"]
    # rank 0 alone reads the policy and the reference (GRPO's) from disk, and the evaluated model
    # (b14a05b: every rank read them all)
    assert [r["requested"].get("loads", 0) for r in train + evaluation] == [2, 0, 1, 0]


# ---------------------------------------------------------------- one precision for 1 and N ranks

def residual_dtypes(model, ids) -> tuple[list, torch.Tensor]:
    """The dtype of the residual stream after the embeddings and each decoder layer, and the
    logits, of one forward under the bf16 autocast the trainer uses."""
    from nsr_study.batch import autocast

    seen = []
    hooks = [m.register_forward_hook(lambda mod, args, out: seen.append((out[0] if isinstance(out, tuple) else out).dtype))
             for m in [model.base_model.embed_tokens, *model.base_model.layers]]
    with torch.no_grad(), autocast("cpu", "bfloat16"):
        logits = model(ids).logits.float()
    for h in hooks:
        h.remove()
    return seen, logits


def test_n_ranks_on_gpus_compute_in_the_one_rank_precision(monkeypatch):
    """The policy sharded as for a GPU cell (``shard(model, "cuda:0")``, its mesh made on the
    CPU here) keeps fp32 weights, embeddings and residual stream under bf16 autocast, as one
    unsharded process does, and gives the same logits (one rank: no reduction order to differ).
    At b14a05b a GPU mesh gathered bf16 copies of every parameter, so the residual stream was
    bf16 on N ranks only."""
    import torch.distributed as dist
    from torch.distributed import device_mesh

    from nsr_study.distributed import mixed_precision, shard

    real = device_mesh.init_device_mesh
    monkeypatch.setattr(device_mesh, "init_device_mesh", lambda device, shape, **kw: real("cpu", shape, **kw))
    ids = torch.arange(12).reshape(2, 6)
    one = tiny_model(0)
    want_dtypes, want = residual_dtypes(one, ids)
    assert want_dtypes == [torch.float32] * len(want_dtypes)
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        sharded = shard(tiny_model(0), "cuda:0")
        got_dtypes, got = residual_dtypes(sharded, ids)
    finally:
        dist.destroy_process_group()
    assert got_dtypes == want_dtypes and torch.equal(got, want)
    assert (mixed_precision().param_dtype, mixed_precision().reduce_dtype) == (None, torch.float32)


# ---------------------------------------------------------------- ranks die with their launcher

def gone(pid: int) -> bool:
    """No such process, or a zombie no one has reaped yet (it runs nothing)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_ranks_die_with_a_sigkilled_launcher_and_the_claim_is_free(setup, tmp_path):
    """The 2-rank cell on two (made-up) GPUs: SIGKILL its launching process (as SLURM's time
    limit or the OOM killer would) once both ranks run; both ranks are gone within seconds
    (PR_SET_PDEATHSIG) and both GPU ids can be claimed at once (b14a05b: the ranks, in their own
    session, went on training on the devices whose claim had died)."""
    from conftest import MICRO_GPUS

    from nsr_study.devices import claim

    root, _ = setup
    cell = cell_config(str(root / "model"), "NSR", steps=40, val_every=40, checkpoint_every=40)
    gpus = {"CUDA_VISIBLE_DEVICES": ",".join(MICRO_GPUS), "NSR_GPU_LOCK_DIR": str(tmp_path / "locks")}
    proc = subprocess.Popen(train_cmd(root, cell, "orphans") + ["--ranks", "2", "--gpus", "2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ | gpus)
    ranks = {}
    try:
        deadline = time.monotonic() + 120
        while len(ranks) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
            ranks = rank_pids(proc.pid)
        assert len(ranks) == 2, "the ranks did not start"
        time.sleep(3)  # past the ranks' imports, into their work
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 20
        while not all(map(gone, ranks.values())) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert all(map(gone, ranks.values())), f"ranks {ranks} outlived their launcher"
        held = claim(2, "next job", gpus, timeout_s=5)
        assert sorted(held.ids) == sorted(MICRO_GPUS)
        for fd in held.fds:
            os.close(fd)
    finally:
        for pid in ranks.values():
            if not gone(pid):
                os.kill(pid, signal.SIGKILL)
