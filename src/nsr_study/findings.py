"""The study's answers: each of the paper's claims, per model, as a contrast with a paired
bootstrap interval and a verdict, and the contrast's trend over model size.

A claim (``CLAIMS``) names a test metric, a contrast between cells of one model (the base model
and the trained objectives), and the side of a threshold it asserts: 0 for "raises"/"lowers",
−margin for "at or above" (non-inferiority, ``report.findings.noninferiority_margin``). Every
contrast is a function of the cells' metric means, each mean taken over test problems and then
over seeds.

The interval is a percentile bootstrap. Every replicate resamples the test problems once, with
replacement, and applies the same resample to every cell of every model (all are evaluated on
the same test set), so contrasts between objectives and across sizes stay paired: a contrast
of two cells with identical per-problem results is exactly 0 in every replicate. With two or
more seeds a replicate first resamples the seeds (jointly for all objectives: seed s of every
objective saw the same prompt order), then the problems. Resampling is drawn as multinomial
counts, the same distribution as drawing indices with replacement.

Verdicts (``verdict``): supported when the interval lies entirely on the claimed side of the
threshold, contradicted when entirely on the other side, inconclusive otherwise. Each interval
has its stated coverage on its own; nothing is corrected for the number of claims × models.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from nsr_study.metrics import pass_at_k

METRICS = ("pass@1", "pass@kmax", "entropy")
VERDICTS = ("supported", "contradicted", "inconclusive")
TRENDS = ("increases", "decreases", "inconclusive")


@dataclass(frozen=True)
class Claim:
    """One of the paper's claims, made testable on one model's cells."""

    paper: str  # the paper's statement it operationalises (v1, paraphrased), with its place
    metric: str  # one of METRICS (per test problem: c/n, pass@k at the largest k, greedy-answer entropy)
    contrast: str  # what is estimated, in words
    cells: tuple[str, ...]  # the objectives (and "base") it needs
    statistic: Callable[[dict], np.ndarray]  # {cell: metric means, one per replicate} → the contrast
    side: str  # "above" | "below": where the claim puts the contrast relative to its threshold
    noninferiority: bool = False  # threshold −margin ("at or above") instead of 0


def _diff(a: str, b: str) -> dict:
    return dict(contrast=f"{a} − {b}", cells=(a, b), statistic=lambda m: m[a] - m[b])


CLAIMS: dict[str, Claim] = {
    "nsr_raises_pass1": Claim(
        "NSR improves over the base model across the pass@k range, pass@1 included (§3.2, Fig. 2)",
        "pass@1", side="above", **_diff("NSR", "base")),
    "nsr_keeps_breadth": Claim(
        "at the largest k, NSR matches or beats the base model (§3.2)",
        "pass@kmax", side="above", noninferiority=True, **_diff("NSR", "base")),
    "psr_narrows": Claim(
        "PSR falls below the base model at large k (§3.2)",
        "pass@kmax", side="below", **_diff("PSR", "base")),
    "grpo_narrows": Claim(
        "GRPO (and PPO) fall below the base model at the largest k (§3.2)",
        "pass@kmax", side="below", **_diff("GRPO", "base")),
    "psr_lowers_entropy": Claim(
        "PSR's test entropy drops quickly (§4.1)",
        "entropy", side="below", **_diff("PSR", "base")),
    "nsr_entropy_closer": Claim(
        "NSR's test entropy stays close to the base model's, unlike PSR's (§4.1)",
        "entropy", contrast="|NSR − base| − |PSR − base|", cells=("NSR", "PSR", "base"),
        statistic=lambda m: abs(m["NSR"] - m["base"]) - abs(m["PSR"] - m["base"]), side="below"),
    "wr_breadth_vs_grpo": Claim(
        "W-REINFORCE gives the best pass@k; at the largest k it is at least GRPO's (Table 1)",
        "pass@kmax", side="above", noninferiority=True, **_diff("W_REINFORCE", "GRPO")),
    "wr_breadth_vs_psr": Claim(
        "W-REINFORCE gives the best pass@k; at the largest k it is at least PSR's (Table 1)",
        "pass@kmax", side="above", noninferiority=True, **_diff("W_REINFORCE", "PSR")),
    "psr_sharpens": Claim(
        "PSR raises pass@1 quickly, at least as much as NSR does (§4.1)",
        "pass@1", contrast="(PSR − base) − (NSR − base)", cells=("PSR", "NSR", "base"),
        statistic=lambda m: m["PSR"] - m["NSR"], side="above", noninferiority=True),
}


def threshold(claim: Claim, margin: float) -> float:
    return -margin if claim.noninferiority else 0.0


def verdict(lo: float, hi: float, threshold: float, side: str) -> str:
    """The one rule: supported when [lo, hi] lies entirely on the claimed side of the threshold,
    contradicted when entirely on the other side, otherwise inconclusive."""
    if side not in ("above", "below"):
        raise ValueError(f"side must be 'above' or 'below', got {side!r}")
    above, below = lo > threshold, hi < threshold
    if above or below:
        return "supported" if above == (side == "above") else "contradicted"
    return "inconclusive"


def trend_verdict(lo: float, hi: float) -> str:
    """The contrast's slope over log10(parameters): an interval above 0 means it increases
    with size, below 0 that it decreases; otherwise the data cannot tell."""
    return "increases" if lo > 0 else "decreases" if hi < 0 else "inconclusive"


# ---------------------------------------------------------------- per-problem values


def problem_values(rows: list[dict], kmax: int) -> dict[str, np.ndarray]:
    """Each metric per problem of one evaluation, in the order of ``rows`` (problems.jsonl)."""
    return {"pass@1": np.array([r["correct"] / r["n"] for r in rows]),
            "pass@kmax": np.array([pass_at_k(r["n"], r["correct"], kmax) for r in rows]),
            "entropy": np.array([r["greedy_entropy"] for r in rows])}


def stack_model(evals: dict[tuple[str, int | None], list[dict]], kmax: int, problem_ids: list[str]
                ) -> dict[str, dict[str, np.ndarray]]:
    """{metric: {cell: array (seeds, problems)}} for one model from its evaluations
    {(objective, seed): problems.jsonl rows}; "base" has one row. Problems in ``problem_ids``
    order, seeds in sorted order."""
    out: dict[str, dict[str, list]] = {m: {} for m in METRICS}
    for (objective, seed), rows in sorted(evals.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0)):
        by_id = {r["id"]: r for r in rows}
        if sorted(by_id) != sorted(problem_ids):
            raise ValueError(f"{objective} seed {seed} was evaluated on other problems than the rest "
                             f"({len(by_id)} vs {len(problem_ids)}): the bootstrap pairs cells problem by problem")
        for metric, values in problem_values([by_id[i] for i in problem_ids], kmax).items():
            out[metric].setdefault(objective, []).append(values)
    return {m: {c: np.stack(v) for c, v in cells.items()} for m, cells in out.items()}


# ---------------------------------------------------------------- the bootstrap


def resample_weights(problems: int, seeds: int, draws: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial counts of each problem (draws × problems) and each seed (draws × seeds) in
    every replicate: resampling with replacement. One seed is never resampled."""
    pw = rng.multinomial(problems, np.full(problems, 1 / problems), size=draws).astype(float)
    sw = (rng.multinomial(seeds, np.full(seeds, 1 / seeds), size=draws) if seeds > 1
          else np.ones((draws, 1))).astype(float)
    return pw, sw


def cell_means(x: np.ndarray, pw: np.ndarray, sw: np.ndarray) -> np.ndarray:
    """Per replicate, the mean over the resampled seeds of the mean over the resampled problems
    of ``x`` (seeds × problems). A cell with one row (the base model) ignores the seed weights."""
    per_seed = pw @ x.T / pw.sum(1, keepdims=True)  # replicates × seeds
    if x.shape[0] == 1:
        return per_seed[:, 0]
    return (per_seed * sw).sum(1) / sw.sum(1)


def claim_replicates(claim: Claim, values: dict[str, dict[str, np.ndarray]], pw: np.ndarray, sw: np.ndarray
                     ) -> np.ndarray:
    """The claim's contrast in every replicate (one row of ``pw``/``sw`` each)."""
    return np.asarray(claim.statistic({c: cell_means(values[claim.metric][c], pw, sw) for c in claim.cells}))


def interval(replicates: np.ndarray, confidence: float) -> tuple[float, float]:
    """Percentile interval; ``inverted_cdf`` returns values the bootstrap distribution takes
    (no interpolation), so a small case can be checked against a direct enumeration."""
    a = (1 - confidence) / 2
    lo, hi = np.quantile(replicates, [a, 1 - a], method="inverted_cdf")
    return float(lo), float(hi)


def slope(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least-squares slope of y over x; ``y`` may carry replicates in its leading axes."""
    xc = x - x.mean()
    return ((y - y.mean(-1, keepdims=True)) * xc).sum(-1) / (xc**2).sum()


def findings(models: dict[str, dict], confidence: float, margin: float, draws: int, seed: int
             ) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """The findings and trend tables, and one line per claim that could not be tested.

    ``models``: {name: {"parameters": int, "k_max": int, "values": stack_model(...)}}, all on the
    same test problems in the same order and with the same number of seeds per objective."""
    names = sorted(models, key=lambda m: models[m]["parameters"])
    first = models[names[0]]["values"]
    problems = next(iter(first["pass@1"].values())).shape[1]
    seeds = max(v.shape[0] for v in first["pass@1"].values())
    for m in names:
        for cell, x in models[m]["values"]["pass@1"].items():
            if x.shape != (1 if cell == "base" else seeds, problems):
                raise ValueError(f"{m} {cell}: {x.shape[0]} seed(s) × {x.shape[1]} problems, expected "
                                 f"{1 if cell == 'base' else seeds} × {problems} like every other cell")
    rng = np.random.default_rng(seed)
    pw, sw = resample_weights(problems, seeds, draws, rng)
    ones_p, ones_s = np.ones((1, problems)), np.ones((1, seeds))
    rows, trends, untested = [], [], []
    for cid, claim in CLAIMS.items():
        tested = [m for m in names if all(c in models[m]["values"][claim.metric] for c in claim.cells)]
        if not tested:
            missing = sorted(set(claim.cells) - set(first[claim.metric]))
            untested.append(f"{cid}: not tested, the grid has no {', '.join(missing)}")
            continue
        t = threshold(claim, margin)
        reps = {}
        for m in tested:
            vals = models[m]["values"]
            reps[m] = claim_replicates(claim, vals, pw, sw)
            estimate = float(claim_replicates(claim, vals, ones_p, ones_s)[0])
            lo, hi = interval(reps[m], confidence)
            rows.append(dict(claim=cid, model=m, parameters=models[m]["parameters"], k_max=models[m]["k_max"],
                             metric=claim.metric, contrast=claim.contrast, side=claim.side, threshold=t,
                             estimate=estimate, lo=lo, hi=hi, verdict=verdict(lo, hi, t, claim.side),
                             problems=problems, seeds=max(vals[claim.metric][c].shape[0] for c in claim.cells)))
        if len(tested) >= 2:
            x = np.log10([models[m]["parameters"] for m in tested])
            y = np.stack([reps[m] for m in tested], axis=-1)
            est = float(slope(x, np.array([r["estimate"] for r in rows if r["claim"] == cid])))
            lo, hi = interval(slope(x, y), confidence)
            trends.append(dict(claim=cid, metric=claim.metric, contrast=claim.contrast, models=len(tested),
                               slope_per_decade=est, lo=lo, hi=hi, trend=trend_verdict(lo, hi)))
    cols = ["claim", "model", "parameters", "k_max", "metric", "contrast", "side", "threshold", "estimate", "lo", "hi",
            "verdict", "problems", "seeds"]
    tcols = ["claim", "metric", "contrast", "models", "slope_per_decade", "lo", "hi", "trend"]
    return pd.DataFrame(rows, columns=cols), pd.DataFrame(trends, columns=tcols), untested


# ---------------------------------------------------------------- in words


def _fmt(r) -> str:
    return f"{r.estimate:+.3f} [{r.lo:+.3f}, {r.hi:+.3f}]"


def summary_rst(table: pd.DataFrame, trend: pd.DataFrame, untested: list[str], confidence: float,
                margin: float, title: str = "Findings") -> str:
    """The findings in words (reStructuredText for the report's front page), from the tables."""
    pct = f"{100 * confidence:g} %"
    models = table.drop_duplicates("model").sort_values("parameters")["model"].tolist()
    lines = [title, "-" * len(title), "",
             f"{table['claim'].nunique()} of the paper's claims × {len(models)} models = {len(table)} verdicts, "
             f"each from its own {pct} paired bootstrap interval (estimate [lo, hi]) over "
             f"{int(table['problems'].max())} test problems and {int(table['seeds'].max())} seed(s); pass@kmax is "
             f"pass@{int(table['k_max'].max())}, the largest k evaluated. There is no correction "
             f"for the number of verdicts, so about 1 in {round(1 / (1 - confidence))} intervals may miss its true "
             f"value. Supported: the interval lies on the claimed side of 0, or of −{margin:g} for an \"at or "
             "above\" claim (non-inferiority margin); contradicted: on the other side; otherwise inconclusive.", ""]
    for cid, d in table.groupby("claim", sort=False):
        claim = CLAIMS[cid]
        parts = [f"{v} at " + ", ".join(f"{r.model} ({_fmt(r)})" for r in dv.itertuples())
                 for v in VERDICTS if not (dv := d[d["verdict"] == v]).empty]
        lines.append(f"- **{cid}** — {claim.paper}. *{claim.contrast}* on {claim.metric}: " + "; ".join(parts) + ".")
        tr = trend[trend["claim"] == cid]
        if not tr.empty:
            r = tr.iloc[0]
            word = {"increases": "increases", "decreases": "decreases",
                    "inconclusive": "has no trend this data can resolve"}[r["trend"]]
            lines.append(f"  Over model size it {word}: {r['slope_per_decade']:+.3f} per decade of parameters "
                         f"[{r['lo']:+.3f}, {r['hi']:+.3f}].")
    lines += [""] + [f"- {u}" for u in untested]
    return "\n".join(lines).rstrip() + "\n"


def model_inputs(labels: list[dict], problem_rows: list[list[dict]], final: pd.DataFrame) -> dict[str, dict]:
    """``findings``' input from the pipeline's outputs: each evaluation's label {model,
    objective, seed} and problems.jsonl rows, and final_metrics.csv for the model sizes and the
    largest k evaluated (pass@k_max)."""
    base = final[final["objective"] == "base"].set_index("model")
    ids = [r["id"] for r in problem_rows[0]]  # stack_model checks that every evaluation has these
    evals: dict[str, dict] = {}
    for label, rows in zip(labels, problem_rows):
        evals.setdefault(label["model"], {})[(label["objective"], label["seed"])] = rows
    kmax = {m: int(base.loc[m, "max_k"]) for m in evals}
    return {m: {"parameters": int(base.loc[m, "parameters"]), "k_max": kmax[m],
                "values": stack_model(e, kmax[m], ids)} for m, e in evals.items()}
