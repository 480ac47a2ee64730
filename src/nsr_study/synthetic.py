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

from nsr_study.answers import last_boxed

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
# rule synthetic_data writes data.synthetic.n_longer of them here; a `benchmarks` entry reads it
LONGER_FILE = "results/data/synthetic/longer.jsonl"


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


# ---------------------------------------------------------------- the positive control's task
#
# Sums of 3 to 5 one-digit numbers (level = count - 2), solved by one of two strategies whose
# worked solution names it first: A, "Left to right:", running sums from the first number,
# which ignores a "counting the last number twice" clause; B, "Right to left:", running sums
# from the last number, counted twice when the clause asks. On a plain sum ("A-problem") both
# are right; on a sum with the clause ("B-only problem", the test set `rare`) only B is. The
# tiny model's prior (nsr_study.tiny) samples B with a small probability on every problem and
# RL trains on A-problems only, so an objective that narrows the policy onto its common
# strategy loses the rare problems, which pass@k at large k measures.

STRATEGY_SUBJECTS = ("Sums", "Sums Counting the Last Twice")  # A-problems, B-only problems
STRATEGIES = {"A": "Left to right:", "B": "Right to left:"}
STRATEGY_LEVELS = (1, 2, 3)  # 3, 4, 5 numbers
CLAUSE = ", counting the last number twice"
# rule synthetic_data writes data.synthetic.n_rare B-only problems here; the test set `rare` reads it
RARE_FILE = "results/data/synthetic/rare.jsonl"


def strategy_problem(digits: list[int], clause: bool) -> str:
    """The problem text of a sum of ``digits``, with or without the clause."""
    return "Add $" + " + ".join(map(str, digits)) + "$" + (CLAUSE if clause else "") + "."


def parse_strategy_problem(problem: str) -> tuple[list[int], bool]:
    """(digits, clause) of a ``strategy_problem`` text; a clear error for any other text."""
    clause = problem.endswith(CLAUSE + ".")
    body = problem.removesuffix(CLAUSE + ".") if clause else problem.removesuffix(".")
    if not (body.startswith("Add $") and body.endswith("$")):
        raise ValueError(f"not a two-strategy sum (nsr_study.synthetic.strategy_problem): {problem!r}")
    terms = body[len("Add $"):-1].split(" + ")
    if not all(t.isdigit() and len(t) == 1 for t in terms):
        raise ValueError(f"not a sum of one-digit numbers: {problem!r}")
    return [int(t) for t in terms], clause


def strategy_solution(problem: str, strategy: str, slip: bool = False) -> str:
    """The worked solution of ``problem`` by ``strategy`` ("A" or "B"): A adds left to right
    and ignores the clause, B adds right to left from the last number, counted twice when the
    clause asks (B's answer is always right, A's only without the clause). With ``slip`` the
    number before the last is left out: a mistake in the steps themselves, which the
    two-strategy prior can give B alone (``nsr_study.tiny``)."""
    digits, clause = parse_strategy_problem(problem)
    if slip:
        digits = digits[:-2] + digits[-1:]
    if strategy == "A":
        start, rest = digits[0], digits[1:]
    elif strategy == "B":
        start, rest = digits[-1], ([digits[-1]] if clause else []) + digits[-2::-1]
    else:
        raise ValueError(f"strategy must be one of {sorted(STRATEGIES)}, got {strategy!r}")
    steps, total = running_sums(start, rest)
    return " ".join([STRATEGIES[strategy]] + steps + [f"The answer is $\\boxed{{{total}}}$."])


def strategy_of(response: str) -> str:
    """The strategy a response used, from the name it opens with: "A", "B", or "other"."""
    text = response.lstrip()
    return next((s for s, name in STRATEGIES.items() if text.startswith(name)), "other")


def _strategy_record(digits: list[int], clause: bool) -> dict:
    problem = strategy_problem(digits, clause)
    solution = strategy_solution(problem, "B" if clause else "A")
    return {"problem": problem, "solution": solution, "answer": last_boxed(solution),
            "level": f"Level {len(digits) - 2}", "type": STRATEGY_SUBJECTS[clause]}


def generate_strategies(n_train: int, n_test: int, n_rare: int, seed: int) -> tuple[list[dict], list[dict], list[dict]]:
    """Train and test A-problems and ``n_rare`` B-only problems (the test set `rare`), levels in
    equal proportions, no sum of digits repeated anywhere (a rare problem is no train problem
    with the clause added); deterministic for a seed. The clause-free texts with the clause
    added are the SFT's B-only problems (nsr_study.tiny), so the rare test problems are unseen."""
    rng, seen, out = random.Random(f"strategies-{seed}"), set(), []
    for i in range(n_train + n_test + n_rare):
        count = STRATEGY_LEVELS[i % len(STRATEGY_LEVELS)] + 2
        # the last number is never 0: counted twice it would change nothing, and A would solve it
        while (digits := tuple(rng.randint(0, 9) for _ in range(count - 1)) + (rng.randint(1, 9),)) in seen:
            pass
        seen.add(digits)
        out.append(_strategy_record(list(digits), clause=i >= n_train + n_test))
    return out[:n_train], out[n_train:n_train + n_test], out[n_train + n_test:]


def strategy_tally(texts: list[str], scores: list[float]) -> dict[str, dict[str, int]]:
    """One problem's samples by strategy (``strategy_of``): how many used each, and how many of
    those were right; the evaluation's per-problem tag for the two-strategy subjects."""
    used = {s: 0 for s in [*STRATEGIES, "other"]}
    right = dict(used)
    for text, score in zip(texts, scores, strict=True):
        used[strategy_of(text)] += 1
        right[strategy_of(text)] += int(score)
    return {"used": used, "correct": right}
