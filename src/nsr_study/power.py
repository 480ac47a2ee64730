"""The study's power before it runs: how wide a claim's interval will be, and the smallest effect
it resolves, for a planned number of training seeds S and test problems P, from the per-problem
contrasts of a finished run (a pilot).

The findings' model of a contrast (``nsr_study.intervals``): y_sp = μ + a_s + b_p + e_sp, seeds
crossed with problems, with a seed component σ²_a, a problem component σ²_b (which holds the base
model's own sampling noise: one base evaluation serves every seed) and a residual σ²_e (the
seed × problem interaction and the trained cell's sampling noise). The findings' interval adds
two independent variance estimates (``intervals.half_width``): W/S and M/P, with W the variance
of the seed means (S − 1 degrees of freedom, expectation σ²_a + σ²_e/P) and M that of the
problem means (P − 1, expectation σ²_b + σ²_e/S); the residual mean square R (MS_E, (S − 1)(P − 1))
estimates σ²_e. A pilot's (W, M, R) give the planned design's expectations without bias:

    E W' = W + R (1/P' − 1/P),   E M' = M + R (1/S' − 1/S)

(the ANOVA estimates of Searle, Casella & McCulloch 1992, ch. 4, the balanced two-way crossed
model without replication). Where a component's estimate is negative (W < R/P: smaller than its
noise) W is scaled instead, W' = W·P/P', unbiased when the component is 0 and never negative
(flooring the component at 0 made projections 7-11 % wide where problem noise dominates;
flooring W' at 0 gave a 2-seed interval without its seed part). W' and M' are their
expectations times χ²(S' − 1)/(S' − 1) and χ²(P' − 1)/(P' − 1) under normality, so the expected
half-width is the mean of ``intervals.half_width`` over a product grid of the two laws'
quantiles, not the half-width of the expected variances (at S' = 2 the seed part has one degree
of freedom, E√χ²₁ = 0.80).

The pilot's W has only S − 1 degrees of freedom, and a projection is a concave function of it:
plugged in, it is low on average (0.85 of the realised half-width for S = 2 → 3 where seed noise
dominates). ``expected_half_width`` corrects that by the parametric bootstrap (Efron & Tibshirani
1993, ch. 10): it divides the plug-in projection by the mean of the plug-in projections from
pilots whose W is redrawn from its χ² law around the pilot's, and multiplies by the plug-in
again. This is exact at both ends: where the seed part dominates it is the c4 correction of a
standard deviation, where it is negligible the projection is linear in W and left alone.
tests/test_power.py measures it on simulated studies.

Power: the estimate is normal around the true contrast δ with variance W'/S' + M'/P' − R/(S'P')
in expectation, independent of W' and M', so the interval lies beyond the threshold with
probability E[Φ((|δ − threshold| − half-width)/se)] (the far side's chance neglected);
``resolvable`` is the distance at which that is the power asked (80 %).

A one-seed pilot has no W: its seed part must be given, as an assumed standard deviation between
seeds of a claim's estimate (√W) or another run's components, and is then taken as known. Its
residual cannot be told from the problem component (both are in M; taken as 0, which errs wide
for more seeds) unless another run gives it. A planned design of one seed gets the findings'
one-seed interval as ``intervals.half_width`` computes it (test problems only). Sampling noise of
the trained cells is part of the residual: the number of samples per problem is not projected.

A bounded contrast (a difference of pass rates: every claim but entropy's) gets the findings'
floor in the projection too: its problem part is ((P' − 1) M' + f) / P'², f the floor of half a
problem at each bound around the pilot's estimate (``intervals.two_level``), the χ² law applied
to the M' part only. So a projection to tens of problems is as wide as the interval the findings
will compute, and a contrast equal on every pilot problem does not project to width 0. The
floor widens the interval, not the estimate's spread: power uses the standard error without it.

The command, run in a finished run's directory (the pilot):

    python -m nsr_study power --configfile config/config.yaml [--configfile overlay.yaml …]
                              --seeds S … [--problems P …] [--seed-sd SD | --components power.csv]

projects every claim × model × test set of the findings to each planned (S, P) (P: the test
problems of each test set; default the pilot's), writes results/tables/power.csv and prints, per
option, the GPU-hours of ``nsr_study plan``'s cost model beside the median half-width and how
many of the pilot's inconclusive verdicts the option resolves with 80 % power if the contrast is
the pilot's estimate. docs/findings.md: how to plan seeds with it.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
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
    residual: float | np.ndarray  # R: residual mean square
    seed_df: int | None
    floor: float | np.ndarray | None = None  # bounded contrasts: the findings' half problem at each bound

    def components(self) -> dict[str, float | np.ndarray]:
        """The crossed model's ANOVA components σ²_a, σ²_b, σ²_e (negative where a component is
        smaller than its noise)."""
        return {"seed": self.seed_means - self.residual / self.problems,
                "problem": self.problem_means - self.residual / self.seeds, "residual": self.residual}


def pilot(y: np.ndarray, seed_sd: float | None = None, other: dict | None = None,
          bounds: tuple[float, float] | None = None) -> Pilot:
    """A pilot from one contrast's values ``y`` (..., seeds, problems). A one-seed pilot needs
    ``seed_sd`` (assumed standard deviation of a claim's estimate between seeds) or ``other``
    (another run's ``Pilot.components()``: its seed component and residual); else OneSeedPilot.
    ``bounds``: the range of one contrast value, as the findings take it (``intervals.two_level``):
    the planned interval then carries the same floor, half a problem at each bound around the
    pilot's estimate."""
    y = np.asarray(y, float)
    if y.ndim < 2 or y.shape[-1] < 2:
        raise ValueError(f"y must be (..., seeds, problems) with at least 2 problems, got shape {y.shape}")
    seeds, problems = y.shape[-2:]
    m = y.mean(-2).var(-1, ddof=1)
    floor = None if bounds is None else ((bounds[0] - y.mean((-2, -1))) ** 2 + (bounds[1] - y.mean((-2, -1))) ** 2) / 2
    if seeds > 1:
        resid = y - y.mean(-1, keepdims=True) - y.mean(-2, keepdims=True) + y.mean((-2, -1), keepdims=True)
        e = (resid**2).sum((-2, -1)) / ((seeds - 1) * (problems - 1))
        return Pilot(seeds, problems, y.mean(-1).var(-1, ddof=1), m, e, seeds - 1, floor)
    if seed_sd is None and other is None:
        raise OneSeedPilot("a one-seed pilot cannot estimate the seed component (no rerun of training to compare): "
                           "give an assumed seed standard deviation (--seed-sd) or another run's components")
    if seed_sd is not None and other is not None:
        raise ValueError("give either an assumed seed standard deviation or another run's components, not both")
    if seed_sd is not None:
        if seed_sd < 0:
            raise ValueError(f"seed standard deviation must be ≥ 0, got {seed_sd}")
        return Pilot(1, problems, np.full_like(m, seed_sd**2), m, np.zeros_like(m), None, floor)
    e = np.full_like(m, max(0.0, float(other["residual"])))
    return Pilot(1, problems, max(0.0, float(other["seed"])) + e / problems, m, e, None, floor)


def _chi2_grid(df: int, n: int) -> np.ndarray:
    """χ²(df)/df at n equally likely quantiles (midpoints): E f(X) ≈ mean f(grid)."""
    return stats.chi2.ppf((np.arange(n) + 0.5) / n, df) / df


def _check_design(seeds: int, problems: int) -> None:
    if seeds < 1 or problems < 2:
        raise ValueError(f"a design needs at least 1 seed and 2 problems, got {seeds} seeds × {problems} problems")


def _moved(v, share, planned_share):
    """A variance of means v = component + share, at the planned design: component + planned
    share; where v < share (the component's estimate is negative: it is smaller than its noise),
    v × planned_share / share, which is unbiased when the component is 0 and never negative."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(v >= share, v - share + planned_share, v * np.divide(planned_share, share))


def _planned(p: Pilot, seed_means, seeds: int, problems: int) -> tuple[np.ndarray, np.ndarray]:
    """Expected W'/S' and M'/P' at the planned design, from the pilot's W = ``seed_means``."""
    seed_means = np.asarray(seed_means, float)
    e, m = (np.reshape(x, np.shape(x) + (1,) * (seed_means.ndim - np.ndim(x))) for x in (p.residual, p.problem_means))
    vs = _moved(seed_means, e / p.problems, e / problems) / seeds
    vp = _moved(m, e / p.seeds, e / seeds) / problems
    return np.asarray(vs, float), np.asarray(vp, float)


def _half_widths(p: Pilot, vs: np.ndarray, vp: np.ndarray, seeds: int, problems: int, confidence: float
                 ) -> np.ndarray:
    """The half-width (..., grid points) over the laws of the two variance estimates with
    expectations vs, vp; a bounded contrast's problem part as ``intervals.two_level`` floors it:
    (P' − 1) M' + the pilot's floor, over P'²."""
    xs = _chi2_grid(seeds - 1, GRID["seeds"])[:, None] if seeds > 1 else np.ones((1, 1))
    xp = _chi2_grid(problems - 1, GRID["problems"])[None, :]
    vp = vp[..., None, None] * xp
    if p.floor is not None:
        floor = np.reshape(p.floor, np.shape(p.floor) + (1,) * (vp.ndim - np.ndim(p.floor)))
        vp = (vp * (problems - 1) + floor / problems) / problems
    h = half_width(vs[..., None, None] * xs, vp, seeds, problems, confidence)
    return h.reshape(*h.shape[:-2], -1)


def _plug_in(p: Pilot, seed_means, seeds: int, problems: int, confidence: float) -> np.ndarray:
    return _half_widths(p, *_planned(p, seed_means, seeds, problems), seeds, problems, confidence).mean(-1)


def _correction(p: Pilot, seeds: int, problems: int, confidence: float) -> np.ndarray:
    """Plug-in over its parametric-bootstrap mean (W redrawn from its χ² law): the factor that
    takes the plug-in projection's bias out; 1 where W was given."""
    plug = _plug_in(p, p.seed_means, seeds, problems, confidence)
    if p.seed_df is None:
        return np.ones_like(plug)
    redrawn_w = np.asarray(p.seed_means)[..., None] * _chi2_grid(p.seed_df, GRID["redraw"])
    redrawn = _plug_in(p, redrawn_w, seeds, problems, confidence)
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
    h = k * _half_widths(p, vs, vp, seeds, problems, confidence)
    se = k * float(np.sqrt(max(0.0, vs + vp - p.residual / (seeds * problems))))
    if se == 0:
        return float(h.max())
    gap = lambda d: float(stats.norm.cdf((d - h) / se).mean()) - power  # noqa: E731
    if gap(0.0) >= 0:  # a power below one half can be reached at the threshold itself
        return 0.0
    return float(optimize.brentq(gap, 0.0, float(h.max()) + 10 * se, xtol=1e-9 * se))


# ---------------------------------------------------------------- the command


def eval_problem_paths(config: dict) -> tuple[list[dict], list[Path]]:
    """Every evaluation's label {model, objective, seed} and problems.jsonl (the workflow's
    layout: results/eval/<model>/base, results/eval/<model>/<objective>/seed<seed>)."""
    labels = [{"model": m["name"], "objective": "base", "seed": None} for m in config["models"]]
    labels += [{"model": m["name"], "objective": o, "seed": s} for m in config["models"] for o in config["objectives"]
               for s in config["seeds"]]
    cell = lambda lb: "base" if lb["seed"] is None else f"{lb['objective']}/seed{lb['seed']}"  # noqa: E731
    return labels, [Path("results/eval", lb["model"], cell(lb), "problems.jsonl") for lb in labels]


def pilot_contrasts(config: dict) -> list[tuple[dict, np.ndarray, tuple[float, float] | None]]:
    """(the findings' row, its contrast's values seeds × problems, the range of one value) for
    every claim × model × test set of the finished run in the working directory."""
    from nsr_study.data import read_jsonl
    from nsr_study.findings import CLAIMS, contrast_values, findings, model_inputs

    labels, paths = eval_problem_paths(config)
    final_csv = Path("results/tables/final_metrics.csv")
    missing = [str(p) for p in (final_csv, *paths) if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"not a finished run of this config (run in its directory): {len(missing)} outputs "
                                f"missing, e.g. {', '.join(missing[:3])}")
    final, problems = pd.read_csv(final_csv), [read_jsonl(p) for p in paths]
    report = config["report"]["findings"]
    out = []
    for bench in [b["name"] for b in config["benchmarks"]]:
        models = model_inputs(labels, [[r for r in rows if r["benchmark"] == bench] for rows in problems],
                              final[final["benchmark"] == bench])
        table, _, _ = findings(models, report["confidence"], report["noninferiority_margin"])
        for row in table.to_dict("records"):
            out.append((row | {"benchmark": bench},
                        *contrast_values(CLAIMS[row["claim"]], models[row["model"]]["values"])))
    return out


def other_components(path: str) -> dict[tuple[str, str, str], dict]:
    """{(benchmark, claim, model): {seed, residual}} from another run's power.csv."""
    table = pd.read_csv(path)
    need = {"benchmark", "claim", "model", "seed_component", "residual_component", "pilot_seeds"}
    if not need <= set(table):
        raise ValueError(f"{path}: not a power.csv (columns {sorted(need - set(table))} missing)")
    table = table[table["pilot_seeds"] > 1]
    if table.empty:
        raise ValueError(f"{path}: its pilot had one seed too: no seed component to take")
    return {k: {"seed": r["seed_component"], "residual": r["residual_component"]}
            for k, r in table.drop_duplicates(["benchmark", "claim", "model"]).set_index(
                ["benchmark", "claim", "model"]).iterrows()}


POWER_COLUMNS = ["benchmark", "claim", "model", "seeds", "problems", "half_width", "resolvable_effect",
                 "pilot_estimate", "threshold", "pilot_verdict", "resolved_at_pilot_estimate", "pilot_seeds",
                 "pilot_problems", "pilot_half_width", "seed_component", "problem_component", "residual_component",
                 "seed_source"]


def power_table(contrasts: list[tuple[dict, np.ndarray, tuple[float, float] | None]], seeds: list[int], problems: list[int] | None,
                confidence: float, power: float = 0.8, seed_sd: float | None = None,
                other: dict | None = None, other_name: str = "") -> pd.DataFrame:
    """One row per claim × model × test set × planned (S, P) (``problems`` None: the pilot's)."""
    rows = []
    for row, y, bounds in contrasts:
        key = (row["benchmark"], row["claim"], row["model"])
        if y.shape[0] > 1:
            p, source = pilot(y, bounds=bounds), "estimated"
        elif seed_sd is not None:
            p, source = pilot(y, seed_sd=seed_sd, bounds=bounds), f"assumed: seed sd {seed_sd:g}"
        elif other is not None:
            if key not in other:
                raise ValueError(f"{other_name}: no components of {' '.join(key)}")
            p, source = pilot(y, other=other[key], bounds=bounds), f"from {other_name}"
        else:
            pilot(y)  # raises OneSeedPilot
        comp = p.components()
        distance = abs(row["estimate"] - row["threshold"])
        for s in seeds:
            for n in problems or [y.shape[1]]:
                effect = resolvable(p, s, n, confidence, power)
                rows.append(dict(benchmark=key[0], claim=key[1], model=key[2], seeds=s, problems=n,
                                 half_width=expected_half_width(p, s, n, confidence), resolvable_effect=effect,
                                 pilot_estimate=row["estimate"], threshold=row["threshold"],
                                 pilot_verdict=row["verdict"], resolved_at_pilot_estimate=distance >= effect,
                                 pilot_seeds=y.shape[0], pilot_problems=y.shape[1],
                                 pilot_half_width=row["hi"] - row["estimate"], seed_component=float(comp["seed"]),
                                 problem_component=float(comp["problem"]), residual_component=float(comp["residual"]),
                                 seed_source=source))
    return pd.DataFrame(rows, columns=POWER_COLUMNS)


def option_hours(config: dict, seeds: int, problems: int, throughput: dict, card: str, backend: str | None
                 ) -> tuple[float | None, bool]:
    """GPU-hours of the grid with ``seeds`` seeds and ``problems`` test problems in all
    (``nsr_study.cost.study_rows``; None when no job is measured), and whether every job is."""
    from nsr_study.cost import study_rows

    rows = study_rows(config | {"seeds": list(range(seeds))}, problems, throughput, card, backend)
    hours = [r.hours for r in rows if r.hours is not None]
    return (sum(hours) if hours else None), len(hours) == len(rows)


def options_report(table: pd.DataFrame, hours: dict[tuple[int, int], tuple[float | None, bool]], power: float
                   ) -> str:
    """Per planned option: GPU-hours, median half-width, the pilot's inconclusive verdicts it resolves."""
    inconclusive = table.drop_duplicates(["benchmark", "claim", "model"])["pilot_verdict"].eq("inconclusive").sum()
    lines = [f"{'seeds':>5s} {'problems':>12s} {'GPU-h':>12s} {'median half-width':>18s}  pilot's inconclusive "
             f"verdicts resolved with {100 * power:g} % power at the pilot's estimate (of {inconclusive})"]
    for (s, n), d in table.groupby(["seeds", "option_problems"], sort=False):
        resolved = int((d["pilot_verdict"].eq("inconclusive") & d["resolved_at_pilot_estimate"]).sum())
        label = "pilot's" if n == -1 else str(n)
        gpu_h, complete = hours[(s, n)]
        cost = "unmeasured" if gpu_h is None else f"{gpu_h:.1f}" + ("" if complete else "+")
        lines.append(f"{s:5d} {label:>12s} {cost:>12s} {d['half_width'].median():18.4f}  {resolved}")
    if any(h is not None and not complete for h, complete in hours.values()):
        lines.append("+: some jobs unmeasured, counted as 0 GPU-h (nsr_study plan lists them)")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    from nsr_study.config import ConfigError, load_config
    from nsr_study.cost import count_all_test_problems
    from nsr_study.rates import THROUGHPUT, PlanError, chosen_card, load_throughput

    ap = argparse.ArgumentParser(prog="python -m nsr_study power", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configfile", action="append", required=True,
                    help="the pilot's config files, in the order it ran with (e.g. config/config.yaml then overlays)")
    ap.add_argument("--seeds", type=int, nargs="+", required=True, help="planned numbers of training seeds")
    ap.add_argument("--problems", type=int, nargs="+", default=None,
                    help="planned test problems of each test set (default: the pilot's)")
    ap.add_argument("--seed-sd", type=float, default=None,
                    help="one-seed pilot: assumed standard deviation of a claim's estimate between seeds")
    ap.add_argument("--components", default=None,
                    help="one-seed pilot: another run's results/tables/power.csv, for its seed and residual components")
    ap.add_argument("--power", type=float, default=0.8, help="power of resolvable_effect (default 0.8)")
    ap.add_argument("--out", default="results/tables/power.csv")
    ap.add_argument("--card", default=None, help="card of the cost model's measurements (default: the only one)")
    ap.add_argument("--backend", choices=["hf", "vllm"], default=None, help="cost every rule with this backend")
    ap.add_argument("--schema", default="workflow/schemas/config.schema.yaml", help="config schema")
    ap.add_argument("--throughput", default=str(THROUGHPUT), help="measured throughputs (default: the package's)")
    args = ap.parse_args(argv)
    if min(args.seeds) < 1 or (args.problems and min(args.problems) < 2):
        ap.error("--seeds must be ≥ 1 and --problems ≥ 2")
    if not 0 < args.power < 1:
        ap.error(f"--power: {args.power}, must be in (0, 1)")
    if args.seed_sd is not None and args.components is not None:
        ap.error("give --seed-sd or --components, not both")
    for f in (*args.configfile, args.schema, args.throughput, *filter(None, [args.components])):
        if not Path(f).is_file():
            ap.error(f"{f}: file not found")
    try:
        config = load_config(args.configfile, args.schema)
        throughput = load_throughput(args.throughput)
        try:
            card = chosen_card(throughput, args.card)
        except PlanError as e:  # a usage error: argparse's message and exit status
            ap.error(str(e))
        contrasts = pilot_contrasts(config)
        confidence = config["report"]["findings"]["confidence"]
        other = other_components(args.components) if args.components else None
        table = power_table(contrasts, args.seeds, args.problems, confidence, args.power, args.seed_sd, other,
                            args.components or "")
    except OneSeedPilot as e:
        sys.exit(f"{e}. Every interval of this pilot covers test problems only.")
    except (ConfigError, PlanError, FileNotFoundError, ValueError) as e:
        sys.exit(str(e))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False)
    table["option_problems"] = -1 if args.problems is None else table["problems"]
    benches = len(config["benchmarks"])
    hours = {(s, n): option_hours(config, s, count_all_test_problems(config) if n == -1 else n * benches, throughput,
                                  card, args.backend)
             for s, n in table[["seeds", "option_problems"]].drop_duplicates().itertuples(index=False)}
    sources = ", ".join(table["seed_source"].unique())
    print(f"Pilot: {' + '.join(args.configfile)}, {int(table['pilot_seeds'].max())} seed(s); seed component "
          f"{sources}. {table[['benchmark', 'claim', 'model']].drop_duplicates().shape[0]} claims × models × test "
          f"sets, {100 * confidence:g} % intervals; GPU-hours on one {card} (nsr_study plan's cost model). "
          f"Wrote {args.out}.\n")
    print(options_report(table, hours, args.power))
