"""RL fine-tuning of one (model × objective × seed) cell.

One step: take the next ``prompts_per_step`` prompts of a seeded epoch order, sample
``rollouts_per_prompt`` responses each from the current policy, grade them (math-verify in
worker processes), turn rewards into advantages by objective, compute π_old log-probs once,
then take ``rollout batch / minibatch_size`` AdamW steps with the PPO-clip loss, accumulating
gradients over micro-batches. Later minibatches of a step are off-policy, so clipping is
active there (the paper's NSR result depends on it).

Checkpoints (weights, optimizer, RNG states, step and data cursor) live in a work directory
outside the rule's declared outputs, which Snakemake deletes before a rerun: a killed run
resumes where its last checkpoint left off and ends with one contiguous metrics log.

Run by the ``train`` rule as ``python -m nsr_study.train ...`` (see ``main``).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from nsr_study.data import read_jsonl
from nsr_study.grading import Grader
from nsr_study.logprobs import token_logprobs
from nsr_study.objectives import advantages, clip_loss, loss_denominator, loss_numerator, low_var_kl
from nsr_study.prompts import pad_token_id, problem_prompt_ids

log = logging.getLogger("nsr_study.train")


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


# ---------------------------------------------------------------- the update


class Sample:
    """One rollout ready for the update: prompt + response ids and its scalars."""

    __slots__ = ("ids", "n_prompt", "advantage", "old_logp", "ref_logp")

    def __init__(self, prompt: list[int], response: list[int], advantage: float):
        self.ids = list(prompt) + list(response)
        self.n_prompt = len(prompt)
        self.advantage = float(advantage)
        self.old_logp = self.ref_logp = None  # (len(ids),) set by fill_logprobs

    @property
    def n_response(self) -> int:
        return len(self.ids) - self.n_prompt


def collate(samples: list[Sample], pad_id: int, device) -> dict:
    """Right-padded tensors: input_ids, attention_mask, response_mask, advantages, old/ref logp."""
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
    return {k: v.to(device) for k, v in dict(input_ids=ids, attention_mask=att, response_mask=resp,
                                                 adv=adv, old_logp=old, ref_logp=ref).items()}


def autocast(device, dtype: str):
    """bf16 autocast when the configured compute dtype is bfloat16, a no-op for float32."""
    enabled = dtype == "bfloat16"
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16, enabled=enabled)


@torch.no_grad()
def fill_logprobs(model, samples: list[Sample], attr: str, micro_batch_size: int, pad_id: int, device,
                  dtype: str = "float32", chunk: int = 1024) -> None:
    """Set ``sample.<attr>`` (``old_logp`` or ``ref_logp``) once, before any update."""
    for s in range(0, len(samples), micro_batch_size):
        mb = samples[s : s + micro_batch_size]
        b = collate(mb, pad_id, device)
        with autocast(device, dtype):
            logp, _ = token_logprobs(model, b["input_ids"], b["attention_mask"], b["response_mask"], chunk)
        for sample, row in zip(mb, logp.float().cpu()):
            setattr(sample, attr, row[: len(sample.ids)].clone())


def accumulate_gradients(model, samples: list[Sample], cfg: dict, pad_id: int, device) -> dict:
    """Backpropagate one minibatch's loss through micro-batches; gradients accumulate in
    ``.grad``. The loss denominator is computed for the whole minibatch first, so the
    gradient does not depend on ``micro_batch_size``. Returns per-minibatch statistics."""
    agg = cfg["loss_agg"]
    denom = loss_denominator([s.n_response for s in samples], agg, cfg["max_new_tokens"])
    tokens = sum(s.n_response for s in samples)
    stats = dict(loss=0.0, pg_loss=0.0, clipped=0.0, entropy=0.0, kl=0.0, ratio_dev=0.0)
    for start in range(0, len(samples), cfg["micro_batch_size"]):
        b = collate(samples[start : start + cfg["micro_batch_size"]], pad_id, device)
        mask = b["response_mask"]
        with autocast(device, cfg["dtype"]):
            logp, entropy = token_logprobs(model, b["input_ids"], b["attention_mask"], mask, cfg["logprob_chunk"])
        pg, clipped, ratio = clip_loss(logp, b["old_logp"], b["adv"], cfg["clip_eps"])
        loss = loss_numerator(pg, mask, agg)
        pg_part = loss.detach()
        if cfg["entropy_coef"]:
            loss = loss - cfg["entropy_coef"] * loss_numerator(entropy, mask, agg)
        kl = low_var_kl(logp, b["ref_logp"]) if cfg["kl_coef"] else None
        if kl is not None:
            loss = loss + cfg["kl_coef"] * loss_numerator(kl, mask, agg)
        loss = loss / denom
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss ({loss.item()}) in a minibatch of {len(samples)} samples")
        loss.backward()
        m = mask.bool()
        stats["loss"] += loss.item()
        stats["pg_loss"] += pg_part.item() / denom
        stats["clipped"] += clipped[m].sum().item()
        stats["entropy"] += entropy.detach()[m].sum().item()
        stats["kl"] += 0.0 if kl is None else kl.detach()[m].sum().item()
        stats["ratio_dev"] = max(stats["ratio_dev"], (ratio.detach()[m] - 1).abs().max().item() if m.any() else 0.0)
    for k in ("clipped", "entropy", "kl"):
        stats[k] /= max(tokens, 1)
    return stats


def policy_update(model, optimizer, samples: list[Sample], cfg: dict, pad_id: int, device,
                  after_step=lambda: None, shuffle_seed: int = 0) -> dict:
    """All optimizer steps of one training step: the rollout batch is shuffled and cut into
    ``minibatch_size`` pieces (a piece whose samples were all dropped is skipped); after each
    optimizer step ``after_step()`` runs (the vLLM weight sync). Returns step statistics
    including the per-minibatch ratio deviation (0 on the first, on-policy minibatch)."""
    order = torch.randperm(len(samples), generator=torch.Generator().manual_seed(shuffle_seed)).tolist()
    per_mb = [order[i : i + cfg["minibatch_size"]] for i in range(0, len(order), cfg["minibatch_size"])]
    params = [p for p in model.parameters() if p.requires_grad]
    out = dict(optimizer_steps=0, grad_norm=[], ratio_dev=[], loss=[], pg_loss=[], clip_fraction=[], entropy=[], kl=[])
    model.train()
    for idx in per_mb:
        mb = [samples[i] for i in idx if samples[i] is not None]
        if not mb:
            continue
        optimizer.zero_grad(set_to_none=True)
        st = accumulate_gradients(model, mb, cfg, pad_id, device)
        norm = torch.nn.utils.clip_grad_norm_(params, cfg["grad_clip"])
        if not torch.isfinite(norm):
            raise FloatingPointError(f"non-finite gradient norm ({norm.item()})")
        optimizer.step()
        after_step()
        out["optimizer_steps"] += 1
        out["grad_norm"].append(norm.item())
        for k, v in (("ratio_dev", "ratio_dev"), ("loss", "loss"), ("pg_loss", "pg_loss"),
                     ("clip_fraction", "clipped"), ("entropy", "entropy"), ("kl", "kl")):
            out[k].append(st[v])
    optimizer.zero_grad(set_to_none=True)
    out["minibatches"] = len(per_mb)
    return out


# ---------------------------------------------------------------- checkpoints


def rng_state() -> dict:
    state = dict(python=random.getstate(), numpy=np.random.get_state(), torch=torch.get_rng_state())
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(work: Path, model, optimizer, step: int, cursor: int) -> None:
    """Write ``checkpoint-<step>`` completely, then point ``latest`` at it atomically, then
    delete older checkpoints: a kill at any moment leaves one intact checkpoint."""
    target = work / f"checkpoint-{step}"
    tmp = work / f".checkpoint-{step}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    torch.save(dict(optimizer=optimizer.state_dict(), rng=rng_state(), step=step, cursor=cursor), tmp / "trainer_state.pt")
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    pointer = work / ".latest.tmp"
    pointer.write_text(target.name)
    os.replace(pointer, work / "latest")
    for old in work.glob("checkpoint-*"):
        if old != target:
            shutil.rmtree(old, ignore_errors=True)


def latest_checkpoint(work: Path) -> Path | None:
    pointer = work / "latest"
    if not pointer.is_file():
        return None
    ckpt = work / pointer.read_text().strip()
    return ckpt if (ckpt / "trainer_state.pt").is_file() else None


# ---------------------------------------------------------------- the run


TRAIN_BYTES_PER_PARAM = 16  # fp32 weights + gradients + two AdamW moments


def check_gpu_share(n_params: int, gpu_bytes: int, share: float) -> str | None:
    """Check, before any work, that a colocated vLLM engine taking ``share`` of the GPU leaves
    room for training: the AdamW moments appear only at the first update, so an impossible
    share would otherwise fail minutes into the run. Raises when even the weights, gradients
    and moments cannot fit; returns a warning when the room is under 1.3× that (activations:
    bench/train_step.py measured peaks of 15.4 / 33.0 / 59.4 GiB for the Qwen2.5 0.5B / 1.5B /
    3B shapes on an H100 80 GB, 1.3–2.1× the 16 bytes per parameter). None when it fits."""
    need, room = TRAIN_BYTES_PER_PARAM * n_params, gpu_bytes * (1 - share)
    advice = (f"train.gpu_memory_utilization = {share} leaves {room / 2**30:.1f} GiB of this GPU's "
              f"{gpu_bytes / 2**30:.0f} GiB to train {n_params / 1e9:.2f} B parameters, which need "
              f"{need / 2**30:.1f} GiB for fp32 weights, gradients and AdamW moments alone")
    suggest = max(0.0, 1 - 1.3 * need / gpu_bytes)
    if need > room:
        raise ValueError(f"{advice}; lower it to at most {suggest:.2f} (vLLM needs its bf16 weights plus KV cache)")
    if 1.3 * need > room:
        return f"{advice} plus activations; training may run out of memory, consider at most {suggest:.2f}"
    return None


def make_backend(kind: str, model, tokenizer, model_id: str, cfg: dict, seed: int):
    """The configured rollout backend sampling from ``model``'s current weights."""
    from nsr_study.rollout import HFBackend, VLLMBackend, eos_ids

    if kind == "hf":
        return HFBackend(model, tokenizer, batch_size=cfg["generation_batch_size"])
    try:
        import vllm  # noqa: F401
    except ImportError as e:
        raise RuntimeError("backend 'vllm' is configured but vLLM is not installed (pip install -e '.[vllm]'); "
                           "set train.backend / evaluate.backend to 'hf' on machines without it") from e
    device = next(model.parameters()).device.type
    backend = VLLMBackend(model_id, tokenizer, eos_ids(model, tokenizer), seed,
                          max_model_len=cfg["max_prompt_tokens"] + cfg["max_new_tokens"], device=device,
                          dtype=cfg["dtype"], gpu_memory_utilization=cfg["gpu_memory_utilization"])
    backend.sync(model)
    return backend


def greedy_accuracy(backend, grader, prompts: list[list[int]], golds: list[str], cfg: dict) -> tuple[float, dict]:
    ro = backend.generate(prompts, n=1, temperature=0.0, top_p=1.0, max_new_tokens=cfg["max_new_tokens"])
    res = grader.grade_many(ro.texts, golds)
    return sum(res.scores) / max(len(golds), 1), dict(res.counts)


def run(cell: dict, train_path: str, val_path: str, policy_dir: str, metrics_path: str, work_dir: str,
        tensorboard_dir: str | None = None, device: str | None = None) -> None:
    """Train one cell to ``cfg['steps']`` steps, resuming from ``work_dir`` if it holds a checkpoint."""
    from torch.utils.tensorboard import SummaryWriter
    from tqdm.auto import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed

    cfg, objective, seed = cell["train"], cell["objective"], int(cell["seed"])
    device = device or ("cuda" if torch.cuda.is_available() and cfg["device"] != "cpu" else "cpu")
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    ckpt = latest_checkpoint(work)

    set_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(cell["model_id"])
    model = AutoModelForCausalLM.from_pretrained(str(ckpt or cell["model_id"]), dtype=torch.float32).to(device)
    if cfg["gradient_checkpointing"]:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    ref_model = None
    if cfg["kl_coef"]:
        ref_model = AutoModelForCausalLM.from_pretrained(cell["model_id"], dtype=torch.float32).to(device).eval()
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    pad_id = pad_token_id(tokenizer)

    start_step, cursor = 0, 0
    metrics_live = work / "metrics.jsonl"
    if ckpt:
        state = torch.load(ckpt / "trainer_state.pt", weights_only=False)
        optimizer.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"])
        start_step, cursor = state["step"], state["cursor"]
        kept = [r for r in read_jsonl(metrics_live) if r["step"] <= start_step] if metrics_live.is_file() else []
        metrics_live.write_text("".join(json.dumps(r) + "\n" for r in kept))
        log.info("resuming from %s (step %d, %d prompts consumed)", ckpt.name, start_step, cursor)
    elif metrics_live.exists():
        metrics_live.unlink()

    train = read_jsonl(train_path)
    val = read_jsonl(val_path)
    train_prompts = problem_prompt_ids(tokenizer, train)
    val_prompts, val_golds = problem_prompt_ids(tokenizer, val), [r["answer"] for r in val]
    longest = max(len(p) for p in train_prompts + val_prompts)
    if longest > cfg["max_prompt_tokens"]:
        raise ValueError(f"a prompt has {longest} tokens > train.max_prompt_tokens = {cfg['max_prompt_tokens']}")
    if cfg["backend"] == "vllm" and device == "cuda":
        warning = check_gpu_share(sum(p.numel() for p in model.parameters()), torch.cuda.mem_get_info()[1],
                                  cfg["gpu_memory_utilization"])
        if warning:
            log.warning(warning)
    backend = make_backend(cfg["backend"], model, tokenizer, cell["model_id"], cfg, seed)
    writer = SummaryWriter(tensorboard_dir, purge_step=start_step) if tensorboard_dir else None
    n = cfg["rollouts_per_prompt"]
    drop_zero = objective in cfg["drop_zero_advantage"]

    def emit(record: dict) -> None:
        with open(metrics_live, "a") as f:
            f.write(json.dumps(record) + "\n")
        if writer:
            for k, v in record.items():
                if k != "step" and isinstance(v, (int, float)):
                    writer.add_scalar(k, v, record["step"])
            writer.flush()

    with Grader(cell["grading"]["workers"], cell["grading"]["timeout_s"]) as grader:
        if start_step == 0:
            t0 = time.perf_counter()
            acc, counts = greedy_accuracy(backend, grader, val_prompts, val_golds, cfg)
            emit(dict(step=0, val_accuracy=acc, val_grading=counts, time_val=time.perf_counter() - t0))
            log.info("step 0: greedy val accuracy %.3f", acc)
        bar = tqdm(range(start_step + 1, cfg["steps"] + 1), initial=start_step, total=cfg["steps"],
                   desc=f"{cell['model_name']}/{objective}/seed{seed}", unit="step")
        for step in bar:
            times = {}
            if device == "cuda":
                torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
            idx = take_prompts(len(train), seed, cursor, cfg["prompts_per_step"])
            cursor += len(idx)
            with autocast(device, cfg["dtype"]):
                ro = backend.generate([train_prompts[i] for i in idx], n=n, temperature=cfg["temperature"],
                                      top_p=cfg["top_p"], max_new_tokens=cfg["max_new_tokens"],
                                      seed=None if cfg["backend"] == "hf" else seed * 1_000_003 + step)
            times["rollout"] = time.perf_counter() - t0

            t0 = time.perf_counter()
            golds = [train[i]["answer"] for i in idx for _ in range(n)]
            graded = grader.grade_many(ro.texts, golds)
            times["grade"] = time.perf_counter() - t0

            rewards = torch.tensor(graded.scores)
            groups = torch.arange(len(idx)).repeat_interleave(n)
            adv = advantages(rewards, groups, objective, cfg["w_reinforce_lambda"])
            keep = (adv != 0) if drop_zero else torch.ones_like(adv, dtype=torch.bool)
            samples = [Sample(p, r, a) if k else None
                       for p, r, a, k in zip(ro.prompt_ids, ro.response_ids, adv.tolist(), keep.tolist())]
            kept = [s for s in samples if s is not None]
            record = dict(step=step, reward_mean=rewards.mean().item(), correct_ratio=(rewards == 1).float().mean().item(),
                          advantage_mean=adv.mean().item(), kept_fraction=len(kept) / len(samples),
                          response_length_mean=float(np.mean([len(r) for r in ro.response_ids])),
                          truncation_rate=float(np.mean(ro.truncated)), grading=dict(graded.counts),
                          lr=optimizer.param_groups[0]["lr"], prompts_consumed=cursor)
            if not any(s.advantage != 0 for s in kept):
                record.update(skipped=True, optimizer_steps=0)
                log.info("step %d: no sample with a non-zero advantage (%s); update skipped", step, objective)
            else:
                t0 = time.perf_counter()
                fill_logprobs(model, kept, "old_logp", cfg["micro_batch_size"], pad_id, device, cfg["dtype"], cfg["logprob_chunk"])
                if ref_model is not None:
                    fill_logprobs(ref_model, kept, "ref_logp", cfg["micro_batch_size"], pad_id, device, cfg["dtype"], cfg["logprob_chunk"])
                times["logprob"] = time.perf_counter() - t0
                t0 = time.perf_counter()
                up = policy_update(model, optimizer, samples, cfg, pad_id, device,
                                   after_step=lambda: backend.sync(model), shuffle_seed=seed * 1_000_003 + step)
                times["update"] = time.perf_counter() - t0
                record.update(skipped=False, optimizer_steps=up["optimizer_steps"],
                              loss=float(np.mean(up["loss"])), pg_loss=float(np.mean(up["pg_loss"])),
                              clip_fraction=float(np.mean(up["clip_fraction"])),
                              clip_fraction_last_minibatch=up["clip_fraction"][-1],
                              entropy=float(np.mean(up["entropy"])), kl=float(np.mean(up["kl"])),
                              grad_norm=float(np.mean(up["grad_norm"])), ratio_dev_first_minibatch=up["ratio_dev"][0],
                              update_tokens_per_s=sum(s.n_response for s in kept) * up["optimizer_steps"] / max(times["update"], 1e-9))
            record["rollout_tokens_per_s"] = sum(len(r) for r in ro.response_ids) / max(times["rollout"], 1e-9)
            if step % cfg["val_every"] == 0 or step == cfg["steps"]:
                t0 = time.perf_counter()
                acc, counts = greedy_accuracy(backend, grader, val_prompts, val_golds, cfg)
                times["val"] = time.perf_counter() - t0
                record.update(val_accuracy=acc, val_grading=counts)
            record.update({f"time_{k}": v for k, v in times.items()})
            if device == "cuda":
                record["gpu_peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
            emit(record)
            bar.set_postfix(reward=f"{record['reward_mean']:.2f}", val=f"{record.get('val_accuracy', float('nan')):.2f}")
            log.info("step %d: reward %.3f kept %.2f loss %s clip %s%s", step, record["reward_mean"],
                     record["kept_fraction"], _fmt(record.get("loss")), _fmt(record.get("clip_fraction")),
                     f" val {record['val_accuracy']:.3f}" if "val_accuracy" in record else "")
            if step % cfg["checkpoint_every"] == 0 or step == cfg["steps"]:
                save_checkpoint(work, model, optimizer, step, cursor)
    if writer:
        writer.close()
    Path(policy_dir).mkdir(parents=True, exist_ok=True)
    model.save_pretrained(policy_dir)
    tokenizer.save_pretrained(policy_dir)
    Path(metrics_path).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(metrics_live, metrics_path)
    log.info("saved the policy to %s and %d metric records to %s", policy_dir,
             len(read_jsonl(metrics_path)), metrics_path)


def _fmt(v) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="Train one (model × objective × seed) cell.")
    ap.add_argument("--cell", required=True, help="JSON: model_name, model_id, objective, seed, train{}, grading{}")
    ap.add_argument("--train", required=True)
    ap.add_argument("--val", required=True)
    ap.add_argument("--policy", required=True, help="output directory of the final policy (save_pretrained)")
    ap.add_argument("--metrics", required=True, help="output JSONL of per-step metrics")
    ap.add_argument("--work", required=True, help="checkpoint directory, outside the rule's outputs")
    ap.add_argument("--tensorboard", default=None)
    ap.add_argument("--log", default=None)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    from nsr_study.logs import setup_logging

    setup_logging(args.log, append=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    run(json.loads(args.cell), args.train, args.val, args.policy, args.metrics, args.work, args.tensorboard)


if __name__ == "__main__":
    main()
