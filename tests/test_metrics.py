"""pass@k against brute force, and the per-problem summary by hand."""

from itertools import combinations
from math import comb

import pytest

from nsr_study.metrics import ks_for, pass_at_k, summarize


def brute_force(n: int, c: int, k: int) -> float:
    """Fraction of the k-subsets of n samples (c correct) that contain a correct one."""
    samples = [1] * c + [0] * (n - c)
    subsets = list(combinations(range(n), k))
    return sum(any(samples[i] for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", range(1, 9))
def test_pass_at_k_equals_enumeration_over_subsets(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(brute_force(n, c, k), abs=1e-12)


def test_pass_at_k_closed_form_and_large_n():
    assert pass_at_k(4, 1, 2) == pytest.approx(1 - comb(3, 2) / comb(4, 2))  # = 0.5
    assert pass_at_k(256, 3, 1) == pytest.approx(3 / 256)
    assert pass_at_k(256, 0, 256) == 0.0 and pass_at_k(256, 1, 256) == 1.0
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 1)
    with pytest.raises(ValueError):
        pass_at_k(4, 1, 0)


def test_ks_are_powers_of_two_up_to_n():
    assert ks_for(8) == [1, 2, 4, 8] and ks_for(6) == [1, 2, 4] and ks_for(1) == [1]


def test_summarize_by_hand():
    problems = [{"greedy_correct": 1.0, "correct": 0}, {"greedy_correct": 0.0, "correct": 2}]
    s = summarize(problems, n=4)
    assert s["problems"] == 2 and s["greedy_accuracy"] == 0.5
    assert s["pass@1"] == pytest.approx((0 + 2 / 4) / 2)
    assert s["pass@2"] == pytest.approx((0 + (1 - 1 / 6)) / 2)
    assert s["pass@4"] == pytest.approx((0 + 1) / 2)
    # standard errors over the two problems: sd (n − 1) / √2
    assert s["pass@1_se"] == pytest.approx(0.25) and s["greedy_accuracy_se"] == pytest.approx(0.5)
