"""The policy update on a tiny random Qwen2: log-probs, gradient accumulation, clipping."""

import copy

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from nsr_study.logprobs import chunked_logprobs
from nsr_study.objectives import advantages
from nsr_study.train import Sample, accumulate_gradients, fill_logprobs, policy_update

V, PAD = 101, 0
CFG = dict(loss_agg="token-mean", max_new_tokens=12, micro_batch_size=16, dtype="float32", logprob_chunk=7,
           clip_eps=0.2, entropy_coef=0.0, kl_coef=0.0, minibatch_size=8, prompts_per_step=4,
           rollouts_per_prompt=4, grad_clip=1e9)


def tiny_model(seed=0):
    torch.manual_seed(seed)
    cfg = Qwen2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      intermediate_size=64, vocab_size=V, tie_word_embeddings=False)
    return Qwen2ForCausalLM(cfg).eval()


def make_samples(rewards, objective="GRPO", lam=0.1, seed=1, n=4):
    g = torch.Generator().manual_seed(seed)
    r = torch.tensor(rewards, dtype=torch.float32)
    adv = advantages(r, torch.arange(len(rewards)) // n, objective, lam)
    out = []
    for i, a in enumerate(adv.tolist()):
        prompt = torch.randint(1, V, (int(torch.randint(3, 7, (1,), generator=g)),), generator=g).tolist()
        resp = torch.randint(1, V, (int(torch.randint(2, 12, (1,), generator=g)),), generator=g).tolist()
        out.append(Sample(prompt, resp, a))
    return out


def grads(model):
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


def test_chunked_logprobs_equal_naive_log_softmax_gather():
    torch.manual_seed(0)
    head = torch.nn.Linear(16, V, bias=False)
    h, y = torch.randn(23, 16, requires_grad=True), torch.randint(0, V, (23,))
    naive = torch.log_softmax(head(h), -1).gather(-1, y[:, None]).squeeze(-1)
    naive_ent = -(torch.softmax(head(h), -1) * torch.log_softmax(head(h), -1)).sum(-1)
    for chunk in (1, 5, 1000):
        lp, ent = chunked_logprobs(h, head, y, chunk)
        assert torch.allclose(lp, naive, atol=1e-5) and torch.allclose(ent, naive_ent, atol=1e-5)
    g_naive = torch.autograd.grad(naive.sum(), h)[0]
    g_chunk = torch.autograd.grad(chunked_logprobs(h, head, y, 4)[0].sum(), h)[0]
    assert torch.allclose(g_naive, g_chunk, atol=1e-5)


def test_token_logprobs_match_the_model_logits():
    model = tiny_model()
    samples = make_samples([1, 0, 1, 0])
    fill_logprobs(model, samples, "old_logp", 2, PAD, "cpu", chunk=3)
    for s in samples:
        logits = model(input_ids=torch.tensor([s.ids])).logits[0].float()
        ref = torch.log_softmax(logits, -1)[:-1].gather(-1, torch.tensor(s.ids[1:])[:, None]).squeeze(-1)
        assert torch.allclose(s.old_logp[s.n_prompt:], ref[s.n_prompt - 1:], atol=1e-5)
        assert (s.old_logp[: s.n_prompt] == 0).all()


@pytest.mark.parametrize("agg", ["token-mean", "seq-mean", "constant"])
def test_one_micro_batch_equals_four(agg):
    rewards = [1, 0, 0, 0, 1, 1, 0, 1]
    base = tiny_model()
    results = []
    for micro in (8, 2):
        model = copy.deepcopy(base)
        samples = make_samples(rewards)
        fill_logprobs(model, samples, "old_logp", 8, PAD, "cpu")
        accumulate_gradients(model, samples, CFG | dict(loss_agg=agg, micro_batch_size=micro), PAD, "cpu")
        results.append(grads(model))
    assert (results[0] - results[1]).abs().max().item() <= 1e-6
    assert results[0].abs().sum() > 0


def test_nsr_gradient_nonzero_when_a_wrong_sample_exists():
    model = tiny_model()
    samples = make_samples([1, 1, 1, 0], objective="NSR")
    assert [s.advantage for s in samples] == [0, 0, 0, -1]
    fill_logprobs(model, samples, "old_logp", 8, PAD, "cpu")
    accumulate_gradients(model, [s for s in samples if s.advantage != 0], CFG, PAD, "cpu")
    assert grads(model).norm() > 0


def test_w_reinforce_gradient_depends_on_lambda():
    base, out = tiny_model(), []
    for lam in (0.1, 0.5):
        model = copy.deepcopy(base)
        samples = make_samples([1, 0, 1, 0], objective="W_REINFORCE", lam=lam)
        fill_logprobs(model, samples, "old_logp", 8, PAD, "cpu")
        accumulate_gradients(model, samples, CFG, PAD, "cpu")
        out.append(grads(model))
    assert (out[0] - out[1]).abs().max() > 1e-4


def test_ratio_one_on_first_minibatch_and_clipping_on_a_later_one():
    model = tiny_model()
    model.train()
    samples = make_samples([1, 0, 0, 0, 1, 1, 0, 0, 0, 1, 0, 0, 1, 0, 1, 0])
    fill_logprobs(model, samples, "old_logp", 16, PAD, "cpu")
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-2)
    syncs = []
    up = policy_update(model, optimizer, samples, CFG, PAD, "cpu", after_step=lambda: syncs.append(1))
    assert up["optimizer_steps"] == 2 and len(syncs) == 2  # 16 rollouts / minibatch 8
    assert up["ratio_dev"][0] <= 1e-6  # π = π_old before the first optimizer step
    assert up["clip_fraction"][0] == 0
    assert up["clip_fraction"][1] > 0  # the second minibatch is off-policy


def test_dropped_samples_leave_minibatches_and_empty_ones_are_skipped():
    model = tiny_model()
    samples = make_samples([1, 0, 0, 0, 0, 0, 0, 0], objective="PSR")
    kept = [s if s.advantage != 0 else None for s in samples]  # one sample left
    fill_logprobs(model, [s for s in kept if s], "old_logp", 8, PAD, "cpu")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    cfg = CFG | dict(minibatch_size=2)
    up = policy_update(model, opt, kept, cfg, PAD, "cpu")
    assert up["minibatches"] == 4 and up["optimizer_steps"] == 1


def test_non_finite_loss_stops_with_a_clear_error():
    model = tiny_model()
    samples = make_samples([1, 0, 1, 0])
    fill_logprobs(model, samples, "old_logp", 8, PAD, "cpu")
    samples[1].old_logp[-1] = float("nan")
    with pytest.raises(FloatingPointError, match="non-finite loss"):
        accumulate_gradients(model, samples, CFG, PAD, "cpu")


@pytest.mark.parametrize("objective, rewards, sign", [("PSR", [1, 0, 0, 0], +1), ("NSR", [1, 0, 0, 0], -1)])
def test_update_moves_log_probs_the_right_way(objective, rewards, sign):
    """PSR raises the log-prob of its correct sample; NSR lowers those of its wrong ones."""
    model = tiny_model()
    samples = make_samples(rewards, objective=objective)
    trained = [s for s in samples if s.advantage != 0]
    fill_logprobs(model, trained, "old_logp", 8, PAD, "cpu")
    before = torch.stack([s.old_logp.sum() for s in trained])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    policy_update(model, optimizer, trained, CFG | dict(minibatch_size=len(trained)), PAD, "cpu")
    fill_logprobs(model, trained, "old_logp", 8, PAD, "cpu")
    after = torch.stack([s.old_logp.sum() for s in trained])
    assert (torch.sign(after - before) == sign).all(), (before, after)
