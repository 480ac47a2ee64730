"""RL fine-tuning of one (model × objective × seed) cell: the paper's algorithm, step by step.

Before any model work, train and validation prompts longer than ``max_prompt_tokens`` are
dropped and counted (``fitting_prompts``). Each step: the next ``prompts_per_step`` prompts of a
seeded epoch order → ``rollouts_per_prompt`` samples each from the current policy
(``rollout``) → rewards by math-verify and advantages by objective, zero-advantage samples
dropped where the objective says so (``episodes``) → π_old log-probs once, then PPO-clip
optimizer steps over minibatches of the kept samples (``update``) → one weight sync of the
rollout engine → metrics, validation, checkpoint (``checkpoint``).

Run by the ``train`` rule as ``python -m nsr_study train ...`` (see ``main``). With
``--ranks N`` (the model's ``gpus``) the job runs N ranks (``nsr_study.distributed``): each
rank generates and grades its share of the step's prompts, the rollouts are gathered so that
every rank computes the same advantages, drops and minibatches, the update is FSDP2's, and
rank 0 alone writes metrics and files.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from nsr_study import checkpoint, distributed
from nsr_study.batch import Sample, autocast
from nsr_study.data import read_jsonl
from nsr_study.grading import Grader
from nsr_study.loading import load_causal_lm, load_tokenizer
from nsr_study.metrics import mean_se
from nsr_study.objectives import OBJECTIVES, advantages
from nsr_study.prompts import fitting, pad_token_id, problem_prompt_ids
from nsr_study.rollout import Rollouts, make_backend
from nsr_study.trackers import TRACKERS, open_trackers, scalars
from nsr_study.update import fill_logprobs, policy_update

log = logging.getLogger("nsr_study.train")
ATTEMPT_ENV = "NSR_ATTEMPT_LOG"  # one attempt log for the launching process and its ranks


# ---------------------------------------------------------------- data order


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The permutation of the train prompts used in ``epoch`` (a pure function of its inputs,
    so a resumed run only needs the cursor)."""
    return np.random.default_rng([seed, epoch]).permutation(n).tolist()


def take_prompts(n: int, seed: int, cursor: int, count: int) -> list[int]:
    """Prompts ``cursor .. cursor + count`` of the infinite sequence of epoch orders."""
    out = []
    for pos in range(cursor, cursor + count):
        epoch, i = divmod(pos, n)
        if i == 0 or not out:
            order = epoch_order(n, seed, epoch)
        out.append(order[i])
    return out


def step_seed(seed: int, step: int) -> int:
    """The sampling seed of one step; each backend derives one stream per prompt from it
    (``rollout.prompt_seeds``, keyed by the prompt's position in the step)."""
    return seed * 1_000_003 + step


# ---------------------------------------------------------------- episodes


def drops_zero_advantage(objective: str, cfg: dict) -> bool:
    """``train.drop_zero_advantage`` when set, else the paper's choice from the registry."""
    listed = cfg["drop_zero_advantage"]
    return OBJECTIVES[objective].drop_zero_advantage if listed is None else objective in listed


def episodes(rollouts, scores: list[float], n: int, objective: str, cfg: dict) -> tuple[list[Sample], dict]:
    """Rewards → advantages (groups = the ``n`` rollouts of one prompt) → the samples the update
    trains on, zero-advantage ones dropped when the objective drops them. Returns them with the
    step's rollout statistics."""
    rewards = torch.tensor(scores)
    groups = torch.arange(len(rollouts) // n).repeat_interleave(n)
    adv = advantages(rewards, groups, objective, cfg["w_reinforce_lambda"])
    drop = drops_zero_advantage(objective, cfg)
    kept = [Sample(p, r, a) for p, r, a in zip(rollouts.prompt_ids, rollouts.response_ids, adv.tolist())
            if a != 0 or not drop]
    truncated = torch.tensor(rollouts.truncated)
    stats = dict(reward_mean=rewards.mean().item(), correct_ratio=(rewards == 1).float().mean().item(),
                 advantage_mean=adv.mean().item(), kept_fraction=len(kept) / len(rollouts),
                 response_length_mean=float(np.mean([len(r) for r in rollouts.response_ids])),
                 truncation_rate=truncated.float().mean().item(),
                 truncated_rewarded=int((rewards[truncated] == 1).sum()))
    return kept, stats


def gathered(ro: Rollouts, graded) -> tuple[Rollouts, list[float], dict]:
    """Every rank's rollouts, scores and grading counts, in rank order (the step's prompt order),
    on every rank."""
    parts = distributed.gather([(ro.prompt_ids, ro.response_ids, ro.texts, ro.truncated, graded.scores,
                                 dict(graded.counts))])
    out = Rollouts(*([x for part in parts for x in part[i]] for i in range(4)))
    counts = Counter()
    for part in parts:
        counts.update(part[5])
    return out, [x for part in parts for x in part[4]], counts


def has_gradient(kept: list[Sample], cfg: dict) -> bool:
    """Whether an update would change anything: a non-zero advantage, or an entropy/KL term
    (which acts even when every advantage is 0, as in verl)."""
    return bool(kept) and (any(s.advantage != 0 for s in kept) or bool(cfg["entropy_coef"] or cfg["kl_coef"]))


def update_stats(up: dict, kept: list[Sample], seconds: float) -> dict:
    """Per-step means of the update's per-minibatch statistics."""
    mean = lambda k: float(np.mean(up[k]))  # noqa: E731
    return dict(optimizer_steps=up["optimizer_steps"], loss=mean("loss"), pg_loss=mean("pg_loss"),
                clip_fraction=mean("clip_fraction"), clip_fraction_last_minibatch=up["clip_fraction"][-1],
                entropy=mean("entropy"), kl=mean("kl"), grad_norm=mean("grad_norm"),
                ratio_dev_first_minibatch=up["ratio_dev"][0],
                update_tokens_per_s=sum(s.n_response for s in kept) / max(seconds, 1e-9))


# ---------------------------------------------------------------- update and validation


@contextmanager
def timed(times: dict, key: str):
    t0 = time.perf_counter()
    yield
    times[f"time_{key}"] = time.perf_counter() - t0


def learn(model, ref_model, optimizer, backend, kept: list[Sample], cfg: dict, pad_id: int, device, seed: int,
          times: dict) -> dict:
    """π_old (and π_ref) log-probs of the kept samples, the optimizer steps, then one weight
    sync of the rollout engine after the last of them. Returns the update's statistics."""
    with timed(times, "logprob"):
        fill_logprobs(model, kept, "old_logp", cfg, pad_id, device)
        if ref_model is not None:
            fill_logprobs(ref_model, kept, "ref_logp", cfg, pad_id, device)
    with timed(times, "update"):
        up = policy_update(model, optimizer, kept, cfg, pad_id, device, shuffle_seed=seed)
    with timed(times, "sync"):
        backend.sync(model)
    return update_stats(up, kept, times["time_update"])


def validate(backend, grader, prompts: list[list[int]], golds: list[str], cfg: dict, seed: int) -> dict:
    """Greedy accuracy and the sampled pass rate (``val_samples`` samples per problem at the
    training temperature, the quantity training optimises) on the fixed validation problems,
    with the pass rate's standard error over problems, and the pass rate of each problem (so two
    validations can be compared problem by problem, a paired difference). The run passes the same
    ``seed`` at every validation (common random numbers), so the curve's changes are not re-drawn
    sampling noise."""
    rank, ranks = distributed.world()
    positions = list(distributed.share(range(len(prompts)), rank, ranks))  # this rank's problems, keying their seeds
    prompts, golds = [prompts[i] for i in positions], [golds[i] for i in positions]
    greedy = backend.generate(prompts, n=1, temperature=0.0, top_p=1.0, max_new_tokens=cfg["max_new_tokens"])
    _, g_scores, g_counts = gathered(greedy, grader.grade_many(greedy.texts, golds))
    k = cfg["val_samples"]
    sampled = backend.generate(prompts, n=k, temperature=cfg["temperature"], top_p=1.0,
                               max_new_tokens=cfg["max_new_tokens"], seed=seed, keys=positions)
    _, s_scores, s_counts = gathered(sampled, grader.grade_many(sampled.texts, [gold for gold in golds for _ in range(k)]))
    rates = np.array(s_scores).reshape(-1, k).mean(1)
    pass_rate, se = mean_se(rates)
    return dict(val_accuracy=float(np.mean(g_scores)), val_pass_rate=pass_rate, val_pass_rate_se=se,
                val_pass_rates=rates.tolist(), val_grading=dict(g_counts + s_counts))


# ---------------------------------------------------------------- the run


class Metrics:
    """Per-step records: a JSONL file in the work directory (cut back to the resumed step) and
    the trackers of ``report.trackers`` (``nsr_study.trackers``)."""

    def __init__(self, path: Path, start_step: int, trackers: list):
        self.path, self.trackers = path, trackers
        kept = [r for r in read_jsonl(path) if r["step"] <= start_step] if start_step and path.is_file() else []
        path.write_text("".join(json.dumps(r) + "\n" for r in kept))

    def emit(self, record: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        for tracker in self.trackers:
            tracker.log(scalars(record), record["step"])

    def close(self) -> None:
        for tracker in self.trackers:
            tracker.close()


TRAIN_BYTES_PER_PARAM = 16  # fp32 weights + gradients + two AdamW moments


def check_gpu_share(n_params: int, gpu_bytes: int, share: float, reference_bytes: int, ranks: int = 1) -> str | None:
    """Check, before any work, that a colocated vLLM engine taking ``share`` of the GPU leaves
    room for training: the AdamW moments appear only at the first update, so an impossible
    share would otherwise fail minutes into the run. With a KL loss the frozen reference
    model's weights (``reference_bytes``, 0 without) sit beside them. On ``ranks`` FSDP2 ranks
    each GPU holds 1/ranks of all of it (``share`` 0 without vLLM). Raises when even the
    weights, gradients, moments (and reference) cannot fit; returns a warning when the room is
    under 1.3× that (activations: bench/train_step.py measured peaks of 15.4 / 33.0 / 59.4 GiB
    for the Qwen2.5 0.5B / 1.5B / 3B shapes on an H100 80 GB, 1.3–2.1× the 16 bytes per
    parameter). None when it fits."""
    need = (TRAIN_BYTES_PER_PARAM * n_params + reference_bytes) / ranks
    room = gpu_bytes * (1 - share)
    per = f" per GPU on {ranks} ranks (FSDP2)" if ranks > 1 else ""
    advice = (f"train.gpu_memory_utilization = {share} leaves {room / 2**30:.1f} GiB of this GPU's "
              f"{gpu_bytes / 2**30:.0f} GiB to train {n_params / 1e9:.2f} B parameters, which need "
              f"{need / 2**30:.1f} GiB{per} for fp32 weights, gradients and AdamW moments"
              f"{' and the reference model (train.kl_coef > 0)' if reference_bytes else ''} alone")
    suggest = max(0.0, 1 - 1.3 * need / gpu_bytes)
    if need > gpu_bytes:
        fits = -(-(TRAIN_BYTES_PER_PARAM * n_params + reference_bytes) // gpu_bytes)
        raise ValueError(f"{advice}; more than the whole GPU: give the model gpus: {fits} or more")
    if need > room:
        raise ValueError(f"{advice}; lower it to at most {suggest:.2f} (vLLM needs its bf16 weights plus KV cache)")
    if 1.3 * need > room:
        return f"{advice} plus activations; training may run out of memory, consider at most {suggest:.2f}"
    return None


def kv_bytes_per_token(config, dtype_bytes: int) -> int:
    """KV-cache bytes per token of a decoder: keys and values, every layer, every KV head."""
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return 2 * config.num_hidden_layers * config.num_key_value_heads * head_dim * dtype_bytes


def check_engine_share(n_params: int, kv_per_token: int, max_len: int, gpu_bytes: int, share: float,
                       dtype_bytes: int) -> None:
    """Refuse, before any work, a ``train.gpu_memory_utilization`` whose share of the GPU cannot
    hold what the colocated vLLM engine needs at the least: the whole model's weights in the
    compute dtype (each rank's engine holds all of them) and the KV cache of one sequence of
    ``max_len`` tokens. vLLM would otherwise fail in its start-up, after the models are loaded.
    A necessary condition only: vLLM's own activation peak, profiled at start-up, comes on top."""
    weights, kv = n_params * dtype_bytes, kv_per_token * max_len
    if weights + kv > share * gpu_bytes:
        raise ValueError(f"train.gpu_memory_utilization = {share} gives the vLLM engine {share * gpu_bytes / 2**30:.1f} GiB "
                         f"of this GPU's {gpu_bytes / 2**30:.0f} GiB; it needs {weights / 2**30:.1f} GiB for the "
                         f"model's weights and {kv / 2**30:.2f} GiB of KV cache for one sequence of {max_len} "
                         f"tokens: raise it to at least {math.ceil(100 * (weights + kv) / gpu_bytes) / 100:.2f}")


def prepare(cell: dict, ckpt: Path | None, device: str, tokenizer):
    """Policy, the frozen reference policy only when this cell's ``kl_coef`` is non-zero (its
    memory and extra forward pass are spent only there), AdamW, and the rollout backend
    sampling from the policy. The GPU memory check comes first, from the model's config alone.
    On several ranks rank 0 alone reads each model from disk and its weights are broadcast into
    every rank's shards (``distributed.load_sharded``). When resuming, the
    policy and AdamW take ``ckpt``'s state (each rank its shards) before the backend copies the
    weights."""
    cfg = cell["train"]
    ranks = distributed.world()[1]
    # stored in the compute dtype, as verl keeps its reference policy (bf16), which halves its memory
    ref_dtype = torch.bfloat16 if cfg["dtype"] == "bfloat16" else torch.float32
    if device == "cuda" and (cfg["backend"] == "vllm" or ranks > 1):  # from the config alone, before any weights
        from transformers import AutoConfig, AutoModelForCausalLM

        config = AutoConfig.from_pretrained(cell["model_id"], trust_remote_code=False)
        with torch.device("meta"):
            shape = AutoModelForCausalLM.from_config(config)
        share = cfg["gpu_memory_utilization"] if cfg["backend"] == "vllm" else 0.0
        n_params, gpu_bytes = sum(p.numel() for p in shape.parameters()), torch.cuda.mem_get_info()[1]
        reference = n_params * ref_dtype.itemsize if cfg["kl_coef"] else 0
        warning = check_gpu_share(n_params, gpu_bytes, share, reference_bytes=reference, ranks=ranks)
        if warning:
            log.warning(warning)
        if cfg["backend"] == "vllm":
            dtype_bytes = getattr(torch, cfg["dtype"]).itemsize
            check_engine_share(n_params, kv_bytes_per_token(config, dtype_bytes),
                               cfg["max_prompt_tokens"] + cfg["max_new_tokens"], gpu_bytes, share, dtype_bytes)
    if ranks > 1:  # the full weights in host memory once (rank 0), not once per rank
        model = distributed.load_sharded(cell["model_id"], device)
        ref_model = distributed.load_sharded(cell["model_id"], device, ref_dtype).eval() if cfg["kl_coef"] else None
    else:
        model = load_causal_lm(cell["model_id"], device)
        ref_model = load_causal_lm(cell["model_id"], device, ref_dtype).eval() if cfg["kl_coef"] else None
    if cfg["gradient_checkpointing"]:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"],
                                  fused=device == "cuda" and ranks == 1)
    if ckpt:
        log.info("resuming from %s", ckpt)
        checkpoint.load_state(ckpt, model, optimizer)
    backend = make_backend(cfg["backend"], model, tokenizer, cell["model_id"], cfg, cell["seed"])
    return model, ref_model, optimizer, backend


def fitting_prompts(tokenizer, records: list[dict], cell: dict, split: str) -> tuple[list[dict], list[list[int]], int]:
    """The records whose chat prompt has at most ``train.max_prompt_tokens`` tokens, their
    prompt ids, and how many were dropped: the paper's code filters overlong prompts the same
    way (``data.filter_overlong_prompts=True``), so one long problem never stops a run. Each
    dropped record is logged with its id and length; a split with nothing left is refused."""
    limit = cell["train"]["max_prompt_tokens"]
    ids = problem_prompt_ids(tokenizer, records, cell["prompt"])
    keep = fitting(ids, limit, split)
    dropped = sorted(set(range(len(ids))) - set(keep))
    for i in dropped:
        log.info("%s prompt %s has %d tokens > train.max_prompt_tokens = %d: dropped", split, records[i]["id"],
                 len(ids[i]), limit)
    if dropped:
        log.warning("dropped %d of %d %s prompts longer than train.max_prompt_tokens = %d", len(dropped), len(ids),
                    split, limit)
    return [records[i] for i in keep], [ids[i] for i in keep], len(dropped)


def run(cell: dict, train_path: str, val_path: str, policy_dir: str, metrics_path: str, work_dir: str,
        tensorboard_dir: str | None = None, device: str | None = None, gpus: str = "",
        trackers: tuple[str, ...] = (), tracker_project: str = "nsr-study") -> None:
    """Train one cell to ``train.steps`` steps, resuming from a valid checkpoint in ``work_dir``.
    ``trackers``: where each step's metrics go besides the JSONL (``report.trackers``).
    ``gpus``: the device ids the job holds (``nsr_study.devices``), recorded with every step, as
    is the device (a resumed run may have moved)."""
    from tqdm.auto import tqdm
    from transformers import set_seed

    from nsr_study.config import check_cell

    check_cell(cell)
    cfg, objective, seed, n = cell["train"], cell["objective"], int(cell["seed"]), cell["train"]["rollouts_per_prompt"]
    device = device or ("cuda" if torch.cuda.is_available() and cfg["device"] != "cpu" else "cpu")
    if distributed.launched():
        distributed.init(device, cfg["collective_timeout_min"])
    rank, ranks = distributed.world()
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    ckpt = distributed.broadcast(checkpoint.resumable(work, cell) if rank == 0 else None)
    set_seed(seed)
    tokenizer = load_tokenizer(cell["model_id"])  # prompts are checked before any model work
    train, train_prompts, train_dropped = fitting_prompts(tokenizer, read_jsonl(train_path), cell, "train")
    val, val_prompts, val_dropped = fitting_prompts(tokenizer, read_jsonl(val_path), cell, "validation")
    model, ref_model, optimizer, backend = prepare(cell, ckpt, device, tokenizer)
    start, cursor = checkpoint.load_progress(ckpt) if ckpt else (0, 0)
    metrics = Metrics(work / "metrics.jsonl", start,
                      open_trackers(trackers, cell, work, tracker_project, start, tensorboard_dir)) if rank == 0 else None
    emit = metrics.emit if metrics else lambda record: None
    val_golds = [r["answer"] for r in val]
    pad_id = pad_token_id(tokenizer)
    where = dict(device=device, gpus=gpus, ranks=ranks)

    with Grader(cell["grading"]["workers"], cell["grading"]["timeout_s"]) as grader:
        if start == 0:
            emit(dict(step=0, train_prompts=len(train), train_prompts_overlong=train_dropped,
                      val_prompts=len(val), val_prompts_overlong=val_dropped)
                 | where | validate(backend, grader, val_prompts, val_golds, cfg, step_seed(seed, 0)))
        bar = tqdm(range(start + 1, cfg["steps"] + 1), initial=start, total=cfg["steps"],
                   desc=f"{cell['model_name']}/{objective}/seed{seed}", unit="step", disable=rank > 0)
        for step in bar:
            times, record = {}, dict(step=step, lr=optimizer.param_groups[0]["lr"]) | where
            if device == "cuda":
                torch.cuda.reset_peak_memory_stats()
            idx = take_prompts(len(train), seed, cursor, cfg["prompts_per_step"])
            cursor += len(idx)
            positions = list(distributed.share(range(len(idx)), rank, ranks))  # this rank's prompts of the step
            mine = [idx[p] for p in positions]
            with timed(times, "rollout"), autocast(device, cfg["dtype"]):  # seeds keyed by position in the step
                ro = backend.generate([train_prompts[i] for i in mine], n=n, temperature=cfg["temperature"], top_p=1.0,
                                      max_new_tokens=cfg["max_new_tokens"], seed=step_seed(seed, step), keys=positions)
            with timed(times, "grade"):
                graded = grader.grade_many(ro.texts, [train[i]["answer"] for i in mine for _ in range(n)])
            ro, scores, counts = gathered(ro, graded)
            kept, stats = episodes(ro, scores, n, objective, cfg)
            record |= stats | dict(grading=dict(counts), prompts_consumed=cursor, skipped=not has_gradient(kept, cfg))
            if record["skipped"]:
                record["optimizer_steps"] = 0
                log.info("step %d: nothing to train on (%s, kept %d samples); update skipped", step, objective, len(kept))
            else:
                record |= learn(model, ref_model, optimizer, backend, kept, cfg, pad_id, device, step_seed(seed, step),
                                times)
            if step % cfg["val_every"] == 0 or step == cfg["steps"]:
                with timed(times, "val"):
                    record |= validate(backend, grader, val_prompts, val_golds, cfg, step_seed(seed, 0))
            record |= times | dict(rollout_tokens_per_s=sum(map(len, ro.response_ids)) / times["time_rollout"])
            if device == "cuda":
                record["gpu_peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
            emit(record)
            bar.set_postfix(reward=f"{record['reward_mean']:.2f}", val=f"{record.get('val_pass_rate', float('nan')):.2f}")
            log.info("step %d: %s", step, ", ".join(f"{k} {v:.4g}" for k, v in record.items()
                                                   if isinstance(v, float) and not k.startswith("time_")))
            if step % cfg["checkpoint_every"] == 0 or step == cfg["steps"]:
                checkpoint.save(work, model, optimizer, step, cursor, cell)
    full = distributed.full_state_dict(model) if distributed.is_sharded(model) else None  # collective: on rank 0
    backend.close()
    distributed.finish()  # rank 0 writes the policy with no rank waiting in a collective
    if rank == 0:
        checkpoint.save_policy(model, tokenizer, policy_dir, cfg["dtype"], full)
        metrics.close()
        if not cfg["keep_checkpoint"]:
            checkpoint.remove_checkpoints(work)
        Path(metrics_path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(metrics.path, metrics_path)
        checkpoint.mark_finished(work)  # a rerun of this finished cell trains afresh
        log.info("saved the policy to %s and the metrics to %s", policy_dir, metrics_path)


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(prog="python -m nsr_study train",
                                 description="Train one (model × objective × seed) cell.")
    ap.add_argument("--cell", required=True, help="JSON: model_name, model_id, objective, seed, prompt{}, train{}, grading{}")
    ap.add_argument("--runtime", default="{}", help="JSON: runtime-only train settings (nsr_study.config.RUNTIME_ONLY)")
    ap.add_argument("--train", required=True)
    ap.add_argument("--val", required=True)
    ap.add_argument("--policy", required=True, help="output directory of the final policy (save_pretrained)")
    ap.add_argument("--metrics", required=True, help="output JSONL of per-step metrics")
    ap.add_argument("--work", required=True, help="checkpoint directory, outside the rule's outputs")
    ap.add_argument("--tensorboard", default=None, help="TensorBoard folder (with --trackers tensorboard)")
    ap.add_argument("--trackers", nargs="*", default=[], choices=TRACKERS, help="report.trackers")
    ap.add_argument("--tracker-project", default="nsr-study", help="report.tracker_project")
    ap.add_argument("--log", default=None)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--gpus", type=int, default=0, help="GPUs to claim (the rule's gpu resource; nsr_study.devices)")
    ap.add_argument("--ranks", type=int, default=1, help="processes (the model's gpus; nsr_study.distributed)")
    args = ap.parse_args(argv)
    from nsr_study.devices import compute_device
    from nsr_study.logs import attempt_log, setup_logging

    rank = int(os.environ.get("RANK", 0))
    if distributed.launched():  # one rank of the job: the launching process chose the attempt's log
        attempt = Path(os.environ[ATTEMPT_ENV])
    else:
        attempt = os.environ[ATTEMPT_ENV] = str(attempt_log(Path(args.work) / "attempts"))
    setup_logging(args.log, attempt, quiet=rank > 0)
    cell = json.loads(args.cell)
    label = f"train {cell['model_name']}/{cell['objective']}/seed{cell['seed']}"
    gpus = distributed.begin("train", argv, args.ranks, args.gpus, label)
    device = compute_device(cell["train"]["device"], label)
    if rank == 0:
        log.info("this attempt's log is kept in %s (Snakemake deletes %s before a rerun)", attempt, args.log)
    if args.threads:
        torch.set_num_threads(max(1, args.threads // args.ranks))  # the job's threads, shared by its ranks
    cell["train"] |= json.loads(args.runtime)
    run(cell, args.train, args.val, args.policy, args.metrics, args.work, args.tensorboard, device,
        gpus=gpus, trackers=tuple(args.trackers), tracker_project=args.tracker_project)
