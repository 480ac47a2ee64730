"""Paired differences from the base model, by hand, per test set."""

import math

import pytest

import numpy as np

from nsr_study.aggregate import final_tables, paired_difference, strategy_table


def evaluation(objective, correct, seed=None, benchmark="math"):
    """A summary and its per-problem rows: three problems of one test set, n = 2 samples each."""
    rows = [{"id": f"p{i}", "benchmark": benchmark, "n": 2, "correct": c} for i, c in enumerate(correct)]
    p1 = [c / 2 for c in correct]
    p2 = [1.0 if c else 0.0 for c in correct]
    sd = lambda v: (sum((x - sum(v) / 3) ** 2 for x in v) / 2) ** 0.5 / math.sqrt(3)  # noqa: E731
    summary = {"problems": 3, "greedy_accuracy": 0.5,
               "greedy_accuracy_se": 0.1, "pass@1": sum(p1) / 3, "pass@1_se": sd(p1), "pass@2": sum(p2) / 3,
               "pass@2_se": sd(p2), "response_length_mean": 3.0, "truncation_rate": 0.0,
               "greedy_truncation_rate": 0.0, "token_entropy_mean": 1.0, "n": 2, "temperature": 0.6, "top_p": 0.95,
               "max_new_tokens": 8,
               "grading_greedy": {"no_answer": 0, "timeout": 0, "error": 0},
               "grading_sampled": {"no_answer": 1, "timeout": 0, "error": 0}}
    group = {"problems": 3, "greedy_accuracy": 0.5, "pass@1": summary["pass@1"], "pass@2": summary["pass@2"]}
    summary |= {"by_level": {"Level 1": group}, "by_subject": {"Algebra": group}}
    label = {"model": "m", "objective": objective, "seed": seed, "parameters": 10}
    return label | {"benchmarks": {benchmark: summary}}, rows


def two_sets(objective, math_correct, comp_correct, seed=None):
    """One evaluation on `math` and on a competition set `comp` (no levels, no subjects)."""
    (m, m_rows), (c, c_rows) = (evaluation(objective, math_correct, seed),
                                evaluation(objective, comp_correct, seed, benchmark="comp"))
    c["benchmarks"]["comp"] |= {"by_level": {}, "by_subject": {}}
    return m | {"benchmarks": m["benchmarks"] | c["benchmarks"]}, m_rows + c_rows


def test_paired_difference_by_hand():
    # differences 0.5, 0, 0.5: mean 1/3, sd √(1/12), SE = √(1/12)/√3 = 1/6
    mean, se = paired_difference({"a": 1.0, "b": 0.5, "c": 0.5}, {"a": 0.5, "b": 0.5, "c": 0.0})
    assert (mean, se) == (pytest.approx(1 / 3), pytest.approx(1 / 6))
    with pytest.raises(ValueError, match="different problems"):
        paired_difference({"a": 1.0}, {"b": 1.0})


def test_final_table_carries_standard_errors_and_differences_from_base():
    base, cell = evaluation("base", [0, 1, 1]), evaluation("NSR", [1, 1, 2], seed=0)
    final = final_tables([base[0], cell[0]], [base[1], cell[1]])["final"].set_index("objective")
    # pass@1 per problem: base 0, .5, .5; NSR .5, .5, 1 → differences .5, 0, .5
    assert final.loc["NSR", "pass_at_1_vs_base"] == pytest.approx(1 / 3)
    assert final.loc["NSR", "pass_at_1_vs_base_se"] == pytest.approx(1 / 6)
    # pass@2 per problem: base 0, 1, 1; NSR 1, 1, 1 → differences 1, 0, 0: mean 1/3, SE 1/3
    assert final.loc["NSR", "pass_at_max_k_vs_base"] == pytest.approx(1 / 3)
    assert final.loc["NSR", "pass_at_max_k_vs_base_se"] == pytest.approx(1 / 3)
    assert final.loc["base", "pass_at_1_se"] == pytest.approx(base[0]["benchmarks"]["math"]["pass@1_se"])
    assert math.isnan(final.loc["base", "pass_at_1_vs_base"]) and final.loc["NSR", "grading_failures"] == 1


def test_each_test_set_has_its_rows_and_its_own_differences_and_a_set_without_levels_says_so():
    base, cell = two_sets("base", [0, 1, 1], [2, 0, 0]), two_sets("NSR", [1, 1, 2], [2, 0, 2], seed=0)
    tables = final_tables([base[0], cell[0]], [base[1], cell[1]])
    final = tables["final"].set_index(["benchmark", "objective"])
    assert len(final) == 4 and set(tables["passk"]["benchmark"]) == {"math", "comp"}
    assert final.loc[("math", "NSR"), "pass_at_1_vs_base"] == pytest.approx(1 / 3)
    # comp, pass@1 per problem: base 1, 0, 0; NSR 1, 0, 1 → differences 0, 0, 1: mean 1/3, SE 1/3
    assert final.loc[("comp", "NSR"), "pass_at_1_vs_base"] == pytest.approx(1 / 3)
    assert final.loc[("comp", "NSR"), "pass_at_1_vs_base_se"] == pytest.approx(1 / 3)
    comp = tables["breakdown"][tables["breakdown"]["benchmark"] == "comp"]
    assert sorted(comp["group"].unique()) == ["(none: this test set has no levels)",
                                              "(none: this test set has no subjects)"]
    assert (comp["problems"] == 3).all() and len(comp) == 4  # by level and by subject, base and NSR


def test_strategy_table_pools_each_strategy_s_samples_per_evaluation_and_test_set():
    tag = lambda a, b, ca, cb: {"used": {"A": a, "B": b, "other": 4 - a - b}, "correct": {"A": ca, "B": cb, "other": 0}}  # noqa: E731
    rows = [{"benchmark": "math", "strategies": tag(3, 1, 3, 1)}, {"benchmark": "math", "strategies": tag(4, 0, 2, 0)},
            {"benchmark": "rare", "strategies": tag(2, 1, 0, 1)}, {"benchmark": "longer"}]
    table = strategy_table([{"model": "m", "objective": "PSR", "seed": 1}], [rows])
    got = {(r.benchmark, r.strategy): (r.share, r.reliability, r.samples) for r in table.itertuples()}
    assert got[("math", "A")] == (7 / 8, 5 / 7, 8) and got[("math", "B")] == (1 / 8, 1.0, 8)
    assert got[("rare", "other")] == (1 / 4, 0.0, 4)
    assert got[("math", "other")][0] == 0 and np.isnan(got[("math", "other")][1])  # nobody used it: no reliability
    assert set(table["benchmark"]) == {"math", "rare"}  # the untagged set has no rows
