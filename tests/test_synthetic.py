import random
import re
from collections import Counter

import pytest

from nsr_study.answers import last_boxed
from nsr_study.grading import grade_with_status
from nsr_study.synthetic import (LEVELS, STRATEGIES, STRATEGY_LEVELS, STRATEGY_SUBJECTS, SUBJECTS, generate,
                                 generate_strategies, make_problem, parse_strategy_problem, running_sums,
                                 strategy_of, strategy_solution, strategy_tally)


def test_fields_balance_and_determinism():
    train, test = generate(400, 100, seed=5)
    assert (train, test) == generate(400, 100, seed=5)
    assert train != generate(400, 100, seed=6)[0]
    assert set(train[0]) == {"problem", "solution", "answer", "level", "type"}
    cells = Counter((r["type"], r["level"]) for r in train)
    assert set(cells) == {(s, f"Level {lv}") for s in SUBJECTS for lv in LEVELS}
    assert set(cells.values()) == {400 // len(cells)}
    problems = [r["problem"] for r in train + test]
    assert len(set(problems)) == len(problems)  # no repeats, no train/test leak


def test_running_sums_by_hand():
    assert running_sums(19, [9, 7]) == (["$19 + 9 = 28$.", "$28 + 7 = 35$."], 35)


def test_level_is_the_number_of_running_sums_in_every_subject():
    train, _ = generate(400, 0, seed=0)
    for r in train:
        level = int(r["level"].split()[1])
        assert r["solution"].count(" = ") == level, r
        assert last_boxed(r["solution"]) == r["answer"] and 0 <= int(r["answer"]) <= 9 * (level + 1)


def test_linear_equations_invert_the_sum():
    rec = make_problem("Linear Equations", 3, random.Random(4))
    digits = [int(t) for t in re.findall(r"- (\d)", rec["problem"])]
    c = int(re.search(r"= (\d+)\$", rec["problem"])[1])
    assert len(digits) == 3 and int(rec["answer"]) == c + sum(digits)


def test_too_many_problems_for_a_level_are_refused():
    with pytest.raises(ValueError, match="Arithmetic level 1 ran out"):
        generate(1100, 0, seed=0)  # 110 per (subject, level); level 1 has 100 distinct problems


def test_every_solution_grades_correct_against_its_answer():
    train, _ = generate(200, 0, seed=1)
    assert [grade_with_status(r["solution"], r["answer"]) for r in train] == [(1.0, "ok")] * len(train)


def test_strategy_solutions_by_hand():
    plain, rare = "Add $3 + 8 + 4$.", "Add $3 + 8 + 4$, counting the last number twice."
    assert strategy_solution(plain, "A") == "Left to right: $3 + 8 = 11$. $11 + 4 = 15$. The answer is $\\boxed{15}$."
    assert strategy_solution(plain, "B") == "Right to left: $4 + 8 = 12$. $12 + 3 = 15$. The answer is $\\boxed{15}$."
    assert strategy_solution(rare, "A") == strategy_solution(plain, "A")  # A ignores the clause: 15, wrong
    assert strategy_solution(rare, "B") == ("Right to left: $4 + 4 = 8$. $8 + 8 = 16$. $16 + 3 = 19$. "
                                            "The answer is $\\boxed{19}$.")
    assert parse_strategy_problem(rare) == ([3, 8, 4], True)
    # the slip leaves out the number before the last (8): B's steps then miss it
    assert strategy_solution(plain, "B", slip=True) == "Right to left: $4 + 3 = 7$. The answer is $\\boxed{7}$."
    assert strategy_solution(rare, "B", slip=True) == ("Right to left: $4 + 4 = 8$. $8 + 3 = 11$. "
                                                       "The answer is $\\boxed{11}$.")
    assert [strategy_of(t) for t in (" Left to right: $1", "Right to left:", "$3 + 8", "")] == ["A", "B", "other", "other"]
    with pytest.raises(ValueError, match="not a two-strategy sum"):
        parse_strategy_problem("Compute $3 + 8$.")
    with pytest.raises(ValueError, match="one-digit"):
        parse_strategy_problem("Add $13 + 8$.")
    with pytest.raises(ValueError, match="strategy must be"):
        strategy_solution(plain, "C")


def test_two_strategy_splits_only_b_solves_rare_and_nothing_repeats():
    train, test, rare = generate_strategies(90, 30, 30, seed=2)
    assert (train, test, rare) == generate_strategies(90, 30, 30, seed=2)
    assert {r["type"] for r in train + test} == {STRATEGY_SUBJECTS[0]} and {r["type"] for r in rare} == {STRATEGY_SUBJECTS[1]}
    assert Counter(r["level"] for r in train) == {f"Level {lv}": 30 for lv in STRATEGY_LEVELS}
    sums = [tuple(parse_strategy_problem(r["problem"])[0]) for r in train + test + rare]
    assert len(set(sums)) == len(sums)  # a rare problem is no train problem with the clause
    for r in train + test + rare:
        digits, clause = parse_strategy_problem(r["problem"])
        assert len(digits) == int(r["level"].split()[-1]) + 2 and digits[-1] > 0
        assert last_boxed(r["solution"]) == r["answer"] == str(sum(digits) + clause * digits[-1])
        assert grade_with_status(r["solution"], r["answer"])[0] == 1.0
        right = {s for s in STRATEGIES if last_boxed(strategy_solution(r["problem"], s)) == r["answer"]}
        assert right == ({"B"} if clause else {"A", "B"})


def test_strategy_tally_counts_use_and_success_per_strategy():
    texts = ["Left to right: x", "Right to left: y", "Left to right: z", "oops"]
    assert strategy_tally(texts, [1.0, 1.0, 0.0, 0.0]) == {"used": {"A": 2, "B": 1, "other": 1},
                                                          "correct": {"A": 1, "B": 1, "other": 0}}
