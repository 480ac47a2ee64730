"""The policy update of one RL step: π_old (and π_ref) log-probs once, then PPO-clip
optimizer steps over minibatches with gradient accumulation over micro-batches.

Minibatches follow the paper's code: the samples the step keeps (zero-advantage ones already
dropped for PSR/NSR) are shuffled and cut into ``minibatch_size`` pieces, the last possibly
partial. A step with ≤ minibatch_size kept samples therefore makes one on-policy optimizer step
(ratio ≡ 1, no clipping); later minibatches are off-policy and clipping is active there — the
mechanism the paper's NSR result depends on.
"""

from __future__ import annotations

import torch

from nsr_study.batch import Sample, autocast, collate
from nsr_study.logprobs import token_logprobs
from nsr_study.objectives import loss_denominator, policy_loss


def minibatches(samples: list, size: int, seed: int) -> list[list]:
    """``samples`` in a seeded random order, cut into pieces of ``size`` (the last may be shorter)."""
    order = torch.randperm(len(samples), generator=torch.Generator().manual_seed(seed)).tolist()
    return [[samples[i] for i in order[s : s + size]] for s in range(0, len(order), size)]


def by_length(samples: list[Sample]) -> list[Sample]:
    """Samples of similar length side by side, so micro-batches carry little padding. The loss
    denominator is the whole minibatch's, so the order changes no gradient."""
    return sorted(samples, key=lambda s: len(s.ids))


@torch.no_grad()
def fill_logprobs(model, samples: list[Sample], attr: str, cfg: dict, pad_id: int, device) -> None:
    """Set ``sample.<attr>`` (``old_logp`` or ``ref_logp``) at the sampling temperature."""
    samples = by_length(samples)
    for s in range(0, len(samples), cfg["micro_batch_size"]):
        mb = samples[s : s + cfg["micro_batch_size"]]
        b = collate(mb, pad_id, device)
        with autocast(device, cfg["dtype"]):
            logp, _ = token_logprobs(model, b["input_ids"], b["attention_mask"], b["response_mask"],
                                     cfg["logprob_chunk"], cfg["temperature"])
        for sample, row in zip(mb, logp.float().cpu()):
            setattr(sample, attr, row[: len(sample.ids)].clone())


def accumulate_gradients(model, samples: list[Sample], cfg: dict, pad_id: int, device) -> dict:
    """Backpropagate one minibatch's loss through micro-batches into ``.grad``; returns its
    statistics (loss, pg_loss, clipped/entropy/kl per token, largest |ratio − 1|)."""
    agg = cfg["loss_agg"]
    denom = loss_denominator([s.n_response for s in samples], agg, cfg["max_new_tokens"])
    weight = len(samples) / cfg["minibatch_size"]
    tokens = sum(s.n_response for s in samples)
    samples = by_length(samples)
    stats = dict(loss=0.0, pg_loss=0.0, clipped=0.0, entropy=0.0, kl=0.0, ratio_dev=0.0)
    for start in range(0, len(samples), cfg["micro_batch_size"]):
        b = collate(samples[start : start + cfg["micro_batch_size"]], pad_id, device)
        mask = b["response_mask"]
        with autocast(device, cfg["dtype"]):
            logp, entropy = token_logprobs(model, b["input_ids"], b["attention_mask"], mask, cfg["logprob_chunk"],
                                           cfg["temperature"])
        out = policy_loss(logp, entropy, b["old_logp"], b["ref_logp"], b["adv"], mask, agg=agg, denominator=denom,
                          weight=weight, clip_eps=cfg["clip_eps"], entropy_coef=cfg["entropy_coef"],
                          kl_coef=cfg["kl_coef"])
        if not torch.isfinite(out["loss"]):
            raise FloatingPointError(f"non-finite loss ({out['loss'].item()}) in a minibatch of {len(samples)} samples")
        out["loss"].backward()
        m = mask.bool()
        stats["loss"] += out["loss"].item()
        stats["pg_loss"] += out["pg_loss"].item()
        stats["clipped"] += out["clipped"][m].sum().item()
        stats["entropy"] += entropy.detach()[m].sum().item()
        stats["kl"] += out["kl"][m].sum().item()
        stats["ratio_dev"] = max(stats["ratio_dev"], (out["ratio"][m] - 1).abs().max().item() if m.any() else 0.0)
    for k in ("clipped", "entropy", "kl"):
        stats[k] /= max(tokens, 1)
    return stats


def policy_update(model, optimizer, samples: list[Sample], cfg: dict, pad_id: int, device, shuffle_seed: int) -> dict:
    """Every optimizer step of one RL step over the kept ``samples`` (see module doc).
    Returns per-minibatch lists of statistics; ``ratio_dev[0]`` is 0 up to rounding."""
    params = [p for p in model.parameters() if p.requires_grad]
    out = dict(grad_norm=[], ratio_dev=[], loss=[], pg_loss=[], clip_fraction=[], entropy=[], kl=[])
    model.train()
    for mb in minibatches(samples, cfg["minibatch_size"], shuffle_seed):
        optimizer.zero_grad(set_to_none=True)
        st = accumulate_gradients(model, mb, cfg, pad_id, device)
        norm = torch.nn.utils.clip_grad_norm_(params, cfg["grad_clip"])
        if not torch.isfinite(norm):
            raise FloatingPointError(f"non-finite gradient norm ({norm.item()})")
        optimizer.step()
        out["grad_norm"].append(norm.item())
        for k, v in (("ratio_dev", "ratio_dev"), ("loss", "loss"), ("pg_loss", "pg_loss"),
                     ("clip_fraction", "clipped"), ("entropy", "entropy"), ("kl", "kl")):
            out[k].append(st[v])
    optimizer.zero_grad(set_to_none=True)
    out["optimizer_steps"] = len(out["grad_norm"])
    return out
