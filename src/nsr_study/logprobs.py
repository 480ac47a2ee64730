"""Per-token log-probabilities and entropies without full-vocabulary logits for the batch.

Qwen's vocabulary has 151,936 entries: logits for a (64 × 1,024)-token batch would take 40 GB
in fp32. Only the hidden states at response positions are projected, ``chunk`` rows at a
time, in fp32 (the lm_head matmul runs outside autocast), and each chunk is recomputed in the
backward pass (activation checkpointing) so its logits are never kept.

The logits are divided by the sampling temperature first (as verl does), so ρ = π/π_old and
the entropies are those of the distribution the rollouts were drawn from. Top-p/top-k
truncation is not modelled: the config refuses it for training.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint


def _chunk_logprobs(hidden: torch.Tensor, weight: torch.Tensor, bias, targets: torch.Tensor, temperature: float):
    with torch.autocast(device_type=hidden.device.type, enabled=False):
        logits = F.linear(hidden.float(), weight.float(), None if bias is None else bias.float()) / temperature
        logz = torch.logsumexp(logits, dim=-1)
        logp = logits.gather(-1, targets[:, None]).squeeze(-1) - logz
        probs = torch.exp(logits - logz[:, None])
        entropy = logz - (probs * logits).sum(-1)
    return logp, entropy


def chunked_logprobs(hidden: torch.Tensor, lm_head: torch.nn.Linear, targets: torch.Tensor, chunk: int,
                     temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """log p_T(target) and entropy of p_T = softmax(logits / T) for rows of ``hidden`` (N, H)
    → two (N,) fp32 tensors."""
    logps, ents = [], []
    for s in range(0, hidden.shape[0], chunk):
        args = (hidden[s : s + chunk], lm_head.weight, lm_head.bias, targets[s : s + chunk], temperature)
        if torch.is_grad_enabled():
            lp, ent = checkpoint(_chunk_logprobs, *args, use_reentrant=False)
        else:
            lp, ent = _chunk_logprobs(*args)
        logps.append(lp)
        ents.append(ent)
    if not logps:
        empty = hidden.new_zeros(0, dtype=torch.float32)
        return empty, empty
    return torch.cat(logps), torch.cat(ents)


def last_hidden_state(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The final norm's output, by calling the model itself with no logits kept: FSDP2's root
    hooks (which gather the embeddings, the final norm and the head on every rank) fire only on
    the root module's own forward, never on ``model.base_model``'s."""
    captured = []
    hook = model.base_model.norm.register_forward_hook(lambda module, args, out: captured.append(out))
    try:
        model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False,
              logits_to_keep=torch.zeros(0, dtype=torch.long, device=input_ids.device))
    finally:
        hook.remove()
    return captured[-1]


def token_logprobs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, target_mask: torch.Tensor,
                   chunk: int, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(logp, entropy), each (B, T) fp32: at position t, log p(input_ids[t] | input_ids[:t])
    and the entropy of that next-token distribution, where ``target_mask[t]``; 0 elsewhere.

    Sequences are right-padded (prompt then response, no padding inside), so positions are
    the plain ``arange`` the model assumes.
    """
    hidden = last_hidden_state(model, input_ids, attention_mask)
    sel = target_mask[:, 1:].bool()
    lp, ent = chunked_logprobs(hidden[:, :-1][sel], model.get_output_embeddings(), input_ids[:, 1:][sel], chunk,
                               temperature)
    logp = hidden.new_zeros(input_ids.shape, dtype=torch.float32)
    entropy = torch.zeros_like(logp)
    pad = torch.zeros_like(target_mask[:, :1], dtype=torch.bool)
    full = torch.cat([pad, sel], dim=1)
    logp = logp.masked_scatter(full, lp)
    entropy = entropy.masked_scatter(full, ent)
    return logp, entropy
