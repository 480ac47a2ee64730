"""The summary of one evaluation from its problem rows: pure functions of the rows (so merged
shards equal one unsharded evaluation, tests/test_evaluate.py) and the merge job,
``python -m nsr_study summary``, that writes ``metrics.json`` and ``problems.jsonl`` from an
evaluation's shards (``nsr_study.evaluate``). Free of torch and transformers: a merge starts in
a fraction of a model job's start-up.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from nsr_study.data import write_jsonl
from nsr_study.grading import STATUSES
from nsr_study.metrics import summarize

log = logging.getLogger("nsr_study.summary")


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


def summarize_set(problems: list[dict], n: int, max_new_tokens: int, cfg: dict) -> dict:
    """One test set's summary (``summarize``, with lengths, entropy, grading counts and the
    level/subject breakdown) from its problem rows alone."""
    statuses = Counter({s: 0 for s in STATUSES})
    greedy_statuses = statuses.copy()
    greedy_statuses.update(p["greedy_status"] for p in problems)
    for p in problems:
        statuses.update(p["sampled_statuses"])
    summary = summarize(problems, n)
    summary.update(
        n=n, temperature=cfg["temperature"], top_p=cfg["top_p"], max_new_tokens=max_new_tokens,
        response_length_mean=sum(p["sampled_tokens"] for p in problems) / (n * len(problems)),
        truncation_rate=sum(p["sampled_truncated"] for p in problems) / (n * len(problems)),
        greedy_truncation_rate=float(np.mean([p["greedy_truncated"] for p in problems])),
        token_entropy_mean=float(np.mean([p["greedy_entropy"] for p in problems])),
        grading_greedy=dict(greedy_statuses), grading_sampled=dict(statuses),
        by_level=breakdown(problems, n, "level"), by_subject=breakdown(problems, n, "subject"),
    )
    return summary


def summarize_evaluation(problems: list[dict], facts: list[dict], cfg: dict) -> dict:
    """The summary of one evaluation from its problem rows (all shards, in table order) and each
    shard's run facts, one ``summarize_set`` per test set under ``benchmarks``: a pure function
    of the rows, so merged shards equal one unsharded run."""
    records = [{"benchmark": p["benchmark"]} for p in problems]
    groups = benchmark_groups(records, cfg.get("benchmarks", {}), cfg)
    return dict(
        benchmarks={name: summarize_set([problems[i] for i in g["indices"]], g["n"], g["max_new_tokens"], cfg)
                    for name, g in groups.items()},
        device=",".join(sorted({f["device"] for f in facts})), prompt_tokens_max=max(f["prompt_tokens_max"] for f in facts),
        parameters=facts[0]["parameters"], shards=len(facts), ranks=max(f["ranks"] for f in facts),
    )


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(prog="python -m nsr_study summary",
                                 description="Merge the shards of one evaluation into its summary and problem rows.")
    ap.add_argument("--config", required=True, help="JSON: evaluate{} and label{}, as given to the shards")
    ap.add_argument("--metrics", required=True, help="output JSON summary")
    ap.add_argument("--problems", required=True, help="output JSONL, one row per test problem")
    ap.add_argument("--log", default=None)
    ap.add_argument("shards", nargs="+", help="the shards' JSON outputs, in shard order")
    args = ap.parse_args(argv)
    from nsr_study.logs import setup_logging

    setup_logging(args.log)
    cfg = json.loads(args.config)
    parts = [json.loads(Path(p).read_text()) for p in args.shards]
    problems = [row for part in parts for row in part["problems"]]
    facts = [part["facts"] for part in parts if part["facts"] is not None]
    summary = cfg["label"] | summarize_evaluation(problems, facts, cfg["evaluate"])
    summary["gpus"] = ",".join(f["gpus"] for f in facts)
    Path(args.metrics).parent.mkdir(parents=True, exist_ok=True)
    Path(args.metrics).write_text(json.dumps(summary, indent=2) + "\n")
    write_jsonl(problems, args.problems, fields=None)
    for name, b in summary["benchmarks"].items():
        log.info("%s on %s: greedy accuracy %.3f, %s", cfg["label"], name, b["greedy_accuracy"],
                 ", ".join(f"{k} {v:.3f}" for k, v in b.items() if k.startswith("pass@") and not k.endswith("_se")))
