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
problems (with the floor below): it covers test-set noise only, not a rerun of training.
Coverage is measured in tests/test_coverage.py.

No interval is narrower than the data allow. Per-problem values of pass@1 or pass@k are
bounded and, on a small test set that a small model rarely solves, sparse: most problems
contribute exactly 0 to a contrast, a few carry all of it, and a sample that happens to miss
those few has a small variance exactly when its mean is off: the t-interval covered as little
as 0.60 of simulated studies of 30 problems (tests/test_coverage.py), and a contrast that is 0 on
every problem got the point interval [0, 0] and p = 0, a verdict from no evidence. So, given
the bounds [a, b] a per-problem contrast value can take, the problem variance is computed as
if the sample also held half a problem at each bound: the adjusted Wald interval of Agresti &
Min (2005, *Biometrics* 61:515) for paired proportions, which adds half an observation to
each cell of the 2 × 2 table and keeps near-nominal coverage where the Wald interval fails.
For binary values (pass@k at k = n) it is theirs; for values between the bounds it is
conservative, as mass at the bounds is the largest spread a bounded value can have. Its
weight, ½(a − ȳ)² + ½(b − ȳ)² in a sum of squares over P problems, fades as 1/P² in the
variance of the mean: at 500 problems a standard-error floor of 0.002 for a difference of
pass rates, at 30 problems 0.033. It covered ≥ 0.94 of sparse studies at 1 and 3 seeds, and
for pass@1 (values far inside the bounds) it is conservative: 1.00, at 2–4 times the
t-interval's width on 30 problems. The interval is cut to the bounds. Values without bounds
(entropy) keep the t-interval; if their estimated variance is 0, the interval is (−∞, ∞) and
p = 1: the data say nothing about their spread.

``two_level`` takes leading batch axes, so a coverage simulation runs many studies at once.
"""

from __future__ import annotations

import numpy as np
from scipy import optimize, stats


def covers(seeds: int) -> str:
    """What an interval from ``seeds`` training seeds accounts for, in words (findings.csv)."""
    return "seeds and test problems" if seeds > 1 else "test problems only (one seed)"


def two_level(y: np.ndarray, confidence: float, bounds: tuple[float, float] | None = None
              ) -> dict[str, np.ndarray]:
    """Estimate, the two standard-error components and the ``confidence`` interval of the mean
    of ``y`` (..., seeds, problems). ``bounds`` (a, b): the range one contrast value can take
    (e.g. (−1, 1) for a difference of pass rates); it floors the problem variance with half a
    problem at each bound, and the interval is cut to them. Without bounds, zero variance gives
    the interval (−∞, ∞)."""
    y = np.asarray(y, dtype=float)
    if y.ndim < 2 or y.shape[-1] < 2:
        raise ValueError(f"y must be (..., seeds, problems) with at least 2 problems, got shape {y.shape}")
    seeds, problems = y.shape[-2:]
    vs = y.mean(-1).var(-1, ddof=1) / seeds if seeds > 1 else np.zeros(y.shape[:-2])
    est = y.mean((-2, -1))
    squares = ((y.mean(-2) - est[..., None]) ** 2).sum(-1)
    if bounds is None:
        vp = squares / (problems - 1) / problems
    else:
        a, b = bounds
        if not a < b or y.min() < a - 1e-12 or y.max() > b + 1e-12:
            raise ValueError(f"bounds {bounds} must be (low, high) with every value of y inside, "
                             f"got values in [{y.min():g}, {y.max():g}]")
        vp = (squares + ((a - est) ** 2 + (b - est) ** 2) / 2) / problems / problems  # P + 1 values, ddof 1
    half = np.where(vs + vp > 0, half_width(vs, vp, seeds, problems, confidence), np.inf)
    lo, hi = est - half, est + half
    if bounds is not None:  # the mean lies within the bounds as well
        lo, hi = np.maximum(lo, bounds[0]), np.minimum(hi, bounds[1])
    return {"estimate": est, "se_seeds": np.sqrt(vs), "se_problems": np.sqrt(vp), "lo": lo, "hi": hi}


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
    same intervals as the verdicts. Never 0: zero standard errors (an interval (−∞, ∞)) give 1,
    and a p-value below 1e-15 is given as 1e-15."""
    d = abs(estimate - threshold)
    vs, vp = se_seeds**2, se_problems**2
    if d == 0 or vs + vp == 0:
        return 1.0

    def gap(alpha):
        return half_width(vs, vp, seeds, problems, 1 - alpha) - d

    if gap(1e-15) < 0:
        return 1e-15
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
