"""Tidy tables of every training-step metric and every final metric over all cells and seeds.

One row per cell × seed × step (training), per model × objective × seed (final; the base model
has objective "base" and no seed), per … × k (pass@k) and per … × level/subject (breakdown).
Every table carries the model's size in parameters, read from its base evaluation.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from nsr_study.data import read_jsonl

FINAL_COLUMNS = ["greedy_accuracy", "response_length_mean", "truncation_rate", "greedy_truncation_rate",
                 "token_entropy_mean", "grading_failures", "n", "temperature", "top_p", "max_new_tokens"]


def _scalars(record: dict) -> dict:
    """Flatten one level of nested dicts (grading counts) into ``outer_inner`` columns."""
    out = {}
    for k, v in record.items():
        if isinstance(v, dict):
            out.update({f"{k}_{ik}": iv for ik, iv in v.items() if not isinstance(iv, dict)})
        else:
            out[k] = v
    return out


def train_table(runs: list[tuple[dict, str]], sizes: dict[str, int]) -> pd.DataFrame:
    """``runs``: (label {model, objective, seed}, metrics.jsonl path) per trained cell."""
    rows = []
    for label, path in runs:
        for rec in read_jsonl(path):
            rows.append(label | {"parameters": sizes[label["model"]]} | _scalars(rec))
    return pd.DataFrame(rows).sort_values(["model", "objective", "seed", "step"], ignore_index=True)


def _failures(summary: dict) -> int:
    return sum(summary[g][s] for g in ("grading_greedy", "grading_sampled") for s in ("no_answer", "timeout", "error"))


def final_tables(summaries: list[dict]) -> dict[str, pd.DataFrame]:
    """``summaries``: the metrics.json of every evaluation (base and cells).

    Returns ``final`` (one row per evaluation), ``passk`` (… × k) and ``breakdown``
    (… × level / subject)."""
    final, passk, breakdown = [], [], []
    for s in summaries:
        label = {"model": s["model"], "objective": s["objective"], "seed": s.get("seed"), "parameters": s["parameters"]}
        ks = sorted(int(k[5:]) for k in s if k.startswith("pass@"))
        final.append(label | {c: s[c] for c in FINAL_COLUMNS if c != "grading_failures"}
                     | {"grading_failures": _failures(s), "pass_at_max_k": s[f"pass@{ks[-1]}"], "max_k": ks[-1]})
        passk += [label | {"k": k, "pass_at_k": s[f"pass@{k}"]} for k in ks]
        for kind in ("level", "subject"):
            for group, g in s[f"by_{kind}"].items():
                breakdown.append(label | {"by": kind, "group": group, "problems": g["problems"],
                                          "greedy_accuracy": g["greedy_accuracy"]}
                                 | {f"pass_at_{k}": g[f"pass@{k}"] for k in ks})
    order = ["model", "objective", "seed"]
    return {"final": pd.DataFrame(final).sort_values(order, ignore_index=True, na_position="first"),
            "passk": pd.DataFrame(passk).sort_values(order + ["k"], ignore_index=True, na_position="first"),
            "breakdown": pd.DataFrame(breakdown).sort_values(order + ["by", "group"], ignore_index=True,
                                                             na_position="first")}


def load_summaries(paths) -> list[dict]:
    return [json.loads(Path(p).read_text()) for p in paths]
