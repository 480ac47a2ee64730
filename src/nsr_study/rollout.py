"""Rollout backends behind one interface.

``generate(prompt_ids, n, ...)`` returns, per sample (prompt-major: the n samples of prompt 0
first), the prompt ids, the generated response ids *including* the EOS token when one was
generated (training uses these ids, never re-tokenised text), the decoded text and whether the
response was cut at ``max_new_tokens``. ``sync(model)`` makes the backend sample from the
current policy weights.

- ``HFBackend``: ``transformers`` ``generate`` on the policy module itself (CPU, tests, GPU
  fallback); nothing to sync.
- ``VLLMBackend``: an in-process vLLM engine colocated on the GPU; ``sync`` loads the policy's
  weights into the engine and resets the prefix cache (stale KV of old weights otherwise).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass
class Rollouts:
    prompt_ids: list[list[int]]
    response_ids: list[list[int]]
    texts: list[str]
    truncated: list[bool]

    def __len__(self) -> int:
        return len(self.response_ids)

    def response_mask(self) -> torch.Tensor:
        """(samples, longest response) 1 for response tokens, 0 for right padding."""
        width = max((len(r) for r in self.response_ids), default=0)
        mask = torch.zeros(len(self), width, dtype=torch.long)
        for i, r in enumerate(self.response_ids):
            mask[i, : len(r)] = 1
        return mask


def eos_ids(model, tokenizer) -> set[int]:
    """Every token that ends a response: generation config's EOS list plus the tokenizer's."""
    ids = model.generation_config.eos_token_id
    ids = set(ids if isinstance(ids, (list, tuple)) else [ids] if ids is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


def cut_at_eos(tokens: list[int], eos: set[int]) -> tuple[list[int], bool]:
    """(tokens up to and including the first EOS, truncated?) — padding after EOS dropped."""
    for i, t in enumerate(tokens):
        if t in eos:
            return tokens[: i + 1], False
    return tokens, True


class HFBackend:
    """Sampling with ``model.generate``; the policy module is shared, so sync is a no-op."""

    def __init__(self, model, tokenizer, batch_size: int = 64):
        self.model, self.tokenizer, self.batch_size = model, tokenizer, batch_size
        self.eos = eos_ids(model, tokenizer)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(self.eos)

    def sync(self, model) -> None:
        assert model is self.model, "HFBackend samples from the policy module it was given"

    @torch.no_grad()
    def generate(self, prompt_ids: list[list[int]], n: int, temperature: float, top_p: float,
                 max_new_tokens: int, seed: int | None = None) -> Rollouts:
        """``temperature == 0`` is greedy. ``seed`` reseeds torch for this call (None: the
        global RNG stream, which the trainer seeds and checkpoints)."""
        if seed is not None:
            torch.manual_seed(seed)
        was_training = self.model.training
        self.model.eval()
        device = next(self.model.parameters()).device
        out = Rollouts([], [], [], [])
        per_call = max(1, self.batch_size // n)
        for start in range(0, len(prompt_ids), per_call):
            chunk = prompt_ids[start : start + per_call]
            width = max(len(p) for p in chunk)
            ids = torch.full((len(chunk), width), self.pad_id, dtype=torch.long)
            att = torch.zeros_like(ids)
            for i, p in enumerate(chunk):  # left padding: generation continues every prompt at the end
                ids[i, width - len(p):] = torch.tensor(p)
                att[i, width - len(p):] = 1
            sampling = dict(do_sample=True, temperature=temperature, top_p=top_p) if temperature > 0 else dict(do_sample=False)
            gen = self.model.generate(
                input_ids=ids.to(device), attention_mask=att.to(device), max_new_tokens=max_new_tokens,
                num_return_sequences=n, pad_token_id=self.pad_id, eos_token_id=sorted(self.eos),
                top_k=None, **sampling,
            )[:, width:].tolist()
            for j, tokens in enumerate(gen):
                resp, trunc = cut_at_eos(tokens, self.eos)
                out.prompt_ids.append(chunk[j // n])
                out.response_ids.append(resp)
                out.truncated.append(trunc)
        out.texts = self.tokenizer.batch_decode(out.response_ids, skip_special_tokens=True)
        if was_training:
            self.model.train()
        return out


class VLLMBackend:
    """In-process vLLM engine on the training GPU (GUIDE §4).

    ``VLLM_ENABLE_V1_MULTIPROCESSING=0`` keeps the engine in this process so ``sync`` can
    reach its model; ``gpu_memory_utilization`` leaves the rest of the card to the trainer.
    Never use ``reload_weights``/level-2 sleep restore: those reload the original checkpoint.
    """

    def __init__(self, model_id: str, tokenizer, seed: int, gpu_memory_utilization: float,
                 max_model_len: int, dtype: str = "bfloat16"):
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        from vllm import LLM

        self.tokenizer = tokenizer
        self.llm = LLM(model=model_id, seed=seed, dtype=dtype, gpu_memory_utilization=gpu_memory_utilization,
                       max_model_len=max_model_len, enable_prefix_caching=True)
        self.eos = {tokenizer.eos_token_id} | set(self.llm.llm_engine.model_config.hf_config.eos_token_id
                                                  if isinstance(getattr(self.llm.llm_engine.model_config.hf_config, "eos_token_id", None), list)
                                                  else [])

    def _engine_model(self):
        return self.llm.llm_engine.model_executor.driver_worker.model_runner.model

    @torch.no_grad()
    def sync(self, model) -> None:
        self._engine_model().load_weights((name, p.detach()) for name, p in model.state_dict().items())
        self.llm.reset_prefix_cache()

    def generate(self, prompt_ids: list[list[int]], n: int, temperature: float, top_p: float,
                 max_new_tokens: int, seed: int | None = None) -> Rollouts:
        from vllm import SamplingParams

        params = SamplingParams(n=n, temperature=temperature, top_p=top_p if temperature > 0 else 1.0,
                                max_tokens=max_new_tokens, seed=seed)
        outs = self.llm.generate([{"prompt_token_ids": p} for p in prompt_ids], params, use_tqdm=False)
        result = Rollouts([], [], [], [])
        for p, o in zip(prompt_ids, outs):
            for c in o.outputs:
                result.prompt_ids.append(p)
                result.response_ids.append(list(c.token_ids))
                result.truncated.append(c.finish_reason == "length")
        result.texts = self.tokenizer.batch_decode(result.response_ids, skip_special_tokens=True)
        return result
