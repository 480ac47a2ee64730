"""The policy update on a tiny random Qwen2: log-probs, gradient accumulation, clipping."""

import copy

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from nsr_study.logprobs import chunked_logprobs
from nsr_study.objectives import advantages
from nsr_study.batch import Sample
from nsr_study.update import accumulate_gradients, fill_logprobs, minibatches, policy_update

V, PAD = 101, 0
CFG = dict(loss_agg="token-mean", max_new_tokens=12, micro_batch_size=16, dtype="float32", logprob_chunk=7,
           clip_eps=0.2, entropy_coef=0.0, kl_coef=0.0, minibatch_size=8, prompts_per_step=4,
           rollouts_per_prompt=4, grad_clip=1e9, temperature=1.0)


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
        lp, ent = chunked_logprobs(h, head, y, chunk, 1.0)
        assert torch.allclose(lp, naive, atol=1e-5) and torch.allclose(ent, naive_ent, atol=1e-5)
    g_naive = torch.autograd.grad(naive.sum(), h)[0]
    g_chunk = torch.autograd.grad(chunked_logprobs(h, head, y, 4, 1.0)[0].sum(), h)[0]
    assert torch.allclose(g_naive, g_chunk, atol=1e-5)


def test_token_logprobs_match_the_model_logits():
    model = tiny_model()
    samples = make_samples([1, 0, 1, 0])
    fill_logprobs(model, samples, "old_logp", CFG | dict(logprob_chunk=3), PAD, "cpu")
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
        fill_logprobs(model, samples, "old_logp", CFG, PAD, "cpu")
        accumulate_gradients(model, samples, CFG | dict(loss_agg=agg, micro_batch_size=micro), PAD, "cpu")
        results.append(grads(model))
    assert (results[0] - results[1]).abs().max().item() <= 1e-6
    assert results[0].abs().sum() > 0


def test_nsr_gradient_nonzero_when_a_wrong_sample_exists():
    model = tiny_model()
    samples = make_samples([1, 1, 1, 0], objective="NSR")
    assert [s.advantage for s in samples] == [0, 0, 0, -1]
    fill_logprobs(model, samples, "old_logp", CFG, PAD, "cpu")
    accumulate_gradients(model, [s for s in samples if s.advantage != 0], CFG, PAD, "cpu")
    assert grads(model).norm() > 0


def test_w_reinforce_gradient_depends_on_lambda():
    base, out = tiny_model(), []
    for lam in (0.1, 0.5):
        model = copy.deepcopy(base)
        samples = make_samples([1, 0, 1, 0], objective="W_REINFORCE", lam=lam)
        fill_logprobs(model, samples, "old_logp", CFG, PAD, "cpu")
        accumulate_gradients(model, samples, CFG, PAD, "cpu")
        out.append(grads(model))
    assert (out[0] - out[1]).abs().max() > 1e-4


def test_ratio_one_on_first_minibatch_and_clipping_on_a_later_one():
    model = tiny_model()
    model.train()
    samples = make_samples([1, 0, 0, 0, 1, 1, 0, 0, 0, 1, 0, 0, 1, 0, 1, 0])
    fill_logprobs(model, samples, "old_logp", CFG, PAD, "cpu")
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-2)
    up = policy_update(model, optimizer, samples, CFG, PAD, "cpu", shuffle_seed=0)
    assert up["optimizer_steps"] == 2  # 16 rollouts / minibatch 8
    assert up["ratio_dev"][0] <= 1e-6  # π = π_old before the first optimizer step
    assert up["clip_fraction"][0] == 0
    assert up["clip_fraction"][1] > 0  # the second minibatch is off-policy


def test_minibatches_shuffle_then_cut_with_a_partial_last():
    cut = minibatches(list(range(10)), 4, seed=3)
    assert [len(mb) for mb in cut] == [4, 4, 2]
    assert sorted(sum(cut, [])) == list(range(10)) and sum(cut, []) != list(range(10))
    assert cut == minibatches(list(range(10)), 4, seed=3)


def test_kept_samples_are_cut_after_dropping_so_few_make_one_on_policy_step():
    """The paper's order: PSR keeps 3 of 16 samples; with minibatch 8 that is ONE optimizer step
    on-policy (no clipping). Splitting first would have made two, the second clipped."""
    model = tiny_model()
    samples = make_samples([1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0], objective="PSR")
    kept = [s for s in samples if s.advantage != 0]
    fill_logprobs(model, kept, "old_logp", CFG, PAD, "cpu")
    up = policy_update(model, torch.optim.AdamW(model.parameters(), lr=5e-2), kept, CFG, PAD, "cpu", shuffle_seed=0)
    assert up["optimizer_steps"] == 1 and up["ratio_dev"] == [pytest.approx(0, abs=1e-6)]
    assert up["clip_fraction"] == [0]


def test_a_partial_minibatch_weighs_its_share_of_a_full_one():
    """3 kept samples with minibatch 8 give 3/8 of the gradient the same samples give as a full
    minibatch (the paper's code scales each micro-batch by its share of the minibatch)."""
    out = []
    for size in (3, 8):
        model = tiny_model()
        samples = make_samples([1, 0, 1, 0], objective="NSR")[1::2] + make_samples([0], objective="NSR")
        fill_logprobs(model, samples, "old_logp", CFG, PAD, "cpu")
        accumulate_gradients(model, samples, CFG | dict(minibatch_size=size), PAD, "cpu")
        out.append(grads(model))
    assert torch.allclose(out[1], out[0] * 3 / 8, atol=1e-7)


def test_temperature_divides_the_logits():
    model = tiny_model()
    s = make_samples([1])[0]
    fill_logprobs(model, [s], "old_logp", CFG | dict(temperature=0.5), PAD, "cpu")
    logits = model(input_ids=torch.tensor([s.ids])).logits[0].float() / 0.5
    ref = torch.log_softmax(logits, -1)[:-1].gather(-1, torch.tensor(s.ids[1:])[:, None]).squeeze(-1)
    assert torch.allclose(s.old_logp[s.n_prompt:], ref[s.n_prompt - 1:], atol=1e-5)


def test_non_finite_loss_stops_with_a_clear_error():
    model = tiny_model()
    samples = make_samples([1, 0, 1, 0])
    fill_logprobs(model, samples, "old_logp", CFG, PAD, "cpu")
    samples[1].old_logp[-1] = float("nan")
    with pytest.raises(FloatingPointError, match="non-finite loss"):
        accumulate_gradients(model, samples, CFG, PAD, "cpu")


@pytest.mark.parametrize("objective, rewards, sign", [("PSR", [1, 0, 0, 0], +1), ("NSR", [1, 0, 0, 0], -1)])
def test_update_moves_log_probs_the_right_way(objective, rewards, sign):
    """PSR raises the log-prob of its correct sample; NSR lowers those of its wrong ones."""
    model = tiny_model()
    samples = make_samples(rewards, objective=objective)
    trained = [s for s in samples if s.advantage != 0]
    fill_logprobs(model, trained, "old_logp", CFG, PAD, "cpu")
    before = torch.stack([s.old_logp.sum() for s in trained])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    policy_update(model, optimizer, trained, CFG | dict(minibatch_size=len(trained)), PAD, "cpu", shuffle_seed=0)
    fill_logprobs(model, trained, "old_logp", CFG, PAD, "cpu")
    after = torch.stack([s.old_logp.sum() for s in trained])
    assert (torch.sign(after - before) == sign).all(), (before, after)
