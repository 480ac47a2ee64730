"""The study's GPU cost before it starts: expected GPU-hours per rule and in total, and the
wall-clock on a node of ``--gpus`` GPUs.

    python -m nsr_study.plan --configfile config/config.yaml [--configfile overlay.yaml]
                             [--card H100-80GB] [--backend hf|vllm] [--gpus 8]

Config files are merged in order as Snakemake merges ``--configfile`` overlays, checked and
completed with the schema's defaults as the Snakefile does, and the whole grid is costed
(``train`` per cell, ``evaluate_base`` per model, ``evaluate_cell`` per cell), whether or not
outputs exist. Rates come from ``throughput.yaml`` beside this module: raw seconds measured
by the bench scripts on a named card and backend. A (card, backend, model) without a
measurement is reported as unmeasured and left out of the total, which then says so.

The wall-clock schedules the DAG's GPU jobs, each on its model's ``gpus`` GPUs (the rules ask
for that many, and ``nsr_study.devices`` gives each job its own): a job starts when that many
GPUs are free, an ``evaluate_cell`` job after its ``train`` job, ``evaluate_base`` beside
training. A job of a model with ``gpus: N`` costs N × its wall-clock in GPU-hours; its rates
in ``throughput.yaml`` are those of the job as configured (N ranks). The CPU jobs (data, tiny models, tables, figures)
take minutes and are not counted.

The model is an upper bound of the configured work at the measured speeds:
- every ``generate`` call runs ``max_new_tokens`` decoding steps (a batch stops only when its
  longest sample stops), each as long as a step of the measured call: HF ``generate`` is
  bound by kernel launches, so its step time is taken as independent of the batch (measured
  at one batch size; the output names the batch sizes this assumption covers);
- every sample is kept for the update and every response has ``max_new_tokens`` tokens;
  log-prob and update time scale with prompt + response tokens (prompts as long as the
  measurement's);
- grading runs at the lower end of bench/grading.py's rate while the job holds the GPU;
- model loading, CUDA warm-up (~30 s per job) and checkpoints are not counted.
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import jsonschema
import yaml

from nsr_study.config import ConfigError, load_config, objective_train

THROUGHPUT = resources.files("nsr_study") / "throughput.yaml"

# Source rows of the hub test splits we know (the schema's default hub id); other hub ids
# need --test-problems.
HUB_TEST_ROWS = {"DigitalLearningGmbH/MATH-lighteval": 5000, "TianHongZXY/AIME2025": 30, "TianHongZXY/amc23": 40,
                 "HuggingFaceH4/MATH-500": 500}

_POSITIVE = {"type": "number", "exclusiveMinimum": 0}
_COUNT = {"type": "integer", "minimum": 1}
THROUGHPUT_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["grading", "generation"],
    "properties": {
        "grading": {
            "type": "object", "additionalProperties": False, "required": ["answers_per_s_per_worker", "source"],
            "properties": {"answers_per_s_per_worker": _POSITIVE, "source": {"type": "string", "minLength": 1}},
        },
        "generation": {"type": "array", "items": {
            "type": "object", "additionalProperties": False,
            "required": ["card", "backend", "models", "software", "source", "batch", "prompt_tokens", "new_tokens",
                         "seconds"],
            "properties": {
                "card": {"type": "string", "minLength": 1},
                "backend": {"enum": ["hf", "vllm"]},
                "shape": {"type": "string"},
                "parameters": _COUNT,
                "models": {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}},
                "software": {"type": "string", "minLength": 1},
                "source": {"type": "string", "minLength": 1},
                "batch": _COUNT, "prompt_tokens": _COUNT, "new_tokens": _COUNT,
                "seconds": {"type": "object", "additionalProperties": False,
                            "required": ["rollout", "logprob", "update"],
                            "properties": {"rollout": _POSITIVE, "logprob": _POSITIVE, "update": _POSITIVE}},
            },
        }},
    },
}


class PlanError(ValueError):
    """A throughput file or request the plan cannot use."""


# ---------------------------------------------------------------- rates


@dataclass(frozen=True)
class Rates:
    """Speeds of one model on one card and backend, derived from one measured training step."""

    decode_step_s: float  # seconds per decoding step of a generate call
    decode_batch: int  # sequences per call in the measurement
    forward_s_per_token: float  # π_old log-probs (no gradient), per prompt + response token
    update_s_per_token: float  # forward + backward + optimizer steps, per prompt + response token
    prompt_tokens: int  # prompt length of the measurement, assumed for the study's prompts
    source: str


def rates_from(entry: dict) -> Rates:
    """Rates from one ``generation`` entry of the throughput file: the rollout's seconds per
    decoding step, and the log-prob and update seconds per token of the step's sequences."""
    s = entry["seconds"]
    tokens = entry["batch"] * (entry["prompt_tokens"] + entry["new_tokens"])
    return Rates(decode_step_s=s["rollout"] / entry["new_tokens"], decode_batch=entry["batch"],
                 forward_s_per_token=s["logprob"] / tokens, update_s_per_token=s["update"] / tokens,
                 prompt_tokens=entry["prompt_tokens"],
                 source=f"{entry['card']}, {entry['backend']}, {entry['software']}: {entry['source']}")


def _line(node, path) -> int:
    """1-based line of the YAML node at ``path`` (or of its deepest existing ancestor)."""
    for key in path:
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == key), node)
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
    return node.start_mark.line + 1


def load_throughput(path) -> dict:
    """The throughput file, checked: every problem is reported at once with its line and field."""
    text = Path(path).read_text()
    try:
        data, root = yaml.safe_load(text), yaml.compose(text)
    except yaml.YAMLError as e:
        raise PlanError(f"{path}: not valid YAML: {e}") from e
    errors = [f"{path}:{_line(root, e.absolute_path)}: {e.json_path.removeprefix('$.')}: {e.message}"
              for e in jsonschema.Draft202012Validator(THROUGHPUT_SCHEMA).iter_errors(data)]
    if not errors:
        seen = {}
        for i, entry in enumerate(data["generation"]):
            for model in entry["models"]:
                key = (entry["card"], entry["backend"], model)
                if key in seen:
                    errors.append(f"{path}:{_line(root, ['generation', i])}: generation[{i}]: {key} is measured "
                                  f"in generation[{seen[key]}] already")
                seen[key] = i
    if errors:
        raise PlanError("invalid throughput file:\n  " + "\n  ".join(errors))
    return data


def model_parameters(throughput: dict, model_id: str) -> int | None:
    """Parameters of a model, from any measurement of its shape that states them."""
    return next((e["parameters"] for e in throughput["generation"] if model_id in e["models"] and "parameters" in e),
                None)


def find_rates(throughput: dict, card: str, backend: str, model_id: str) -> Rates | None:
    for entry in throughput["generation"]:
        if entry["card"] == card and entry["backend"] == backend and model_id in entry["models"]:
            return rates_from(entry)
    return None


# ---------------------------------------------------------------- the cost model (pure)


def prompts_per_call(n: int, batch_size: int) -> int:
    """Prompts per HF ``generate`` call: ``batch_size`` sequences of ``n`` samples each, at
    least one prompt (``rollout.HFBackend`` batches with it; here, free of torch, so that the
    Snakefile can cost rules)."""
    return max(1, batch_size // n)


def generate_calls(prompts: int, n: int, batch_size: int) -> list[int]:
    """Sequences in each HF ``generate`` call for ``prompts`` prompts × ``n`` samples (the
    HFBackend's chunking)."""
    per_call = prompts_per_call(n, batch_size)
    return [min(per_call, prompts - start) * n for start in range(0, prompts, per_call)]


def generate_seconds(prompts: int, n: int, batch_size: int, new_tokens: int, rates: Rates) -> float:
    """Every call runs ``new_tokens`` decoding steps of the measured length."""
    return len(generate_calls(prompts, n, batch_size)) * new_tokens * rates.decode_step_s


def grading_seconds(answers: int, workers: int, answers_per_s_per_worker: float) -> float:
    return answers / (workers * answers_per_s_per_worker)


def validation_count(steps: int, every: int) -> int:
    """Validations in one training run: step 0, every ``every`` steps, and the last step."""
    return 1 + steps // every + (1 if steps % every else 0)


def train_seconds(t: dict, val_size: int, workers: int, grade_rate: float, rates: Rates) -> dict[str, float]:
    """Seconds of one training job by phase. ``t`` is the config's ``train`` section."""
    n, prompts, new = t["rollouts_per_prompt"], t["prompts_per_step"], t["max_new_tokens"]
    sequences = prompts * n
    tokens = sequences * (rates.prompt_tokens + new)
    gbs = t["generation_batch_size"]
    steps = t["steps"]
    val = generate_seconds(val_size, 1, gbs, new, rates) + grading_seconds(val_size, workers, grade_rate)
    k = t["val_samples"]  # the sampled validation pass rate
    val += generate_seconds(val_size, k, gbs, new, rates) + grading_seconds(val_size * k, workers, grade_rate)
    return {
        "rollout": steps * generate_seconds(prompts, n, gbs, new, rates),
        "grading": steps * grading_seconds(sequences, workers, grade_rate),
        # π_old, and the reference model's forward pass where this cell has a KL loss
        "logprob": steps * tokens * rates.forward_s_per_token * (2 if t["kl_coef"] else 1),
        "update": steps * tokens * rates.update_s_per_token,
        "validation": validation_count(steps, t["val_every"]) * val,
    }


def evaluate_seconds(e: dict, problems: int, generation_batch_size: int, workers: int, grade_rate: float,
                     rates: Rates) -> dict[str, float]:
    """Seconds of one evaluation by phase: greedy answers, ``n`` samples per problem, the
    greedy responses' entropies (one forward), grading. ``e`` is the ``evaluate`` section."""
    new, n = e["max_new_tokens"], e["n"]
    return {
        "greedy": generate_seconds(problems, 1, generation_batch_size, new, rates),
        "sampled": generate_seconds(problems, n, generation_batch_size, new, rates),
        "entropy": problems * (rates.prompt_tokens + new) * rates.forward_s_per_token,
        "grading": grading_seconds(problems * (1 + n), workers, grade_rate),
    }


@dataclass
class Row:
    """One rule for one model: ``jobs`` jobs, each taking ``phases`` (seconds by phase), or
    unmeasured (``phases`` None, ``missing`` says what is missing). Training rows are per group
    of ``objectives`` with the same settings (``train.per_objective`` can make them differ)."""

    rule: str
    model: str
    jobs: int
    phases: dict[str, float] | None
    missing: str = ""
    objectives: tuple[str, ...] = ()
    gpus: int = 1  # per job: the model's ranks; ``phases`` are wall seconds
    shards: int = 1  # jobs per evaluation (its shards of test problems)

    @property
    def label(self) -> str:
        return f"{self.model} {','.join(self.objectives)}" if self.objectives else self.model

    @property
    def job_hours(self) -> float | None:
        """GPU-hours of one job: its wall-clock × its GPUs."""
        return None if self.phases is None else self.gpus * sum(self.phases.values()) / 3600

    @property
    def hours(self) -> float | None:
        return None if self.phases is None else self.jobs * self.job_hours


def objective_groups(train: dict, objectives: list[str]) -> list[tuple[str, ...]]:
    """The objectives in groups that train with the same settings (``train.per_objective``
    applied), in config order: each group costs the same per cell."""
    groups: dict[str, list[str]] = {}
    for o in objectives:
        groups.setdefault(json.dumps(objective_train(train, o), sort_keys=True), []).append(o)
    return [tuple(g) for g in groups.values()]


def study_rows(config: dict, problems: int, throughput: dict, card: str, backend: str | None = None) -> list[Row]:
    """One Row per (rule, model) of the configured grid, training rows per group of objectives
    with the same settings, evaluation rows per shard (``shard_count``: each shard job costs as
    the largest shard); ``backend`` overrides the config's train and evaluate backends."""
    t, e, workers = config["train"], config["evaluate"], config["grading"]["workers"]
    grade_rate = throughput["grading"]["answers_per_s_per_worker"]
    seeds = len(config["seeds"])
    cells = len(config["objectives"]) * seeds
    shards = shard_count(problems, e["shard_size"])
    largest = -(-problems // shards)
    rows = []
    for rule, jobs, kind in (("train", cells, t["backend"]), ("evaluate_base", shards, e["backend"]),
                             ("evaluate_cell", cells * shards, e["backend"])):
        kind = backend or kind
        for m in config["models"]:
            rates = find_rates(throughput, card, kind, m["id"])
            if rates is None:
                rows.append(Row(rule, m["name"], jobs, None, f"no {kind} measurement of {m['id']} on {card}",
                                shards=1 if rule == "train" else shards, gpus=m["gpus"]))
            elif rule == "train":
                for group in objective_groups(t, config["objectives"]):
                    phases = train_seconds(objective_train(t, group[0]), config["data"]["val_size"], workers,
                                           grade_rate, rates)
                    rows.append(Row(rule, m["name"], len(group) * seeds, phases, objectives=group, gpus=m["gpus"]))
            else:  # evaluation shares train.generation_batch_size (eval_config in workflow/rules/common.smk)
                rows.append(Row(rule, m["name"], jobs, evaluate_seconds(e, largest, t["generation_batch_size"],
                                                                        workers, grade_rate, rates), shards=shards,
                                gpus=m["gpus"]))
    return rows


# ---------------------------------------------------------------- disk (pure)

CHECKPOINT_BYTES_PER_PARAMETER = 12  # fp32 weights + AdamW's two fp32 moments (nsr_study.checkpoint)
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}  # the policy is saved in the compute dtype


def disk_bytes(cells: list[tuple[int, int]], dtype: str, keep_checkpoint: bool, gpus: int) -> dict[str, float]:
    """Bytes the training outputs need for ``cells`` [(cells, parameters) per model]: ``at_rest``
    once the study is done (every cell's policy, plus its last checkpoint with
    ``keep_checkpoint``) and ``peak``, an upper bound while it runs: ``gpus`` training jobs of the
    largest model at once, each writing a checkpoint beside its previous one (two briefly).
    Evaluation outputs, logs and the models' own downloads are not counted (megabytes, and the
    hub cache)."""
    policies = sum(c * p * DTYPE_BYTES[dtype] for c, p in cells)
    checkpoints = sum(c * p * CHECKPOINT_BYTES_PER_PARAMETER for c, p in cells)
    sizes = sorted((p * CHECKPOINT_BYTES_PER_PARAMETER for c, p in cells for _ in range(c)), reverse=True)
    writing = sum(sizes[:gpus])
    if keep_checkpoint:
        return {"policies": policies, "checkpoints": checkpoints, "at_rest": policies + checkpoints,
                "peak": policies + checkpoints + writing}
    return {"policies": policies, "checkpoints": 0, "at_rest": policies, "peak": policies + 2 * writing}


def disk_line(config: dict, throughput: dict, gpus: int) -> str:
    """The plan's disk line for the configured grid and ``train.keep_checkpoint``."""
    cells = len(config["objectives"]) * len(config["seeds"])
    counts = [(cells, model_parameters(throughput, m["id"])) for m in config["models"]]
    unknown = [m["id"] for m, (_, p) in zip(config["models"], counts) if p is None]
    t = config["train"]
    d = disk_bytes([c for c in counts if c[1] is not None], t["dtype"], t["keep_checkpoint"], gpus)
    gb = lambda b: f"{b / 1e9:,.0f} GB"  # noqa: E731
    line = (f"{'disk':14s} at rest {gb(d['at_rest'])} (policies in {t['dtype']} {gb(d['policies'])}, checkpoints "
            f"{gb(d['checkpoints'])}: train.keep_checkpoint {str(t['keep_checkpoint']).lower()}), peak {gb(d['peak'])} "
            f"with {gpus} training job{'s' * (gpus > 1)} writing checkpoints at once")
    return line + (f"; INCOMPLETE: parameters unknown for {', '.join(unknown)}" if unknown else "")


# ---------------------------------------------------------------- wall-clock on N GPUs (pure)


@dataclass(frozen=True)
class Job:
    """One GPU job of the DAG: its seconds, the jobs (indices) that must end before it starts,
    and the GPUs it holds at once."""

    seconds: float
    after: tuple[int, ...] = ()
    gpus: int = 1


def chains(jobs: list[Job]) -> list[float]:
    """Each job's seconds plus the longest chain of jobs waiting for it: the least time from its
    start to the end of the study."""
    waiting = [[] for _ in jobs]
    for i, job in enumerate(jobs):
        for j in job.after:
            waiting[j].append(i)
    out: list[float | None] = [None] * len(jobs)

    def chain(i: int) -> float:
        if out[i] is None:
            out[i] = jobs[i].seconds + max((chain(k) for k in waiting[i]), default=0.0)
        return out[i]

    return [chain(i) for i in range(len(jobs))]


def list_schedule(jobs: list[Job], gpus: int) -> float:
    """Seconds from the first start to the last end when ``gpus`` GPUs run ``jobs`` as a list
    schedule: whenever GPUs are free, they start the ready job (every job it waits for has
    ended, and it needs no more GPUs than are free) with the longest chain ahead of it
    (``chains``; ties: the first listed), the rule that keeps long chains from starting last.
    Snakemake does not know job durations, so its own order may differ; ``schedule_bounds``
    gives the range of every order that never idles a GPU while a job is ready."""
    wide = [i for i, j in enumerate(jobs) if j.gpus > gpus]
    if wide:
        raise PlanError(f"a job needs {jobs[wide[0]].gpus} GPUs at once, the node has {gpus}: raise --gpus")
    priority = chains(jobs)
    end: dict[int, float] = {}
    free = [0.0] * gpus  # when each GPU is next free
    pending = list(range(len(jobs)))
    while pending:
        t = min(free)
        idle = [k for k, f in enumerate(free) if f <= t]
        ready = [i for i in pending
                 if jobs[i].gpus <= len(idle) and all(end.get(j, math.inf) <= t for j in jobs[i].after)]
        if not ready:  # the idle GPUs wait for the next job to end
            later = min(e for e in [*end.values(), *free] if e > t)
            free = [max(f, later) for f in free]
            continue
        i = max(ready, key=lambda i: (priority[i], -i))
        pending.remove(i)
        end[i] = t + jobs[i].seconds
        for k in idle[: jobs[i].gpus]:
            free[k] = end[i]
    return max(end.values(), default=0.0)


def schedule_bounds(jobs: list[Job], gpus: int) -> tuple[float, float | None]:
    """(lower, upper) wall-clock seconds: no order beats the larger of the GPU-seconds per GPU
    W/N and the longest chain C; no list schedule of one-GPU jobs takes longer than
    W/N + (1 − 1/N)·C (Graham's bound: whenever a GPU of such a schedule idles, a job of one
    chain of the DAG is running). Jobs on several GPUs can leave GPUs idle while a wide job
    waits, so there the upper bound is None."""
    work, longest = sum(j.seconds * j.gpus for j in jobs), max(chains(jobs), default=0.0)
    upper = work / gpus + (1 - 1 / gpus) * longest if all(j.gpus == 1 for j in jobs) else None
    return max(work / gpus, longest), upper


def study_jobs(rows: list[Row]) -> list[Job]:
    """The GPU jobs of ``study_rows``' grid: per model, each shard of a cell's ``evaluate_cell``
    waits for the cell's ``train`` job; the shards of ``evaluate_base`` wait for none (they run
    beside training). An unmeasured job counts 0 s (the plan then says it is incomplete)."""
    seconds = lambda r: (r.job_hours or 0.0) * 3600 / r.gpus  # noqa: E731  (wall seconds)
    evals = {(r.rule, r.model): r for r in rows if r.rule != "train"}
    jobs: list[Job] = []
    for model in dict.fromkeys(r.model for r in rows):
        cell = evals["evaluate_cell", model]
        for r in (r for r in rows if r.rule == "train" and r.model == model):  # one row per objective group
            trains = range(len(jobs), len(jobs) + r.jobs)
            jobs += [Job(seconds(r), gpus=r.gpus) for _ in trains]
            jobs += [Job(seconds(cell), (t,), cell.gpus) for t in trains for _ in range(cell.shards)]
        base = evals["evaluate_base", model]
        jobs += [Job(seconds(base), gpus=base.gpus) for _ in range(base.shards)]
    return jobs


# ---------------------------------------------------------------- the configured study


def count_test_problems(data: dict) -> int:
    """Test problems the data stage samples: ``test_fraction`` of the source's test rows
    (largest-remainder allocation keeps the total, rows without a gold are few)."""
    if data["source"] == "synthetic":
        rows = data["synthetic"]["n_test"]
    elif data["source"] == "local":
        import pandas as pd

        path = Path(data["local"]["test"])
        rows = len(pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_json(path, lines=path.suffix == ".jsonl"))
    elif data["hub"]["id"] in HUB_TEST_ROWS:
        rows = HUB_TEST_ROWS[data["hub"]["id"]]
    else:
        raise PlanError(f"data.hub.id: the test split size of {data['hub']['id']} is unknown here; pass --test-problems")
    return round(rows * data["test_fraction"])


def count_benchmark_problems(benchmarks: list[dict]) -> int:
    """Problems of the test sets besides ``math`` (config ``benchmarks``), read whole. Priced with
    the evaluate section's n and max_new_tokens (an upper bound where a set sets lower ones)."""
    rows = 0
    for b in benchmarks[1:]:
        if "local" in b:
            import pandas as pd

            path = Path(b["local"])
            rows += len(pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_json(path, lines=path.suffix == ".jsonl"))
        elif b["hub"]["id"] in HUB_TEST_ROWS:
            rows += HUB_TEST_ROWS[b["hub"]["id"]]
        else:
            raise PlanError(f"benchmarks: the size of {b['hub']['id']} is unknown here; pass --test-problems")
    return rows


def count_all_test_problems(config: dict) -> int:
    """Test problems of one evaluation: the sampled MATH test set and every other test set."""
    return count_test_problems(config["data"]) + count_benchmark_problems(config["benchmarks"])


def shard_count(problems: int, shard_size: int) -> int:
    """Shards of one evaluation: ``problems`` test problems in shards of at most ``shard_size``."""
    return max(1, -(-problems // shard_size))


def eval_shards(config: dict) -> int:
    """The workflow's shards per evaluation, from the test problems the config samples
    (``count_all_test_problems``); one shard where that count is unknown (another hub dataset).
    The shards split the actual rows (``evaluate.shard_rows``), whatever their exact number."""
    try:
        return shard_count(count_all_test_problems(config), config["evaluate"]["shard_size"])
    except PlanError:
        return 1


# SLURM runtime of a GPU job: the plan's estimate (an upper bound of the work, without model
# loading and warm-up) times RUNTIME_MARGIN plus RUNTIME_SLACK_MIN minutes; a job whose model has
# no measurement on any card gets UNMEASURED_MIN.
RUNTIME_MARGIN, RUNTIME_SLACK_MIN, UNMEASURED_MIN = 1.5, 15, 720


def rule_minutes(config: dict, throughput: dict | None = None) -> dict[str, dict[str, int]]:
    """{GPU rule: {model: SLURM runtime in minutes}}: the longest job of that rule and model on
    any measured card and backend (the slowest is HF's; vLLM has no stored measurement yet, and
    decodes faster), with the margin above; the workflow sets each GPU rule's ``runtime``
    resource from it (profiles/slurm)."""
    throughput = throughput or load_throughput(THROUGHPUT)
    try:
        problems = count_all_test_problems(config)
    except PlanError:  # the workflow's one shard (eval_shards) of a MATH-sized guess
        problems = HUB_TEST_ROWS["DigitalLearningGmbH/MATH-lighteval"]
        config = config | {"evaluate": config["evaluate"] | {"shard_size": problems}}
    cards = sorted({entry["card"] for entry in throughput["generation"]})
    hours: dict[str, dict[str, float]] = {}
    for card in cards:
        for r in (r for backend in ("hf", "vllm") for r in study_rows(config, problems, throughput, card, backend)):
            known = hours.setdefault(r.rule, {}).setdefault(r.model, 0.0)
            if r.job_hours is not None:
                hours[r.rule][r.model] = max(known, r.job_hours)
    return {rule: {m: math.ceil(h * 60 * RUNTIME_MARGIN + RUNTIME_SLACK_MIN) if h else UNMEASURED_MIN
                   for m, h in by_model.items()} for rule, by_model in hours.items()}


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


def report(rows: list[Row], config: dict, problems: int, card: str, backend: str | None, throughput: dict,
           configfiles: list[str], gpus: int = 1) -> str:
    """The printed plan: one line per rule and model, subtotals per rule, total, wall-clock on
    ``gpus`` GPUs, assumptions."""
    t, e = config["train"], config["evaluate"]
    backends = backend or f"train {t['backend']}, evaluate {e['backend']}"
    cells = len(config["objectives"]) * len(config["seeds"])
    out = [f"GPU cost of {' + '.join(configfiles)} on one {card} ({backends}; upper bound, see --help)",
           f"grid: {len(config['models'])} models × {len(config['objectives'])} objectives × {len(config['seeds'])} "
           f"seeds = {len(config['models']) * cells} cells; {t['steps']} steps of {t['prompts_per_step']} × "
           f"{t['rollouts_per_prompt']} rollouts; test ≈ {problems} problems × (greedy + {e['n']} samples) of ≤ "
           f"{e['max_new_tokens']} tokens, each evaluation in {shard_count(problems, e['shard_size'])} shard jobs of ≤ "
           f"{e['shard_size']} problems (evaluate.shard_size)", "",
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
    batches = sorted({b for prompts, n in ((t["prompts_per_step"], t["rollouts_per_prompt"]),
                                           (config["data"]["val_size"], 1), (problems, 1), (problems, e["n"]))
                      for b in generate_calls(prompts, n, t["generation_batch_size"])})
    measured = sorted({entry["batch"] for entry in throughput["generation"] if entry["card"] == card})
    out += ["", f"Decoding steps measured at batch {', '.join(map(str, measured)) or '-'}; the plan's generate calls "
                f"have {', '.join(map(str, batches))} sequences (step time taken as batch-independent).",
            "Sources:"]
    out += [f"  {s}" for s in dict.fromkeys(
        [rates_from(entry).source for entry in throughput["generation"] if entry["card"] == card]
        + [f"grading: {throughput['grading']['source']}"])]
    return "\n".join(out)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configfile", action="append", required=True,
                    help="config file; repeat to overlay (e.g. config/config.yaml then an overlay)")
    ap.add_argument("--card", default=None, help="card of the measurements to use (default: the only one measured)")
    ap.add_argument("--backend", choices=["hf", "vllm"], default=None,
                    help="cost every rule with this backend (default: train.backend / evaluate.backend)")
    ap.add_argument("--test-problems", type=int, default=None,
                    help="test problems of all test sets (default: from the data and benchmarks config)")
    ap.add_argument("--gpus", type=int, default=1, help="GPUs of the node: the wall-clock of the DAG's jobs on them")
    ap.add_argument("--schema", default="workflow/schemas/config.schema.yaml", help="config schema (run from the repo root)")
    ap.add_argument("--throughput", default=str(THROUGHPUT), help="measured throughputs (default: the package's)")
    args = ap.parse_args(argv)
    if args.gpus < 1:
        ap.error(f"--gpus: {args.gpus}; the study needs at least one GPU")
    for f in (*args.configfile, args.schema, args.throughput):
        if not Path(f).is_file():
            ap.error(f"{f}: file not found (run from the repository root, or pass its path)")
    try:
        throughput = load_throughput(args.throughput)
        cards = sorted({entry["card"] for entry in throughput["generation"]})
        card = args.card or (cards[0] if len(cards) == 1 else None)
        if card not in cards:
            ap.error(f"--card: {'choose' if card is None else f'{card} has no measurement;'} one of {cards}")
        config = load_config(args.configfile, args.schema)
        problems = args.test_problems or count_all_test_problems(config)
    except (ConfigError, PlanError) as e:
        sys.exit(str(e))
    rows = study_rows(config, problems, throughput, card, args.backend)
    print(report(rows, config, problems, card, args.backend, throughput, args.configfile, args.gpus))


if __name__ == "__main__":
    main()
