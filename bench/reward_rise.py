"""Does a demo cell learn? Trains it beside a frozen control (lr 0: the same seeded prompt
order and sampling, no learning) and prints, per objective, the mean training reward of the
first and last 5 steps and the last validation's sampled pass rate, with its difference from
the control paired over the validation problems (mean ± standard error).

    python bench/reward_rise.py --model tiny-m --objectives GRPO PSR NSR W_REINFORCE

Needs the demo's data and tiny models in --root (snakemake --cores all --configfile
config/demo.yaml). Writes only to a temporary folder.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

import numpy as np
import torch

from nsr_study.config import load_config, objective_train
from nsr_study.data import read_jsonl
from nsr_study.metrics import mean_se
from nsr_study.train import run

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=REPO / "config" / "demo.yaml", type=Path)
    ap.add_argument("--root", default=REPO, type=Path, help="where the demo ran (results/data, results/models)")
    ap.add_argument("--model", default="tiny-m")
    ap.add_argument("--objectives", nargs="+", default=["GRPO", "PSR", "NSR", "W_REINFORCE"])
    ap.add_argument("--lr", type=float, default=None, help="default: the config's")
    ap.add_argument("--steps", type=int, default=None, help="default: the config's")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    cfg = load_config([REPO / "config" / "config.yaml", args.config], REPO / "workflow" / "schemas" / "config.schema.yaml")
    cfg["train"] |= {k: v for k, v in dict(lr=args.lr, steps=args.steps).items() if v is not None}
    model = next(m for m in cfg["models"] if m["name"] == args.model)
    data = args.root / "results" / "data"
    print(f"{args.model} seed {args.seed}: {cfg['train']['steps']} steps of {cfg['train']['prompts_per_step']} × "
          f"{cfg['train']['rollouts_per_prompt']}, lr {cfg['train']['lr']}")
    control = None
    with tempfile.TemporaryDirectory() as tmp:
        for objective, frozen in [("GRPO", True)] + [(o, False) for o in args.objectives]:
            train = objective_train(cfg["train"], objective) | ({"lr": 0.0} if frozen else {})
            lr = train["lr"]
            cell = {"model_name": args.model, "model_id": str(args.root / model["id"]), "objective": objective,
                    "seed": args.seed, "prompt": cfg["prompt"], "train": train, "grading": cfg["grading"]}
            out = Path(tmp) / f"{objective}-{lr}"
            run(cell, str(data / "train.jsonl"), str(data / "val.jsonl"), str(out / "policy"),
                str(out / "metrics.jsonl"), str(out / "work"))
            rows = read_jsonl(out / "metrics.jsonl")
            reward = [r["reward_mean"] for r in rows if "reward_mean" in r]
            rates = np.array(rows[-1]["val_pass_rates"])
            control = rates if control is None else control
            diff, se = mean_se(rates - control)
            label = "frozen control (lr 0)" if lr == 0 else objective
            print(f"{label:22s} reward first 5 {np.mean(reward[:5]):.3f} last 5 {np.mean(reward[-5:]):.3f}  "
                  f"val pass rate {rates.mean():.3f}  vs control {diff:+.3f} ± {se:.3f}", flush=True)


if __name__ == "__main__":
    main()
