"""Build the demo's three tiny models into a temporary folder; print priors and wall times.

    python bench/tiny_models.py [--config config/demo.yaml] [--threads 1] [--keep DIR]

Needs the demo's data stage outputs (results/data/{train,val}.jsonl). The targets the specs
are tuned for: greedy val accuracy in (0, 0.9) and strictly increasing with size, and at most
~40 s per model on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from nsr_study.config import load_config
from nsr_study.data import read_jsonl
from nsr_study.logs import setup_logging
from nsr_study.tiny import build

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=REPO / "config" / "demo.yaml", type=Path)
    ap.add_argument("--data", default=REPO / "results" / "data", type=Path)
    ap.add_argument("--threads", default=1, type=int, help="torch threads (the rule's threads: 1)")
    ap.add_argument("--seed", default=0, type=int)
    ap.add_argument("--keep", type=Path, help="build into this folder instead of a temporary one")
    args = ap.parse_args()
    setup_logging()
    torch.set_num_threads(args.threads)
    config = load_config([REPO / "config" / "config.yaml", args.config], REPO / "workflow/schemas/config.schema.yaml")
    models = [m for m in config["models"] if "tiny" in m]
    train, val = (read_jsonl(args.data / f"{s}.jsonl") for s in ("train", "val"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        for m in models:
            start = time.perf_counter()
            prior = build(m["tiny"], train, val, root / m["name"], config["prompt"], seed=args.seed,
                          grader_workers=config["grading"]["workers"])
            rows.append((m["name"], prior["parameters"], prior["sft"]["final_loss"], prior["greedy"]["accuracy"],
                         prior["greedy"]["truncated"], prior["sampled_t1"]["accuracy"],
                         prior["sampled_t1"]["mixed_problems"], time.perf_counter() - start))
    print(f"{'model':8} {'params':>8} {'loss':>6} {'greedy':>7} {'cut':>5} {'T=1':>6} {'mixed':>6} {'wall s':>7}")
    for r in rows:
        print(f"{r[0]:8} {r[1]:8d} {r[2]:6.3f} {r[3]:7.2f} {r[4]:5.2f} {r[5]:6.3f} {r[6]:6.2f} {r[7]:7.1f}")
    print(json.dumps({r[0]: {"greedy": r[3], "t1": r[5], "wall_s": round(r[7], 1)} for r in rows}))


if __name__ == "__main__":
    main()
