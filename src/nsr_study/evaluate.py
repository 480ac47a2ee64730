"""Evaluation of one model (a base model or a trained cell's policy) on every test set of the
test table (the stratified MATH sample and the config's other ``benchmarks``), each on its own,
in shards of test problems (one job each, so a killed evaluation keeps its finished shards and
the shards of one model run on several GPUs at once), merged into one summary per test set.

Greedy accuracy (pass@1 at T=0) and pass@k for k = 1, 2, 4, … ≤ n from n samples per problem
at the configured temperature/top_p (paper: T=0.6, top_p=0.95), overall and by level and
subject; mean response length and truncation rate of the samples; mean token entropy of the
greedy responses; grading statuses. The same rollout backends as training.

Run by the evaluate rules as ``python -m nsr_study evaluate ...``, one job per shard; the merge
rule's ``python -m nsr_study summary`` combines the shards. With ``--ranks N`` (the model's
``gpus``) a shard's problems are split further over N FSDP2 ranks (``nsr_study.distributed``),
each rank generating, grading and scoring its contiguous share (samples seeded by problem id, so
the same rows as on one rank), and rank 0 writes the gathered rows in table order.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections import Counter
from pathlib import Path

import torch

from nsr_study import distributed
from nsr_study.batch import Sample, autocast, collate
from nsr_study.data import read_jsonl
from nsr_study.devices import compute_device
from nsr_study.grading import Grader
from nsr_study.loading import load_causal_lm, load_tokenizer
from nsr_study.logprobs import token_logprobs
from nsr_study.prompts import pad_token_id, problem_prompt_ids
from nsr_study.rollout import make_backend
from nsr_study.summary import benchmark_groups
from nsr_study.synthetic import STRATEGY_SUBJECTS, strategy_tally

log = logging.getLogger("nsr_study.evaluate")


def greedy_entropy(model, rollouts, cfg: dict, pad_id: int, device) -> list[float]:
    """Mean next-token entropy (at T = 1) over each greedy response: the policy's confidence.
    One response per forward pass: batched, its padding would change the float rounding with
    the batch it lands in, and a problem's entropy would depend on its shard (one forward per
    problem is a small part of an evaluation, ``nsr_study.cost``)."""
    means = []
    pairs = list(zip(rollouts.prompt_ids, rollouts.response_ids))
    # sharded, every rank makes as many forwards (each gathers the weights); extra ones are discarded
    calls = int(distributed.all_max(len(pairs)))
    with torch.no_grad():
        for k in range(calls):
            p, r = pairs[k] if k < len(pairs) else ([pad_id], [pad_id])
            b = collate([Sample(p, r)], pad_id, device)
            with autocast(device, cfg["dtype"]):
                _, ent = token_logprobs(model, b["input_ids"], b["attention_mask"], b["response_mask"],
                                        cfg["logprob_chunk"], temperature=1.0)
            mask = b["response_mask"].float()
            if k < len(pairs):
                means.append(float((ent * mask).sum() / mask.sum().clamp(min=1)))
    return means


def longest_prompt(records: list[dict], prompts: list[list[int]], max_new_tokens: int, context: int,
                   name: str | None = None) -> int:
    """The longest test prompt's length, which sizes the rollout engine's context
    (prompt + ``max_new_tokens``), so that no test problem is dropped or cut: the evaluation
    covers every problem of the test set (``name``) or refuses, before any model work, naming
    the problem and its set that cannot fit the model's ``context`` (its max_position_embeddings)."""
    i = max(range(len(prompts)), key=lambda j: len(prompts[j]))
    if len(prompts[i]) + max_new_tokens > context:
        where = f" in test set {name}" if name else ""
        raise ValueError(f"test problem {records[i]['id']}: its prompt has {len(prompts[i])} tokens, which with "
                         f"evaluate.max_new_tokens = {max_new_tokens} exceeds the model's context of {context} tokens"
                         f"{where}; lower that set's max_new_tokens or leave the problem out of the test data")
    return len(prompts[i])


def _sets(records: list[dict], prompts: list[list[int]]):
    """(name, its records, its prompts) of every test set among ``records`` (their ``benchmark``)."""
    for name in dict.fromkeys(r["benchmark"] for r in records):
        idx = [i for i, r in enumerate(records) if r["benchmark"] == name]
        yield name, [records[i] for i in idx], [prompts[i] for i in idx]


def longest_test_prompt(records: list[dict], prompts: list[list[int]], new_tokens: dict[str, int], context: int) -> int:
    """``longest_prompt`` over every test set of the test table, each with its own
    ``max_new_tokens`` (``new_tokens``, by the records' ``benchmark``)."""
    return max(longest_prompt(recs, ps, new_tokens[name], context, name) for name, recs, ps in _sets(records, prompts))


def engine_length(records: list[dict], prompts: list[list[int]], new_tokens: dict[str, int], context: int) -> int:
    """Positions the rollout engine needs for these problems: the most that one test set needs
    (its longest prompt + its own ``max_new_tokens``), each set refused by name before any model
    work when it does not fit the model's ``context``. Not the longest prompt of all sets plus the
    largest budget of all: a shard spanning a long-prompt set and a long-answer set would ask for
    more positions than any of its problems uses, beyond a 4,096-position model's."""
    return max(longest_prompt(recs, ps, new_tokens[name], context, name) + new_tokens[name]
               for name, recs, ps in _sets(records, prompts))


def model_context(model_path: str) -> int:
    """The number of positions the model was built for, from its config alone (no weights)."""
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(model_path, trust_remote_code=False).max_position_embeddings


def shard_rows(records: list[dict], shard: int, shards: int) -> list[dict]:
    """Shard ``shard`` of ``shards`` of the test problems: a contiguous, balanced block of rows
    (row i goes to shard i·shards // rows), so the shards in order are the table in order, for
    any number of rows (the workflow fixes ``shards`` from the config before the data exists)."""
    if not 0 <= shard < shards:
        raise ValueError(f"shard {shard} of {shards}: shards are numbered 0 to {shards - 1}")
    return [r for i, r in enumerate(records) if i * shards // len(records) == shard]


def evaluate(model_path: str, records: list[dict], cfg: dict, prompt: dict, grading: dict, seed: int) -> tuple[dict, list[dict]]:
    """(run facts, one row per problem) of one model on ``records``, every test problem or one
    shard, each test set (the rows' ``benchmark``) with its own n and max_new_tokens
    (``cfg["benchmarks"]``). Each problem samples from its own stream keyed by its id
    (``rollout.prompt_seeds``), so a problem's row does not depend on the shard it lands in, and
    each row holds all its part of the summary (``summarize_evaluation``)."""
    from transformers import set_seed

    set_seed(seed)
    device = compute_device(cfg["device"], f"evaluate {model_path}")
    if distributed.launched():
        distributed.init(device, cfg["collective_timeout_min"])
    ranks = distributed.world()[1]
    tokenizer = load_tokenizer(model_path)
    prompts = problem_prompt_ids(tokenizer, records, prompt)
    groups = benchmark_groups(records, cfg.get("benchmarks", {}), cfg)
    new_tokens, context = {name: g["max_new_tokens"] for name, g in groups.items()}, model_context(model_path)
    longest = longest_test_prompt(records, prompts, new_tokens, context)
    length = engine_length(records, prompts, new_tokens, context)
    dtype = getattr(torch, cfg["dtype"])  # as saved
    # on several ranks rank 0 alone reads the weights, broadcast into every rank's shards
    load = distributed.load_sharded if ranks > 1 else load_causal_lm
    model = load(model_path, device, dtype).eval()
    parameters = sum(p.numel() for p in model.parameters())
    pad_id = pad_token_id(tokenizer)
    backend = make_backend(cfg["backend"], model, tokenizer, model_path, cfg, seed, max_model_len=length)
    problems = []
    with Grader(grading["workers"], grading["timeout_s"]) as grader:
        for name, grp in groups.items():
            recs = [records[i] for i in grp["indices"]]
            problems += evaluate_set(backend, grader, model, recs, [prompts[i] for i in grp["indices"]],
                                     cfg, grp["n"], grp["max_new_tokens"], pad_id, device, seed, name)
    backend.close()
    facts = dict(device=device, ranks=ranks, prompt_tokens_max=longest, parameters=parameters)
    return facts, problems


def evaluate_set(backend, grader, model, records, prompts, cfg, n, max_new_tokens, pad_id, device, seed, name
                 ) -> list[dict]:
    """One test set's rows: per problem, everything its set's summary needs
    (``summarize_set``). On several ranks each rank takes its share of the problems and the
    rows are gathered, in order, on every rank."""
    rank, ranks = distributed.world()
    records, prompts = distributed.share(records, rank, ranks), distributed.share(prompts, rank, ranks)
    with autocast(device, cfg["dtype"]):
        greedy = backend.generate(prompts, n=1, temperature=0.0, top_p=1.0, max_new_tokens=max_new_tokens)
        greedy_grades = grader.grade_many(greedy.texts, [r["answer"] for r in records], progress=rank == 0,
                                          desc=f"{name}: grading greedy")
        sampled = backend.generate(prompts, n=n, temperature=cfg["temperature"], top_p=cfg["top_p"],
                                   max_new_tokens=max_new_tokens, seed=seed, keys=[r["id"] for r in records])
        sampled_grades = grader.grade_many(sampled.texts, [r["answer"] for r in records for _ in range(n)],
                                           progress=rank == 0, desc=f"{name}: grading {n} samples per problem")
    entropy = greedy_entropy(model, greedy, cfg, pad_id, device)
    problems = []
    for i, r in enumerate(records):
        mine = slice(i * n, (i + 1) * n)
        problems.append({"id": r["id"], "benchmark": name, "subject": r["subject"], "level": r["level"],
                         "greedy_correct": greedy_grades.scores[i], "n": n,
                         "correct": int(sum(sampled_grades.scores[mine])),
                         "greedy_length": len(greedy.response_ids[i]), "greedy_entropy": entropy[i],
                         "greedy_truncated": bool(greedy.truncated[i]), "greedy_status": greedy_grades.statuses[i],
                         "sampled_tokens": sum(map(len, sampled.response_ids[mine])),
                         "sampled_truncated": int(sum(sampled.truncated[mine])),
                         "sampled_statuses": dict(Counter(sampled_grades.statuses[mine]))})
        if r["subject"] in STRATEGY_SUBJECTS:  # the positive control's task: which strategy each sample used
            problems[-1]["strategies"] = strategy_tally(sampled.texts[mine], sampled_grades.scores[mine])
    return distributed.gather(problems)


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(prog="python -m nsr_study evaluate",
                                 description="Evaluate one model on one shard of the test problems.")
    ap.add_argument("--model", required=True, help="hub id or directory (a base model or a trained policy)")
    ap.add_argument("--test", required=True)
    ap.add_argument("--shard", required=True, help="k/K: shard k (from 0) of K (nsr_study.evaluate.shard_rows)")
    ap.add_argument("--config", required=True, help="JSON: evaluate{}, prompt{}, grading{}, label{} (model, objective, seed)")
    ap.add_argument("--runtime", default="{}", help="JSON: runtime-only settings (batch sizes)")
    ap.add_argument("--out", required=True, help="output JSON: the shard's run facts and one row per test problem")
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
    shard, shards = map(int, args.shard.split("/"))
    gpus = distributed.begin("evaluate", argv, args.ranks, args.gpus, f"evaluate {label['model']}/{label['objective']}"
                             + (f"/seed{label['seed']}" if label["seed"] is not None else "") + f" shard {shard}/{shards}")
    if args.threads:
        torch.set_num_threads(max(1, args.threads // args.ranks))  # the job's threads, shared by its ranks
    cfg["evaluate"] |= json.loads(args.runtime)
    seed = label["seed"] or 0  # a base model has no training seed; its sampling uses 0
    records = shard_rows(read_jsonl(args.test), shard, shards)
    facts, problems = None, []  # more shards than problems (the workflow counts them from the config)
    if records:
        facts, problems = evaluate(args.model, records, cfg["evaluate"], cfg["prompt"], cfg["grading"], seed)
        facts["gpus"] = gpus
    if rank == 0:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"facts": facts, "problems": problems}) + "\n")
        log.info("%s shard %d/%d: %d problems", args.model, shard, shards, len(problems))
    distributed.finish()
