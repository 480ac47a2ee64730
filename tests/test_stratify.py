import pytest

from nsr_study.stratify import allocate, stratified_sample


def test_allocate_floor_plus_minimum():
    # shares 2.5, 1.25, 0.25; floors 2, 1, 0; c is raised to the minimum 1; target round(4) = 4 reached
    assert allocate({"a": 10, "b": 5, "c": 1}, 0.25) == {"a": 2, "b": 1, "c": 1}


def test_allocate_largest_remainder_ties_in_order():
    # shares 1.5, 1.5, 1.5, 0.5 (target round(5.0) = 5); floors 1,1,1 and d raised to 1 -> 4;
    # one row left goes to the largest remainder, ties broken by order -> a
    assert allocate({"a": 3, "b": 3, "c": 3, "d": 1}, 0.5) == {"a": 2, "b": 1, "c": 1, "d": 1}


def test_allocate_largest_remainder_wins():
    # shares 0.7*7 = 4.9, 0.7*3 = 2.1; target round(7.0) = 7; floors 4 + 2 = 6; remainder 0.9 > 0.1 -> a
    assert allocate({"a": 7, "b": 3}, 0.7) == {"a": 5, "b": 2}


def test_allocate_fraction_one_takes_everything_and_empty_strata_nothing():
    assert allocate({"a": 4, "b": 0, "c": 1}, 1.0) == {"a": 4, "b": 0, "c": 1}


def test_allocate_without_minimum_can_give_zero():
    assert allocate({"a": 9, "b": 1}, 0.2, min_per_stratum=0) == {"a": 2, "b": 0}


@pytest.mark.parametrize("fraction", [0, -0.1, 1.01])
def test_allocate_rejects_bad_fraction(fraction):
    with pytest.raises(ValueError, match="fraction"):
        allocate({"a": 1}, fraction)


def test_stratified_sample_deterministic_and_proportional():
    strata = ["x"] * 40 + ["y"] * 20 + ["z"] * 3
    a = stratified_sample(strata, 0.25, seed=7)
    assert a == stratified_sample(strata, 0.25, seed=7)
    assert a != stratified_sample(strata, 0.25, seed=8)
    picked = [strata[i] for i in a]
    assert (picked.count("x"), picked.count("y"), picked.count("z")) == (10, 5, 1)
    assert a == sorted(set(a))
