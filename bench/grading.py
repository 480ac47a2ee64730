"""Grader benchmark on the real MATH train set (../shared/data/math/train.jsonl).

Reports (1) self-consistency: each solution graded against the gold extracted from that same
solution (should be ~100 %), (2) the false-match rate: each solution against the next
problem's gold (answers that coincide, e.g. two problems whose answer is 2), and
(3) throughput in answers/s with the given worker count.

    python bench/grading.py [--workers 2] [--limit N] [--data PATH]
"""

import argparse
import time
from pathlib import Path

from nsr_study.answers import last_boxed
from nsr_study.data import read_jsonl
from nsr_study.grading import Grader

DEFAULT = Path(__file__).resolve().parents[2] / "shared/data/math/train.jsonl"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--limit", type=int, default=None)
    args = ap.parse_args()
    rows = [r for r in read_jsonl(args.data)[: args.limit] if last_boxed(r["solution"])]
    sols = [r["solution"] for r in rows]
    golds = [last_boxed(s) for s in sols]
    with Grader(workers=args.workers) as grader:
        grader.grade_many(sols[:4], golds[:4])  # start the workers outside the timing
        for name, pairing in (("own gold", golds), ("next problem's gold", golds[1:] + golds[:1])):
            t0 = time.perf_counter()
            res = grader.grade_many(sols, pairing, progress=True, desc=name)
            dt = time.perf_counter() - t0
            print(f"{name:>20}: {sum(res.scores)}/{len(rows)} = {100 * sum(res.scores) / len(rows):.2f} % graded "
                  f"correct; {len(rows) / dt:.0f} answers/s on {args.workers} workers; statuses {dict(res.counts)}")
            if name == "own gold":
                for s, g, st in zip(res.scores, golds, res.statuses):
                    if s < 1:
                        print(f"    not equal to itself: {g!r} ({st})")


if __name__ == "__main__":
    main()
