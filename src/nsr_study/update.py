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
from nsr_study.distributed import all_max, all_sum, gather, world
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


def micro_steps(count: int, ranks: int, micro: int) -> int:
    """Forward passes each rank makes over ``count`` samples: the largest rank share in
    micro-batches. Every rank makes the same number (FSDP2 gathers the weights collectively at
    each forward); a rank whose share ran out makes its extra passes on a stand-in sample whose
    weight is 0."""
    largest_share = -(-count // ranks)
    return -(-largest_share // micro)


def rank_micro_batches(samples: list[Sample], micro: int) -> list[tuple[list[Sample], bool]]:
    """This rank's micro-batches of ``samples`` (sorted by length, dealt out round-robin so the
    ranks' shares have similar lengths), as (samples, real) pairs; ``real`` False marks a
    stand-in batch that must weigh 0. One rank: the samples by length, cut in ``micro`` pieces."""
    rank, ranks = world()
    ordered = by_length(samples)
    mine = ordered[rank::ranks]
    out = []
    for k in range(micro_steps(len(samples), ranks, micro)):
        part = mine[k * micro : (k + 1) * micro]
        out.append((part, True) if part else (ordered[:1], False))
    return out


@torch.no_grad()
def fill_logprobs(model, samples: list[Sample], attr: str, cfg: dict, pad_id: int, device) -> None:
    """Set ``sample.<attr>`` (``old_logp`` or ``ref_logp``) at the sampling temperature, on every
    rank: each rank computes its share, then the rows are gathered."""
    rows = []
    for mb, real in rank_micro_batches(samples, cfg["micro_batch_size"]):
        b = collate(mb, pad_id, device)
        with autocast(device, cfg["dtype"]):
            logp, _ = token_logprobs(model, b["input_ids"], b["attention_mask"], b["response_mask"],
                                     cfg["logprob_chunk"], cfg["temperature"])
        if real:
            rows += [(id(sample), row[: len(sample.ids)].clone()) for sample, row in zip(mb, logp.float().cpu())]
    if world()[1] > 1:  # object ids differ between processes: key by position in the shared list
        position = {id(s): i for i, s in enumerate(samples)}
        found = dict(gather([(position[k], row) for k, row in rows]))
        rows = [(id(samples[i]), row) for i, row in found.items()]
    by_id = {id(s): s for s in samples}
    for k, row in rows:
        setattr(by_id[k], attr, row)


def accumulate_gradients(model, samples: list[Sample], cfg: dict, pad_id: int, device) -> dict:
    """Backpropagate one minibatch's loss through micro-batches into ``.grad``; returns its
    statistics (loss, pg_loss, clipped/entropy/kl per token, largest |ratio − 1|).

    On several ranks, every rank holds the whole minibatch, so the denominator and weight are
    the whole minibatch's (no per-rank token mean, verl#5625); each rank backpropagates its
    share, and FSDP2 sums the ranks' gradients (``nsr_study.distributed.shard``): the result is
    the single-process gradient. Statistics are summed over ranks."""
    agg = cfg["loss_agg"]
    denom = loss_denominator([s.n_response for s in samples], agg, cfg["max_new_tokens"])
    weight = len(samples) / cfg["minibatch_size"]
    tokens = sum(s.n_response for s in samples)
    sums = dict(loss=0.0, pg_loss=0.0, clipped=0.0, entropy=0.0, kl=0.0)
    ratio_dev = 0.0
    for mb, real in rank_micro_batches(samples, cfg["micro_batch_size"]):
        b = collate(mb, pad_id, device)
        mask = b["response_mask"]
        with autocast(device, cfg["dtype"]):
            logp, entropy = token_logprobs(model, b["input_ids"], b["attention_mask"], mask, cfg["logprob_chunk"],
                                           cfg["temperature"])
        out = policy_loss(logp, entropy, b["old_logp"], b["ref_logp"], b["adv"], mask, agg=agg, denominator=denom,
                          weight=weight if real else 0.0, clip_eps=cfg["clip_eps"],
                          entropy_coef=cfg["entropy_coef"], kl_coef=cfg["kl_coef"])
        if not torch.isfinite(out["loss"]):
            raise FloatingPointError(f"non-finite loss ({out['loss'].item()}) in a minibatch of {len(samples)} samples")
        out["loss"].backward()
        if not real:
            continue
        m = mask.bool()
        sums["loss"] += out["loss"].item()
        sums["pg_loss"] += out["pg_loss"].item()
        sums["clipped"] += out["clipped"][m].sum().item()
        sums["entropy"] += entropy.detach()[m].sum().item()
        sums["kl"] += out["kl"][m].sum().item()
        ratio_dev = max(ratio_dev, (out["ratio"][m] - 1).abs().max().item() if m.any() else 0.0)
    stats = dict(zip(sums, all_sum(list(sums.values()))))
    for k in ("clipped", "entropy", "kl"):
        stats[k] /= max(tokens, 1)
    return stats | dict(ratio_dev=all_max(ratio_dev))


def policy_update(model, optimizer, samples: list[Sample], cfg: dict, pad_id: int, device, shuffle_seed: int) -> dict:
    """Every optimizer step of one RL step over the kept ``samples`` (see module doc).
    Returns per-minibatch lists of statistics; ``ratio_dev[0]`` is 0 up to rounding."""
    out = dict(grad_norm=[], ratio_dev=[], loss=[], pg_loss=[], clip_fraction=[], entropy=[], kl=[])
    model.train()
    for mb in minibatches(samples, cfg["minibatch_size"], shuffle_seed):
        optimizer.zero_grad(set_to_none=True)
        st = accumulate_gradients(model, mb, cfg, pad_id, device)
        # the global norm over ranks; the parameters are listed after the backward, which
        # leaves FSDP2's root sharded (after a no-grad forward it holds unsharded copies)
        params = [p for p in model.parameters() if p.requires_grad]
        norm = torch.nn.utils.clip_grad_norm_(params, cfg["grad_clip"])
        norm = norm.full_tensor() if hasattr(norm, "full_tensor") else norm
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
