"""Evaluation of one model (a base model or a trained cell's policy) on the sampled test set.

Greedy accuracy (pass@1 at T=0) and pass@k for k = 1, 2, 4, … ≤ n from n samples per problem
at the configured temperature/top_p (paper: T=0.6, top_p=0.95), overall and by level and
subject; mean response length and truncation rate of the samples; mean token entropy of the
greedy responses; grading statuses. The same rollout backends as training.

Run by the evaluate rules as ``python -m nsr_study.evaluate ...``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from nsr_study.data import read_jsonl, write_jsonl
from nsr_study.grading import Grader
from nsr_study.logprobs import token_logprobs
from nsr_study.prompts import pad_token_id, problem_prompt_ids

log = logging.getLogger("nsr_study.evaluate")


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k (Chen et al. 2021): 1 − C(n−c, k)/C(n, k), from n samples with c correct.

    Computed as 1 − Π_{i=n−c+1..n} (1 − k/i), which never forms the huge binomials.
    """
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def ks_for(n: int) -> list[int]:
    """1, 2, 4, … up to n."""
    return [2**i for i in range(int(math.log2(n)) + 1)] if n >= 1 else []


def summarize(problems: list[dict], n: int) -> dict:
    """Greedy accuracy and mean pass@k over ``problems`` (each with greedy_correct and c)."""
    out = {"problems": len(problems), "greedy_accuracy": float(np.mean([p["greedy_correct"] for p in problems]))}
    for k in ks_for(n):
        out[f"pass@{k}"] = float(np.mean([pass_at_k(n, p["correct"], k) for p in problems]))
    return out


def greedy_entropy(model, rollouts, micro_batch_size: int, pad_id: int, device, dtype: str) -> list[float]:
    """Mean next-token entropy over each greedy response (the policy's confidence)."""
    from nsr_study.train import Sample, autocast, collate

    means = []
    samples = [Sample(p, r, 0.0) for p, r in zip(rollouts.prompt_ids, rollouts.response_ids)]
    with torch.no_grad():
        for s in range(0, len(samples), micro_batch_size):
            b = collate(samples[s : s + micro_batch_size], pad_id, device)
            with autocast(device, dtype):
                _, ent = token_logprobs(model, b["input_ids"], b["attention_mask"], b["response_mask"])
            mask = b["response_mask"].float()
            means += ((ent * mask).sum(-1) / mask.sum(-1).clamp(min=1)).tolist()
    return means


def evaluate(model_path: str, test_path: str, cfg: dict, grading: dict, seed: int = 0) -> tuple[dict, list[dict]]:
    """(summary, per-problem rows) for one model directory or hub id."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed

    from nsr_study.train import autocast, make_backend

    set_seed(seed)
    device = "cuda" if torch.cuda.is_available() and cfg["device"] != "cpu" else "cpu"
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).to(device).eval()
    pad_id = pad_token_id(tokenizer)
    records = read_jsonl(test_path)
    prompts = problem_prompt_ids(tokenizer, records)
    backend = make_backend(cfg["backend"], model, tokenizer, model_path, cfg, seed)
    n = cfg["n"]
    with Grader(grading["workers"], grading["timeout_s"]) as grader, autocast(device, cfg["dtype"]):
        greedy = backend.generate(prompts, n=1, temperature=0.0, top_p=1.0, max_new_tokens=cfg["max_new_tokens"])
        g = grader.grade_many(greedy.texts, [r["answer"] for r in records], progress=True, desc="grading greedy")
        sampled = backend.generate(prompts, n=n, temperature=cfg["temperature"], top_p=cfg["top_p"],
                                   max_new_tokens=cfg["max_new_tokens"], seed=seed)
        s = grader.grade_many(sampled.texts, [r["answer"] for r in records for _ in range(n)], progress=True,
                              desc=f"grading {n} samples per problem")
    entropy = greedy_entropy(model, greedy, cfg["micro_batch_size"], pad_id, device, cfg["dtype"])
    problems = []
    for i, r in enumerate(records):
        scores = s.scores[i * n : (i + 1) * n]
        problems.append({"id": r["id"], "subject": r["subject"], "level": r["level"],
                         "greedy_correct": g.scores[i], "correct": int(sum(scores)), "n": n,
                         "greedy_length": len(greedy.response_ids[i]), "greedy_entropy": entropy[i]})
    summary = summarize(problems, n)
    summary.update(
        n=n, temperature=cfg["temperature"], top_p=cfg["top_p"], max_new_tokens=cfg["max_new_tokens"],
        parameters=sum(p.numel() for p in model.parameters()),
        response_length_mean=float(np.mean([len(r) for r in sampled.response_ids])),
        truncation_rate=float(np.mean(sampled.truncated)),
        greedy_truncation_rate=float(np.mean(greedy.truncated)),
        token_entropy_mean=float(np.mean(entropy)),
        grading_greedy=dict(g.counts), grading_sampled=dict(s.counts),
    )
    for key in ("level", "subject"):
        groups = defaultdict(list)
        for p in problems:
            groups[p[key]].append(p)
        summary[f"by_{key}"] = {v: summarize(ps, n) for v, ps in sorted(groups.items())}
    return summary, problems


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="Evaluate one model on the test set.")
    ap.add_argument("--model", required=True, help="hub id or directory (a base model or a trained policy)")
    ap.add_argument("--test", required=True)
    ap.add_argument("--config", required=True, help="JSON: evaluate{}, grading{}, label{} (model, objective, seed)")
    ap.add_argument("--metrics", required=True, help="output JSON summary")
    ap.add_argument("--problems", required=True, help="output JSONL, one row per test problem")
    ap.add_argument("--log", default=None)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    from nsr_study.logs import setup_logging

    setup_logging(args.log)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = json.loads(args.config)
    seed = cfg["label"]["seed"] or 0  # a base model has no training seed; its sampling uses 0
    summary, problems = evaluate(args.model, args.test, cfg["evaluate"], cfg["grading"], seed)
    summary = cfg["label"] | summary
    Path(args.metrics).parent.mkdir(parents=True, exist_ok=True)
    Path(args.metrics).write_text(json.dumps(summary, indent=2) + "\n")
    write_jsonl(problems, args.problems, fields=None)
    log.info("%s: greedy accuracy %.3f, %s", args.model, summary["greedy_accuracy"],
             ", ".join(f"{k} {v:.3f}" for k, v in summary.items() if k.startswith("pass@")))


if __name__ == "__main__":
    main()
