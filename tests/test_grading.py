import random
import time

import pytest

from nsr_study.answers import last_boxed
from nsr_study.grading import BatchResult, Grader, grade, grade_batch, grade_with_status, graded_part


@pytest.mark.parametrize(
    "response, gold, expected",
    [
        ("so the answer is $\\boxed{\\frac{1}{2}}$", "0.5", 1.0),
        ("$\\boxed{\\dfrac{1}{2}}$", "\\frac12", 1.0),
        ("$\\boxed{-3}$", "-3", 1.0),
        ("$\\boxed{3}$", "-3", 0.0),
        ("first \\boxed{2}, no wait: \\boxed{4}", "4", 1.0),  # the last box is the answer
        ("\\boxed{4} or maybe \\boxed{2}", "4", 0.0),
        ("\\fbox{7}", "7", 1.0),
        ("$\\boxed{(1,2)}$", "(2,1)", 0.0),  # ordered pairs are ordered
        ("$\\boxed{\\sqrt{8}}$", "2\\sqrt{2}", 1.0),
        ("The answer is $\\frac{3}{4}$.", "\\frac34", 1.0),  # no box: math-verify's own extraction
    ],
)
def test_grade_by_hand(response, gold, expected):
    assert grade(response, gold) == expected


@pytest.mark.parametrize("response", [
    "We find $x = 5$. Then we compute \\boxed{\\frac{12",  # cut off inside the final box
    "$x = 5$, so \\boxed{5} is wrong; the answer is \\boxed{",  # an earlier closed box does not count
    "We find $x = 5$. \\boxed{}",  # an empty box
])
def test_an_unclosed_or_empty_final_box_has_no_answer(response):
    """Before: math-verify searched the whole text and found the 5 (reward 1.0)."""
    assert grade_with_status(response, "5") == (0.0, "no_answer")


@pytest.mark.parametrize("response, part", [
    ("so $x = 5$, hence \\boxed{ 5 }.", "\\boxed{5}"),  # the last box, re-boxed, stripped
    ("\\boxed{4} or maybe \\fbox{\\frac{1}{2}}", "\\boxed{\\frac{1}{2}}"),
    ("The answer is $\\frac{3}{4}$.", "The answer is $\\frac{3}{4}$."),  # no box: the whole text
    ("so \\boxed{\\frac{12", None),  # cut off inside the final box
    ("\\boxed{}", None),
])
def test_graded_part_by_hand(response, part):
    assert graded_part(response) == part


def test_each_distinct_graded_pair_is_graded_once():
    """Responses that differ only before their final box are one item for the workers; each
    response still gets its own row, in order."""
    responses = ["so \\boxed{5}", "thus \\boxed{5}", "\\boxed{4}", "\\boxed{5}", "\\boxed{", "\\boxed{"]
    golds = ["5", "5", "5", "6", "5", "5"]
    sent = []
    with Grader(workers=1) as grader:
        schedule = grader._pool.schedule
        grader._pool.schedule = lambda fn, args, timeout: sent.append(args[:2]) or schedule(fn, args=args, timeout=timeout)
        res = grader.grade_many(responses, golds)
    assert sent == [("\\boxed{5}", "5"), ("\\boxed{4}", "5"), ("\\boxed{5}", "6"), (None, "5")]
    assert res.scores == [1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    assert res.statuses == ["ok"] * 4 + ["no_answer"] * 2


def test_statuses_count_parse_failures():
    assert grade_with_status("I do not know.", "5") == (0.0, "no_answer")
    assert grade_with_status("\\boxed{5}", "") == (0.0, "bad_gold")
    assert grade_with_status("\\boxed{5}", "5") == (1.0, "ok")
    res = BatchResult([0.0, 0.0, 1.0, 0.0], ["no_answer", "bad_gold", "ok", "timeout"])
    assert (res.parse_failures, res.timeouts, res.counts["ok"], res.counts["error"]) == (2, 1, 1, 0)


def test_grade_refuses_non_main_thread():
    import threading

    box = {}
    t = threading.Thread(target=lambda: box.setdefault("e", _catch(lambda: grade("\\boxed{1}", "1"))))
    t.start()
    t.join()
    assert isinstance(box["e"], RuntimeError) and "Grader" in str(box["e"])


def _catch(fn):
    try:
        fn()
    except Exception as e:  # noqa: BLE001
        return e


def test_batch_matches_single_and_keeps_order():
    responses = ["\\boxed{1}", "\\boxed{2}", "nothing", "\\boxed{\\frac{2}{4}}"]
    golds = ["1", "3", "7", "\\frac{1}{2}"]
    res = grade_batch(responses, golds, workers=2)
    assert res.scores == [1.0, 0.0, 0.0, 1.0]
    assert res.statuses == ["ok", "ok", "no_answer", "ok"]
    with pytest.raises(ValueError, match="2 responses but 1 golds"):
        grade_batch(["a", "b"], ["1"])


def test_adversarial_responses_score_zero_in_bounded_time():
    rnd = random.Random(0)
    adversarial = [
        ("\\frac{1}{2} + \\sqrt{x^2 + \\alpha_{i}} " * 2600)[:100_000],  # 100 KB of LaTeX
        "\\boxed{" + "\\frac{1}{2}+" * 9000 + "1}",  # 100 KB inside one box
        "\\boxed{" + "{" * 10_000 + "1" + "}" * 10_000 + "}",  # 10,000 nested braces
        "{" * 10_000 + "\\boxed{" + "{" * 10_000,  # unbalanced
        bytes(rnd.randrange(256) for _ in range(20_000)).decode("latin-1"),  # binary junk
        "\\boxed{10^{10^{10}} + 1}",  # an answer sympy cannot evaluate in time
    ]
    start = time.monotonic()
    with Grader(workers=2, timeout_s=1) as grader:
        res = grader.grade_many(adversarial + ["\\boxed{5}"], ["5"] * (len(adversarial) + 1))
    elapsed = time.monotonic() - start
    assert res.scores == [0.0] * len(adversarial) + [1.0]
    assert res.timeouts >= 2
    # hard bound per item is 3*1+2 s; two workers share 6 items
    assert elapsed < 3 * 5 + 10


def test_hard_timeout_kills_a_stuck_worker_and_recovers():
    # math-verify's own alarm would fire after 5 s; the 1 s hard bound kills the worker first,
    # and the pool replaces it so the next item is still graded.
    with Grader(workers=1, timeout_s=5, hard_timeout_s=1) as grader:
        start = time.monotonic()
        res = grader.grade_many(["\\boxed{10^{10^{10}} + 1}", "\\boxed{3}"], ["5", "3"])
        elapsed = time.monotonic() - start
    assert res.statuses == ["timeout", "ok"] and res.scores == [0.0, 1.0]
    assert elapsed < 5


def test_real_math_solutions_grade_against_their_own_gold(math_train):
    """Self-consistency on a fixed 1-in-5 subset (the full set: bench/grading.py)."""
    rows = [r for r in math_train[::5] if last_boxed(r["solution"])]
    sols = [r["solution"] for r in rows]
    golds = [last_boxed(r["solution"]) for r in rows]
    with Grader(workers=2) as grader:
        own = grader.grade_many(sols, golds)
        other = grader.grade_many(sols, golds[1:] + golds[:1])  # each solution vs the next problem's gold
    assert sum(own.scores) / len(rows) >= 0.99
    assert sum(other.scores) / len(rows) <= 0.02


def _worker_pids() -> set[int]:
    import psutil

    return {c.pid for c in psutil.Process().children() if "spawn_main" in " ".join(c.cmdline())}


def _hostile_mix() -> tuple[list[str], list[str]]:
    """Pathological strings (two of them twice) mixed with normal answers, as in issue 10."""
    left = "\\boxed{" + "\\left(" * 10_000 + "}"
    braces = "\\boxed{" + "{" * 20_000 + "1" + "}" * 20_000 + "}"
    responses = ["\\boxed{5}", left, "\\boxed{\\frac{10}{2}}", braces, "\\boxed{4}", left, "no answer", braces,
                 "\\boxed{5}"]
    return responses, ["5"] * len(responses)


def test_every_item_grades_the_same_alone_and_in_a_batch():
    responses, golds = _hostile_mix()
    alone = []
    for r, g in zip(responses, golds):
        with Grader(workers=1, timeout_s=1) as grader:
            alone.append(grader.grade_many([r], [g]).statuses[0])
    with Grader(workers=1, timeout_s=1) as grader:
        batch = grader.grade_many(responses, golds).statuses
    assert batch == alone
    assert batch.count("timeout") == 4 and batch.count("ok") == 4


def test_a_worker_that_timed_out_is_replaced():
    """An interrupted parse leaves ~15-20 MB in its process; the process must go with it."""
    with Grader(workers=1, timeout_s=1) as grader:
        grader.grade_many(["\\boxed{1}"], ["1"])
        before = _worker_pids()
        res = grader.grade_many(["\\boxed{" + "\\left(" * 10_000 + "}", "\\boxed{3}"], ["5", "3"])
        after = _worker_pids()
    assert res.statuses == ["timeout", "ok"]
    assert len(before) == 1 and before.isdisjoint(after)


def test_workers_are_recycled_after_max_tasks():
    seen = set()
    with Grader(workers=1, max_tasks=2) as grader:
        for _ in range(3):
            assert grader.grade_many(["\\boxed{1}", "\\boxed{2}"], ["1", "2"]).statuses == ["ok", "ok"]
            seen |= _worker_pids()
    assert len(seen) >= 3


def test_a_worker_item_does_not_reuse_earlier_parses():
    """A gold parsed for an earlier sample must not come back free of the time bound: when an
    item is graded, math-verify's parse cache holds nothing from the item before."""
    from math_verify.parser import parse_latex_cached

    from nsr_study.grading import _grade_in_worker

    assert grade_with_status("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}") == (1.0, "ok")
    assert _grade_in_worker("\\boxed{7}", "7", 5) == (1.0, "ok")
    assert parse_latex_cached.cache_info().currsize == 1  # "\\boxed{7}" (gold and response) only
