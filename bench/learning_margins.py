"""The margins of tests/test_learning.py: each objective's gain over the frozen control, and
the sign-flipped W-REINFORCE run's, in paired standard errors, for several sampling seeds on
this machine's kernel path (one JSON line per seed). Run it once per path, e.g.

    ATEN_CPU_CAPABILITY=avx2 python bench/learning_margins.py --seeds 0 1 2 3 4
    python bench/learning_margins.py --seeds 0 --negate   # every advantage negated: all must fail

The prior is built once per run (the kernel path changes it too); --prior reuses a folder the
test's ``prior`` fixture wrote on the same path. Writes only to a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import test_learning as learning  # noqa: E402  (the test's own prior, runs and bar)

from nsr_study import objectives  # noqa: E402
from nsr_study.metrics import mean_se  # noqa: E402


def negated(spec: objectives.Objective) -> objectives.Objective:
    return objectives.Objective(lambda r, g, lam: -spec.advantages(r, g, lam), spec.drop_zero_advantage,
                                spec.label, spec.color)


def margins(root: Path, seed: int, negate: bool, only: list[str] | None = None) -> dict:
    """{objective: (gain, SE, gain / SE)} for one sampling seed, and the flipped run's."""
    out, control = {}, None
    specs = dict(objectives.OBJECTIVES)
    runs = [(name, name, negate) for name in specs] + ([] if negate else [("flipped", "W_REINFORCE", True)])
    for label, name, flip in (r for r in runs if not only or r[0] in only):
        objectives.OBJECTIVES[name] = negated(specs[name]) if flip else specs[name]
        start, end = learning.pass_rates(root, f"{label}-seed{seed}", name, learning.LR, seed=seed)
        objectives.OBJECTIVES[name] = specs[name]
        assert control is None or start.tolist() == control.tolist()  # every run starts from the same draw
        control = start
        gain, se = mean_se(end - control)
        out[label] = [round(float(gain), 4), round(float(se), 4), round(float(gain / se), 2)]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[learning.SEED])
    ap.add_argument("--negate", action="store_true", help="every objective's advantages negated")
    ap.add_argument("--only", nargs="+", help="these runs only (objectives, flipped): one process each in parallel")
    ap.add_argument("--prior", type=Path, help="a folder with train.jsonl, val.jsonl and model/ built on this path")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.prior:
            root, prior = args.prior, None
        else:
            factory = type("Factory", (), {"mktemp": lambda self, name: Path(tempfile.mkdtemp(prefix=name, dir=tmp))})
            root, stats = learning.prior.__wrapped__(factory())
            prior = stats["sampled_t1"]["accuracy"]
        for seed in args.seeds:
            print(json.dumps({"kernels": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
                              "seed": seed, "negated": args.negate, "prior_t1": prior,
                              **margins(root, seed, args.negate, args.only)}), flush=True)


if __name__ == "__main__":
    main()
