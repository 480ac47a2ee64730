"""The findings: the verdict rule on hand-made intervals, the two-level interval and Holm's
adjustment against hand-computed values, pairing, seeds, the trend over size and prior, the
counterexamples of issue 22, and the words (coverage: tests/test_coverage.py)."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from nsr_study.findings import (CLAIMS, findings, model_inputs, stack_model, statement, summary_rst, verdict)
from nsr_study.intervals import half_width, holm, p_value, two_level
@pytest.mark.parametrize("lo, hi, threshold, side, expected", [
    (0.1, 0.3, 0.0, "above", "supported"),
    (-0.3, -0.1, 0.0, "above", "contradicted"),
    (-0.1, 0.2, 0.0, "above", "inconclusive"),
    (0.0, 0.2, 0.0, "above", "inconclusive"),  # touching the threshold is not "entirely above"
    (-0.3, -0.1, 0.0, "below", "supported"),
    (0.1, 0.3, 0.0, "below", "contradicted"),
    (-0.2, 0.0, 0.0, "below", "inconclusive"),
    (-0.01, 0.05, -0.02, "above", "supported"),  # non-inferiority: above −margin
    (-0.05, 0.01, -0.02, "above", "inconclusive"),
    (-0.10, -0.03, -0.02, "above", "contradicted"),
])
def test_verdict_rule(lo, hi, threshold, side, expected):
    assert verdict(lo, hi, threshold, side) == expected


def test_verdict_refuses_an_unknown_side():
    with pytest.raises(ValueError, match="side"):
        verdict(0, 1, 0, "beside")


def rows(correct, n=4, entropy=None):
    return [{"id": f"p{i}", "n": n, "correct": c, "greedy_entropy": (entropy or [1.0] * len(correct))[i]}
            for i, c in enumerate(correct)]


def one_model(cells: dict, parameters=1000, kmax=4):
    """{"parameters", "values"} of a model from {(objective, seed): correct counts per problem}."""
    evals = {key: rows(c) for key, c in cells.items()}
    ids = [r["id"] for r in next(iter(evals.values()))]
    return {"parameters": parameters, "k_max": kmax, "values": stack_model(evals, kmax, ids)}


def row(table, claim, model="m"):
    return table[(table["claim"] == claim) & (table["model"] == model)].iloc[0]


def values(cells: dict, metrics=("pass@1", "pass@kmax", "entropy")) -> dict:
    """stack_model's output from {cell: array (seeds, problems)}, the same values for every metric."""
    return {m: {c: np.atleast_2d(np.asarray(x, float)) for c, x in cells.items()} for m in metrics}


def test_two_level_interval_by_hand():
    # seed means 1, 3 → var 2, /2 seeds = 1; problem means 1, 2, 3 → var 1, /3 problems = 1/3;
    # t(0.975; 1 df) = 12.7062, t(0.975; 2 df) = 4.3027 → half = √(12.7062² · 1 + 4.3027² / 3) = 12.9467
    r = two_level(np.array([[0.0, 1, 2], [2, 3, 4]]), 0.95)
    assert (r["estimate"], r["se_seeds"], r["se_problems"]) == pytest.approx((2.0, 1.0, 3**-0.5))
    assert (r["lo"], r["hi"]) == pytest.approx((2 - 12.9467, 2 + 12.9467), abs=1e-3)


def test_one_seed_is_the_paired_t_interval_over_problems():
    d = np.array([0.0, 0.25, 0.5, 0.5, -0.25, 0.125])
    r = two_level(d[None], 0.95)
    ci = stats.ttest_1samp(d, 0).confidence_interval(0.95)
    assert (r["lo"], r["hi"]) == pytest.approx((ci.low, ci.high)) and r["se_seeds"] == 0


def test_p_value_inverts_the_interval():
    # the interval at confidence 1 − p just touches the threshold; below/above p it excludes/includes it
    est, ss, sp, seeds, problems, thr = 0.1, 0.02, 0.03, 3, 50, -0.02
    p = p_value(est, ss, sp, seeds, problems, thr)
    assert half_width(ss**2, sp**2, seeds, problems, 1 - p) == pytest.approx(est - thr)
    assert 0 < p < 0.05 and p_value(est, ss, sp, seeds, problems, est) == 1.0
    # no spread at all: the data say nothing about the noise, so no p-value below 1 (was 0, issue 34)
    assert p_value(0.1, 0.0, 0.0, 1, 5, 0.0) == 1.0
    assert p_value(10.0, 0.0, 0.001, 1, 50, 0.0) == 1e-15  # below what brentq resolves, never 0


def test_zero_variance_without_bounds_is_no_interval():
    r = two_level(np.full((1, 16), 0.3), 0.95)
    assert r["estimate"] == pytest.approx(0.3) and (r["lo"], r["hi"]) == (-np.inf, np.inf)


def test_bounds_floor_the_problem_variance_by_hand():
    # 16 problems, all 0, contrast in [−1, 1]: squares 0 + ½ · 1 + ½ · 1 = 1 over P + 1 = 17 values
    # (ddof 1: / 16), / 16 problems → se 1/16; half = t(0.975; 15 df) · 0.0625 = 2.1314 · 0.0625
    r = two_level(np.zeros((1, 16)), 0.95, (-1.0, 1.0))
    assert r["se_problems"] == pytest.approx(1 / 16)
    assert (r["lo"], r["hi"]) == pytest.approx((-0.13321, 0.13321), abs=1e-5)
    # one problem at +1: mean 1/16, squares 15 · (1/16)² + (15/16)² + ½ (17/16)² + ½ (15/16)²
    y = np.zeros((1, 16))
    y[0, 0] = 1
    squares = 15 / 256 + 225 / 256 + (289 + 225) / 512
    assert two_level(y, 0.95, (-1, 1))["se_problems"] == pytest.approx((squares / 16 / 16) ** 0.5)
    # the floor fades as 1/P²: the t-interval's standard error is nearly unchanged at 1,000 problems
    y = np.random.default_rng(0).choice([-1.0, 0.0, 1.0], size=(1, 1000), p=[0.2, 0.5, 0.3])
    assert two_level(y, 0.95, (-1, 1))["se_problems"] == pytest.approx(two_level(y, 0.95)["se_problems"], rel=2e-3)
    with pytest.raises(ValueError, match="every value of y inside"):
        two_level(y, 0.95, (0, 1))


def test_holm_steps_down_by_hand():
    # sorted .005 < .05/4, .01 < .05/3, .03 ≥ .05/2: stop; .04 is not rejected either
    assert holm(np.array([0.01, 0.04, 0.03, 0.005]), 0.05).tolist() == [True, False, False, True]
    assert holm(np.array([0.001, 0.3]), 0.05).tolist() == [True, False]


def test_findings_table_uses_the_two_level_interval():
    # pass@1 per problem (n = 4): base .25, .5, 0, .25, .5; NSR .25, .5, .25, .75, 1 → differences 0, 0, .25, .5, .5
    base, nsr = [1, 2, 0, 1, 2], [1, 2, 1, 3, 4]
    d = np.array([0, 0, 0.25, 0.5, 0.5])
    table, _, _ = findings({"m": one_model({("base", None): base, ("NSR", 0): nsr})}, 0.95, 0.02)
    r = row(table, "nsr_raises_pass1")
    # a difference of pass rates lies in [−1, 1]: squares 0.25 + ½ · 1.25² + ½ · 0.75² = 1.3125 over
    # 5 + 1 values (ddof 1: / 5), / 5 problems → se 0.22913; t(0.975; 4 df) = 2.7764 → ± 0.6362
    se = 1.3125**0.5 / 5
    assert r["estimate"] == pytest.approx(0.25) and r["se_problems"] == pytest.approx(se)
    assert (r["lo"], r["hi"]) == pytest.approx((0.25 - 0.6362, 0.25 + 0.6362), abs=1e-4)
    assert r["verdict"] == "inconclusive" and r["problems"] == 5 and r["seeds"] == 1
    assert r["covers"] == "test problems only (one seed)" and r["p"] == pytest.approx(2 * stats.t.sf(0.25 / se, 4))
    assert d.mean() == r["estimate"]


def test_a_contrast_of_identical_cells_gets_no_verdict():
    # issue 34: NSR equal to the base model on every problem got [0, 0], "supported" above
    # −0.02 with p = 0, and survived Holm (the demo's `longer` set: 16 problems no cell solved)
    same = [0] * 16
    table, _, _ = findings({"m": one_model({("base", None): same, ("NSR", 0): same, ("PSR", 0): [4] * 16})},
                           0.95, 0.02)
    for claim in ("nsr_keeps_breadth", "nsr_raises_pass1"):
        r = row(table, claim)
        assert r["estimate"] == 0 and r["lo"] < -0.1 and r["hi"] > 0.1  # ± t(15) / 16 = ± 0.133
        assert (r["verdict"], r["verdict_holm"]) == ("inconclusive", "inconclusive") and r["p"] > 0.05
    # pass@4: PSR 1 everywhere, base 0 everywhere: +1 is resolved, at p > 0
    r = row(table, "psr_narrows")
    assert r["verdict"] == "contradicted" and 0 < r["p"] < 1e-6 and r["hi"] == 1  # cut to the bounds


def test_seeds_are_paired_across_objectives_and_counted_with_s_minus_1_degrees_of_freedom():
    # every problem alike, so only the seeds vary: NSR seed 0 is +0.25 over base, seed 1 −0.25:
    # estimate 0, seed standard error 0.25; the problem means are all 0, floored by half a
    # problem at ±1: se 1/4; interval ± √(t²(0.975; 1) + t²(0.975; 3)) · 0.25 = ± 3.2747, cut to
    # [−1, 1], the range of a difference of pass rates
    model = one_model({("base", None): [2] * 4, ("NSR", 0): [3] * 4, ("NSR", 1): [1] * 4})
    r = row(findings({"m": model}, 0.95, 0.02)[0], "nsr_raises_pass1")
    assert (r["estimate"], r["se_seeds"], r["se_problems"], r["seeds"]) == (0.0, 0.25, 0.25, 2)
    assert (r["lo"], r["hi"]) == (-1, 1) and r["p"] == 1
    assert half_width(r["se_seeds"] ** 2, r["se_problems"] ** 2, 2, 4, 0.95) == pytest.approx(3.2747, abs=1e-4)
    assert r["covers"] == "seeds and test problems"
    # PSR seed s shifted from NSR seed s by +0.25 on every problem: PSR − NSR is +0.25 on every
    # seed and problem, yet 4 problems cannot rule out others that differ
    model = one_model({("base", None): [2] * 4, ("NSR", 0): [3] * 4, ("NSR", 1): [1] * 4,
                       ("PSR", 0): [4] * 4, ("PSR", 1): [2] * 4})
    r = row(findings({"m": model}, 0.95, 0.02)[0], "psr_gain_vs_nsr")
    assert (r["estimate"], r["se_seeds"]) == (0.25, 0.0) and r["lo"] < 0 < 0.25 < r["hi"]


def test_trend_over_size_and_prior_from_the_per_model_estimates():
    # NSR − base pass@1: +0.25 at 10 parameters (base pass@1 .25), +0.75 at 1000 (base 0), no
    # noise, 30 problems (3 would leave room for others that differ: the bounds' floor)
    small = one_model({("base", None): [1] * 30, ("NSR", 0): [2] * 30}, parameters=10)
    large = one_model({("base", None): [0] * 30, ("NSR", 0): [3] * 30}, parameters=1000)
    table, trend, untested = findings({"large": large, "small": small}, 0.95, 0.02)
    assert list(table[table["claim"] == "nsr_raises_pass1"]["model"]) == ["small", "large"]
    assert list(table[table["claim"] == "nsr_raises_pass1"]["base_pass1"]) == [0.25, 0.0]
    t = trend[trend["claim"] == "nsr_raises_pass1"].set_index("axis")
    size, prior = t.loc["log10 parameters"], t.loc["base pass@1"]
    assert (size["smallest"], size["largest"], size["trend"], size["models"]) == ("small", "large", "increases", 2)
    assert [size["estimate"], size["slope"]] == pytest.approx([0.5, 0.25]) and 0 < size["lo"] < 0.5 < size["hi"]
    assert (prior["smallest"], prior["largest"], prior["trend"]) == ("large", "small", "decreases")
    assert prior["slope"] == pytest.approx(-2.0)  # −0.5 over 0.25 of base pass@1
    assert any(u.startswith("grpo_narrows: not tested") and "GRPO" in u for u in untested)
    assert set(table["claim"]) == {"nsr_raises_pass1", "nsr_keeps_breadth"}


# ---------------------------------------------------------------- issue 22's counterexamples


def test_keeps_and_narrows_cannot_both_hold_on_identical_cells():
    # NSR and PSR identical, 0.008 below base at k_max (8 of 1,000 problems lost): the old rule
    # (keeps: above −margin, narrows: below 0) supported both; one threshold splits them
    base = np.ones(1000)
    trained = base.copy()
    trained[:8] = 0
    table, _, _ = findings({"m": {"parameters": 1, "k_max": 4, "values": values(
        {"base": base, "NSR": trained, "PSR": trained})}}, 0.95, 0.02)
    assert row(table, "psr_narrows")["hi"] < 0 < 0.02  # the old rule's "below 0" held
    assert row(table, "nsr_keeps_breadth")["verdict"] == "supported"
    assert row(table, "psr_narrows")["verdict"] == "contradicted"
    direct = row(table, "nsr_breadth_vs_psr")
    assert (direct["estimate"], direct["verdict"]) == (0.0, "inconclusive")


def test_psr_lowering_pass1_less_than_nsr_does_not_sharpen():
    rng = np.random.default_rng(0)
    rate = rng.uniform(0.2, 0.8, 2000)
    cells = {"base": rng.binomial(16, rate) / 16, "PSR": rng.binomial(16, rate - 0.05) / 16,
             "NSR": rng.binomial(16, rate - 0.15) / 16}
    table, _, _ = findings({"m": {"parameters": 1, "k_max": 4, "values": values(cells)}}, 0.95, 0.02)
    assert row(table, "psr_raises_pass1")["verdict"] == "contradicted"
    assert row(table, "psr_gain_vs_nsr")["verdict"] == "supported"


def three_sizes(effects: dict[str, tuple]) -> dict:
    """Models {name: (parameters, NSR − base pass@1[, base pass@1 shift])} on 400 problems, with
    per-problem noise of sd 0.05 in the contrast."""
    rng = np.random.default_rng(1)
    out = {}
    for name, (parameters, effect, *shift) in effects.items():
        base = rng.uniform(0.3, 0.6, 400) + sum(shift)
        out[name] = {"parameters": parameters, "k_max": 4,
                     "values": values({"base": base, "NSR": base + effect + rng.normal(0, 0.05, 400)})}
    return out


def test_a_reversal_between_neighbours_is_no_trend():
    # +0.10, −0.20, +0.25 at 0.5B / 1.5B / 3B: least-squares slope +0.11 per decade, yet 1.5B reverses
    models = three_sizes({"0.5B": (5 * 10**8, 0.10), "1.5B": (15 * 10**8, -0.20), "3B": (3 * 10**9, 0.25)})
    _, trend, _ = findings(models, 0.95, 0.02)
    t = trend[(trend["claim"] == "nsr_raises_pass1") & (trend["axis"] == "log10 parameters")].iloc[0]
    assert t["slope"] > 0.1 and t["lo"] > 0  # slope +0.12 here (+0.11 in the issue); 3B − 0.5B resolved
    assert t["trend"] == "not monotone" and t["resolved_pairs"].startswith("0.5B→1.5B -0.29")
    # a resolved dip between unresolved extremes is not monotone either
    models = three_sizes({"0.5B": (5 * 10**8, 0.10), "1.5B": (15 * 10**8, -0.20), "3B": (3 * 10**9, 0.10)})
    t = findings(models, 0.95, 0.02)[1].iloc[0]
    assert t["lo"] < 0 < t["hi"] and t["trend"] == "not monotone"


def test_models_of_equal_size_are_compared_on_the_prior_axis():
    # the math model's stronger prior (base pass@1 +0.2) gains more
    models = three_sizes({"Math-1.5B": (15 * 10**8, 0.25, 0.2), "Instruct-1.5B": (15 * 10**8, 0.05)})
    _, trend, _ = findings(models, 0.95, 0.02)
    t = trend[trend["claim"] == "nsr_raises_pass1"].set_index("axis")
    assert t.loc["log10 parameters", "trend"] == "equal values" and pd.isna(t.loc["log10 parameters", "slope"])
    prior = t.loc["base pass@1"]
    assert (prior["smallest"], prior["largest"]) == ("Instruct-1.5B", "Math-1.5B")
    assert prior["trend"] == "increases" and not np.isnan(prior["slope"])


def test_entropy_claims_use_the_greedy_answers_entropy_and_the_delta_method_for_absolute_values():
    evals = {("base", None): rows([2, 2], entropy=[1.0, 1.0]), ("PSR", 0): rows([2, 2], entropy=[0.4, 0.6]),
             ("NSR", 0): rows([2, 2], entropy=[1.1, 1.3])}
    model = {"parameters": 5, "k_max": 4, "values": stack_model(evals, 4, ["p0", "p1"])}
    table, _, _ = findings({"m": model}, 0.95, 0.02)
    assert row(table, "psr_lowers_entropy")["estimate"] == pytest.approx(-0.5)
    # |+0.2| − |−0.5| = −0.3; with those signs per problem (NSR − base) + (PSR − base) = −0.5, −0.1
    closer = row(table, "nsr_entropy_closer")
    ci = stats.ttest_1samp([-0.5, -0.1], 0).confidence_interval(0.95)
    assert [closer["estimate"], closer["lo"], closer["hi"]] == pytest.approx([-0.3, ci.low, ci.high])


def test_cells_on_other_problems_are_refused():
    with pytest.raises(ValueError, match="NSR seed 0 was evaluated on other problems"):
        stack_model({("base", None): rows([1, 2]), ("NSR", 0): rows([1])}, 4, ["p0", "p1"])


def test_model_inputs_read_sizes_and_largest_k_from_the_final_table():
    import pandas as pd

    final = pd.DataFrame([{"model": "m", "objective": "base", "parameters": 123, "max_k": 2}])
    labels = [{"model": "m", "objective": "base", "seed": None}, {"model": "m", "objective": "NSR", "seed": 0}]
    models = model_inputs(labels, [rows([0, 1], n=2), rows([1, 2], n=2)], final)
    assert (models["m"]["parameters"], models["m"]["k_max"]) == (123, 2)
    assert models["m"]["values"]["pass@kmax"]["NSR"].tolist() == [[1.0, 1.0]]  # pass@2 of 1/2 and 2/2 correct


def test_holm_adjusts_over_every_claim_and_model():
    # 11 claims on one model: NSR 0.010 above base, the other objectives at the base's level.
    # NSR − PSR (+0.013, p 0.015) is resolved alone; 7 claims have smaller p-values, so Holm
    # tests it at 0.05 / 4 and it is not
    rng = np.random.default_rng(0)
    base = rng.uniform(0.3, 0.6, 300)
    cells = {c: base + rng.normal(0, 0.05, 300) for c in ("PSR", "GRPO", "W_REINFORCE")}
    cells |= {"base": base, "NSR": base + 0.010 + rng.normal(0, 0.05, 300)}
    table, _, _ = findings({"m": {"parameters": 1, "k_max": 4, "values": values(cells)}}, 0.95, 0.02)
    assert len(table) == 11
    assert ((table["verdict_holm"] != "inconclusive") == holm(table["p"].to_numpy(), 0.05)).all()
    assert ((table["verdict"] != "inconclusive") == (table["p"] < 0.05)).all()  # p inverts the interval
    r = row(table, "nsr_breadth_vs_psr")
    assert 0.05 / 4 < r["p"] < 0.05 and (r["verdict"], r["verdict_holm"]) == ("supported", "inconclusive")


def test_summary_states_counts_coverage_adjustment_and_trends_in_words():
    small = one_model({("base", None): [1] * 30, ("NSR", 0): [2] * 30}, parameters=10)
    large = one_model({("base", None): [0] * 30, ("NSR", 0): [3] * 30}, parameters=1000)
    table, trend, untested = findings({"small": small, "large": large}, 0.95, 0.02)
    text = summary_rst(table, trend, untested, 0.95, 0.02)
    assert "2 of the paper's claims × 2 models = 4 verdicts" in text and "pass@kmax is pass@4" in text
    assert "**these verdicts are single-run**" in text and "test-set noise only" in text
    assert "disagreed on 6 of its 27 verdicts (issue 22)" in text
    assert "Holm's adjustment over all 4* (family-wise 5 %) differs" in text
    assert "**nsr_raises_pass1**: ``NSR − base on pass@1 > 0``." in text
    assert "supported at small (+0.250 [+0.180, +0.320]), large" in text
    assert "Over log10 parameters it increases: large − small +0.500 [+0.359, +0.641] (slope +0.250" in text
    assert "Over base pass@1 it decreases: small − large" in text
    assert "psr_narrows: not tested, the grid has no PSR" in text
    two = one_model({("base", None): [1] * 3, ("NSR", 0): [2] * 3, ("NSR", 1): [3, 2, 2]}, parameters=10)
    table, trend, untested = findings({"m": two}, 0.95, 0.02)
    text = summary_rst(table, trend, untested, 0.95, 0.02)
    assert "2 training seeds and 3 test problems: each interval covers both" in text and "single-run" not in text


def test_readme_shows_each_claim_as_computed():
    readme = (Path(__file__).parents[1] / "docs" / "findings.md").read_text()
    for cid, claim in CLAIMS.items():  # a Markdown table cell escapes "|"
        assert f"| `{cid}` | {claim.paper} | {statement(claim).replace('|', chr(92) + '|')} |" in readme, cid


def test_every_claim_names_known_cells_and_a_metric():
    from nsr_study.findings import METRICS
    from nsr_study.objectives import OBJECTIVES

    for cid, c in CLAIMS.items():
        assert c.metric in METRICS and c.side in ("above", "below"), cid
        assert set(c.cells) <= set(OBJECTIVES) | {"base"}, cid
