"""Reward: does a response's final answer equal the gold answer? (math-verify)

``grade`` is the single-pair rule used everywhere; ``Grader`` runs it for many pairs in
worker processes. Workers exist because math-verify bounds its parse/verify time with
SIGALRM, which only works in a process's main thread (a training loop, a Snakemake ``run:``
block or a thread pool would silently lose the bound). Each item also gets a hard wall-clock
limit: a worker stuck in C code (sympy on adversarial input) is killed and replaced, and the
item is scored 0.0 with status ``timeout``.

An item's result is a pure function of (the response's graded part, the gold), so ``Grader``
grades each distinct pair once: a batch of samples repeats its answers many times over (the
demo's 32 samples per problem give ~10x fewer distinct pairs).

An item's result must not depend on what its worker graded before, and a worker's memory
must stay bounded (an interrupted parse leaves ~15-20 MB behind in the process). So each
worker imports and warms up math-verify before its first item (the first item does not pay
for the imports inside its time bound), clears math-verify's parse caches before every item
(a gold parsed for an earlier sample would otherwise come back free of charge), exits after
any timeout (taking what the interrupted parse left with it) and is replaced after
``max_tasks`` items. ANTLR's parser DFA is the one state kept: it changes speed, not results,
and resetting it per item makes normal grading ~11x slower.

Every result carries a status so that parse failures and timeouts are counted, never
silently mixed with wrong answers:

- ``ok``        both answers parsed; score is 1.0 or 0.0
- ``no_answer`` nothing parsable in the response (a parse failure of the response)
- ``bad_gold``  the gold answer itself does not parse (a data problem)
- ``timeout``   math-verify's or the hard time bound was hit
- ``error``     any other exception inside math-verify
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections import Counter
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from functools import cache

from pebble import ProcessExpired, ProcessPool
from tqdm.auto import tqdm

from nsr_study.answers import has_box, last_boxed

STATUSES = ("ok", "no_answer", "bad_gold", "timeout", "error")
# Exit status of a worker that hit math-verify's own timeout; the parent reads it as ``timeout``.
_EXIT_AFTER_TIMEOUT = 75


# math-verify (and sympy, ~0.35 s) is imported where answers are graded: the workers, and
# ``grade_with_status``; a job that only schedules grading or reads ``STATUSES`` does without it.
@cache
def _extraction_config() -> tuple:
    from math_verify import ExprExtractionConfig, LatexExtractionConfig

    return LatexExtractionConfig(), ExprExtractionConfig()


def _parse(text: str, timeout_s: int) -> list:
    from math_verify import parse

    return parse(text, extraction_config=_extraction_config(), parsing_timeout=timeout_s, raise_on_error=True)


def graded_part(response: str) -> str | None:
    """The text of a response that math-verify parses: its last ``\\boxed{}`` (the instruction
    the prompts give), re-boxed; the whole text only when it has no box at all (math-verify's own
    extraction then searches it); None when the final box is unclosed (cut off at
    ``max_new_tokens``) or empty, as searching the rest of the text would reward an answer the
    model never gave."""
    if not has_box(response):
        return response
    boxed = last_boxed(response)
    return "\\boxed{" + boxed + "}" if boxed else None


def grade_with_status(response: str, gold: str, timeout_s: int = 5) -> tuple[float, str]:
    """Score one response against a gold answer string; returns (score, status).
    Must run in a main thread (see module doc); use ``Grader`` anywhere else."""
    return _grade_part(graded_part(response), gold, timeout_s)


def _grade_part(part: str | None, gold: str, timeout_s: int) -> tuple[float, str]:
    """``grade_with_status`` from a response's ``graded_part`` (None: no answer); the gold is
    checked first, so a bad gold is reported as such whatever the response."""
    from math_verify import verify
    from math_verify.errors import TimeoutException

    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("grade() needs the main thread for math-verify's timeouts; use Grader")
    try:
        gold_parsed = _parse("\\boxed{" + gold + "}", timeout_s)
        if not gold_parsed:
            return 0.0, "bad_gold"
        pred_parsed = _parse(part, timeout_s) if part is not None else None
        if not pred_parsed:
            return 0.0, "no_answer"
        ok = verify(gold_parsed, pred_parsed, timeout_seconds=timeout_s, raise_on_error=True)
        return (1.0 if ok else 0.0), "ok"
    except TimeoutException:
        return 0.0, "timeout"
    except (Exception, RecursionError):
        return 0.0, "error"


def grade(response: str, gold: str) -> float:
    """1.0 if the response's final answer is mathematically equal to ``gold``, else 0.0."""
    return grade_with_status(response, gold)[0]


def _clear_parse_caches() -> None:
    from math_verify import parser

    parser.parse_latex_cached.cache_clear()
    parser.parse_expr_cached.cache_clear()


def _warm_up() -> None:
    """Worker initializer: pay for math-verify's lazy imports before any item's clock starts."""
    grade_with_status("\\boxed{\\frac{1}{2}}", "0.5")
    _clear_parse_caches()


def _grade_in_worker(part: str | None, gold: str, timeout_s: int) -> tuple[float, str]:
    """``grade_with_status`` of a graded part, with no memory of earlier items; the worker exits
    after a timeout."""
    _clear_parse_caches()
    result = _grade_part(part, gold, timeout_s)
    if result[1] == "timeout":
        os._exit(_EXIT_AFTER_TIMEOUT)
    return result


@dataclass
class BatchResult:
    """Scores in input order, with one status per item (see module doc)."""

    scores: list[float]
    statuses: list[str]
    counts: Counter = field(init=False)

    def __post_init__(self):
        self.counts = Counter({s: 0 for s in STATUSES})
        self.counts.update(self.statuses)

    @property
    def parse_failures(self) -> int:
        return self.counts["no_answer"] + self.counts["bad_gold"]

    @property
    def timeouts(self) -> int:
        return self.counts["timeout"]


class Grader:
    """A reusable pool of grading processes (create once, grade every step).

    ``timeout_s`` bounds math-verify's parse and verify calls inside the worker; the hard
    per-item limit (default ``3 * timeout_s + 2`` seconds of wall time: two parses, one
    verify, plus slack) kills a worker that ignores the alarm, e.g. inside C code.
    ``max_tasks`` recycles each worker after that many items, bounding what ANTLR's DFA
    accumulates (~2.5 MB per 1,000 MATH solutions, more on odd input); a new worker costs
    ~0.6 s, ~250 MATH solutions' worth of grading, hence the default.
    Call it from a script guarded by ``if __name__ == "__main__"``: spawned workers
    re-import the main module (all of its imports: keep them light, or run from a package's
    ``__main__``, which workers skip, as ``python -m nsr_study COMMAND`` does).
    """

    def __init__(self, workers: int = 2, timeout_s: int = 5, hard_timeout_s: float | None = None,
                 max_tasks: int = 2000):
        if workers < 1 or timeout_s < 1 or max_tasks < 1:
            raise ValueError(f"Grader needs workers, timeout_s and max_tasks >= 1, got {workers}, {timeout_s}, "
                             f"{max_tasks}")
        self.timeout_s = int(timeout_s)
        self.hard_timeout_s = hard_timeout_s or 3 * self.timeout_s + 2
        # spawn: never fork a process that may hold torch/CUDA threads.
        self._pool = ProcessPool(max_workers=workers, max_tasks=max_tasks, initializer=_warm_up,
                                 context=multiprocessing.get_context("spawn"))

    def grade_many(self, responses, golds, progress: bool = False, desc: str = "grading") -> BatchResult:
        responses, golds = list(responses), list(golds)
        if len(responses) != len(golds):
            raise ValueError(f"{len(responses)} responses but {len(golds)} golds")
        pairs = [(graded_part(r), g) for r, g in zip(responses, golds)]
        futures = {
            pair: self._pool.schedule(_grade_in_worker, args=(*pair, self.timeout_s), timeout=self.hard_timeout_s)
            for pair in dict.fromkeys(pairs)
        }
        results = {}
        for pair, fut in tqdm(futures.items(), desc=desc, disable=not progress, unit="answer"):
            try:
                results[pair] = fut.result()
            except FutureTimeout:
                results[pair] = 0.0, "timeout"
            except ProcessExpired as e:
                results[pair] = 0.0, "timeout" if e.exitcode == _EXIT_AFTER_TIMEOUT else "error"
            except Exception:  # a worker that died (e.g. out of memory) fails only its item
                results[pair] = 0.0, "error"
        return BatchResult([results[p][0] for p in pairs], [results[p][1] for p in pairs])

    def close(self) -> None:
        self._pool.stop()
        self._pool.join()

    def __enter__(self) -> "Grader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def grade_batch(responses, golds, workers: int = 2, timeout_s: int = 5, progress: bool = False) -> BatchResult:
    """One-shot batch grading; prefer a long-lived ``Grader`` when grading repeatedly."""
    with Grader(workers=workers, timeout_s=timeout_s) as grader:
        return grader.grade_many(responses, golds, progress=progress)
