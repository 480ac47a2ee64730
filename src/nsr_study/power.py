"""The study's power before it runs: how wide a claim's interval will be, and the smallest effect
it resolves, for a planned number of training seeds S and test problems P, from the per-problem
contrasts of a finished run (a pilot).

The findings' model of a contrast (``nsr_study.intervals``): y_sp = μ + a_s + b_p + e_sp, seeds
crossed with problems, with a seed component σ²_a, a problem component σ²_b (which holds the base
model's own sampling noise: one base evaluation serves every seed) and a residual σ²_e (the
seed × problem interaction and the trained cell's sampling noise). The findings' interval adds
two independent variance estimates (``intervals.half_width``): W/S and M/P, with W the variance
of the seed means (S − 1 degrees of freedom, expectation σ²_a + σ²_e/P) and M that of the
problem means (P − 1, expectation σ²_b + σ²_e/S); the residual mean square E (MS_E, (S − 1)(P − 1))
estimates σ²_e. A pilot's (W, M, E) give the planned design's expectations without bias:

    E W' = W + E (1/P' − 1/P),   E M' = M + E (1/S' − 1/S)

(the ANOVA estimates of Searle, Casella & McCulloch 1992, ch. 4, the balanced two-way crossed
model without replication; floored at 0), and W' and M' are those times χ²(S' − 1)/(S' − 1) and
χ²(P' − 1)/(P' − 1) under normality, so the expected half-width is the mean of
``intervals.half_width`` over a product grid of the two laws' quantiles, not the half-width of
the expected variances (at S' = 2 the seed part has one degree of freedom, E√χ²₁ = 0.80).

The pilot's W has only S − 1 degrees of freedom, and a projection is a concave function of it:
plugged in, it is low on average (0.87 of the realised half-width for S = 2 → 3 where seed noise
dominates). ``expected_half_width`` corrects that by the parametric bootstrap (Efron & Tibshirani
1993, ch. 10): it divides the plug-in projection by the mean of the plug-in projections from
pilots whose W is redrawn from its χ² law around the pilot's, and multiplies by the plug-in
again. This is exact at both ends: where the seed part dominates it is the c4 correction of a
standard deviation, where it is negligible the projection is linear in W and left alone.
tests/test_power.py measures it on simulated studies.

Power: the estimate is normal around the true contrast δ with variance W'/S' + M'/P' − E/(S'P')
in expectation, independent of W' and M', so the interval lies beyond the threshold with
probability E[Φ((|δ − threshold| − half-width)/se)] (the far side's chance neglected);
``resolvable`` is the distance at which that is the power asked (80 %).

A one-seed pilot has no W: its seed part must be given, as an assumed standard deviation between
seeds of a claim's estimate (√W) or another run's components, and is then taken as known. Its
residual cannot be told from the problem component (both are in M; taken as 0, which errs wide
for more seeds) unless another run gives it. Sampling noise of the trained cells is part of the
residual: the number of samples per problem is not projected.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

from nsr_study.intervals import half_width

# Quantiles of the χ² laws averaged over: of the seed part, of the problem part (usually many
# degrees of freedom), and of the pilot's W in the bias correction. E√χ²₁ is within 0.3 % on 48
# (tests/test_power.py); the projections move by under 0.5 % with four times as many.
GRID = {"seeds": 48, "problems": 12, "redraw": 24}


class OneSeedPilot(ValueError):
    """A one-seed pilot was asked for a seed part it cannot estimate."""


@dataclass(frozen=True)
class Pilot:
    """A pilot's variance estimates of one contrast (arrays: one pilot per element, the leading
    axes of ``pilot``'s ``y``). ``seed_df`` is None where the seed part was given, not estimated."""

    seeds: int
    problems: int
    seed_means: float | np.ndarray  # W: variance of the seed means
    problem_means: float | np.ndarray  # M: variance of the problem means
    residual: float | np.ndarray  # E: residual mean square
    seed_df: int | None

    def components(self) -> dict[str, float | np.ndarray]:
        """The crossed model's ANOVA components σ²_a, σ²_b, σ²_e (negative where a component is
        smaller than its noise)."""
        return {"seed": self.seed_means - self.residual / self.problems,
                "problem": self.problem_means - self.residual / self.seeds, "residual": self.residual}


def pilot(y: np.ndarray, seed_sd: float | None = None, other: dict | None = None) -> Pilot:
    """A pilot from one contrast's values ``y`` (..., seeds, problems). A one-seed pilot needs
    ``seed_sd`` (assumed standard deviation of a claim's estimate between seeds) or ``other``
    (another run's ``Pilot.components()``: its seed component and residual); else OneSeedPilot."""
    y = np.asarray(y, float)
    if y.ndim < 2 or y.shape[-1] < 2:
        raise ValueError(f"y must be (..., seeds, problems) with at least 2 problems, got shape {y.shape}")
    seeds, problems = y.shape[-2:]
    m = y.mean(-2).var(-1, ddof=1)
    if seeds > 1:
        resid = y - y.mean(-1, keepdims=True) - y.mean(-2, keepdims=True) + y.mean((-2, -1), keepdims=True)
        e = (resid**2).sum((-2, -1)) / ((seeds - 1) * (problems - 1))
        return Pilot(seeds, problems, y.mean(-1).var(-1, ddof=1), m, e, seeds - 1)
    if seed_sd is None and other is None:
        raise OneSeedPilot("a one-seed pilot cannot estimate the seed component (no rerun of training to compare): "
                           "give an assumed seed standard deviation (--seed-sd) or another run's components")
    if seed_sd is not None and other is not None:
        raise ValueError("give either an assumed seed standard deviation or another run's components, not both")
    if seed_sd is not None:
        if seed_sd < 0:
            raise ValueError(f"seed standard deviation must be ≥ 0, got {seed_sd}")
        return Pilot(1, problems, np.full_like(m, seed_sd**2), m, np.zeros_like(m), None)
    e = np.full_like(m, max(0.0, float(other["residual"])))
    return Pilot(1, problems, max(0.0, float(other["seed"])) + e / problems, m, e, None)


def _chi2_grid(df: int, n: int) -> np.ndarray:
    """χ²(df)/df at n equally likely quantiles (midpoints): E f(X) ≈ mean f(grid)."""
    return stats.chi2.ppf((np.arange(n) + 0.5) / n, df) / df


def _check_design(seeds: int, problems: int) -> None:
    if seeds < 1 or problems < 2:
        raise ValueError(f"a design needs at least 1 seed and 2 problems, got {seeds} seeds × {problems} problems")


def _planned(p: Pilot, seed_means, seeds: int, problems: int) -> tuple[np.ndarray, np.ndarray]:
    """Expected W'/S' and M'/P' at the planned design, from the pilot's W = ``seed_means``."""
    seed_means = np.asarray(seed_means, float)
    e, m = (np.reshape(x, np.shape(x) + (1,) * (seed_means.ndim - np.ndim(x))) for x in (p.residual, p.problem_means))
    vs = np.maximum(0.0, seed_means + e * (1 / problems - 1 / p.problems)) / seeds
    vp = np.maximum(0.0, m + e * (1 / seeds - 1 / p.seeds)) / problems
    return np.asarray(vs, float), np.asarray(vp, float)


def _half_widths(vs: np.ndarray, vp: np.ndarray, seeds: int, problems: int, confidence: float) -> np.ndarray:
    """The half-width (..., grid points) over the laws of the two variance estimates with expectations vs, vp."""
    xs = _chi2_grid(seeds - 1, GRID["seeds"])[:, None] if seeds > 1 else np.ones((1, 1))
    xp = _chi2_grid(problems - 1, GRID["problems"])[None, :]
    h = half_width(vs[..., None, None] * xs, vp[..., None, None] * xp, seeds, problems, confidence)
    return h.reshape(*h.shape[:-2], -1)


def _plug_in(p: Pilot, seed_means, seeds: int, problems: int, confidence: float) -> np.ndarray:
    return _half_widths(*_planned(p, seed_means, seeds, problems), seeds, problems, confidence).mean(-1)


def _correction(p: Pilot, seeds: int, problems: int, confidence: float) -> np.ndarray:
    """Plug-in over its parametric-bootstrap mean (W redrawn from its χ² law): the factor that
    takes the plug-in projection's bias out; 1 where W was given."""
    plug = _plug_in(p, p.seed_means, seeds, problems, confidence)
    if p.seed_df is None:
        return np.ones_like(plug)
    redrawn = _plug_in(p, np.asarray(p.seed_means)[..., None] * _chi2_grid(p.seed_df, GRID["redraw"]), seeds, problems, confidence)
    mean = redrawn.mean(-1)
    return np.divide(plug, mean, out=np.ones_like(plug), where=mean > 0)


def expected_half_width(p: Pilot, seeds: int, problems: int, confidence: float):
    """The findings' interval's expected half-width at (seeds, problems), projected from pilot
    ``p`` (an array where ``p``'s estimates are)."""
    _check_design(seeds, problems)
    h = _plug_in(p, p.seed_means, seeds, problems, confidence) * _correction(p, seeds, problems, confidence)
    return float(h) if h.ndim == 0 else h


def resolvable(p: Pilot, seeds: int, problems: int, confidence: float, power: float = 0.8) -> float:
    """The smallest distance of the true contrast from the claim's threshold at which the
    interval at (seeds, problems) excludes the threshold with probability ``power`` (one pilot;
    the bias correction scales the half-width and the estimate's standard error alike)."""
    _check_design(seeds, problems)
    if not 0 < power < 1:
        raise ValueError(f"power must be in (0, 1), got {power}")
    if np.ndim(p.seed_means):
        raise ValueError("resolvable takes one pilot, not an array of them")
    vs, vp = _planned(p, p.seed_means, seeds, problems)
    k = float(_correction(p, seeds, problems, confidence))
    h = k * _half_widths(vs, vp, seeds, problems, confidence)
    se = k * float(np.sqrt(max(0.0, vs + vp - p.residual / (seeds * problems))))
    if se == 0:
        return float(h.max())
    gap = lambda d: float(stats.norm.cdf((d - h) / se).mean()) - power  # noqa: E731
    return float(optimize.brentq(gap, 0.0, float(h.max()) + 10 * se, xtol=1e-9 * se))
