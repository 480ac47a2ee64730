"""The policy update of tests/test_distributed.py, run on one process (``reference``) or, as a
script under ``torchrun --nproc_per_node N``, on N FSDP2 ranks (gloo): each case's gradients
after the first minibatch and parameters after every optimizer step of the update, both full,
saved by rank 0 to the file given as the first argument."""

import copy
import json
import sys

import torch

from test_update import CFG, PAD, make_samples, tiny_model

from nsr_study.objectives import OBJECTIVES
from nsr_study.update import accumulate_gradients, fill_logprobs, minibatches, policy_update

# (objective, rewards, settings): PSR and NSR keep 5 and 7 of 12 samples (uneven shares, a
# minibatch of one sample leaves rank 1 a stand-in only), micro-batches of 1 and 2.
CASES = {
    "GRPO_kl": ("GRPO", [1, 0, 0, 1, 1, 1, 0, 1, 0, 0, 0, 1], dict(kl_coef=0.05, entropy_coef=0.01, micro_batch_size=2)),
    "PSR": ("PSR", [1, 0, 0, 0, 1, 1, 0, 1, 0, 0, 0, 1], dict(micro_batch_size=1)),
    "NSR": ("NSR", [1, 0, 0, 0, 1, 1, 0, 1, 0, 0, 0, 1], dict(micro_batch_size=2, grad_clip=0.5)),
    "W_REINFORCE": ("W_REINFORCE", [1, 0, 0, 1, 1, 1, 0, 1, 0, 0, 0, 1], dict(micro_batch_size=3, loss_agg="seq-mean")),
}
MINIBATCH = 4  # 12, 5 and 7 kept samples: 3, 2 and 2 optimizer steps, partial last minibatches


def full(t):
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def run_case(name: str, shard=None) -> dict:
    """Gradients of the first minibatch and parameters after the update, as full tensors by
    parameter name. ``shard``: applied to the policy and reference models (FSDP2) when given."""
    objective, rewards, settings = CASES[name]
    cfg = CFG | dict(minibatch_size=MINIBATCH, lr=1e-3) | settings
    model, ref = tiny_model(0).train(), tiny_model(1).eval() if cfg["kl_coef"] else None
    if shard:
        shard(model)
        if ref is not None:
            shard(ref)
    samples = make_samples(rewards, objective)
    if OBJECTIVES[objective].drop_zero_advantage:
        samples = [s for s in samples if s.advantage != 0]
    fill_logprobs(model, samples, "old_logp", cfg, PAD, "cpu")
    if ref is not None:
        fill_logprobs(ref, samples, "ref_logp", cfg, PAD, "cpu")
    first = minibatches(samples, cfg["minibatch_size"], seed=7)[0]
    accumulate_gradients(model, first, cfg, PAD, "cpu")
    grads = {n: full(p.grad).clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=0.01)
    stats = policy_update(model, opt, samples, cfg, PAD, "cpu", shuffle_seed=7)
    params = {n: full(p.detach()).clone() for n, p in model.named_parameters()}
    keep = ("grad_norm", "loss", "pg_loss", "clip_fraction", "entropy", "kl", "ratio_dev", "optimizer_steps")
    return dict(kept=len(samples), grads=grads, params=params, stats={k: copy.deepcopy(stats[k]) for k in keep})


def reference(name: str) -> dict:
    return run_case(name)


if __name__ == "__main__":
    import torch.distributed as dist

    from nsr_study.distributed import init, shard

    torch.set_num_threads(1)
    init("cpu", 10)
    out = {name: run_case(name, lambda m: shard(m, "cpu")) for name in json.loads(sys.argv[2])}
    if dist.get_rank() == 0:
        torch.save(out, sys.argv[1])
    dist.destroy_process_group()
