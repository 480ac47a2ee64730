"""Grader under hostile input (issue 10): time per item, batch time and worker memory.

Builds ``--n`` items, a ``--hostile`` fraction of them pathological (half 200 kB of nested
braces inside a box, half ``\\left(`` x 10,000 inside a box), the rest real MATH solutions
against their own gold, shuffled with a fixed seed. Prints the slowest single item (each kind
graded alone on a fresh Grader), the batch's wall time and statuses, and the peak resident
memory of one worker and of all workers together (sampled every 0.1 s).

    python bench/grading_hostile.py [--n 1000] [--hostile 1.0] [--workers 2] [--timeout-s 5]
"""

import argparse
import random
import threading
import time
from pathlib import Path

import psutil

from nsr_study.answers import last_boxed
from nsr_study.data import read_jsonl
from nsr_study.grading import Grader

DEFAULT = Path(__file__).resolve().parents[2] / "shared/data/math/train.jsonl"
BRACES = "\\boxed{" + "{" * 100_000 + "1" + "}" * 100_000 + "}"
LEFT = "\\boxed{" + "\\left(" * 10_000 + "}"


def worker_rss() -> list[int]:
    """Resident bytes of each live grading worker (spawned children of this process)."""
    out = []
    for c in psutil.Process().children():
        try:
            if "spawn_main" in " ".join(c.cmdline()):
                out.append(c.memory_info().rss)
        except psutil.Error:  # a worker that exited between listing and reading
            pass
    return out


class PeakRss(threading.Thread):
    def __init__(self):
        super().__init__(daemon=True)
        self.one = self.all = 0
        self.done = threading.Event()

    def run(self):
        while not self.done.wait(0.1):
            rss = worker_rss()
            self.one, self.all = max(self.one, max(rss, default=0)), max(self.all, sum(rss))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--hostile", type=float, default=1.0, help="fraction of pathological items")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--timeout-s", type=int, default=5)
    args = ap.parse_args()
    rows = [r for r in read_jsonl(args.data) if last_boxed(r["solution"])]
    n_bad = round(args.n * args.hostile)
    items = [(BRACES if i % 2 else LEFT, "5") for i in range(n_bad)]
    items += [(r["solution"], last_boxed(r["solution"])) for r in rows[: args.n - n_bad]]
    random.Random(0).shuffle(items)

    worst = {}
    solution = rows[0]["solution"]
    kinds = (("braces", (BRACES, "5")), ("left", (LEFT, "5")), ("MATH solution", (solution, last_boxed(solution))))
    for name, pair in kinds:
        with Grader(workers=1, timeout_s=args.timeout_s) as grader:
            grader.grade_many(["\\boxed{1}"], ["1"])  # start the worker outside the timing
            t0 = time.perf_counter()
            status = grader.grade_many([pair[0]], [pair[1]]).statuses[0]
            worst[name] = (time.perf_counter() - t0, status)
    for name, (dt, status) in worst.items():
        print(f"alone: {name:>13}: {dt:.2f} s ({status})")

    peak = PeakRss()
    with Grader(workers=args.workers, timeout_s=args.timeout_s) as grader:
        grader.grade_many(["\\boxed{1}"] * args.workers, ["1"] * args.workers)
        peak.start()
        t0 = time.perf_counter()
        res = grader.grade_many([r for r, _ in items], [g for _, g in items], progress=True)
        dt = time.perf_counter() - t0
        peak.done.set()
        peak.join()
    print(f"batch: {len(items)} items ({n_bad} hostile), {args.workers} workers, timeout_s={args.timeout_s}: "
          f"{dt:.1f} s; statuses {dict(res.counts)}")
    print(f"peak worker RSS: {peak.one / 2**20:.0f} MiB one worker, {peak.all / 2**20:.0f} MiB all workers")


if __name__ == "__main__":
    main()
