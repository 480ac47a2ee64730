"""Tidy tables of every training-step metric and every final metric over all cells and seeds.

One row per cell × seed × step (training), per model × objective × seed × test set (final, column
``benchmark``; the base model has objective "base" and no seed), per … × k (pass@k) and per … ×
level/subject (breakdown).
Every table carries the model's size in parameters, read from its base evaluation.

Every final number comes with its standard error over test problems (``*_se``), and every trained
cell with its paired difference from its base model (``*_vs_base`` ± ``*_vs_base_se``: mean and
standard error over problems of the per-problem difference, both models graded on the same
problems), so a single seed already shows whether a difference is larger than its noise.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from nsr_study.data import read_jsonl
from nsr_study.metrics import mean_se, pass_at_k

FINAL_COLUMNS = ["greedy_accuracy", "greedy_accuracy_se", "response_length_mean", "truncation_rate", "greedy_truncation_rate",
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


def per_problem(problems: list[dict], k: int) -> dict[str, float]:
    """{problem id: pass@k} from an evaluation's per-problem rows (pass@1 = c / n)."""
    return {p["id"]: pass_at_k(p["n"], p["correct"], k) for p in problems}


def paired_difference(cell: dict[str, float], base: dict[str, float]) -> tuple[float, float]:
    """Mean and standard error over problems of cell − base, problem by problem."""
    if cell.keys() != base.keys():
        raise ValueError(f"cell and base were evaluated on different problems ({len(cell)} vs {len(base)})")
    return mean_se([cell[i] - base[i] for i in base])


NO_LABEL = "(none: this test set has no {kind}s)"


def final_tables(summaries: list[dict], problems: list[list[dict]]) -> dict[str, pd.DataFrame]:
    """``summaries``: the metrics.json of every evaluation (base and cells); ``problems``: the
    per-problem rows of each, in the same order.

    Returns ``final`` (one row per evaluation × test set), ``passk`` (… × k) and ``breakdown``
    (… × level / subject; a set without levels or subjects, a competition set, gets one row
    that says so, with its overall numbers)."""
    final, passk, breakdown = [], [], []
    base = {s["model"]: rows for s, rows in zip(summaries, problems) if s["objective"] == "base"}
    for s, rows in zip(summaries, problems):
        for bench, b in s["benchmarks"].items():
            label = {"model": s["model"], "objective": s["objective"], "seed": s.get("seed"), "benchmark": bench,
                     "parameters": s["parameters"]}
            ks = sorted(int(k[5:]) for k in b if k.startswith("pass@") and not k.endswith("_se"))
            row = label | {c: b[c] for c in FINAL_COLUMNS if c != "grading_failures"} | {
                "grading_failures": _failures(b), "max_k": ks[-1],
                "pass_at_1": b["pass@1"], "pass_at_1_se": b["pass@1_se"],
                "pass_at_max_k": b[f"pass@{ks[-1]}"], "pass_at_max_k_se": b[f"pass@{ks[-1]}_se"]}
            if s["objective"] != "base":
                mine = [r for r in rows if r["benchmark"] == bench]
                theirs = [r for r in base[s["model"]] if r["benchmark"] == bench]
                for name, k in (("pass_at_1", 1), ("pass_at_max_k", ks[-1])):
                    row[f"{name}_vs_base"], row[f"{name}_vs_base_se"] = paired_difference(
                        per_problem(mine, k), per_problem(theirs, k))
            final.append(row)
            passk += [label | {"k": k, "pass_at_k": b[f"pass@{k}"], "pass_at_k_se": b[f"pass@{k}_se"]} for k in ks]
            for kind in ("level", "subject"):
                groups = b[f"by_{kind}"] or {NO_LABEL.format(kind=kind): b}
                for group, g in groups.items():
                    breakdown.append(label | {"by": kind, "group": group, "problems": g["problems"],
                                              "greedy_accuracy": g["greedy_accuracy"]}
                                     | {f"pass_at_{k}": g[f"pass@{k}"] for k in ks})
    order = ["benchmark", "model", "objective", "seed"]
    return {"final": pd.DataFrame(final).sort_values(order, ignore_index=True, na_position="first"),
            "passk": pd.DataFrame(passk).sort_values(order + ["k"], ignore_index=True, na_position="first"),
            "breakdown": pd.DataFrame(breakdown).sort_values(order + ["by", "group"], ignore_index=True,
                                                             na_position="first")}


def load_summaries(paths) -> list[dict]:
    return [json.loads(Path(p).read_text()) for p in paths]


def strategy_table(labels: list[dict], problems: list[list[dict]]) -> pd.DataFrame:
    """The positive control's mechanism: per evaluation ({model, objective, seed} ``labels``,
    their problems.jsonl rows ``problems``) × test set × strategy, the share of samples that
    used the strategy and its reliability (the share of those that were right; NaN when none
    used it), from the rows' ``strategies`` tag (``nsr_study.synthetic.strategy_tally``).
    Rows without the tag (other tasks) are left out."""
    out = []
    for label, rows in zip(labels, problems, strict=True):
        for bench in dict.fromkeys(r["benchmark"] for r in rows if "strategies" in r):
            tags = [r["strategies"] for r in rows if r["benchmark"] == bench and "strategies" in r]
            samples = sum(sum(t["used"].values()) for t in tags)
            for strategy in tags[0]["used"]:
                used, right = (sum(t[k][strategy] for t in tags) for k in ("used", "correct"))
                out.append({"model": label["model"], "objective": label["objective"], "seed": label["seed"],
                            "benchmark": bench, "strategy": strategy, "problems": len(tags), "samples": samples,
                            "share": used / samples, "reliability": right / used if used else float("nan")})
    return pd.DataFrame(out, columns=["model", "objective", "seed", "benchmark", "strategy", "problems", "samples",
                                      "share", "reliability"])
