"""Intervals for a contrast measured on a two-level sample, training seeds × test problems, that
keep their coverage with one to a handful of seeds, and Holm's adjustment over many verdicts.

A contrast's values ``y`` (seeds × problems) are the per-problem contrast of every seed: e.g.
NSR seed s's pass@1 on problem p minus the base model's on p. Both levels are random: the seeds
are a sample of training runs, the problems a sample of test problems, crossed (every seed is
evaluated on the same problems). The estimate is the grand mean; its variance in the crossed
random-effects model y_sp = μ + a_s + b_p + e_sp is σ²_a/S + σ²_b/P + σ²_e/(SP), which

    V = var_s(seed means)/S + var_p(problem means)/P

estimates with a bias of +σ²_e/(SP) (each of the two sample variances carries the residual
once; the exact ANOVA estimate (MS_S + MS_P − MS_E)/(SP) can go negative, V cannot; Searle,
Casella & McCulloch 1992, *Variance Components*, on the two-way crossed model). The two parts
are independent estimates with S − 1 and P − 1 degrees of freedom, as in the Behrens–Fisher
problem, and the interval scales each by its own t quantile:

    estimate ± √(t²(S − 1) · var_s/S + t²(P − 1) · var_p/P)

Banerjee's interval (Banerjee 1961, Sankhyā A 23:359), conservative for two such parts of
normal data. Welch–Satterthwaite's single pooled degrees of freedom do not hold it at
S = 2: 0.89 over 4,000 simulated studies where seed noise dominates (issue 22's regime), because
a seed variance that comes out small by chance also raises the degrees of freedom. The S − 1
matters: a percentile bootstrap over 3 seeds covers about [min, max] of their means, which
holds the mean about 75 % of the time (issue 22; Hesterberg 2015, *What teachers should know
about the bootstrap*, on the bootstrap's narrowness with small samples). Reporting seed and
problem variance together follows Bouthillier et al. 2021 (*Accounting for variance in machine
learning benchmarks*, MLSys) and Miller 2024 (*Adding error bars to evals*, arXiv 2411.00640:
paired per-question differences). With one seed the interval is the paired t-interval over
problems: it covers test-set noise only, not a rerun of training. Coverage is measured in
tests/test_coverage.py.

``two_level`` takes leading batch axes, so a coverage simulation runs many studies at once.
"""

from __future__ import annotations

import numpy as np
from scipy import optimize, stats


def covers(seeds: int) -> str:
    """What an interval from ``seeds`` training seeds accounts for, in words (findings.csv)."""
    return "seeds and test problems" if seeds > 1 else "test problems only (one seed)"


def two_level(y: np.ndarray, confidence: float) -> dict[str, np.ndarray]:
    """Estimate, the two standard-error components and the ``confidence`` interval of the mean
    of ``y`` (..., seeds, problems). Zero variance gives the point interval [estimate, estimate]."""
    y = np.asarray(y, dtype=float)
    if y.ndim < 2 or y.shape[-1] < 2:
        raise ValueError(f"y must be (..., seeds, problems) with at least 2 problems, got shape {y.shape}")
    seeds, problems = y.shape[-2:]
    vs = y.mean(-1).var(-1, ddof=1) / seeds if seeds > 1 else np.zeros(y.shape[:-2])
    vp = y.mean(-2).var(-1, ddof=1) / problems
    est = y.mean((-2, -1))
    half = half_width(vs, vp, seeds, problems, confidence)
    return {"estimate": est, "se_seeds": np.sqrt(vs), "se_problems": np.sqrt(vp), "lo": est - half, "hi": est + half}


def half_width(vs, vp, seeds: int, problems: int, confidence):
    """Banerjee's half-width: each variance component scaled by its own t quantile."""
    q = 0.5 + np.asarray(confidence) / 2
    ts = stats.t.ppf(q, seeds - 1) if seeds > 1 else 0.0
    return np.sqrt(ts**2 * vs + stats.t.ppf(q, problems - 1) ** 2 * vp)


def p_value(estimate: float, se_seeds: float, se_problems: float, seeds: int, problems: int,
            threshold: float) -> float:
    """Two-sided p-value of "the contrast equals ``threshold``", by inverting the interval: the
    1 − confidence at which it just touches the threshold. So p < 1 − confidence exactly when
    the interval at ``confidence`` excludes the threshold, and Holm's adjustment works on the
    same intervals as the verdicts."""
    d = abs(estimate - threshold)
    if d == 0:
        return 1.0
    vs, vp = se_seeds**2, se_problems**2

    def gap(alpha):
        return half_width(vs, vp, seeds, problems, 1 - alpha) - d

    if vs + vp == 0 or gap(1e-15) < 0:
        return 0.0
    return float(optimize.brentq(gap, 1e-15, 1.0, xtol=1e-12))


def holm(p: np.ndarray, alpha: float) -> np.ndarray:
    """Holm's step-down rejections (Holm 1979): sorted ascending, the i-th smallest p-value
    (i = 0, 1, …) is rejected while every one up to it is below alpha / (m − i). Controls the
    family-wise error at ``alpha`` under any dependence between the tests."""
    p = np.asarray(p, float)
    order = np.argsort(p, kind="stable")
    below = p[order] < alpha / (len(p) - np.arange(len(p)))
    rejected = np.zeros(len(p), bool)
    rejected[order] = np.cumprod(below).astype(bool)
    return rejected
