"""Rollout sampling: EOS handling, and the HF backend samples from the policy itself."""

import copy

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from nsr_study.rollout import HFBackend, cut_at_eos

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
        a = HFBackend(model, IdsTokenizer()).generate(prompts, n, temperature, 1.0, 8, seed=7)
        b = HFBackend(dirty, IdsTokenizer()).generate(prompts, n, temperature, 1.0, 8, seed=7)
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
