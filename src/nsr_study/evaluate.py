"""Evaluation of one model (a base model or a trained cell's policy) on every test set of the
test table (the stratified MATH sample and the config's other ``benchmarks``), each on its own.

Greedy accuracy (pass@1 at T=0) and pass@k for k = 1, 2, 4, … ≤ n from n samples per problem
at the configured temperature/top_p (paper: T=0.6, top_p=0.95), overall and by level and
subject; mean response length and truncation rate of the samples; mean token entropy of the
greedy responses; grading statuses. The same rollout backends as training.

Run by the evaluate rules as ``python -m nsr_study.evaluate ...``. With ``--ranks N`` (the
model's ``gpus``) each test set's problems are split over N FSDP2 ranks
(``nsr_study.distributed``), each rank generating, grading and scoring its contiguous share
(samples seeded by problem id, so the same as on one rank), and rank 0 writes the gathered rows
in the test table's order.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import torch

from nsr_study import distributed
from nsr_study.batch import Sample, autocast, collate
from nsr_study.data import read_jsonl, write_jsonl
from nsr_study.grading import Grader
from nsr_study.loading import load_causal_lm, load_tokenizer
from nsr_study.logprobs import token_logprobs
from nsr_study.metrics import summarize
from nsr_study.prompts import pad_token_id, problem_prompt_ids
from nsr_study.rollout import make_backend

log = logging.getLogger("nsr_study.evaluate")


def greedy_entropy(model, rollouts, cfg: dict, pad_id: int, device) -> list[float]:
    """Mean next-token entropy (at T = 1) over each greedy response: the policy's confidence."""
    means = []
    samples = [Sample(p, r) for p, r in zip(rollouts.prompt_ids, rollouts.response_ids)]
    micro = cfg["micro_batch_size"]
    # sharded, every rank makes as many forwards (each gathers the weights); extra ones are discarded
    calls = int(distributed.all_max(-(-len(samples) // micro)))
    with torch.no_grad():
        for s in range(0, calls * micro, micro):
            b = collate(samples[s : s + micro] or [Sample([pad_id], [pad_id])], pad_id, device)
            with autocast(device, cfg["dtype"]):
                _, ent = token_logprobs(model, b["input_ids"], b["attention_mask"], b["response_mask"],
                                        cfg["logprob_chunk"], temperature=1.0)
            mask = b["response_mask"].float()
            means += ((ent * mask).sum(-1) / mask.sum(-1).clamp(min=1)).tolist() if s < len(samples) else []
    return means


def summed(counts: list[dict]) -> Counter:
    """Grading counts of every rank added up, zero counts kept."""
    total = Counter()
    for c in counts:
        total.update(c)
    return total


def longest_prompt(records: list[dict], prompts: list[list[int]], max_new_tokens: int, context: int) -> int:
    """The longest test prompt's length, which sizes the rollout engine's context
    (prompt + ``max_new_tokens``), so that no test problem is dropped or cut: the evaluation
    covers every problem of the test set or refuses, before any model work, naming the problem
    that cannot fit the model's ``context`` (its max_position_embeddings)."""
    i = max(range(len(prompts)), key=lambda j: len(prompts[j]))
    if len(prompts[i]) + max_new_tokens > context:
        raise ValueError(f"test problem {records[i]['id']}: its prompt has {len(prompts[i])} tokens, which with "
                         f"evaluate.max_new_tokens = {max_new_tokens} exceeds the model's context of {context} tokens; "
                         "lower evaluate.max_new_tokens or leave the problem out of the test data")
    return len(prompts[i])


def longest_test_prompt(records: list[dict], prompts: list[list[int]], new_tokens: dict[str, int], context: int) -> int:
    """``longest_prompt`` over every test set of the test table, each with its own
    ``max_new_tokens`` (``new_tokens``, by the records' ``benchmark``)."""
    longest = 0
    for name in dict.fromkeys(r["benchmark"] for r in records):
        idx = [i for i, r in enumerate(records) if r["benchmark"] == name]
        longest = max(longest, longest_prompt([records[i] for i in idx], [prompts[i] for i in idx],
                                              new_tokens[name], context))
    return longest


def model_context(model_path: str) -> int:
    """The number of positions the model was built for, from its config alone (no weights)."""
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(model_path, trust_remote_code=False).max_position_embeddings


def benchmark_groups(records: list[dict], settings: dict[str, dict], default: dict) -> dict[str, dict]:
    """{test set: {indices, n, max_new_tokens}} in the order the sets first appear; a set's
    ``n``/``max_new_tokens`` from ``settings`` (``evaluate.benchmarks``), else ``default``'s."""
    groups: dict[str, dict] = {}
    for i, r in enumerate(records):
        name = r["benchmark"]
        if name not in groups:
            own = settings.get(name, {})
            groups[name] = {"indices": [], **{k: own.get(k, default[k]) for k in ("n", "max_new_tokens")}}
        groups[name]["indices"].append(i)
    return groups


def breakdown(problems: list[dict], n: int, key: str) -> dict:
    """``summarize`` per value of ``key`` (level, subject); {} for a set without that label
    (competition sets: the aggregate's breakdown says so)."""
    groups = defaultdict(list)
    for p in problems:
        if p[key] is not None:
            groups[p[key]].append(p)
    return {v: summarize(ps, n) for v, ps in sorted(groups.items())}


def evaluate(model_path: str, test_path: str, cfg: dict, prompt: dict, grading: dict, seed: int) -> tuple[dict, list[dict]]:
    """(summary, per-problem rows) for one model directory or hub id, on every test set of the
    test table (its ``benchmark`` column), each with its own n and max_new_tokens
    (``cfg["benchmarks"]``); the summary holds one MATH-style summary per set under
    ``benchmarks``."""
    from transformers import set_seed

    set_seed(seed)
    device = "cuda" if torch.cuda.is_available() and cfg["device"] != "cpu" else "cpu"
    if distributed.launched():
        distributed.init(device)
    ranks = distributed.world()[1]
    tokenizer = load_tokenizer(model_path)
    records = read_jsonl(test_path)
    prompts = problem_prompt_ids(tokenizer, records, prompt)
    groups = benchmark_groups(records, cfg.get("benchmarks", {}), cfg)
    longest = longest_test_prompt(records, prompts, {name: g["max_new_tokens"] for name, g in groups.items()},
                                  model_context(model_path))
    model = load_causal_lm(model_path, "cpu" if ranks > 1 else device).eval()
    parameters = sum(p.numel() for p in model.parameters())
    if ranks > 1:
        distributed.shard(model, cfg["dtype"], device)
    pad_id = pad_token_id(tokenizer)
    engine_cfg = cfg | {"max_prompt_tokens": longest, "max_new_tokens": max(g["max_new_tokens"] for g in groups.values())}
    backend = make_backend(cfg["backend"], model, tokenizer, model_path, engine_cfg, seed)
    summary = {"benchmarks": {}, "device": device, "ranks": ranks, "prompt_tokens_max": longest,
               "parameters": parameters}
    problems = []
    with Grader(grading["workers"], grading["timeout_s"]) as grader:
        for name, grp in groups.items():
            recs = [records[i] for i in grp["indices"]]
            bench_summary, rows = evaluate_set(backend, grader, model, recs, [prompts[i] for i in grp["indices"]],
                                               cfg, grp["n"], grp["max_new_tokens"], pad_id, device, seed, name)
            summary["benchmarks"][name] = bench_summary
            problems += rows
    return summary, problems


def evaluate_set(backend, grader, model, records, prompts, cfg, n, max_new_tokens, pad_id, device, seed, name
                 ) -> tuple[dict, list[dict]]:
    """One test set's summary (as ``summarize``, with lengths, entropy, grading counts and the
    level/subject breakdown) and per-problem rows. On several ranks each rank takes its share of
    the set's problems, and the rows and statistics are gathered."""
    rank, ranks = distributed.world()
    records, prompts = distributed.share(records, rank, ranks), distributed.share(prompts, rank, ranks)
    with autocast(device, cfg["dtype"]):
        greedy = backend.generate(prompts, n=1, temperature=0.0, top_p=1.0, max_new_tokens=max_new_tokens)
        g = grader.grade_many(greedy.texts, [r["answer"] for r in records], progress=rank == 0,
                              desc=f"{name}: grading greedy")
        sampled = backend.generate(prompts, n=n, temperature=cfg["temperature"], top_p=cfg["top_p"],
                                   max_new_tokens=max_new_tokens, seed=seed, keys=[r["id"] for r in records])
        s = grader.grade_many(sampled.texts, [r["answer"] for r in records for _ in range(n)], progress=rank == 0,
                              desc=f"{name}: grading {n} samples per problem")
    entropy = greedy_entropy(model, greedy, cfg, pad_id, device)
    problems = []
    for i, r in enumerate(records):
        scores = s.scores[i * n : (i + 1) * n]
        problems.append({"id": r["id"], "benchmark": name, "subject": r["subject"], "level": r["level"],
                         "greedy_correct": g.scores[i], "correct": int(sum(scores)), "n": n,
                         "greedy_length": len(greedy.response_ids[i]), "greedy_entropy": entropy[i]})
    problems = distributed.gather(problems)
    lengths = distributed.gather([len(r) for r in sampled.response_ids])
    truncated, greedy_truncated = distributed.gather(sampled.truncated), distributed.gather(greedy.truncated)
    g_counts, s_counts = (summed(distributed.gather([dict(x.counts)])) for x in (g, s))
    summary = summarize(problems, n)
    summary.update(
        n=n, temperature=cfg["temperature"], top_p=cfg["top_p"], max_new_tokens=max_new_tokens,
        response_length_mean=float(np.mean(lengths)),
        truncation_rate=float(np.mean(truncated)),
        greedy_truncation_rate=float(np.mean(greedy_truncated)),
        token_entropy_mean=float(np.mean([p["greedy_entropy"] for p in problems])),
        grading_greedy=dict(g_counts), grading_sampled=dict(s_counts),
        by_level=breakdown(problems, n, "level"), by_subject=breakdown(problems, n, "subject"),
    )
    return summary, problems


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="Evaluate one model on the test set.")
    ap.add_argument("--model", required=True, help="hub id or directory (a base model or a trained policy)")
    ap.add_argument("--test", required=True)
    ap.add_argument("--config", required=True, help="JSON: evaluate{}, prompt{}, grading{}, label{} (model, objective, seed)")
    ap.add_argument("--runtime", default="{}", help="JSON: runtime-only settings (batch sizes)")
    ap.add_argument("--metrics", required=True, help="output JSON summary")
    ap.add_argument("--problems", required=True, help="output JSONL, one row per test problem")
    ap.add_argument("--log", default=None)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--gpus", type=int, default=0, help="GPUs to claim (the rule's gpu resource; nsr_study.devices)")
    ap.add_argument("--ranks", type=int, default=1, help="processes (the model's gpus; nsr_study.distributed)")
    args = ap.parse_args(argv)
    from nsr_study.logs import setup_logging

    rank = int(os.environ.get("RANK", 0))
    setup_logging(args.log, quiet=rank > 0)
    cfg = json.loads(args.config)
    label = cfg["label"]
    gpus = distributed.begin("nsr_study.evaluate", sys.argv[1:] if argv is None else argv, args.ranks, args.gpus,
                             f"evaluate {label['model']}/{label['objective']}"
                             + (f"/seed{label['seed']}" if label["seed"] is not None else ""))
    if args.threads:
        torch.set_num_threads(max(1, args.threads // args.ranks))  # the job's threads, shared by its ranks
    cfg["evaluate"] |= json.loads(args.runtime)
    seed = label["seed"] or 0  # a base model has no training seed; its sampling uses 0
    summary, problems = evaluate(args.model, args.test, cfg["evaluate"], cfg["prompt"], cfg["grading"], seed)
    if rank == 0:
        summary = label | summary | {"gpus": gpus}
        Path(args.metrics).parent.mkdir(parents=True, exist_ok=True)
        Path(args.metrics).write_text(json.dumps(summary, indent=2) + "\n")
        write_jsonl(problems, args.problems, fields=None)
        for name, b in summary["benchmarks"].items():
            log.info("%s on %s: greedy accuracy %.3f, %s", args.model, name, b["greedy_accuracy"],
                     ", ".join(f"{k} {v:.3f}" for k, v in b.items() if k.startswith("pass@") and not k.endswith("_se")))
    distributed.finish()


if __name__ == "__main__":
    main()
