"""Rollout sampling: EOS handling, and the HF backend samples from the policy itself."""

import copy

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

from conftest import tiny_cell_dir
from nsr_study.data import read_jsonl
from nsr_study.rollout import HFBackend, cut_at_eos, prompts_per_call, static_cache_len

V, EOS, PAD = 40, 1, 0


class IdsTokenizer:
    eos_token_id, pad_token_id = EOS, PAD

    def batch_decode(self, ids, skip_special_tokens=True):
        return [" ".join(map(str, r)) for r in ids]


def tiny_model():
    torch.manual_seed(0)
    cfg = Qwen2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2,
                      intermediate_size=64, vocab_size=V, eos_token_id=EOS, pad_token_id=PAD)
    return Qwen2ForCausalLM(cfg).eval()


def with_qwen_style_defaults(model):
    """A copy whose generation_config reshapes sampling, as Qwen2.5-Instruct's does (stronger)."""
    m = copy.deepcopy(model)
    g = m.generation_config
    g.do_sample, g.temperature, g.top_p, g.top_k, g.repetition_penalty = True, 0.3, 0.5, 2, 5.0
    g.no_repeat_ngram_size, g.min_new_tokens = 1, 6
    return m


def test_cut_at_eos_by_hand():
    assert cut_at_eos([5, 6, EOS, PAD, PAD], {EOS}) == ([5, 6, EOS], False)
    assert cut_at_eos([5, EOS, 7, EOS], {EOS, 9}) == ([5, EOS], False)
    assert cut_at_eos([5, 6, 7], {EOS}) == ([5, 6, 7], True)
    assert cut_at_eos([9, 2], {EOS, 9}) == ([9], False)


def test_model_generation_defaults_do_not_change_samples():
    model = tiny_model()
    dirty = with_qwen_style_defaults(model)
    prompts = [[3, 4, 5], [6, 7], [8, 9, 10, 11]]
    for temperature, n in ((1.0, 3), (0.0, 1)):
        a = HFBackend(model, IdsTokenizer(), batch_size=64).generate(prompts, n, temperature, 1.0, 8, seed=7)
        b = HFBackend(dirty, IdsTokenizer(), batch_size=64).generate(prompts, n, temperature, 1.0, 8, seed=7)
        assert a.response_ids == b.response_ids
    assert dirty.generation_config.repetition_penalty == 5.0  # restored after the call


def test_t1_samples_follow_the_policy_distribution():
    """One-token rollouts at T = 1: empirical token frequencies match softmax(logits) of the
    model (20,000 draws: each frequency's sd is ≤ 0.0036, the bound is 0.015). The prompt holds
    half the vocabulary, so a leaked repetition penalty would move most of the mass."""
    model = with_qwen_style_defaults(tiny_model())
    prompt = list(range(2, 22))
    with torch.no_grad():
        probs = torch.softmax(model(torch.tensor([prompt])).logits[0, -1].float(), -1)
    ro = HFBackend(model, IdsTokenizer(), batch_size=20000).generate([prompt], 20000, 1.0, 1.0, 1, seed=0)
    freq = torch.bincount(torch.tensor([r[0] for r in ro.response_ids]), minlength=V).float() / 20000
    assert (freq - probs).abs().max() < 0.015


@pytest.fixture(scope="module")
def tiny_policy(tmp_path_factory):
    """The random tiny Qwen2 of the pipeline tests with its tokenizer, and six prompts of
    different lengths (left padding matters)."""
    root = tiny_cell_dir(tmp_path_factory.mktemp("rollout"))
    tokenizer = AutoTokenizer.from_pretrained(root / "model")
    model = AutoModelForCausalLM.from_pretrained(root / "model", dtype=torch.float32).eval()
    prompts = [tokenizer.encode(r["problem"]) for r in read_jsonl(root / "val.jsonl")[:6]]
    assert len({len(p) for p in prompts}) > 1
    return model, tokenizer, prompts


def test_batch_size_and_sharding_change_no_sample(tiny_policy):
    """Each prompt samples from its own stream: 12 sequences in one call, 2 prompts per call or
    1 prompt per call give the same rollouts, in the prompts' order (also given backwards); so do the problems split in two shards keyed by
    id, in another order. Another seed draws other tokens (the comparison can fail)."""
    model, tokenizer, prompts = tiny_policy
    keys = [f"p{i}" for i in range(len(prompts))]
    runs = [HFBackend(model, tokenizer, batch_size=b).generate(prompts, 2, 1.0, 0.95, 16, seed=5, keys=keys)
            for b in (64, 4, 2)]
    assert runs[0].response_ids == runs[1].response_ids == runs[2].response_ids
    assert runs[2].prompt_ids == [p for p in prompts for _ in (0, 1)]  # batched shortest first, returned as given
    backwards = HFBackend(model, tokenizer, batch_size=2).generate(prompts[::-1], 2, 1.0, 0.95, 16, seed=5,
                                                                   keys=keys[::-1])
    assert [backwards.response_ids[2 * j : 2 * j + 2] for j in range(len(prompts))][::-1] == \
        [runs[0].response_ids[2 * i : 2 * i + 2] for i in range(len(prompts))]
    backend = HFBackend(model, tokenizer, batch_size=64)
    order = list(range(len(prompts)))[::-1]
    first, second = order[:2], order[2:]
    shards = [backend.generate([prompts[i] for i in part], 2, 1.0, 0.95, 16, seed=5, keys=[keys[i] for i in part])
              for part in (first, second)]
    by_key = {}
    for part, ro in zip((first, second), shards):
        for j, i in enumerate(part):
            by_key[i] = ro.response_ids[2 * j : 2 * j + 2]
    assert [r for i in range(len(prompts)) for r in by_key[i]] == runs[0].response_ids
    other = backend.generate(prompts, 2, 1.0, 0.95, 16, seed=6, keys=keys)
    assert other.response_ids != runs[0].response_ids


def test_compiled_static_cache_decoding_gives_the_plain_tokens(tiny_policy):
    """The fast path (static KV cache, compiled forward, a float32 copy here) gives the plain
    path's tokens: greedy, and sampled with the same seed (the same logits and random draws),
    so it samples from the same policy. Then the policy changes in place, as an optimizer step
    does: the copy is stale until ``sync``, and after it matches the plain path again.
    Every call has 12 sequences (greedy: each prompt twice), so one graph is compiled (~30 s on
    a CPU)."""
    model, tokenizer, prompts = tiny_policy
    plain = HFBackend(model, tokenizer, batch_size=64)
    fast = HFBackend(model, tokenizer, batch_size=64, compiled=True, dtype="float32")
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    for temperature, top_p in ((0.0, 1.0), (1.0, 1.0), (0.6, 0.95)):
        batch, n = (prompts * 2, 1) if temperature == 0 else (prompts, 2)
        a = plain.generate(batch, n, temperature, top_p, 24, seed=3)
        b = fast.generate(batch, n, temperature, top_p, 24, seed=3)
        assert a.response_ids == b.response_ids and a.truncated == b.truncated
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > graphs  # really compiled
    assert fast.generator._previous_max_cache_length == static_cache_len(max(map(len, prompts)), 24)

    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(1)) * 0.5)
    new = plain.generate(prompts * 2, 1, 0.0, 1.0, 24).response_ids
    assert fast.generate(prompts * 2, 1, 0.0, 1.0, 24).response_ids != new  # the copy is stale
    fast.sync(model)
    assert fast.generate(prompts * 2, 1, 0.0, 1.0, 24).response_ids == new


def test_compiled_backend_copies_the_policy_in_the_compute_dtype(tiny_policy):
    """The bf16 copy holds the policy's weights rounded to bf16, takes no gradients, and
    follows the policy through ``sync``; the policy itself stays fp32 and trainable."""
    model, tokenizer, _ = tiny_policy
    backend = HFBackend(model, tokenizer, batch_size=64, compiled=True, dtype="bfloat16")
    with torch.no_grad():
        model.lm_head.weight.mul_(-1)
    backend.sync(model)
    policy = dict(model.named_parameters())
    for name, p in backend.generator.named_parameters():
        assert p.dtype == torch.bfloat16 and not p.requires_grad
        assert torch.equal(p, policy[name].to(torch.bfloat16)), name
    assert all(p.dtype == torch.float32 and p.requires_grad for p in model.parameters())


def test_static_cache_lengths_by_hand():
    assert static_cache_len(200, 56) == 256
    assert static_cache_len(200, 57) == 512
    assert static_cache_len(1024, 1024) == 2048
    assert [prompts_per_call(n, 256) for n in (1, 2, 256, 512)] == [256, 128, 1, 1]
