"""The four objectives of Zhu et al. 2025 and the PPO-clip loss, as pure tensor functions.

Definitions follow the paper's own code (RLVR-Decomposed on verl, GUIDE §3). Rewards are 0/1.

| objective   | A(r=1)                      | A(r=0) |
|-------------|-----------------------------|--------|
| GRPO        | (r − mean_g)/(std_g + ε)    | same   |
| PSR         | +1                          | 0      |
| NSR         | 0                           | −1     |
| W_REINFORCE | +λ                          | −1     |

GRPO uses verl's conventions: the unbiased (n−1) standard deviation within the group of one
prompt's rollouts, ε = 1e-6, and a group of one sample gets mean 0 and std 1. PSR, NSR and
W-REINFORCE are never group-normalised: normalising a filtered group makes every advantage 0,
and normalising W-REINFORCE cancels λ (it would become GRPO).
"""

from __future__ import annotations

import torch

OBJECTIVES = ("GRPO", "PSR", "NSR", "W_REINFORCE")
LOSS_AGGS = ("token-mean", "seq-mean", "constant")


def advantages(rewards: torch.Tensor, groups: torch.Tensor, objective: str, lam: float = 0.1,
               eps: float = 1e-6) -> torch.Tensor:
    """One advantage per sample (broadcast to its tokens by the loss)."""
    r = rewards.to(torch.float32)
    if not bool(((r == 0) | (r == 1)).all()):
        raise ValueError(f"rewards must be 0 or 1, got {sorted(set(r.tolist()))}")
    if objective == "PSR":
        return r.clone()
    if objective == "NSR":
        return r - 1.0
    if objective == "W_REINFORCE":
        return torch.where(r == 1, torch.full_like(r, lam), torch.full_like(r, -1.0))
    if objective != "GRPO":
        raise ValueError(f"unknown objective {objective!r}; expected one of {OBJECTIVES}")
    out = torch.empty_like(r)
    for g in torch.unique(groups):
        idx = groups == g
        if int(idx.sum()) == 1:
            out[idx] = r[idx]
        else:
            out[idx] = (r[idx] - r[idx].mean()) / (r[idx].std(unbiased=True) + eps)
    return out


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

    token-mean: all kept tokens (the paper's code); seq-mean: kept sequences; constant
    (Dr. GRPO): sequences × max_new_tokens, independent of the responses' lengths.
    """
    if agg == "token-mean":
        return float(sum(token_counts))
    if agg == "seq-mean":
        return float(sum(1 for c in token_counts if c > 0))
    if agg == "constant":
        return float(len(token_counts) * max_new_tokens)
    raise ValueError(f"unknown loss aggregation {agg!r}; expected one of {LOSS_AGGS}")
