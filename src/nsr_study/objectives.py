"""The four objectives of Zhu et al. 2025 and the PPO-clip loss, as pure tensor functions.

Definitions follow the paper's own code (RLVR-Decomposed on verl; docs/training.md, "The objectives"). Rewards are 0/1.

| objective   | A(r=1)                      | A(r=0) |
|-------------|-----------------------------|--------|
| GRPO        | (r − mean_g)/(std_g + ε)    | same   |
| PSR         | +1                          | 0      |
| NSR         | 0                           | −1     |
| W_REINFORCE | +λ                          | −1     |

GRPO uses verl's conventions: the unbiased (n−1) standard deviation within the group of one
prompt's rollouts, ε = 1e-6, and a group of one sample gets mean 0 and std 1, so its
advantage is r/(1 + ε) (verl's ``compute_grpo_outcome_advantage``: a single sample has no
spread to normalise by, and its reward passes through, scaled like every other sample's). PSR, NSR and
W-REINFORCE are never group-normalised: normalising a filtered group makes every advantage 0,
and normalising W-REINFORCE cancels λ (it would become GRPO).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

LOSS_AGGS = ("token-mean", "seq-mean", "constant")


def grpo_advantages(r: torch.Tensor, groups: torch.Tensor, lam: float, eps: float = 1e-6) -> torch.Tensor:
    """(r − mean_g)/(std_g + ε) within each prompt's group; a group of one has mean 0 and
    std 1 (as in verl), so it gets r/(1 + ε)."""
    out = torch.empty_like(r)
    for g in torch.unique(groups):
        idx = groups == g
        single = int(idx.sum()) == 1
        mean = 0.0 if single else r[idx].mean()
        std = 1.0 if single else r[idx].std(unbiased=True)
        out[idx] = (r[idx] - mean) / (std + eps)
    return out


def psr_advantages(r: torch.Tensor, groups: torch.Tensor, lam: float) -> torch.Tensor:
    """+1 for a correct sample, 0 for an incorrect one."""
    return r.clone()


def nsr_advantages(r: torch.Tensor, groups: torch.Tensor, lam: float) -> torch.Tensor:
    """0 for a correct sample, −1 for an incorrect one."""
    return r - 1.0


def w_reinforce_advantages(r: torch.Tensor, groups: torch.Tensor, lam: float) -> torch.Tensor:
    """+λ for a correct sample, −1 for an incorrect one."""
    return torch.where(r == 1, torch.full_like(r, lam), torch.full_like(r, -1.0))


@dataclass(frozen=True)
class Objective:
    """Everything the pipeline knows about one objective. Adding an objective is one entry in
    ``OBJECTIVES`` plus its name in the schema's enums (tests/test_objectives.py checks they agree).

    ``drop_zero_advantage`` is the paper's code's choice (PSR/NSR drop their zero-advantage
    samples before cutting minibatches); ``train.drop_zero_advantage`` may override it."""

    advantages: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]  # (rewards, groups, λ) → A
    drop_zero_advantage: bool
    label: str  # in figures and tables
    color: str  # the same in every figure


OBJECTIVES: dict[str, Objective] = {
    "GRPO": Objective(grpo_advantages, False, "GRPO", "#1f77b4"),
    "PSR": Objective(psr_advantages, True, "PSR", "#2ca02c"),
    "NSR": Objective(nsr_advantages, True, "NSR", "#d62728"),
    "W_REINFORCE": Objective(w_reinforce_advantages, False, "W-REINFORCE", "#9467bd"),
}


def advantages(rewards: torch.Tensor, groups: torch.Tensor, objective: str, lam: float) -> torch.Tensor:
    """One advantage per sample (broadcast to its tokens by the loss); rewards must be 0/1."""
    r = rewards.to(torch.float32)
    if not bool(((r == 0) | (r == 1)).all()):
        raise ValueError(f"rewards must be 0 or 1, got {sorted(set(r.tolist()))}")
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; expected one of {list(OBJECTIVES)}")
    return OBJECTIVES[objective].advantages(r, groups, lam)


def clip_loss(logp: torch.Tensor, old_logp: torch.Tensor, adv: torch.Tensor, clip_eps: float):
    """Per-token PPO-clip loss −min(ρA, clip(ρ, 1−ε, 1+ε)A), ρ = exp(logp − old_logp).

    ``adv`` broadcasts against the token tensors (e.g. shape (B, 1)). Returns (loss, clipped,
    ratio) per token; ``clipped`` marks tokens where the clipped term is the active one (the
    clip fraction of verl: the clipped loss is strictly larger).
    """
    ratio = torch.exp(logp - old_logp)
    unclipped = -adv * ratio
    clipped = -adv * torch.clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps)
    return torch.maximum(unclipped, clipped), (clipped > unclipped), ratio


def low_var_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimator of KL(π‖π_ref) (verl's "low_var_kl"), clamped to [−10, 10]."""
    log_ratio = ref_logp - logp
    return torch.clamp(torch.exp(log_ratio) - log_ratio - 1.0, -10.0, 10.0)


def loss_numerator(values: torch.Tensor, mask: torch.Tensor, agg: str) -> torch.Tensor:
    """Sum over one micro-batch of what ``agg`` averages; divide by ``loss_denominator``.

    token-mean and constant sum every kept token; seq-mean sums each sequence's own token
    mean. Splitting a minibatch into micro-batches therefore never changes the loss.
    """
    mask = mask.to(values.dtype)
    if agg == "seq-mean":
        per_seq = (values * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)
        return per_seq.sum()
    if agg in ("token-mean", "constant"):
        return (values * mask).sum()
    raise ValueError(f"unknown loss aggregation {agg!r}; expected one of {LOSS_AGGS}")


def loss_denominator(token_counts: list[int], agg: str, max_new_tokens: int) -> float:
    """Denominator for a whole minibatch, from its per-sequence kept-token counts.

    token-mean: all response tokens of the minibatch, one mean over the minibatch whatever
    its micro-batch split. The paper's code differs when a minibatch spans several
    micro-batches: it takes a token mean per micro-batch (micro-batches packed by a token
    budget, ``use_dynamic_bsz``) and weights each by its share of the minibatch's sequences
    (``dp_actor.py``: ``loss * len(data) / ppo_mini_batch_size``), so its tokens' weights
    depend on how the batch was packed; the two agree when the minibatch is one micro-batch.
    seq-mean: kept sequences; constant (Dr. GRPO): sequences × max_new_tokens, independent
    of the responses' lengths.
    """
    if agg == "token-mean":
        return float(sum(token_counts))
    if agg == "seq-mean":
        return float(sum(1 for c in token_counts if c > 0))
    if agg == "constant":
        return float(len(token_counts) * max_new_tokens)
    raise ValueError(f"unknown loss aggregation {agg!r}; expected one of {LOSS_AGGS}")


def policy_loss(logp: torch.Tensor, entropy: torch.Tensor, old_logp: torch.Tensor, ref_logp: torch.Tensor,
                adv: torch.Tensor, mask: torch.Tensor, *, agg: str, denominator: float, weight: float,
                clip_eps: float, entropy_coef: float, kl_coef: float) -> dict[str, torch.Tensor]:
    """The loss of one micro-batch, to be summed over the micro-batches of a minibatch:

        weight · [Σ clip_loss − entropy_coef · Σ entropy + kl_coef · Σ k3-KL] / denominator

    where Σ aggregates response tokens as ``agg`` says (``loss_numerator``) and
    ``denominator`` is ``loss_denominator`` of the whole minibatch, so the sum does not depend
    on the micro-batch split. ``weight`` is the minibatch's share of a full one (kept samples /
    minibatch_size): the paper's code lets a partial last minibatch weigh less. Returns the
    loss and, detached, its policy-gradient part and the per-token clipped/ratio/KL tensors.
    """
    pg, clipped, ratio = clip_loss(logp, old_logp, adv, clip_eps)
    pg_sum = loss_numerator(pg, mask, agg)
    total = pg_sum
    if entropy_coef:
        total = total - entropy_coef * loss_numerator(entropy, mask, agg)
    kl = low_var_kl(logp, ref_logp) if kl_coef else torch.zeros_like(logp)
    if kl_coef:
        total = total + kl_coef * loss_numerator(kl, mask, agg)
    scale = weight / denominator
    return dict(loss=total * scale, pg_loss=(pg_sum * scale).detach(), clipped=clipped, ratio=ratio.detach(),
                kl=kl.detach())
