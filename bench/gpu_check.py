"""Every figure the study's cost and multi-GPU path rest on, in one short call, for the day a GPU
is lent for minutes: run by ``bash bench/gpu_check.sh DIR`` (see there), which writes
``DIR/gpu_check.yaml`` in the format of ``src/nsr_study/throughput.yaml`` (read by
``python -m nsr_study plan --throughput``) and checks it (``--check``).

Random-init Qwen2.5 shapes (bench/train_step.py's SHAPES: nothing downloaded), the pipeline's own
code throughout, the study's settings from ``--configfile`` (batch sizes, lengths, precision):

- ``train-step-<shape>``: π_old log-probs and the update (``nsr_study.update``) of one training
  batch of full-length responses, timed after a warm-up step: seconds, MFU, peak memory;
  ``train-step-3b-grpo``: the same with GRPO's KL loss and its bf16 reference policy;
- ``rollout-<shape>-<plain|compiled>-<train|eval>``: one ``HFBackend.generate`` call as the trainer
  makes it (training batch and length, fp32 policy under autocast) and as the evaluation makes it
  (``generation_batch_size``, the evaluation's length and sampling, the policy in the compute
  dtype), timed after a short warm-up call (compiled: one with the timed call's batch and
  static-cache length, so the timed call reuses its graphs);
- ``sampling-cost``: per-prompt seeded sampling (``SeededSampling``) against transformers' own
  ``do_sample`` at the training batch, alternating calls, mean ± sd per decoding step;
- ``fsdp-1.5b``: one rank through the multi-rank path (a process group: NCCL on a GPU, gloo on
  the CPU; ``distributed.shard``): one optimizer step's loss and gradient norm against the plain
  path on the same weights and samples, then a DCP checkpoint (``checkpoint.save``/``load_state``)
  written, read into fresh shards and compared; ``fsdp-7b-peak``: peak memory of a 7B-shaped step,
  gradient checkpointing, micro-batch 1.

Measurements run in that order of importance; one that would not end before ``--budget-s`` is
skipped and listed as such, and the file is rewritten after every measurement, so a kill leaves
the figures so far. ``--smoke`` runs the same code on the CPU with tiny stand-in shapes and
token counts (card ``cpu-smoke``: not a measurement of any model)."""

from __future__ import annotations

import argparse
import datetime
import gc
import math
import os
import platform
import socket
import statistics
import sys
import time
import traceback
from pathlib import Path

import torch
import yaml
from train_step import EOS, MODELS, PAD, SHAPES, IdsOnlyTokenizer
from transformers import Qwen2Config, Qwen2ForCausalLM

from nsr_study import checkpoint, distributed
from nsr_study.batch import Sample, autocast
from nsr_study.config import load_config, objective_train
from nsr_study.cost import prompts_per_call
from nsr_study.flops import forward_flops, mfu, peak_bf16_tflops, update_flops
from nsr_study.objectives import advantages
from nsr_study.rates import THROUGHPUT, load_throughput
from nsr_study.rollout import HFBackend, plain_generation_config, static_cache_len
from nsr_study.update import fill_logprobs, policy_update

RATE_SHAPES = ("0.5b", "1.5b", "3b")  # the study's models; 7b only for the FSDP2 memory figure
# Seconds a measurement must have left to start (its warm-up included): the longest wall time
# of its kind on an H200 on 2026-12-04 (docs/cost.md "Measured on an H200") plus ~15 %;
# rollout-3b-plain-eval ran over 120 s without ending, and fsdp-7b and the compiled calls
# (a plain call plus about a minute of compilation) are guesses until a GPU runs them.
NEEDS_S = {"train-step": 20, "rollout-plain-train": 50, "rollout-plain-eval": 150, "sampling-cost": 45,
           "fsdp": 90, "fsdp-7b": 90, "rollout-compiled-train": 110, "rollout-compiled-eval": 180}
# Figures every measurement of a kind reports (``--check``).
FIGURES = {"train-step": {"seconds", "parameters", "tokens", "peak_memory_gib", "tflops", "mfu"},
           "rollout": {"seconds", "batch", "prompt_tokens", "new_tokens", "tokens_per_s", "ms_per_step", "step_ms",
                       "peak_memory_gib", "graphs_compiled"},
           "sampling-cost": {"seeded_ms_per_step", "transformers_ms_per_step", "overhead", "calls", "batch",
                             "new_tokens"},
           "fsdp": {"step", "dcp"}, "fsdp-7b": {"peak_memory_gib", "parameters", "out_of_memory"}}


def kind(name: str) -> str:
    """A measurement's kind from its name (``rollout-3b-compiled-eval`` → rollout)."""
    if name.startswith("rollout-"):
        return "rollout"
    if name.startswith("train-step-"):
        return "train-step"
    return "fsdp-7b" if name == "fsdp-7b-peak" else "fsdp" if name.startswith("fsdp-") else name


class Study:
    """The settings the figures are measured at: the study config's, or tiny ones (``--smoke``)."""

    def __init__(self, config: dict, device: str, smoke: bool):
        train, evaluate = config["train"], config["evaluate"]
        self.device, self.smoke, self.gpu = device, smoke, device.startswith("cuda")
        self.card = card_name(device)
        self.prompts, self.n = train["prompts_per_step"], train["rollouts_per_prompt"]
        self.new_tokens, self.eval_new_tokens = train["max_new_tokens"], evaluate["max_new_tokens"]
        self.eval_n, self.eval_temperature, self.eval_top_p = evaluate["n"], evaluate["temperature"], evaluate["top_p"]
        self.gbs, self.prompt_tokens = train["generation_batch_size"], 200  # the H100 figures' prompt length
        self.train = train
        if smoke:  # the same calls, in a minute on a CPU
            self.prompts, self.n, self.new_tokens, self.eval_new_tokens = 2, 2, 6, 8
            self.gbs, self.eval_n, self.prompt_tokens = 4, 4, 8
            self.train = train | dict(minibatch_size=2, micro_batch_size=1, dtype="float32")
        self.cfg = objective_train(self.train, "NSR")  # the update's settings without a KL loss
        self.dtype = self.cfg["dtype"] if self.gpu else "float32"  # autocast on a CPU is slow and not what it runs
        self.cfg["dtype"] = self.dtype

    def shape(self, name: str) -> dict:
        return SHAPES["tiny"] if self.smoke else SHAPES[name]


def new_model(study: Study, shape: str, dtype=torch.float32):
    """A random-init model of ``shape`` on the device (seeded, so two calls give equal weights)."""
    torch.manual_seed(0)
    with torch.device(study.device):
        model = Qwen2ForCausalLM(Qwen2Config(**study.shape(shape), eos_token_id=EOS))
    return model.to(dtype)


def random_prompts(count: int, tokens: int, seed: int) -> list[list[int]]:
    return torch.randint(0, 150000, (count, tokens), generator=torch.Generator().manual_seed(seed)).tolist()


def samples(study: Study, count: int, objective: str, seed: int) -> list[Sample]:
    """``count`` samples of a prompt and a full-length response (random weights almost never
    emit EOS, so every rollout runs to the limit: the worst case the plan prices), with the
    objective's advantages of random 0/1 rewards in groups of ``n``."""
    ids = random_prompts(count, study.prompt_tokens + study.new_tokens, seed)
    rewards = torch.randint(0, 2, (count,), generator=torch.Generator().manual_seed(seed)).float()
    adv = advantages(rewards, torch.arange(count) // study.n, objective, study.cfg["w_reinforce_lambda"])
    return [Sample(x[: study.prompt_tokens], x[study.prompt_tokens:], a) for x, a in zip(ids, adv.tolist())]


def sync(study: Study) -> None:
    if study.gpu:
        torch.cuda.synchronize()


def reset_peak(study: Study) -> None:
    if study.gpu:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def peak_gib(study: Study) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if study.gpu else None


def free(study: Study) -> None:
    gc.collect()
    if study.gpu:
        torch.cuda.empty_cache()


def learn(study: Study, model, ref, optimizer, batch: list[Sample], cfg: dict, seed: int) -> dict:
    """The trainer's π_old (and π_ref) log-probs and update (``train.learn`` without the rollout
    engine's sync), timed; returns seconds and the update's statistics."""
    t = {}
    sync(study)
    t0 = time.perf_counter()
    fill_logprobs(model, batch, "old_logp", cfg, PAD, study.device)
    if ref is not None:
        fill_logprobs(ref, batch, "ref_logp", cfg, PAD, study.device)
    sync(study)
    t["logprob"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    up = policy_update(model, optimizer, batch, cfg, PAD, study.device, shuffle_seed=seed)
    sync(study)
    t["update"] = time.perf_counter() - t0
    return dict(seconds=t, loss=up["loss"], grad_norm=up["grad_norm"], optimizer_steps=up["optimizer_steps"])


def train_step(study: Study, shape: str, objective: str = "NSR") -> dict:
    """One training batch's log-probs and update, after a warm-up step; GRPO adds its KL loss
    and the reference policy in bf16 (as ``train.prepare`` keeps it)."""
    cfg = objective_train(study.train, objective) | dict(dtype=study.dtype)
    model = new_model(study, shape)
    if cfg["gradient_checkpointing"]:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    ref = None
    if cfg["kl_coef"]:
        ref = new_model(study, shape, torch.bfloat16 if study.dtype == "bfloat16" else torch.float32).eval()
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"],
                                  fused=study.gpu)
    count = study.prompts * study.n
    learn(study, model, ref, optimizer, samples(study, count, objective, 1), cfg, 1)  # warm-up
    batch = samples(study, count, objective, 2)
    reset_peak(study)
    out = learn(study, model, ref, optimizer, batch, cfg, 2)
    n_params = sum(p.numel() for p in model.parameters())
    seen = sum(len(s.ids) for s in batch)
    passes = 2 if ref is not None else 1  # forward passes of the log-prob phase
    flops = dict(logprob=passes * forward_flops(n_params, seen),
                 update=update_flops(n_params, seen, recompute=cfg["gradient_checkpointing"]))
    peak = peak_bf16_tflops(study.card)
    out |= dict(parameters=n_params, tokens=seen, peak_memory_gib=peak_gib(study), kl_coef=cfg["kl_coef"],
                reference=None if ref is None else str(next(ref.parameters()).dtype).removeprefix("torch."),
                tflops={k: f / out["seconds"][k] / 1e12 for k, f in flops.items()},
                mfu={k: mfu(f, out["seconds"][k], peak) if peak else None for k, f in flops.items()},
                peak_tflops=peak)
    del model, ref, optimizer
    free(study)
    return out


def rollout(study: Study, shape: str, compiled: bool, phase: str) -> dict:
    """One ``HFBackend.generate`` call as training (fp32 policy under autocast, the training
    batch and length, T = 1) or evaluation (the policy in the compute dtype, as
    ``nsr_study.evaluate`` loads it; one call of its sampled pass) makes it."""
    if phase == "train":
        prompts, n, new, temperature, top_p = study.prompts, study.n, study.new_tokens, 1.0, 1.0
        model = new_model(study, shape)
    else:
        prompts, n, new = prompts_per_call(study.eval_n, study.gbs), study.eval_n, study.eval_new_tokens
        temperature, top_p = study.eval_temperature, study.eval_top_p
        model = new_model(study, shape, getattr(torch, study.dtype))
    if compiled:  # a fresh compilation per measurement: shapes of earlier ones count nowhere (recompile limits)
        torch._dynamo.reset()
    backend = HFBackend(model, IdsOnlyTokenizer(), batch_size=prompts * n, compiled=compiled, dtype=study.dtype)
    if compiled:  # the timed call's batch and static-cache length, so it replays the compiled graphs
        warm_new = 4
        warm_width = static_cache_len(study.prompt_tokens, new) - warm_new
    else:
        warm_new, warm_width = 4, study.prompt_tokens

    def call(width: int, tokens: int, seed: int):
        sync(study)
        t0 = time.perf_counter()
        with autocast(study.device, study.dtype):
            ro = backend.generate(random_prompts(prompts, width, seed), n=n, temperature=temperature, top_p=top_p,
                                  max_new_tokens=tokens, seed=seed)
        sync(study)
        return time.perf_counter() - t0, sum(len(r) for r in ro.response_ids)

    # plain path: a time stamp as each forward pass starts. Every decoding step ends by reading
    # whether all rows finished (a device sync), so stamp to stamp is one whole step: does a step
    # get slower as the KV cache grows? (compiled: the hook would run inside the compiled call)
    stamps = []
    hook = None if compiled else model.register_forward_pre_hook(lambda *_: stamps.append(time.perf_counter()))
    graphs = [torch._dynamo.utils.counters["stats"]["unique_graphs"]]
    warm, _ = call(warm_width, warm_new, 1)
    graphs.append(torch._dynamo.utils.counters["stats"]["unique_graphs"])
    reset_peak(study)
    stamps.clear()
    seconds, tokens = call(study.prompt_tokens, new, 2)
    graphs.append(torch._dynamo.utils.counters["stats"]["unique_graphs"])
    if hook is not None:
        hook.remove()
    steps = [b - a for a, b in zip(stamps[1:], stamps[2:])]  # after the prefill
    tenth = max(len(steps) // 10, 1)
    step_ms = dict(first_tenth=1e3 * statistics.mean(steps[:tenth]), last_tenth=1e3 * statistics.mean(steps[-tenth:]),
                   timed_steps=len(steps)) if steps else None
    del backend, model
    free(study)
    return dict(seconds=seconds, batch=prompts * n, prompt_tokens=study.prompt_tokens, new_tokens=new,
                tokens=tokens, tokens_per_s=tokens / seconds, ms_per_step=1e3 * seconds / new, step_ms=step_ms,
                warm_up_seconds=warm, peak_memory_gib=peak_gib(study), weights=study.dtype if phase == "eval" else
                "float32", temperature=temperature, top_p=top_p, repeats=1,
                graphs_compiled=dict(warm_up=graphs[1] - graphs[0], timed=graphs[2] - graphs[1]))


def sampling_cost(study: Study, shape: str = "0.5b", calls: int = 3) -> dict:
    """Per-prompt seeded sampling (``HFBackend``: one generator per prompt, Gumbel-max over the
    scores) against transformers' own ``do_sample`` (one stream for the batch) at the training
    batch, plain path, alternating calls after a warm-up of each: ms per decoding step, mean ± sd."""
    model = new_model(study, shape)
    batch = study.prompts * study.n
    backend = HFBackend(model, IdsOnlyTokenizer(), batch_size=batch, dtype=study.dtype)
    new = min(study.new_tokens, 128)  # the per-step cost does not need the whole length

    def seeded(seed: int):
        backend.generate(random_prompts(study.prompts, study.prompt_tokens, seed), n=study.n, temperature=1.0,
                         top_p=1.0, max_new_tokens=new, seed=seed)

    def own(seed: int):
        ids = torch.tensor(random_prompts(study.prompts, study.prompt_tokens, seed), device=study.device)
        ids = ids.repeat_interleave(study.n, 0)  # prompt-major, as HFBackend
        with plain_generation_config(model):
            model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=new, do_sample=True,
                           temperature=1.0, top_p=1.0, top_k=None, pad_token_id=PAD, eos_token_id=[EOS])

    ms = {"seeded": [], "transformers": []}
    model.eval()
    for i in range(calls + 1):
        for name, fn in (("seeded", seeded), ("transformers", own)):
            sync(study)
            t0 = time.perf_counter()
            with torch.no_grad(), autocast(study.device, study.dtype):
                fn(10 + i)
            sync(study)
            if i:  # the first call of each warms up
                ms[name].append(1e3 * (time.perf_counter() - t0) / new)
    del backend, model
    free(study)
    mean = {k: statistics.mean(v) for k, v in ms.items()}
    sd = {k: statistics.stdev(v) if len(v) > 1 else None for k, v in ms.items()}
    return dict(batch=batch, prompts=study.prompts, new_tokens=new, calls=calls,
                seeded_ms_per_step=dict(mean=mean["seeded"], sd=sd["seeded"]),
                transformers_ms_per_step=dict(mean=mean["transformers"], sd=sd["transformers"]),
                difference_ms_per_step=dict(mean=mean["seeded"] - mean["transformers"], se=math.sqrt(
                    sum(statistics.variance(v) / len(v) for v in ms.values())) if calls > 1 else None),
                overhead=mean["seeded"] / mean["transformers"] - 1)


def join_one_rank_group(study: Study) -> None:
    """A process group of one rank, as ``torch.distributed.run`` would set it up for ``gpus: 1``
    forced through the multi-rank path (``distributed.init``: NCCL on a GPU, gloo on the CPU)."""
    if distributed.world()[1] > 1 or (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return
    with socket.socket() as s:  # a free port for the rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK="0", WORLD_SIZE="1", LOCAL_RANK="0",
                      LOCAL_WORLD_SIZE="1")
    distributed.init("cuda" if study.gpu else "cpu", study.cfg["collective_timeout_min"])


def sharded(study: Study, model):
    """``model`` as the trainer prepares it on several ranks: checkpointing, then FSDP2."""
    if study.cfg["gradient_checkpointing"]:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return distributed.shard(model, study.device)


def full(t: torch.Tensor) -> torch.Tensor:
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def fsdp(study: Study, out_dir: Path, shape: str = "1.5b") -> dict:
    """One optimizer step (one minibatch) of the same samples from the same weights, plain and
    FSDP2 on one rank, in the configured precision: the losses and gradient norms the precision
    policy must keep equal. Then a DCP checkpoint of the sharded policy and its AdamW state,
    read back into fresh shards and compared tensor by tensor."""
    join_one_rank_group(study)
    cfg = study.cfg
    count = cfg["minibatch_size"]
    plain = new_model(study, shape)
    if cfg["gradient_checkpointing"]:
        plain.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    shards = sharded(study, new_model(study, shape))
    step = {}
    for name, model in (("plain", plain), ("fsdp", shards)):
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"],
                                      fused=study.gpu and name == "plain")  # as train.prepare
        batch = samples(study, count, "NSR", 3)
        reset_peak(study)
        step[name] = learn(study, model, None, optimizer, batch, cfg, 3) | dict(peak_memory_gib=peak_gib(study))
        step[name]["old_logp"] = torch.cat([s.old_logp[s.n_prompt:] for s in batch])
    del plain, model
    free(study)
    old = step["plain"].pop("old_logp"), step["fsdp"].pop("old_logp")
    loss = [step[k]["loss"][0] for k in ("plain", "fsdp")]
    norm = [step[k]["grad_norm"][0] for k in ("plain", "fsdp")]
    result = dict(step=dict(plain=step["plain"], fsdp=step["fsdp"], dtype=study.dtype,
                            loss_relative_difference=abs(loss[1] - loss[0]) / abs(loss[0]),
                            grad_norm_relative_difference=abs(norm[1] - norm[0]) / norm[0],
                            old_logp_max_abs_difference=(old[0] - old[1]).abs().max().item()))
    # a DCP checkpoint through the trainer's own save and load, into fresh shards and a fresh AdamW
    work = out_dir / "dcp-check"
    cell = dict(model_id=f"random-init {shape}", train=study.cfg)
    sync(study)
    t0 = time.perf_counter()
    target = checkpoint.save(work, shards, optimizer, step=1, cursor=0, cell=cell)
    sync(study)
    saved_s = time.perf_counter() - t0
    size = sum(p.stat().st_size for p in target.iterdir())
    fresh = sharded(study, new_model(study, shape))
    fresh_optimizer = torch.optim.AdamW(fresh.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    t0 = time.perf_counter()
    checkpoint.load_state(target, fresh, fresh_optimizer)
    sync(study)
    loaded_s = time.perf_counter() - t0
    differences = [(full(a) - full(b)).abs().max().item() for a, b in zip(shards.parameters(), fresh.parameters())]
    moments = [(full(optimizer.state[a][m]) - full(fresh_optimizer.state[b][m])).abs().max().item()
               for a, b in zip(shards.parameters(), fresh.parameters()) for m in ("exp_avg", "exp_avg_sq")]
    result["dcp"] = dict(save_seconds=saved_s, load_seconds=loaded_s, bytes=size, rejection=checkpoint.rejection(
        target, cell), weights_max_abs_difference=max(differences), moments_max_abs_difference=max(moments))
    checkpoint.remove_checkpoints(work)
    del shards, fresh, optimizer, fresh_optimizer
    free(study)
    return result


def fsdp_7b_peak(study: Study, shape: str = "7b") -> dict:
    """Peak memory of one optimizer step of a 7B-shaped policy on one FSDP2 rank, gradient
    checkpointing and micro-batch 1: whether the 16 bytes a parameter and the activations of one
    sequence fit the card. An out-of-memory error is a figure here, not a failure."""
    join_one_rank_group(study)
    cfg = study.cfg | dict(micro_batch_size=1, minibatch_size=2)
    reset_peak(study)
    n_params = None
    try:
        model = sharded(study, new_model(study, shape))
        n_params = sum(p.numel() for p in model.parameters())
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
        out = learn(study, model, None, optimizer, samples(study, 2, "NSR", 4), cfg, 4)
        out |= dict(out_of_memory=False)
    except torch.cuda.OutOfMemoryError as e:
        out = dict(out_of_memory=True, error=str(e).splitlines()[0])
    out |= dict(parameters=n_params, peak_memory_gib=peak_gib(study), micro_batch_size=1,
                card_memory_gib=torch.cuda.get_device_properties(0).total_memory / 2**30 if study.gpu else None)
    model = optimizer = None
    free(study)
    return out


def measurements(study: Study, out_dir: Path) -> list[tuple[str, str, callable]]:
    """(name, budget key, function) in order of importance: the plan's rates first, the
    multi-GPU checks next, the compiled path (which compiles for about a minute a call) last,
    the evaluation's calls (most of the study's cost) before the training's."""
    m = [(f"train-step-{s}", "train-step", lambda s=s: train_step(study, s)) for s in RATE_SHAPES]
    m += [(f"rollout-{s}-plain-train", "rollout-plain-train", lambda s=s: rollout(study, s, False, "train"))
          for s in RATE_SHAPES]
    m += [(f"rollout-{s}-plain-eval", "rollout-plain-eval", lambda s=s: rollout(study, s, False, "eval"))
          for s in RATE_SHAPES]
    m += [("sampling-cost", "sampling-cost", lambda: sampling_cost(study)),
          ("fsdp-1.5b", "fsdp", lambda: fsdp(study, out_dir)),
          ("train-step-3b-grpo", "train-step", lambda: train_step(study, "3b", "GRPO")),
          ("fsdp-7b-peak", "fsdp-7b", lambda: fsdp_7b_peak(study))]
    compiled = RATE_SHAPES[:1] if study.smoke else RATE_SHAPES  # on a CPU a compilation takes a minute
    m += [(f"rollout-{s}-compiled-{phase}", f"rollout-compiled-{phase}",
           lambda s=s, phase=phase: rollout(study, s, True, phase)) for phase in ("eval", "train") for s in compiled]
    return m


# ---------------------------------------------------------------- the throughput file


def card_name(device: str) -> str:
    """The card as the throughput file names it: the device name without the vendor, spaces as
    dashes (``NVIDIA H200`` → ``H200``); ``cpu-smoke`` for the smoke run."""
    if not device.startswith("cuda"):
        return "cpu-smoke"
    return torch.cuda.get_device_name().removeprefix("NVIDIA ").replace(" ", "-")


def today() -> str:
    return datetime.datetime.now(datetime.timezone.utc).date().isoformat()


def machine(study: Study, command: str) -> dict:
    import transformers

    out = dict(card=study.card, date=today(), command=command,
               torch=str(torch.__version__), transformers=transformers.__version__, python=platform.python_version(),
               host_cpus=os.cpu_count())
    if study.gpu:
        props = torch.cuda.get_device_properties(0)
        out |= dict(device_name=props.name, memory_gib=props.total_memory / 2**30, cuda=torch.version.cuda,
                    cudnn=torch.backends.cudnn.version(), nccl=str(torch.cuda.nccl.version()))
    return out


def throughput_file(study: Study, results: dict, planned: list[str], command: str) -> dict:
    """The output: ``generation`` entries (a shape's training-batch rollout with its training
    step's log-prob and update seconds; one per rollout engine), ``decoding`` entries (the
    evaluation's calls), the grading rate copied from the package's file (a CPU figure, not
    measured here), and every measurement's figures under ``checks``."""
    import transformers

    software = f"torch {torch.__version__}, transformers {transformers.__version__}"
    stored = load_throughput(THROUGHPUT)["grading"]
    out = dict(grading=dict(answers_per_s_per_worker=stored["answers_per_s_per_worker"],
                            source="copied from src/nsr_study/throughput.yaml (not measured here): "
                                   + stored["source"]),
               generation=[], decoding=[])

    def figures(name):
        r = results.get(name)
        return r["figures"] if r and "figures" in r else None

    for s in RATE_SHAPES:
        step = figures(f"train-step-{s}")
        for engine in ("plain", "compiled"):
            common = dict(card=study.card, backend="hf-compiled" if engine == "compiled" else "hf", shape=s,
                          models=MODELS[s], software=software)
            train, evaluate = figures(f"rollout-{s}-{engine}-train"), figures(f"rollout-{s}-{engine}-eval")
            if step and train:
                commands = (results[f"train-step-{s}"]["command"], results[f"rollout-{s}-{engine}-train"]["command"])
                out["generation"].append(common | dict(
                    date=max(results[f"train-step-{s}"]["date"], results[f"rollout-{s}-{engine}-train"]["date"]),
                    parameters=step["parameters"],
                    source="; ".join(commands),
                    batch=train["batch"], prompt_tokens=train["prompt_tokens"], new_tokens=train["new_tokens"],
                    seconds=dict(rollout=train["seconds"], logprob=step["seconds"]["logprob"],
                                 update=step["seconds"]["update"])))
            if evaluate:
                out["decoding"].append(common | dict(
                    date=results[f"rollout-{s}-{engine}-eval"]["date"],
                    source=results[f"rollout-{s}-{engine}-eval"]["command"], batch=evaluate["batch"],
                    prompt_tokens=evaluate["prompt_tokens"], new_tokens=evaluate["new_tokens"],
                    seconds=evaluate["seconds"]))
    out["checks"] = dict(machine=machine(study, command), planned=planned,
                         measurements=[dict(name=k) | v for k, v in results.items()])
    return out


class NoAliases(yaml.SafeDumper):
    """Every entry written out in full (a shape's model list is shared by its entries)."""

    def ignore_aliases(self, data):
        return True


def write(path: Path, data: dict, smoke: bool) -> None:
    head = ("# Written by bench/gpu_check.sh; read by python -m nsr_study plan --throughput "
            f"{path.name} --card {data['checks']['machine']['card']}.\n")
    if smoke:
        head += "# SMOKE RUN: tiny stand-in shapes on a CPU; no figure here measures any model.\n"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(head + yaml.dump(data, Dumper=NoAliases, sort_keys=False, width=120))
    tmp.replace(path)


def check(path: Path, smoke: bool) -> list[str]:
    """Problems of an output file: the throughput schema (``nsr_study.rates``), and each planned
    measurement present with its figures or a reason; on a smoke run none may be skipped."""
    if not path.is_file():
        return [f"{path}: not written (the run failed before its first measurement ended)"]
    data = load_throughput(path)  # raises PlanError naming line and field
    problems = []
    checks = data.get("checks") or {}
    done = {m["name"]: m for m in checks.get("measurements", [])}
    for name in checks.get("planned", []):
        m = done.get(name)
        if m is None:
            problems.append(f"{name}: missing")
        elif "error" in m:
            problems.append(f"{name}: failed: {m['error']}")
        elif "skipped" in m:
            if smoke:
                problems.append(f"{name}: skipped ({m['skipped']})")
        elif not FIGURES[kind(name)] <= set(m.get("figures", {})):
            problems.append(f"{name}: figures {sorted(FIGURES[kind(name)] - set(m.get('figures', {})))} missing")
        elif not m.get("command"):
            problems.append(f"{name}: no command")
        elif "plain" in name and not m["figures"]["step_ms"]:
            problems.append(f"{name}: no per-step times: the forward hook never ran")
        elif "compiled" in name and not m["figures"]["graphs_compiled"]["warm_up"]:
            problems.append(f"{name}: nothing was compiled: the compiled path ran eagerly")
        elif m["figures"].get("graphs_compiled", {}).get("timed"):
            problems.append(f"{name}: the timed call compiled {m['figures']['graphs_compiled']['timed']} graphs: "
                            "its time includes compilation")
    if not checks.get("planned"):
        problems.append("checks.planned: no measurement planned")
    if smoke and not (data["generation"] and data["decoding"]):
        problems.append("no generation or decoding entry")
    return problems


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, help="the output file (DIR/gpu_check.yaml)")
    ap.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU: checks the code, measures nothing")
    ap.add_argument("--only", default=None,
                    help="comma-separated measurement names (default: all), added to an existing output file")
    ap.add_argument("--budget-s", type=float, default=None,
                    help="seconds: a measurement is skipped when fewer are left than it needs (NEEDS_S); "
                         "default 390 on a GPU, none with --smoke")
    ap.add_argument("--configfile", default="config/config.yaml", help="the study whose settings are measured")
    ap.add_argument("--schema", default="workflow/schemas/config.schema.yaml")
    ap.add_argument("--check", type=Path, default=None, help="only check this output file and exit")
    ap.add_argument("--command", default="python bench/gpu_check.py --out DIR/gpu_check.yaml",
                    help="how this run was started, without DIR, for the record (set by gpu_check.sh)")
    args = ap.parse_args()
    if args.check:
        problems = check(args.check, args.smoke)
        print(f"{args.check}: " + ("schema and figures OK" if not problems else "\n  " + "\n  ".join(problems)))
        sys.exit(1 if problems else 0)
    if args.out is None:
        ap.error("--out is required (or --check FILE)")
    if not args.smoke and not torch.cuda.is_available():
        ap.error("no GPU here: run with --smoke to check the code on the CPU")
    start = time.monotonic()
    budget = args.budget_s if args.budget_s is not None else math.inf if args.smoke else 390
    if args.smoke:
        torch.set_num_threads(1)  # tiny shapes gain nothing from threads, and a shared CI machine loses much
    study = Study(load_config([args.configfile], args.schema), "cpu" if args.smoke else "cuda", args.smoke)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    command = f"{args.command} DIR"
    plan = measurements(study, args.out.parent)
    names = [name for name, _, _ in plan]
    results = {}
    if args.only:
        unknown = sorted(set(args.only.split(",")) - set(names))
        if unknown:
            ap.error(f"--only: unknown {unknown}; choose from {names}")
        plan = [m for m in plan if m[0] in args.only.split(",")]
        if args.out.is_file():  # a second call adds to the first call's figures
            before = yaml.safe_load(args.out.read_text())["checks"]["measurements"]
            results = {m["name"]: {k: v for k, v in m.items() if k != "name"} for m in before}
    for name, budget_key, fn in plan:
        entry = dict(command=f"{args.command} --only {name} DIR", date=today())
        left = budget - (time.monotonic() - start)
        if left < NEEDS_S[budget_key]:
            results[name] = entry | dict(skipped=f"{max(left, 0):.0f} s of --budget-s {budget:.0f} left, "
                                                 f"{NEEDS_S[budget_key]} s needed")
        else:
            t0 = time.monotonic()
            try:
                results[name] = entry | dict(figures=fn())
            except Exception as e:  # noqa: BLE001 — one failed figure must not lose the others
                traceback.print_exc()
                results[name] = entry | dict(error=f"{type(e).__name__}: {e}".splitlines()[0])
                free(study)
            results[name]["wall_seconds"] = time.monotonic() - t0
        print(f"{name}: {results[name].get('skipped') or results[name].get('error') or 'done'} "
              f"({time.monotonic() - start:.0f} s so far)", flush=True)
        results = {n: results[n] for n in names if n in results}  # in the order of importance
        write(args.out, throughput_file(study, results, list(results), command), args.smoke)
    skipped = [n for n, r in results.items() if "skipped" in r]
    if skipped:
        print(f"skipped for time; to add them to the file: {args.command} --only {','.join(skipped)} DIR")
    distributed.finish()
    failed = [n for n, r in results.items() if "error" in r]
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
