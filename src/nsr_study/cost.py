"""The cost model: seconds of each GPU job of the configured grid, by phase, from the measured
rates (``nsr_study.rates``), and the disk its outputs need. Pure functions of the config.

The model is an upper bound of the configured work at the measured speeds:
- every ``generate`` call runs ``max_new_tokens`` decoding steps (a batch stops only when its
  longest sample stops), each as long as a step of the smallest measured call with at least as
  many sequences and new tokens (``decode_step``); a call larger than every measurement is
  scaled from the largest by its number of sequences (the plan names each call's basis);
- every sample is kept for the update and every response has ``max_new_tokens`` tokens;
  log-prob and update time scale with prompt + response tokens (prompts as long as the
  measurement's);
- grading runs at the lower end of bench/grading.py's rate while the job holds the GPU;
- model loading, CUDA warm-up (~30 s per job) and checkpoints are not counted.

A job of a model with ``gpus: N`` costs N × its wall-clock in GPU-hours; its rates in
``throughput.yaml`` are those of the job as configured (N ranks).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from nsr_study.config import objective_train
from nsr_study.rates import THROUGHPUT, PlanError, Rates, find_rates, load_throughput, measured_cards
from nsr_study.synthetic import LONGER_FILE, RARE_FILE

# Source rows of the hub test splits we know (the schema's default hub id); other hub ids
# need --test-problems.
HUB_TEST_ROWS = {"DigitalLearningGmbH/MATH-lighteval": 5000, "TianHongZXY/AIME2025": 30, "TianHongZXY/amc23": 40,
                 "HuggingFaceH4/MATH-500": 500}


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


def decode_step(rates: Rates, sequences: int, new_tokens: int) -> tuple[float, tuple[int, int, float], bool]:
    """Seconds per decoding step of a call of ``sequences`` sequences and ``new_tokens`` steps,
    the measured call (sequences, new tokens, seconds per step) they come from, and whether they
    were scaled. A step takes no less with more sequences or a longer context, so the smallest
    measured call at least as large in both gives an upper bound; without one, the smallest
    with as many sequences, at its longest length; without that, the largest call, scaled by
    ``sequences`` / its sequences (decoding time grows more slowly than the batch: an upper
    bound too)."""
    points = rates.decoding or ((rates.decode_batch, 0, rates.decode_step_s),)
    covering = [p for p in points if p[0] >= sequences and p[1] >= new_tokens]
    if covering:
        return min(covering)[2], min(covering), False
    wider = [p for p in points if p[0] >= sequences]
    if wider:
        p = min(wider, key=lambda p: (-p[1], p[0]))
        return p[2], p, False
    p = max(points)
    return p[2] * sequences / p[0], p, True


def generate_seconds(prompts: int, n: int, batch_size: int, new_tokens: int, rates: Rates) -> float:
    """Every call runs ``new_tokens`` decoding steps, each as long as ``decode_step`` says."""
    return sum(new_tokens * decode_step(rates, b, new_tokens)[0] for b in generate_calls(prompts, n, batch_size))


def grading_seconds(answers: int, workers: int, answers_per_s_per_worker: float) -> float:
    return answers / (workers * answers_per_s_per_worker)


def validation_count(steps: int, every: int) -> int:
    """Validations in one training run: step 0, every ``every`` steps, and the last step."""
    return 1 + steps // every + (1 if steps % every else 0)


def train_seconds(train: dict, val_size: int, workers: int, grade_rate: float, rates: Rates) -> dict[str, float]:
    """Seconds of one training job by phase. ``train`` is the config's ``train`` section."""
    n, prompts, new = train["rollouts_per_prompt"], train["prompts_per_step"], train["max_new_tokens"]
    sequences = prompts * n
    tokens = sequences * (rates.prompt_tokens + new)
    gbs = train["generation_batch_size"]
    steps = train["steps"]
    val = generate_seconds(val_size, 1, gbs, new, rates) + grading_seconds(val_size, workers, grade_rate)
    k = train["val_samples"]  # the sampled validation pass rate
    val += generate_seconds(val_size, k, gbs, new, rates) + grading_seconds(val_size * k, workers, grade_rate)
    return {
        "rollout": steps * generate_seconds(prompts, n, gbs, new, rates),
        "grading": steps * grading_seconds(sequences, workers, grade_rate),
        # π_old, and the reference model's forward pass where this cell has a KL loss
        "logprob": steps * tokens * rates.forward_s_per_token * (2 if train["kl_coef"] else 1),
        "update": steps * tokens * rates.update_s_per_token,
        "validation": validation_count(steps, train["val_every"]) * val,
    }


def evaluate_seconds(evaluate: dict, problems: int, generation_batch_size: int, workers: int, grade_rate: float,
                     rates: Rates) -> dict[str, float]:
    """Seconds of one evaluation by phase: greedy answers, ``n`` samples per problem, the
    greedy responses' entropies (one forward), grading. ``evaluate`` is the ``evaluate`` section."""
    new, n = evaluate["max_new_tokens"], evaluate["n"]
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


def rate_backend(backend: str, train: dict) -> str:
    """The throughput file's backend of a job: ``hf-compiled`` for the HF backend with
    ``train.hf_compiled`` (evaluation shares it), else the backend itself."""
    return "hf-compiled" if backend == "hf" and train.get("hf_compiled") else backend


def study_rows(config: dict, problems: int, throughput: dict, card: str, backend: str | None = None) -> list[Row]:
    """One Row per (rule, model) of the configured grid, training rows per group of objectives
    with the same settings, evaluation rows per shard (``shard_count``: each shard job costs as
    the largest shard); ``backend`` overrides the config's train and evaluate backends."""
    train, evaluate, workers = config["train"], config["evaluate"], config["grading"]["workers"]
    grade_rate = throughput["grading"]["answers_per_s_per_worker"]
    seeds = len(config["seeds"])
    cells = len(config["objectives"]) * seeds
    shards = shard_count(problems, evaluate["shard_size"])
    largest = -(-problems // shards)
    rows = []
    for rule, jobs, kind in (("train", cells, train["backend"]), ("evaluate_base", shards, evaluate["backend"]),
                             ("evaluate_cell", cells * shards, evaluate["backend"])):
        kind = rate_backend(backend or kind, train)
        for m in config["models"]:
            rates = find_rates(throughput, card, kind, m["id"])
            if rates is None:
                rows.append(Row(rule, m["name"], jobs, None, f"no {kind} measurement of {m['id']} on {card}",
                                shards=1 if rule == "train" else shards, gpus=m["gpus"]))
            elif rule == "train":
                for group in objective_groups(train, config["objectives"]):
                    phases = train_seconds(objective_train(train, group[0]), config["data"]["val_size"], workers,
                                           grade_rate, rates)
                    rows.append(Row(rule, m["name"], len(group) * seeds, phases, objectives=group, gpus=m["gpus"]))
            else:  # evaluation shares train.generation_batch_size (eval_config in workflow/rules/common.smk)
                phases = evaluate_seconds(evaluate, largest, train["generation_batch_size"], workers, grade_rate, rates)
                rows.append(Row(rule, m["name"], jobs, phases, shards=shards, gpus=m["gpus"]))
    return rows


# ---------------------------------------------------------------- disk

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


# ---------------------------------------------------------------- the configured study's test problems


def local_rows(path: str) -> int:
    """Rows of a local jsonl/json/parquet file, read as the data stage reads it."""
    from nsr_study.data import read_rows

    return len(read_rows({"path": path}))


def count_test_problems(data: dict) -> int:
    """Test problems the data stage samples: ``test_fraction`` of the source's test rows
    (largest-remainder allocation keeps the total, rows without a gold are few)."""
    if data["source"] == "synthetic":
        rows = data["synthetic"]["n_test"]
    elif data["source"] == "local":
        rows = local_rows(data["local"]["test"])
    elif data["hub"]["id"] in HUB_TEST_ROWS:
        rows = HUB_TEST_ROWS[data["hub"]["id"]]
    else:
        raise PlanError(f"data.hub.id: the test split size of {data['hub']['id']} is unknown here; pass --test-problems")
    return round(rows * data["test_fraction"])


def count_benchmark_problems(benchmarks: list[dict], data: dict) -> int:
    """Problems of the test sets besides ``math`` (config ``benchmarks``), read whole (the demo's
    synthetic sets from ``data.synthetic.n_longer`` / ``n_rare``: the workflow writes them itself). Priced
    with the evaluate section's n and max_new_tokens (an upper bound where a set sets lower ones)."""
    rows = 0
    for b in benchmarks[1:]:
        if b.get("local") == LONGER_FILE and data["source"] == "synthetic":
            rows += data["synthetic"]["n_longer"]
        elif b.get("local") == RARE_FILE and data["source"] == "synthetic":
            rows += data["synthetic"]["n_rare"]
        elif "local" in b:
            rows += local_rows(b["local"])
        elif b["hub"]["id"] in HUB_TEST_ROWS:
            rows += HUB_TEST_ROWS[b["hub"]["id"]]
        else:
            raise PlanError(f"benchmarks: the size of {b['hub']['id']} is unknown here; pass --test-problems")
    return rows


def count_all_test_problems(config: dict) -> int:
    """Test problems of one evaluation: the sampled MATH test set and every other test set."""
    return count_test_problems(config["data"]) + count_benchmark_problems(config["benchmarks"], config["data"])


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
    cards = measured_cards(throughput)
    hours: dict[str, dict[str, float]] = {}
    for card in cards:
        for r in (r for backend in ("hf", "vllm") for r in study_rows(config, problems, throughput, card, backend)):
            known = hours.setdefault(r.rule, {}).setdefault(r.model, 0.0)
            if r.job_hours is not None:
                hours[r.rule][r.model] = max(known, r.job_hours)
    return {rule: {m: math.ceil(h * 60 * RUNTIME_MARGIN + RUNTIME_SLACK_MIN) if h else UNMEASURED_MIN
                   for m, h in by_model.items()} for rule, by_model in hours.items()}
