"""Synthetic MATH-format problems for the offline demo.

Same fields as MATH (problem, solution ending in ``\\boxed{}``, level "Level 1".."Level 5",
type) so the demo runs the real data stage, grader and training code. Every problem is a sum
of one-digit numbers, and the level is how many: level L adds L + 1 digits ("Arithmetic",
``3 + 5 + 2``) or solves ``x - a_1 - ... - a_L = c`` ("Linear Equations", the same sum
inverted). Worked solutions write one running sum per step (``3 + 5 = 8``, ``8 + 2 = 10``),
so every level uses one skill, adding a digit to a number below 60, and a higher level is a
longer chain of it: a slip anywhere loses the answer, so the pass rate falls with the level,
and faster for a model that has learnt the skill less well, which is what makes the demo's
three sizes differ. Answers are integers from 0 to 54.
"""

from __future__ import annotations

import random

SUBJECTS = ("Arithmetic", "Linear Equations")
LEVELS = (1, 2, 3, 4, 5)


def running_sums(start: int, digits: list[int]) -> tuple[list[str], int]:
    """The worked steps of ``start + d_1 + d_2 + ...``, one addition per step, and the total."""
    steps, total = [], start
    for d in digits:
        steps.append(f"${total} + {d} = {total + d}$.")
        total += d
    return steps, total


def _arithmetic(level: int, rng: random.Random) -> tuple[str, list[str], int]:
    digits = [rng.randint(0, 9) for _ in range(level + 1)]
    steps, total = running_sums(digits[0], digits[1:])
    return "$" + " + ".join(map(str, digits)) + "$", steps, total


def _linear(level: int, rng: random.Random) -> tuple[str, list[str], int]:
    c, *digits = [rng.randint(0, 9) for _ in range(level + 1)]
    steps, x = running_sums(c, digits)
    return "$x - " + " - ".join(map(str, digits)) + f" = {c}$", steps, x


_MAKERS = {"Arithmetic": _arithmetic, "Linear Equations": _linear}
_ASK = {"Arithmetic": "Compute {}.", "Linear Equations": "Solve {} for $x$."}


def make_problem(subject: str, level: int, rng: random.Random) -> dict:
    """One MATH-format record of the given subject and level."""
    expr, steps, answer = _MAKERS[subject](level, rng)
    solution = " ".join(steps + [f"The answer is $\\boxed{{{answer}}}$."])
    return {"problem": _ASK[subject].format(expr), "solution": solution, "answer": str(answer),
            "level": f"Level {level}", "type": subject}


LONGER_LEVELS = (6, 7)  # chains longer than any training problem's (levels 1..5)


def generate_longer(n: int, seed: int) -> list[dict]:
    """An out-of-distribution test set: ``n`` problems of levels 6 and 7, chains of 7 and 8
    one-digit additions, longer than any the models were trained on (answers up to 72)."""
    return _draw(n, random.Random(f"longer-{seed}"), [(s, lv) for s in SUBJECTS for lv in LONGER_LEVELS])


def generate(n_train: int, n_test: int, seed: int, max_tries: int = 1000) -> tuple[list[dict], list[dict]]:
    """Train and test problems, subjects and levels in equal proportions, no problem text
    repeated within or across the splits; deterministic for a seed."""
    out = _draw(n_train + n_test, random.Random(seed), [(s, lv) for s in SUBJECTS for lv in LEVELS], max_tries)
    return out[:n_train], out[n_train:]


def _draw(count: int, rng: random.Random, cells: list[tuple[str, int]], max_tries: int = 1000) -> list[dict]:
    """``count`` distinct problems, cycling over the (subject, level) ``cells``."""
    seen: set[str] = set()
    out = []
    for i in range(count):
        subject, level = cells[i % len(cells)]
        for _ in range(max_tries):
            rec = make_problem(subject, level, rng)
            if rec["problem"] not in seen:
                break
        else:
            raise ValueError(f"cannot draw {count} distinct synthetic problems: "
                             f"{subject} level {level} ran out after {len(out)} rows; lower n_train/n_test")
        seen.add(rec["problem"])
        out.append(rec)
    return out
