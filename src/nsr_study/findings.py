"""The study's answers: each of the paper's claims, per model, as a contrast with an interval
over training seeds and test problems, a verdict and a family-wise adjusted verdict, and each
claim's trend over model size and over the base model's prior (its own pass@1).

A claim (``CLAIMS``) names a test metric, a contrast of the cells of one model (the base model
and the trained objectives), its side and its threshold. One threshold convention for every
comparison that has an opposite: "at or above" (non-inferiority) and "falls below" are both
measured against −margin (``report.findings.noninferiority_margin``), so a claim and its
opposite split the line at the same point and cannot both be supported; "raises"/"lowers" and
the direct NSR − PSR contrast use 0. ``statement`` is the one text of a claim: the front page,
the figure and docs/findings.md's table show it as computed.

Every contrast is linear in the cells' per-problem values (``Claim.weights``; for |·| the
weights carry the signs of the estimated differences, the delta method), so each seed s and
problem p has its own contrast value y_sp, the problems paired across cells and models (the
same test set) and the seeds paired across objectives (seed s of every objective saw the same
prompt order). ``nsr_study.intervals.two_level`` turns y into an estimate and an interval that
covers both seeds and problems, or with one seed the test problems only (column ``covers``).
Pass rates lie in [0, 1] (``RANGES``), so a contrast value has a range too (a difference: [−1, 1]),
and the interval is never narrower than a test set of that many problems allows: a contrast
that is 0 on every problem is inconclusive, never a verdict from [0, 0].

Verdicts (``verdict``): supported when the interval lies entirely on the claimed side of the
threshold, contradicted when entirely on the other side, inconclusive otherwise. Each holds at
its stated coverage on its own; ``verdict_holm`` applies Holm's step-down adjustment over all
claims × models of one call (one test set) at the family-wise level 1 − confidence, on p-values that invert the same
intervals.

The trend over an axis (log10 parameters, or the base model's test pass@1) answers with the
per-model estimates, not a fitted line: "not monotone" when two pairs of models ordered on the
axis are resolved in opposite directions; otherwise "increases" / "decreases" when the contrast
of the largest minus the smallest model is resolved above / below 0; "equal values" when every
model has the same axis value; else inconclusive. The least-squares slope is given as a
description only.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from nsr_study.intervals import covers, holm, p_value, two_level
from nsr_study.metrics import pass_at_k

METRICS = ("pass@1", "pass@kmax", "entropy")
RANGES = {"pass@1": (0.0, 1.0), "pass@kmax": (0.0, 1.0), "entropy": None}  # a per-problem value's range
VERDICTS = ("supported", "contradicted", "inconclusive")
TRENDS = ("increases", "decreases", "not monotone", "inconclusive", "equal values")
AXES = {"size": "log10 parameters", "prior": "base pass@1"}


@dataclass(frozen=True)
class Claim:
    """One of the paper's claims, made testable on one model's cells."""

    paper: str  # the paper's statement it operationalises (v1, paraphrased), with its place
    metric: str  # one of METRICS (per test problem: c/n, pass@k at the largest k, greedy-answer entropy)
    contrast: str  # what is estimated, in words
    cells: tuple[str, ...]  # the objectives (and "base") it needs
    weights: Callable[[dict], dict]  # {cell: mean} → {cell: weight}: the contrast is Σ weight × cell
    side: str  # "above" | "below": where the claim puts the contrast relative to its threshold
    margin: bool = False  # threshold −margin instead of 0


def _diff(a: str, b: str) -> dict:
    return dict(contrast=f"{a} − {b}", cells=(a, b), weights=lambda m: {a: 1.0, b: -1.0})


def _closer(m: dict) -> dict:
    """|NSR − base| − |PSR − base|, linear given the signs of the two differences."""
    s1, s2 = np.sign(m["NSR"] - m["base"]), np.sign(m["PSR"] - m["base"])
    return {"NSR": s1, "PSR": -s2, "base": s2 - s1}


CLAIMS: dict[str, Claim] = {
    "nsr_raises_pass1": Claim(
        "NSR improves over the base model across the pass@k range, pass@1 included (§3.2, Fig. 2)",
        "pass@1", side="above", **_diff("NSR", "base")),
    "psr_raises_pass1": Claim(
        "PSR raises pass@1 quickly (§4.1)", "pass@1", side="above", **_diff("PSR", "base")),
    "psr_gain_vs_nsr": Claim(
        "PSR's pass@1 gain is at least NSR's (§4.1)",
        "pass@1", side="above", margin=True, **_diff("PSR", "NSR")),
    "nsr_keeps_breadth": Claim(
        "at the largest k, NSR matches or beats the base model (§3.2)",
        "pass@kmax", side="above", margin=True, **_diff("NSR", "base")),
    "psr_narrows": Claim(
        "PSR falls below the base model at large k (§3.2)",
        "pass@kmax", side="below", margin=True, **_diff("PSR", "base")),
    "grpo_narrows": Claim(
        "GRPO (and PPO) fall below the base model at the largest k (§3.2)",
        "pass@kmax", side="below", margin=True, **_diff("GRPO", "base")),
    "nsr_breadth_vs_psr": Claim(
        "NSR keeps the breadth PSR loses: at the largest k NSR is above PSR (§3.2, Fig. 2)",
        "pass@kmax", side="above", **_diff("NSR", "PSR")),
    "wr_breadth_vs_grpo": Claim(
        "W-REINFORCE gives the best pass@k; at the largest k it is at least GRPO's (Table 1)",
        "pass@kmax", side="above", margin=True, **_diff("W_REINFORCE", "GRPO")),
    "wr_breadth_vs_psr": Claim(
        "W-REINFORCE gives the best pass@k; at the largest k it is at least PSR's (Table 1)",
        "pass@kmax", side="above", margin=True, **_diff("W_REINFORCE", "PSR")),
    "psr_lowers_entropy": Claim(
        "PSR's test entropy drops quickly (§4.1)", "entropy", side="below", **_diff("PSR", "base")),
    "nsr_entropy_closer": Claim(
        "NSR's test entropy stays close to the base model's, unlike PSR's (§4.1)",
        "entropy", contrast="|NSR − base| − |PSR − base|", cells=("NSR", "PSR", "base"),
        weights=_closer, side="below"),
}


def claimed(claim: Claim) -> str:
    """The claimed relation, e.g. "> −margin"."""
    return ("> " if claim.side == "above" else "< ") + ("−margin" if claim.margin else "0")


def statement(claim: Claim) -> str:
    """The claim as computed, the one text shown wherever the claim is: "NSR − base on pass@1 > 0"."""
    return f"{claim.contrast} on {claim.metric} {claimed(claim)}"


def threshold(claim: Claim, margin: float) -> float:
    return -margin if claim.margin else 0.0


def verdict(lo: float, hi: float, threshold: float, side: str) -> str:
    """The one rule: supported when [lo, hi] lies entirely on the claimed side of the threshold,
    contradicted when entirely on the other side, otherwise inconclusive."""
    if side not in ("above", "below"):
        raise ValueError(f"side must be 'above' or 'below', got {side!r}")
    above, below = lo > threshold, hi < threshold
    if above or below:
        return "supported" if above == (side == "above") else "contradicted"
    return "inconclusive"


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
                             f"({len(by_id)} vs {len(problem_ids)}): contrasts pair cells problem by problem")
        for metric, values in problem_values([by_id[i] for i in problem_ids], kmax).items():
            out[metric].setdefault(objective, []).append(values)
    return {m: {c: np.stack(v) for c, v in cells.items()} for m, cells in out.items()}


# ---------------------------------------------------------------- contrasts and intervals


def contrast_values(claim: Claim, values: dict[str, dict[str, np.ndarray]]
                    ) -> tuple[np.ndarray, tuple[float, float] | None]:
    """The claim's contrast per seed and problem (seeds × problems), a one-row cell (the base
    model) being the same for every seed, and the range one contrast value can take given the
    metric's range (None for entropy, which has none)."""
    cells = values[claim.metric]
    weights = claim.weights({c: float(cells[c].mean()) for c in claim.cells})
    y = sum(w * cells[c] for c, w in weights.items())
    if RANGES[claim.metric] is None:
        return y, None
    low, high = RANGES[claim.metric]
    w = np.array(list(weights.values()), float)
    return y, (float(np.where(w > 0, w * low, w * high).sum()), float(np.where(w > 0, w * high, w * low).sum()))


def _difference(bounds: tuple[float, float] | None) -> tuple[float, float] | None:
    """The range of the difference of two contrasts that each lie in ``bounds``."""
    return None if bounds is None else (bounds[0] - bounds[1], bounds[1] - bounds[0])


def _row(y: np.ndarray, confidence: float, bounds: tuple[float, float] | None) -> dict:
    return {k: float(v) for k, v in two_level(y, confidence, bounds).items()}


def _trend(claim_id: str, claim: Claim, axis: str, at: dict[str, float], y: dict[str, np.ndarray],
           bounds: tuple[float, float] | None, estimates: dict[str, float], confidence: float) -> dict:
    """The claim's trend over one axis from the per-model contrasts ``y`` (each in ``bounds``)
    and axis values ``at``."""
    names = sorted(at, key=at.get)
    lo_val, hi_val = at[names[0]], at[names[-1]]
    row = dict(claim=claim_id, metric=claim.metric, contrast=claim.contrast, axis=AXES[axis], models=len(names),
               smallest="+".join(m for m in names if at[m] == lo_val),
               largest="+".join(m for m in names if at[m] == hi_val))
    if lo_val == hi_val:
        return row | dict(estimate=None, lo=None, hi=None, resolved_pairs="", slope=None, trend="equal values")
    ends = np.mean([y[m] for m in names if at[m] == hi_val], 0) - np.mean([y[m] for m in names if at[m] == lo_val], 0)
    r = _row(ends, confidence, _difference(bounds))
    signs, resolved = set(), []
    for a, b in itertools.combinations(names, 2):  # a before b on the axis
        if at[a] < at[b] and (d := _row(y[b] - y[a], confidence, _difference(bounds)))["lo"] * d["hi"] > 0:
            signs.add(np.sign(d["estimate"]))
            resolved.append(f"{a}→{b} {_fmt(d['estimate'], d['lo'], d['hi'])}")
    slope = float(np.polyfit([at[m] for m in names], [estimates[m] for m in names], 1)[0])
    trend = ("not monotone" if len(signs) == 2 else "increases" if r["lo"] > 0 else "decreases" if r["hi"] < 0
             else "inconclusive")
    return row | dict(estimate=r["estimate"], lo=r["lo"], hi=r["hi"], resolved_pairs="; ".join(resolved), slope=slope,
                      trend=trend)


def findings(models: dict[str, dict], confidence: float, margin: float
             ) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """The findings and trend tables, and one line per claim that could not be tested.

    ``models``: {name: {"parameters": int, "k_max": int, "values": stack_model(...)}}, all on the
    same test problems in the same order and with the same number of seeds per objective (one
    benchmark: call it once per benchmark)."""
    names = sorted(models, key=lambda m: models[m]["parameters"])
    first = models[names[0]]["values"]
    problems = next(iter(first["pass@1"].values())).shape[1]
    seeds = max(v.shape[0] for v in first["pass@1"].values())
    for m in names:
        for cell, x in models[m]["values"]["pass@1"].items():
            if x.shape != (1 if cell == "base" else seeds, problems):
                raise ValueError(f"{m} {cell}: {x.shape[0]} seed(s) × {x.shape[1]} problems, expected "
                                 f"{1 if cell == 'base' else seeds} × {problems} like every other cell")
    prior = {m: float(models[m]["values"]["pass@1"]["base"].mean()) for m in names
             if "base" in models[m]["values"]["pass@1"]}
    rows, trends, untested = [], [], []
    for cid, claim in CLAIMS.items():
        tested = [m for m in names if all(c in models[m]["values"][claim.metric] for c in claim.cells)]
        if not tested:
            missing = sorted(set(claim.cells) - set(first[claim.metric]))
            untested.append(f"{cid}: not tested, the grid has no {', '.join(missing)}")
            continue
        t = threshold(claim, margin)
        y, bounds = {}, {}
        for m in tested:
            y[m], bounds[m] = contrast_values(claim, models[m]["values"])
            r = _row(y[m], confidence, bounds[m])
            s = y[m].shape[0]
            rows.append(dict(claim=cid, model=m, parameters=models[m]["parameters"], base_pass1=prior.get(m),
                             k_max=models[m]["k_max"], metric=claim.metric, contrast=claim.contrast, side=claim.side,
                             threshold=t, **r, covers=covers(s),
                             p=p_value(r["estimate"], r["se_seeds"], r["se_problems"], s, problems, t),
                             verdict=verdict(r["lo"], r["hi"], t, claim.side), problems=problems, seeds=s))
        if len(tested) >= 2:
            estimates = {r["model"]: r["estimate"] for r in rows if r["claim"] == cid}
            axes = {"size": {m: float(np.log10(models[m]["parameters"])) for m in tested}}
            if all(m in prior for m in tested):
                axes["prior"] = {m: prior[m] for m in tested}
            widest = None if None in bounds.values() else (min(b[0] for b in bounds.values()),
                                                           max(b[1] for b in bounds.values()))
            trends += [_trend(cid, claim, a, at, y, widest, estimates, confidence) for a, at in axes.items()]
    table = pd.DataFrame(rows, columns=FINDINGS_COLUMNS)
    rejected = holm(table["p"].to_numpy(), 1 - confidence)
    side = np.where(table["estimate"] > table["threshold"], "above", "below")
    table["verdict_holm"] = np.where(rejected, np.where(side == table["side"], "supported", "contradicted"),
                                     "inconclusive")
    return table, pd.DataFrame(trends, columns=TREND_COLUMNS), untested


FINDINGS_COLUMNS = ["claim", "model", "parameters", "base_pass1", "k_max", "metric", "contrast", "side", "threshold",
                    "estimate", "lo", "hi", "se_seeds", "se_problems", "covers", "p", "verdict", "verdict_holm",
                    "problems", "seeds"]
TREND_COLUMNS = ["claim", "metric", "contrast", "axis", "models", "smallest", "largest", "estimate", "lo", "hi",
                 "resolved_pairs", "slope", "trend"]


# ---------------------------------------------------------------- in words


def _fmt(estimate, lo, hi) -> str:
    return f"{estimate:+.3f} [{lo:+.3f}, {hi:+.3f}]"


FLIP_RATE = ("for scale, the one-seed demo run on two machines of the same kind disagreed on 6 of its 27 "
             "verdicts (issue 22)")


def summary_rst(table: pd.DataFrame, trend: pd.DataFrame, untested: list[str], confidence: float,
                margin: float, title: str = "Findings") -> str:
    """The findings in words (reStructuredText for the report's front page), from the tables."""
    pct = f"{100 * confidence:g} %"
    models = table.drop_duplicates("model").sort_values("parameters")["model"].tolist()
    seeds = int(table["seeds"].max())
    scope = (f"{seeds} training seeds and {int(table['problems'].max())} test problems: each interval covers "
             "both the seeds' and the problems' noise" if seeds > 1 else
             f"one training seed and {int(table['problems'].max())} test problems: **these verdicts are single-run**; "
             "each interval covers test-set noise only, not the noise of rerunning training, and "
             f"{FLIP_RATE}")
    lines = [title, "-" * len(title), "",
             f"{table['claim'].nunique()} of the paper's claims × {len(models)} models = {len(table)} verdicts, "
             f"each from its own {pct} interval (estimate [lo, hi]) over {scope}. pass@kmax is "
             f"pass@{int(table['k_max'].max())}, the largest k evaluated. Supported: the interval lies on the "
             f"claimed side of 0, or of −margin = −{margin:g} where the claim says so; contradicted: on the other "
             f"side; otherwise inconclusive. Each interval holds {pct} on its own, so across {len(table)} verdicts "
             f"some miss by chance; where the verdict after *Holm's adjustment over all {len(table)}* (family-wise "
             f"{100 * (1 - confidence):g} %) differs, it follows as \"Holm: …\".", ""]
    for cid, d in table.groupby("claim", sort=False):
        claim = CLAIMS[cid]
        parts = [f"{v} at " + ", ".join(f"{r.model} ({_fmt(r.estimate, r.lo, r.hi)}"
                                        + (f"; Holm: {r.verdict_holm}" if r.verdict_holm != r.verdict else "") + ")"
                                        for r in dv.itertuples())
                 for v in VERDICTS if not (dv := d[d["verdict"] == v]).empty]
        lines.append(f"- **{cid}**: ``{statement(claim)}``. {claim.paper}. " + "; ".join(parts) + ".")
        for r in trend[trend["claim"] == cid].itertuples():
            if r.trend == "equal values":
                lines.append(f"  Over {r.axis}: every model has the same value, no trend to test.")
                continue
            words = {"increases": "increases", "decreases": "decreases",
                     "not monotone": f"is not monotone (pairs resolved both ways: {r.resolved_pairs})",
                     "inconclusive": "has no direction this data can resolve"}[r.trend]
            lines.append(f"  Over {r.axis} it {words}: {r.largest} − {r.smallest} {_fmt(r.estimate, r.lo, r.hi)} "
                         f"(slope {r.slope:+.3f}, descriptive).")
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
