"""Does a demo cell learn, or does its reward curve follow the prompt order? Trains the cell
and a frozen control (lr 0: same seeded prompt order, same sampling, no learning) and prints
the mean training reward of the first and last 5 steps, per quarter, and greedy val accuracy.

    python bench/reward_rise.py --model tiny-m --objectives GRPO W_REINFORCE --lr 1e-4 --steps 40

Needs the demo's data and tiny models (snakemake --cores all --configfile config/demo.yaml).
Writes only to a temporary folder.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

import torch
import yaml

from nsr_study.data import read_jsonl
from nsr_study.train import run

REPO = Path(__file__).resolve().parents[1]


def summary(metrics: Path) -> str:
    rows = read_jsonl(metrics)
    r = [x["reward_mean"] for x in rows if "reward_mean" in x]
    n = len(r)
    mean = lambda a, b: sum(r[a:b]) / max(b - a, 1)  # noqa: E731
    quarters = " ".join(f"{mean(i * n // 4, (i + 1) * n // 4):.3f}" for i in range(4))
    val = " ".join(f"{x['step']}:{x['val_accuracy']:.2f}" for x in rows if "val_accuracy" in x)
    return f"first 5 {mean(0, 5):.3f}  last 5 {mean(n - 5, n):.3f}  quarters {quarters}  val {val}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=REPO / "config" / "demo.yaml", type=Path)
    ap.add_argument("--model", default="tiny-m")
    ap.add_argument("--objectives", nargs="+", default=["GRPO", "W_REINFORCE"])
    ap.add_argument("--lr", type=float, default=None, help="default: the config's")
    ap.add_argument("--steps", type=int, default=None, help="default: the config's")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    demo = yaml.safe_load(args.config.read_text())
    base = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    train = base["train"] | demo["train"] | {k: v for k, v in dict(lr=args.lr, steps=args.steps).items() if v is not None}
    from snakemake.utils import validate  # fills the schema defaults the train rule would pass

    cfg = {"models": demo["models"], "objectives": demo["objectives"], "seeds": [args.seed], "train": train,
           "grading": base.get("grading", {})}
    validate(cfg, str(REPO / "workflow" / "schemas" / "config.schema.yaml"))
    model = next(m for m in demo["models"] if m["name"] == args.model)
    print(f"{args.model} seed {args.seed}: {cfg['train']['steps']} steps of {cfg['train']['prompts_per_step']} × "
          f"{cfg['train']['rollouts_per_prompt']}, lr {cfg['train']['lr']}")
    with tempfile.TemporaryDirectory() as tmp:
        for objective, lr in [("GRPO", 0.0)] + [(o, cfg["train"]["lr"]) for o in args.objectives]:
            cell = {"model_name": args.model, "model_id": str(REPO / model["id"]), "objective": objective,
                    "seed": args.seed, "train": cfg["train"] | {"lr": lr}, "grading": cfg["grading"]}
            out = Path(tmp) / f"{objective}-{lr}"
            run(cell, str(REPO / "results/data/train.jsonl"), str(REPO / "results/data/val.jsonl"),
                str(out / "policy"), str(out / "metrics.jsonl"), str(out / "work"))
            label = "frozen control (lr 0)" if lr == 0 else objective
            print(f"{label:22s} {summary(out / 'metrics.jsonl')}", flush=True)


if __name__ == "__main__":
    main()
