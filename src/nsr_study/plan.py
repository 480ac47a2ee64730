"""The study's cost before it starts: expected GPU-hours per rule and in total, the disk it
needs, and the wall-clock on a node of ``--gpus`` GPUs.

    python -m nsr_study plan --configfile config/config.yaml [--configfile overlay.yaml]
                             [--card H100-80GB] [--backend hf|vllm] [--gpus 8]

Config files are merged in order as Snakemake merges ``--configfile`` overlays, checked and
completed with the schema's defaults as the Snakefile does, and the whole grid is costed
(``train`` per cell, ``evaluate_base`` per model, ``evaluate_cell`` per cell, each evaluation in
its shards), whether or not outputs exist. Rates: ``nsr_study.rates`` (measurements only; an
unmeasured job is reported as such and left out of the total, which then says so). Cost model
and its assumptions: ``nsr_study.cost``. Wall-clock: ``nsr_study.schedule``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nsr_study.config import ConfigError, load_config
from nsr_study.cost import (Row, count_all_test_problems, decode_step, disk_bytes, generate_calls, rate_backend,
                            shard_count, study_rows)
from nsr_study.rates import THROUGHPUT, PlanError, chosen_card, find_rates, load_throughput, model_parameters
from nsr_study.schedule import list_schedule, schedule_bounds, study_jobs


def disk_line(config: dict, throughput: dict, gpus: int) -> str:
    """The plan's disk line for the configured grid and ``train.keep_checkpoint``."""
    cells = len(config["objectives"]) * len(config["seeds"])
    counts = [(cells, model_parameters(throughput, m["id"])) for m in config["models"]]
    unknown = [m["id"] for m, (_, p) in zip(config["models"], counts) if p is None]
    train = config["train"]
    d = disk_bytes([c for c in counts if c[1] is not None], train["dtype"], train["keep_checkpoint"], gpus)
    gb = lambda b: f"{b / 1e9:,.0f} GB"  # noqa: E731
    line = (f"{'disk':14s} at rest {gb(d['at_rest'])} (policies in {train['dtype']} {gb(d['policies'])}, checkpoints "
            f"{gb(d['checkpoints'])}: train.keep_checkpoint {str(train['keep_checkpoint']).lower()}), peak {gb(d['peak'])} "
            f"with {gpus} training job{'s' * (gpus > 1)} writing checkpoints at once")
    return line + (f"; INCOMPLETE: parameters unknown for {', '.join(unknown)}" if unknown else "")


def host_memory_line(config: dict, throughput: dict) -> str:
    """The plan's host-memory line: each model's train and evaluate job (``nsr_study.host_memory``)."""
    from nsr_study.host_memory import MARGIN, RANK_BYTES, evaluate_bytes, parameters, train_bytes

    counts, dtype = parameters(config, throughput), config["train"]["dtype"]
    parts = [f"{m['name']} unknown (no parameter count)" if counts[m["name"]] is None else
             f"{m['name']} train {train_bytes(counts[m['name']], m['gpus']) / 1e9:,.0f} GB, evaluate "
             f"{evaluate_bytes(counts[m['name']], m['gpus'], dtype) / 1e9:,.0f} GB ({m['gpus']} rank{'s' * (m['gpus'] > 1)})"
             for m in config["models"]]
    return (f"{'host memory':14s} per job: {'; '.join(parts)} (rank 0 alone reads the weights, plus "
            f"{RANK_BYTES / 1e9:.0f} GB per rank, assumed; SLURM mem_mb asks for {MARGIN}×)")


def wall_clock_line(rows: list[Row], gpus: int) -> str:
    """The study's wall-clock on ``gpus`` GPUs (``list_schedule``), with the range of any order
    that keeps the GPUs busy when there are several."""
    jobs = study_jobs(rows)
    hours = list_schedule(jobs, gpus) / 3600
    low, high = (None if b is None else b / 3600 for b in schedule_bounds(jobs, gpus))
    line = f"{'wall-clock':14s} {gpus:4d} GPU{'s' if gpus > 1 else ' '} {hours:9.1f} h     = {hours / 24:.1f} days"
    if gpus > 1 and high is not None:
        line += (f" (a free GPU takes the ready job with the longest chain ahead; any order that never idles a GPU "
                 f"while a job is ready: {low:.1f}–{high:.1f} h)")
    elif gpus > 1:
        line += (f" (free GPUs take the ready job with the longest chain ahead that fits them; no order takes less "
                 f"than {low:.1f} h)")
    return line + ("; INCOMPLETE: unmeasured jobs count 0 h" if any(r.hours is None for r in rows) else "")


def decoding_lines(config: dict, problems: int, throughput: dict, card: str, backend: str | None) -> list[str]:
    """Per model, the measured call that prices each kind of ``generate`` call of the study
    (``cost.decode_step``): training rollouts, validation, and an evaluation shard's calls."""
    train, evaluate = config["train"], config["evaluate"]
    largest = -(-problems // shard_count(problems, evaluate["shard_size"]))
    gbs, val = train["generation_batch_size"], config["data"]["val_size"]
    calls = [(train["backend"], p, n, train["max_new_tokens"]) for p, n in (
        (train["prompts_per_step"], train["rollouts_per_prompt"]), (val, 1), (val, train["val_samples"]))]
    calls += [(evaluate["backend"], largest, n, evaluate["max_new_tokens"]) for n in (1, evaluate["n"])]
    models: dict[str, list[str]] = {}  # how the calls are priced → the models priced so
    for m in config["models"]:
        priced = {}
        for kind, prompts, n, new in calls:
            rates = find_rates(throughput, card, rate_backend(backend or kind, train), m["id"])
            for b in generate_calls(prompts, n, gbs) if rates else []:
                _, (mb, mn, _), scaled = decode_step(rates, b, new)
                note = (f" scaled × {b / mb:.3g} (no call of as many sequences measured: an upper bound)" if scaled
                        else " (measured shorter)" if mn < new else "")
                priced[b, new] = f"{b} × {new} ← {mb} × {mn}{note}"
        if priced:
            models.setdefault("\n    ".join(priced[k] for k in sorted(priced)), []).append(m["name"])
    head = "Decoding steps: the study's generate calls (sequences × new tokens) ← the measured call pricing them"
    return [head] + [f"  {', '.join(names)}:\n    {calls}" for calls, names in models.items()]


def report(rows: list[Row], config: dict, problems: int, card: str, backend: str | None, throughput: dict,
           configfiles: list[str], gpus: int = 1, throughput_path: str = "") -> str:
    """The printed plan: one line per rule and model, subtotals per rule, total, wall-clock on
    ``gpus`` GPUs, assumptions."""
    train, evaluate = config["train"], config["evaluate"]
    backends = backend or f"train {train['backend']}, evaluate {evaluate['backend']}"
    cells = len(config["objectives"]) * len(config["seeds"])
    out = [f"GPU cost of {' + '.join(configfiles)} on one {card} ({backends}; upper bound, see --help)",
           f"grid: {len(config['models'])} models × {len(config['objectives'])} objectives × {len(config['seeds'])} "
           f"seeds = {len(config['models']) * cells} cells; {train['steps']} steps of {train['prompts_per_step']} × "
           f"{train['rollouts_per_prompt']} rollouts; test ≈ {problems} problems × (greedy + {evaluate['n']} "
           f"samples) of ≤ {evaluate['max_new_tokens']} tokens, each evaluation in "
           f"{shard_count(problems, evaluate['shard_size'])} shard jobs of ≤ {evaluate['shard_size']} problems "
           "(evaluate.shard_size)", "",
           f"{'rule':14s} {'model (objectives)':32s} {'jobs':>4s} {'GPU-h/job':>10s} {'GPU-h':>9s}  largest phases"]
    for r in rows:
        if r.phases is None:
            out.append(f"{r.rule:14s} {r.label:32s} {r.jobs:4d} {'unmeasured':>10s} {'-':>9s}  {r.missing}")
            continue
        total = sum(r.phases.values())
        top = sorted(r.phases.items(), key=lambda kv: -kv[1])[:3]
        out.append(f"{r.rule:14s} {r.label:32s} {r.jobs:4d} {r.job_hours:10.2f} {r.hours:9.1f}  "
                   + ", ".join(f"{k} {v / total:.0%}" for k, v in top))
    out.append("")
    for rule in dict.fromkeys(r.rule for r in rows):
        mine = [r for r in rows if r.rule == rule]
        measured = [r.hours for r in mine if r.hours is not None]
        gap = len(mine) - len(measured)
        out.append(f"{rule:14s} {sum(r.jobs for r in mine):4d} jobs "
                   + (f"{sum(measured):9.1f} GPU-h" if measured else f"{'unmeasured':>15s}")
                   + (f"  (+ {gap} unmeasured model{'s' * (gap > 1)})" if gap and measured else ""))
    hours = sum(r.hours for r in rows if r.hours is not None)
    gaps = [r for r in rows if r.hours is None]
    if len(gaps) == len(rows):
        out.append(f"{'total':14s} {sum(r.jobs for r in rows):4d} jobs {'unmeasured':>15s}")
    else:
        out.append(f"{'total':14s} {sum(r.jobs for r in rows):4d} jobs {hours:9.1f} GPU-h = {hours / 24:.1f} days on one "
                   "GPU" + (f"; INCOMPLETE: {sum(r.jobs for r in gaps)} jobs unmeasured" if gaps else ""))
        out.append(wall_clock_line(rows, gpus))
    out.append(disk_line(config, throughput, gpus))
    out.append(host_memory_line(config, throughput))
    out += ["", *decoding_lines(config, problems, throughput, card, backend),
            f"Rates from {throughput_path or 'the given measurements'}:"]
    kinds = {rate_backend(backend or k, train) for k in (train["backend"], evaluate["backend"])}
    found = [find_rates(throughput, card, k, m["id"]) for k in sorted(kinds) for m in config["models"]]
    out += [f"  {s}" for s in dict.fromkeys([p for r in found if r for p in r.source.splitlines()]
                                            + [f"grading: {throughput['grading']['source']}"])]
    return "\n".join(out)


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(prog="python -m nsr_study plan",
                                 description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configfile", action="append", required=True,
                    help="config file; repeat to overlay (e.g. config/config.yaml then an overlay)")
    ap.add_argument("--card", default=None, help="card of the measurements to use (default: the only one measured)")
    ap.add_argument("--backend", choices=["hf", "hf-compiled", "vllm"], default=None,
                    help="cost every rule with this backend (default: train.backend / evaluate.backend; hf is "
                         "hf-compiled with train.hf_compiled)")
    ap.add_argument("--test-problems", type=int, default=None,
                    help="test problems of all test sets (default: from the data and benchmarks config)")
    ap.add_argument("--gpus", type=int, default=1, help="GPUs of the node: the wall-clock of the DAG's jobs on them")
    ap.add_argument("--schema", default="workflow/schemas/config.schema.yaml", help="config schema (run from the repo root)")
    ap.add_argument("--throughput", default=str(THROUGHPUT),
                    help="measured throughputs (default: the package's; bench/gpu_check.sh writes one)")
    args = ap.parse_args(argv)
    if args.gpus < 1:
        ap.error(f"--gpus: {args.gpus}; the study needs at least one GPU")
    for f in (*args.configfile, args.schema, args.throughput):
        if not Path(f).is_file():
            ap.error(f"{f}: file not found (run from the repository root, or pass its path)")
    try:
        throughput = load_throughput(args.throughput)
        try:
            card = chosen_card(throughput, args.card)
        except PlanError as e:  # a usage error: argparse's message and exit status
            ap.error(str(e))
        config = load_config(args.configfile, args.schema)
        problems = args.test_problems or count_all_test_problems(config)
    except (ConfigError, PlanError) as e:
        sys.exit(str(e))
    rows = study_rows(config, problems, throughput, card, args.backend)
    print(report(rows, config, problems, card, args.backend, throughput, args.configfile, args.gpus, args.throughput))
