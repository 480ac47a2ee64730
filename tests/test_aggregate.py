"""Paired differences from the base model, by hand."""

import math

import pytest

from nsr_study.aggregate import final_tables, paired_difference


def evaluation(objective, correct, seed=None):
    """A summary and its per-problem rows: three problems, n = 2 samples each."""
    rows = [{"id": f"p{i}", "n": 2, "correct": c} for i, c in enumerate(correct)]
    p1 = [c / 2 for c in correct]
    p2 = [1.0 if c else 0.0 for c in correct]
    sd = lambda v: (sum((x - sum(v) / 3) ** 2 for x in v) / 2) ** 0.5 / math.sqrt(3)  # noqa: E731
    summary = {"model": "m", "objective": objective, "seed": seed, "parameters": 10, "greedy_accuracy": 0.5,
               "greedy_accuracy_se": 0.1, "pass@1": sum(p1) / 3, "pass@1_se": sd(p1), "pass@2": sum(p2) / 3,
               "pass@2_se": sd(p2), "response_length_mean": 3.0, "truncation_rate": 0.0,
               "greedy_truncation_rate": 0.0, "token_entropy_mean": 1.0, "n": 2, "temperature": 0.6, "top_p": 0.95,
               "max_new_tokens": 8,
               "grading_greedy": {"no_answer": 0, "timeout": 0, "error": 0},
               "grading_sampled": {"no_answer": 1, "timeout": 0, "error": 0}}
    group = {"problems": 3, "greedy_accuracy": 0.5, "pass@1": summary["pass@1"], "pass@2": summary["pass@2"]}
    summary |= {"by_level": {"Level 1": group}, "by_subject": {"Algebra": group}}
    return summary, rows


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
    assert final.loc["base", "pass_at_1_se"] == pytest.approx(base[0]["pass@1_se"])
    assert math.isnan(final.loc["base", "pass_at_1_vs_base"]) and final.loc["NSR", "grading_failures"] == 1
