import random
import re
from collections import Counter

import pytest

from nsr_study.answers import last_boxed
from nsr_study.grading import grade_with_status
from nsr_study.synthetic import LEVELS, SUBJECTS, generate, make_problem, running_sums


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
