"""Advantages, clip loss, KL and aggregation against values computed by hand."""

import math

import pytest
import torch

from nsr_study.objectives import advantages, clip_loss, grpo_advantages, loss_denominator, loss_numerator, low_var_kl

# four groups of four rollouts: mixed 1/4, all correct, all wrong, mixed 2/4
R = torch.tensor([1, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 0, 0], dtype=torch.float32)
G = torch.arange(4).repeat_interleave(4)


def test_grpo_by_hand():
    a = advantages(R, G, "GRPO", lam=0.1)
    # group 0: mean 1/4, unbiased std sqrt((0.75² + 3·0.25²)/3) = 0.5
    s0 = 0.5 + 1e-6
    # group 3: mean 1/2, unbiased std sqrt(4·0.25/3) = 1/sqrt(3)
    s3 = 1 / math.sqrt(3) + 1e-6
    expected = [0.75 / s0, -0.25 / s0, -0.25 / s0, -0.25 / s0, 0, 0, 0, 0, 0, 0, 0, 0,
                0.5 / s3, 0.5 / s3, -0.5 / s3, -0.5 / s3]
    assert a.tolist() == pytest.approx(expected, abs=1e-6)


def test_psr_nsr_w_reinforce_by_hand_no_normalisation():
    assert advantages(R, G, "PSR", lam=0.1).tolist() == R.tolist()
    assert advantages(R, G, "NSR", lam=0.1).tolist() == [r - 1 for r in R.tolist()]
    w = advantages(R, G, "W_REINFORCE", lam=0.1).tolist()
    assert w == pytest.approx([0.1 if r == 1 else -1.0 for r in R.tolist()])
    # uniform groups keep their signal (the seed implementations' bug zeroed them)
    assert advantages(R, G, "NSR", lam=0.1)[8:12].tolist() == [-1, -1, -1, -1]
    assert advantages(R, G, "PSR", lam=0.1)[4:8].tolist() == [1, 1, 1, 1]


def test_grpo_group_of_one_has_mean_0_and_std_1():
    """As in verl: a lone sample's advantage is (r − 0)/(1 + ε); with ε = 0.5 that is 2/3 for
    r = 1, beside a group of two [1, 0] whose unbiased std is 1/√2: ±(0.5)/(0.7071 + 0.5)."""
    a = grpo_advantages(torch.tensor([1.0, 0.0, 1.0, 0.0]), torch.tensor([0, 1, 2, 2]), lam=0.1, eps=0.5)
    assert a.tolist() == pytest.approx([2 / 3, 0.0, 0.5 / (0.5**0.5 + 0.5), -0.5 / (0.5**0.5 + 0.5)])
    lone = advantages(torch.tensor([1.0]), torch.tensor([0]), "GRPO", lam=0.1).item()  # ε = 1e-6
    assert lone == pytest.approx(1 / (1 + 1e-6), abs=1e-7) and lone != 1.0


def test_registry_schema_and_figures_agree():
    """One definition per objective: the schema's enums list exactly the registry's names, and
    every objective has its own figure colour and label."""
    import yaml

    from conftest import REPO
    from nsr_study.objectives import OBJECTIVES

    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())["properties"]
    assert schema["objectives"]["items"]["enum"] == list(OBJECTIVES)
    assert schema["train"]["properties"]["drop_zero_advantage"]["items"]["enum"] == list(OBJECTIVES)
    assert len({o.color for o in OBJECTIVES.values()}) == len({o.label for o in OBJECTIVES.values()}) == len(OBJECTIVES)
    assert [k for k, o in OBJECTIVES.items() if o.drop_zero_advantage] == ["PSR", "NSR"]  # the paper's code


def test_bad_rewards_and_objective_rejected():
    with pytest.raises(ValueError, match="0 or 1"):
        advantages(torch.tensor([0.5]), torch.tensor([0]), "PSR", lam=0.1)
    with pytest.raises(ValueError, match="unknown objective"):
        advantages(R, G, "RLVR", lam=0.1)


def test_clip_loss_for_given_ratios():
    ratios = torch.tensor([0.5, 0.9, 1.0, 1.1, 1.5])
    logp, old = torch.log(ratios), torch.zeros(5)
    loss, clipped, rho = clip_loss(logp, old, torch.tensor(1.0), 0.2)
    assert rho.tolist() == pytest.approx(ratios.tolist())
    # A = +1: −min(ρ, clip(ρ)) → the upper clip binds at 1.5
    assert loss.tolist() == pytest.approx([-0.5, -0.9, -1.0, -1.1, -1.2])
    assert clipped.tolist() == [False, False, False, False, True]
    # A = −1: −min(−ρ, −clip(ρ)) = max(ρ, clip(ρ)) → the lower clip binds at 0.5
    loss, clipped, _ = clip_loss(logp, old, torch.tensor(-1.0), 0.2)
    assert loss.tolist() == pytest.approx([0.8, 0.9, 1.0, 1.1, 1.5])
    assert clipped.tolist() == [True, False, False, False, False]


def test_clip_loss_gradient_vanishes_only_where_clipped():
    logp = torch.log(torch.tensor([1.0, 1.5])).requires_grad_()
    loss, _, _ = clip_loss(logp, torch.zeros(2), torch.tensor(1.0), 0.2)
    loss.sum().backward()
    # d/dlogp of −ρ is −ρ (=−1 at ρ=1); the clipped token at ρ=1.5 gets no gradient
    assert logp.grad.tolist() == pytest.approx([-1.0, 0.0])


def test_low_var_kl_by_hand():
    logp = torch.tensor([-1.0, -1.0])
    ref = torch.tensor([-1.0, -1.0 + math.log(2)])
    assert low_var_kl(logp, ref).tolist() == pytest.approx([0.0, 2 - math.log(2) - 1])


VALUES = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 0.0]])
MASK = torch.tensor([[1, 1, 1], [1, 1, 0]])


@pytest.mark.parametrize("agg, expected", [("token-mean", 15 / 5), ("seq-mean", (6 / 3 + 9 / 2) / 2),
                                           ("constant", 15 / (2 * 4))])
def test_aggregation_by_hand_and_split_invariant(agg, expected):
    denom = loss_denominator([3, 2], agg, max_new_tokens=4)
    assert (loss_numerator(VALUES, MASK, agg) / denom).item() == pytest.approx(expected)
    split = loss_numerator(VALUES[:1], MASK[:1], agg) + loss_numerator(VALUES[1:], MASK[1:], agg)
    assert (split / denom).item() == pytest.approx(expected)


def test_seq_mean_ignores_dropped_sequences():
    assert loss_denominator([3, 0, 2], "seq-mean", 4) == 2
    assert loss_denominator([3, 0, 2], "token-mean", 4) == 5


def test_policy_loss_composed_by_hand():
    """ρ = [1, 1.5], A = 1, ε = 0.2: clip loss [−1, −1.2] (the second clipped), entropies
    [0.5, 1.0] with coefficient 0.1, k3-KL [0, 1/1.5 + ln 1.5 − 1] with coefficient 0.5;
    token-mean over 2 tokens of a minibatch half full (weight 0.5)."""
    from nsr_study.objectives import policy_loss

    logp, old = torch.tensor([[0.0, math.log(1.5)]]), torch.zeros(1, 2)
    entropy, mask, adv = torch.tensor([[0.5, 1.0]]), torch.ones(1, 2), torch.ones(1, 1)
    kw = dict(agg="token-mean", denominator=2.0, weight=0.5, clip_eps=0.2)
    out = policy_loss(logp, entropy, old, torch.zeros(1, 2), adv, mask, entropy_coef=0.1, kl_coef=0.0, **kw)
    assert out["loss"].item() == pytest.approx(0.25 * (-2.2 - 0.1 * 1.5))
    assert out["pg_loss"].item() == pytest.approx(0.25 * -2.2)
    assert out["clipped"].tolist() == [[False, True]]
    k3 = 1 / 1.5 + math.log(1.5) - 1
    out = policy_loss(logp, entropy, old, torch.zeros(1, 2), adv, mask, entropy_coef=0.1, kl_coef=0.5, **kw)
    assert out["loss"].item() == pytest.approx(0.25 * (-2.2 - 0.15 + 0.5 * k3))
    assert out["kl"][0, 1].item() == pytest.approx(k3)
