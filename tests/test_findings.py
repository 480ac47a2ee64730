"""The findings: the verdict rule on hand-made intervals, the paired bootstrap against a direct
enumeration and hand-computed cases, pairing, seeds, the trend over size, and the words."""

import itertools

import numpy as np
import pytest

from nsr_study.findings import (CLAIMS, cell_means, findings, interval, model_inputs, stack_model, summary_rst,
                                verdict)


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


def test_bootstrap_interval_equals_a_direct_enumeration():
    # pass@1 per problem (n = 4): base .25, .5, 0, .25, .5; NSR .25, .5, .25, .75, 1 → differences 0, 0, .25, .5, .5
    base, nsr = [1, 2, 0, 1, 2], [1, 2, 1, 3, 4]
    d = np.array([0, 0, 0.25, 0.5, 0.5])
    means = np.array([d[list(ix)].mean() for ix in itertools.product(range(5), repeat=5)])  # all 3,125 resamples
    exact = interval(means, 0.95)
    # the 2.5 % point: 32 resamples of mean 0 and 80 of mean 0.05, P(≤ 0) = 0.0102 < 0.025 ≤ P(≤ 0.05) = 0.0358
    assert exact == pytest.approx((0.05, 0.45))
    table, _, _ = findings({"m": one_model({("base", None): base, ("NSR", 0): nsr})}, 0.95, 0.02, 20000, 0)
    r = row(table, "nsr_raises_pass1")
    assert r["estimate"] == pytest.approx(0.25) and (r["lo"], r["hi"]) == pytest.approx(exact)
    assert r["verdict"] == "supported" and r["problems"] == 5 and r["seeds"] == 1


def test_cell_means_weights_problems_and_seeds_by_their_counts():
    x = np.array([[0.0, 1.0, 1.0], [1.0, 1.0, 1.0]])  # 2 seeds × 3 problems
    pw = np.array([[3.0, 0, 0], [1, 1, 1], [0, 2, 1]])
    sw = np.array([[2.0, 0], [1, 1], [0, 2]])
    # replicate 0: seed 0 twice, problem 0 thrice → 0; 1: (2/3 + 1)/2; 2: seed 1 only → 1
    assert cell_means(x, pw, sw) == pytest.approx([0.0, 5 / 6, 1.0])
    assert cell_means(x[:1], pw, sw) == pytest.approx([0.0, 2 / 3, 1.0])  # one row (base): seeds ignored


def test_a_contrast_of_identical_cells_is_exactly_zero_in_every_replicate():
    same = [0, 0, 0, 4, 2, 2]
    table, _, _ = findings({"m": one_model({("base", None): same, ("NSR", 0): same, ("PSR", 0): [4] * 6})},
                           0.95, 0.02, 500, 0)
    r = row(table, "nsr_keeps_breadth")
    assert (r["estimate"], r["lo"], r["hi"]) == (0.0, 0.0, 0.0)
    assert r["verdict"] == "supported"  # 0 lies above the −0.02 margin
    assert row(table, "nsr_raises_pass1")["verdict"] == "inconclusive"
    assert row(table, "psr_narrows")["verdict"] == "contradicted"  # pass@4: PSR 1 everywhere, base 0 on half the problems


def test_seeds_are_resampled_jointly_then_problems():
    # every problem alike, so only the seeds vary: NSR seed 0 is +0.25 over base, seed 1 −0.25;
    # resampled seeds (0, 0), (0, 1), (1, 1) give +0.25, 0, −0.25 with probabilities 1/4, 1/2, 1/4
    model = one_model({("base", None): [2] * 4, ("NSR", 0): [3] * 4, ("NSR", 1): [1] * 4})
    table, _, _ = findings({"m": model}, 0.95, 0.02, 4000, 0)
    r = row(table, "nsr_raises_pass1")
    assert (r["estimate"], r["lo"], r["hi"], r["seeds"]) == (0.0, -0.25, 0.25, 2)


def test_trend_over_size_is_the_slope_per_decade_of_parameters():
    # NSR − base pass@1: +0.25 at 10 parameters, +0.75 at 1000 → 0.25 per decade, no noise
    small = one_model({("base", None): [1] * 3, ("NSR", 0): [2] * 3}, parameters=10)
    large = one_model({("base", None): [0] * 3, ("NSR", 0): [3] * 3}, parameters=1000)
    table, trend, untested = findings({"large": large, "small": small}, 0.95, 0.02, 200, 0)
    assert list(table[table["claim"] == "nsr_raises_pass1"]["model"]) == ["small", "large"]
    t = trend[trend["claim"] == "nsr_raises_pass1"].iloc[0]
    assert [t["slope_per_decade"], t["lo"], t["hi"]] == pytest.approx([0.25, 0.25, 0.25])
    assert (t["trend"], t["models"]) == ("increases", 2)
    assert any(u.startswith("grpo_narrows: not tested") and "GRPO" in u for u in untested)
    assert set(table["claim"]) == {"nsr_raises_pass1", "nsr_keeps_breadth"}


def test_entropy_claims_use_the_greedy_answers_entropy():
    evals = {("base", None): rows([2, 2], entropy=[1.0, 1.0]), ("PSR", 0): rows([2, 2], entropy=[0.4, 0.6]),
             ("NSR", 0): rows([2, 2], entropy=[0.9, 1.1])}
    model = {"parameters": 5, "k_max": 4, "values": stack_model(evals, 4, ["p0", "p1"])}
    table, _, _ = findings({"m": model}, 0.95, 0.02, 1000, 0)
    assert row(table, "psr_lowers_entropy")["estimate"] == pytest.approx(-0.5)
    closer = row(table, "nsr_entropy_closer")  # |1.0 − 1.0| − |0.5 − 1.0|
    assert closer["estimate"] == pytest.approx(-0.5) and closer["verdict"] == "supported"


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


def test_summary_states_counts_verdicts_and_trends_in_words():
    small = one_model({("base", None): [1] * 3, ("NSR", 0): [2] * 3}, parameters=10)
    large = one_model({("base", None): [0] * 3, ("NSR", 0): [3] * 3}, parameters=1000)
    table, trend, untested = findings({"small": small, "large": large}, 0.95, 0.02, 200, 0)
    text = summary_rst(table, trend, untested, 0.95, 0.02)
    assert "2 of the paper's claims × 2 models = 4 verdicts" in text
    assert "each from its own 95 % paired bootstrap interval" in text and "pass@kmax is pass@4" in text
    assert "**nsr_raises_pass1**" in text and "supported at small (+0.250 [+0.250, +0.250]), large" in text
    assert "increases: +0.250 per decade" in text
    assert "psr_narrows: not tested, the grid has no PSR" in text


def test_every_claim_names_known_cells_and_a_metric():
    from nsr_study.findings import METRICS
    from nsr_study.objectives import OBJECTIVES

    for cid, c in CLAIMS.items():
        assert c.metric in METRICS and c.side in ("above", "below"), cid
        assert set(c.cells) <= set(OBJECTIVES) | {"base"}, cid
