from collections import Counter
from fractions import Fraction

from nsr_study.answers import last_boxed
from nsr_study.grading import grade_with_status
from nsr_study.synthetic import LEVELS, SUBJECTS, generate, tex


def test_tex():
    assert [tex(Fraction(7)), tex(Fraction(-3)), tex(Fraction(2, 3)), tex(Fraction(-5, 4))] == [
        "7", "-3", "\\frac{2}{3}", "-\\frac{5}{4}"]


def test_fields_balance_and_determinism():
    train, test = generate(400, 100, seed=5)
    assert (train, test) == generate(400, 100, seed=5)
    assert train != generate(400, 100, seed=6)[0]
    assert set(train[0]) == {"problem", "solution", "answer", "level", "type"}
    cells = Counter((r["type"], r["level"]) for r in train)
    assert set(cells) == {(s, f"Level {lv}") for s in SUBJECTS for lv in LEVELS}
    assert set(cells.values()) == {20}
    problems = [r["problem"] for r in train + test]
    assert len(set(problems)) == len(problems)  # no repeats, no train/test leak


def test_answers_cover_negatives_and_fractions():
    train, _ = generate(400, 0, seed=0)
    answers = [r["answer"] for r in train]
    assert any(a.startswith("-") and "frac" not in a for a in answers)
    assert any(a.startswith("\\frac") for a in answers)
    assert any(a.startswith("-\\frac") for a in answers)
    assert all(last_boxed(r["solution"]) == r["answer"] for r in train)


def test_difficulty_rises_with_level():
    train, _ = generate(2000, 0, seed=0)
    # more worked steps (sentences) and longer problems at higher levels, in every subject
    for subject in SUBJECTS:
        steps = [sum(r["solution"].count(". ") for r in train if r["type"] == subject and r["level"] == f"Level {lv}")
                 for lv in LEVELS]
        assert steps[0] < steps[-1], subject
        size = [sum(len(r["problem"]) for r in train if r["type"] == subject and r["level"] == f"Level {lv}")
                for lv in LEVELS]
        assert size[0] < size[-1], subject


def test_every_solution_grades_correct_against_its_answer():
    train, _ = generate(200, 0, seed=1)
    assert [grade_with_status(r["solution"], r["answer"]) for r in train] == [(1.0, "ok")] * len(train)
