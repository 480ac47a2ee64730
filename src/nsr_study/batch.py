"""Token-id samples as padded tensors, and the compute-dtype context.

Shared by training (π_old log-probs, the update) and evaluation (entropies of greedy
responses), so evaluation never imports the trainer.
"""

from __future__ import annotations

import torch


class Sample:
    """One rollout ready for the update: prompt + response ids and its scalars."""

    __slots__ = ("ids", "n_prompt", "advantage", "old_logp", "ref_logp")

    def __init__(self, prompt: list[int], response: list[int], advantage: float = 0.0):
        self.ids = list(prompt) + list(response)
        self.n_prompt = len(prompt)
        self.advantage = float(advantage)
        self.old_logp = self.ref_logp = None  # (len(ids),) set by update.fill_logprobs

    @property
    def n_response(self) -> int:
        return len(self.ids) - self.n_prompt


def collate(samples: list[Sample], pad_id: int, device) -> dict:
    """Right-padded tensors: input_ids, attention_mask, response_mask, adv, old/ref logp."""
    width = max(len(s.ids) for s in samples)
    ids = torch.full((len(samples), width), pad_id, dtype=torch.long)
    att = torch.zeros_like(ids)
    resp = torch.zeros_like(ids)
    old = torch.zeros(len(samples), width)
    ref = torch.zeros(len(samples), width)
    for i, s in enumerate(samples):
        ids[i, : len(s.ids)] = torch.tensor(s.ids)
        att[i, : len(s.ids)] = 1
        resp[i, s.n_prompt : len(s.ids)] = 1
        if s.old_logp is not None:
            old[i, : len(s.ids)] = s.old_logp
        if s.ref_logp is not None:
            ref[i, : len(s.ids)] = s.ref_logp
    adv = torch.tensor([s.advantage for s in samples])[:, None]
    tensors = dict(input_ids=ids, attention_mask=att, response_mask=resp, adv=adv, old_logp=old, ref_logp=ref)
    return {k: v.to(device) for k, v in tensors.items()}


def autocast(device, dtype: str):
    """bf16 autocast when the configured compute dtype is bfloat16, a no-op for float32."""
    enabled = dtype == "bfloat16"
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16, enabled=enabled)
