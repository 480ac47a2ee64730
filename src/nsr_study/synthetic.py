"""Synthetic MATH-format problems for the offline demo.

Same fields as MATH (problem, solution ending in ``\\boxed{}``, level "Level 1".."Level 5",
type) so the demo runs the real data stage, grader and training code. Four subjects whose
difficulty rises with the level, with answers that exercise math-verify: integers,
negatives and reduced fractions. Level 1 asks for a number that stands in the problem
(``7 × 1``, ``x + 0 = −4``, the remainder of a smaller number), level 2 for one small
step (one-digit sums, the last digit), levels 3–5 for more operations on bigger numbers.
The easy end is what a tiny model can learn in a short SFT, so the demo's models start
with a real but imperfect prior that RL can sharpen; worked solutions are short and regular.
"""

from __future__ import annotations

import random
from fractions import Fraction

SUBJECTS = ("Arithmetic", "Linear Equations", "Remainders", "Fractions")
LEVELS = (1, 2, 3, 4, 5)


def tex(q: Fraction | int) -> str:
    """LaTeX of a rational: ``7``, ``-3``, ``\\frac{2}{3}``, ``-\\frac{5}{4}``."""
    q = Fraction(q)
    if q.denominator == 1:
        return str(q.numerator)
    sign = "-" if q < 0 else ""
    return f"{sign}\\frac{{{abs(q.numerator)}}}{{{q.denominator}}}"


def _p(v: int) -> str:
    """An integer as an operand: negatives in parentheses."""
    return f"({v})" if v < 0 else str(v)


def _plus(v: int) -> str:
    """`` + 5`` or `` - 5``: a signed term appended to an expression."""
    return f" + {v}" if v >= 0 else f" - {-v}"


def _coef(a: int) -> str:
    return {1: "x", -1: "-x"}.get(a, f"{a}x")


def _nonzero(rng: random.Random, lo: int, hi: int, exclude=(0,)) -> int:
    return rng.choice([k for k in range(lo, hi + 1) if k not in exclude])


def _arithmetic(level: int, rng: random.Random) -> tuple[str, list[str], Fraction]:
    if level == 1:
        a = rng.randint(1, 999)
        return f"${a} \\times 1$", [], Fraction(a)
    if level == 2:
        a, b = rng.randint(1, 30), rng.randint(1, 9)
        return f"${a} + {b}$", [], Fraction(a + b)
    if level == 3:
        a, b, c = (rng.randint(10, 30) for _ in range(3))
        return f"${a} + {b} - {c}$", [f"${a} + {b} = {a + b}$."], Fraction(a + b - c)
    if level == 4:
        a, b, c = rng.randint(2, 12), rng.randint(2, 12), rng.randint(1, 50)
        return f"${a} \\times {b} + {c}$", [f"${a} \\times {b} = {a * b}$."], Fraction(a * b + c)
    a, b, c, d = (_nonzero(rng, -12, 12) for _ in range(4))
    steps = [f"${a} \\times {_p(b)} = {a * b}$.", f"${c} \\times {_p(d)} = {c * d}$."]
    return f"${a} \\times {_p(b)} - {_p(c)} \\times {_p(d)}$", steps, Fraction(a * b - c * d)


def _linear(level: int, rng: random.Random) -> tuple[str, list[str], Fraction]:
    if level == 1:
        x = _nonzero(rng, -300, 300)
        return f"$x + 0 = {x}$", [], Fraction(x)
    if level == 2:
        x, b = rng.randint(1, 20), rng.randint(1, 30)
        return f"$x + {b} = {x + b}$", [f"$x = {x + b} - {b}$."], Fraction(x)
    x = rng.randint(-20, 20)
    if level == 3:
        a = rng.randint(2, 9)
        return f"${a}x = {a * x}$", [f"Divide both sides by ${a}$."], Fraction(x)
    a, b = _nonzero(rng, -9, 9, (0, 1, -1)), _nonzero(rng, -20, 20)
    if level == 4:
        c = a * x + b
        return f"${_coef(a)}{_plus(b)} = {c}$", [f"${_coef(a)} = {c - b}$."], Fraction(x)
    # level 5: unknown on both sides; the root is a fraction unless the numbers happen to divide
    c, d = _nonzero(rng, -9, 9, (0, a, a - 1, a + 1)), rng.randint(-20, 20)
    root = Fraction(d - b, a - c)
    steps = [f"${_coef(a - c)} = {d}{_plus(-b)} = {d - b}$.", f"$x = {tex(root)}$."]
    return f"${_coef(a)}{_plus(b)} = {_coef(c)}{_plus(d)}$", steps, root


def _remainders(level: int, rng: random.Random) -> tuple[str, list[str], Fraction]:
    ask = "What is the remainder when ${}$ is divided by ${}$?"
    if level == 1:  # the number is smaller than the divisor
        d = rng.randint(3, 30)
        n = rng.randint(1, d - 1)
        return ask.format(n, d), [f"${n} < {d}$."], Fraction(n)
    if level == 2:  # division by 10: the last digit
        n = rng.randint(11, 999)
        return ask.format(n, 10), [f"The last digit of ${n}$ is ${n % 10}$."], Fraction(n % 10)
    d = rng.randint(3, 9 if level == 3 else 13)
    if level <= 4:
        n = rng.randint(d + 1, 100 if level == 3 else 2000)
        q, r = divmod(n, d)
        return ask.format(n, d), [f"${n} = {d} \\cdot {q} + {r}$."], Fraction(r)
    a, k = rng.randint(2, 30), rng.randint(3, 6)
    steps, acc = [f"${a} \\equiv {a % d} \\pmod{{{d}}}$."], a % d
    for j in range(2, k + 1):
        acc = acc * a % d
        steps.append(f"${a}^{{{j}}} \\equiv {acc}$.")
    return ask.format(f"{a}^{{{k}}}", d), steps, Fraction(acc)


def _fractions(level: int, rng: random.Random) -> tuple[str, list[str], Fraction]:
    ask = "Compute ${}$ in lowest terms."
    b, d = rng.randint(2, 9), rng.randint(2, 12)
    n, m = rng.randint(1, 9), rng.randint(1, 11)
    x, y = Fraction(n, b), Fraction(m, d)
    fx, fy = f"\\frac{{{n}}}{{{b}}}", f"\\frac{{{m}}}{{{d}}}"
    if level == 1:
        a = rng.randint(2, 500)
        return ask.format(f"\\frac{{{a}}}{{1}}"), [], Fraction(a)
    if level == 2:
        k = rng.randint(1, 9)
        return ask.format(f"{fx} + \\frac{{{k}}}{{{b}}}"), [f"$\\frac{{{n} + {k}}}{{{b}}}$."], x + Fraction(k, b)
    if level == 3:
        return ask.format(f"{fx} + {fy}"), [f"$\\frac{{{n * d} + {m * b}}}{{{b * d}}}$."], x + y
    if level == 4:
        return ask.format(f"{fx} - {fy}"), [f"$\\frac{{{n * d} - {m * b}}}{{{b * d}}}$."], x - y
    w = Fraction(rng.randint(1, 7), rng.randint(2, 7))
    steps = [f"${fx} - {fy} = {tex(x - y)}$.", f"${tex(x - y)} \\times {tex(1 / w)} = {tex((x - y) / w)}$."]
    return ask.format(f"\\left({fx} - {fy}\\right) \\div {tex(w)}"), steps, (x - y) / w


_MAKERS = {"Arithmetic": _arithmetic, "Linear Equations": _linear, "Remainders": _remainders, "Fractions": _fractions}
_ASK = {"Arithmetic": "Compute {}.", "Linear Equations": "Solve {} for $x$.", "Remainders": "{}", "Fractions": "{}"}


def make_problem(subject: str, level: int, rng: random.Random) -> dict:
    """One MATH-format record of the given subject and level."""
    expr, steps, answer = _MAKERS[subject](level, rng)
    solution = " ".join(steps + [f"The answer is $\\boxed{{{tex(answer)}}}$."])
    return {"problem": _ASK[subject].format(expr), "solution": solution, "answer": tex(answer),
            "level": f"Level {level}", "type": subject}


def generate(n_train: int, n_test: int, seed: int, max_tries: int = 1000) -> tuple[list[dict], list[dict]]:
    """Train and test problems, subjects and levels in equal proportions, no problem text
    repeated within or across the splits; deterministic for a seed."""
    rng = random.Random(seed)
    cells = [(s, lv) for s in SUBJECTS for lv in LEVELS]
    seen: set[str] = set()
    out = []
    for i in range(n_train + n_test):
        subject, level = cells[i % len(cells)]
        for _ in range(max_tries):
            rec = make_problem(subject, level, rng)
            if rec["problem"] not in seen:
                break
        else:
            raise ValueError(f"cannot draw {n_train + n_test} distinct synthetic problems: "
                             f"{subject} level {level} ran out after {len(out)} rows; lower n_train/n_test")
        seen.add(rec["problem"])
        out.append(rec)
    return out[:n_train], out[n_train:]
