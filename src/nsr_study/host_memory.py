"""Host memory (CPU RAM) of one GPU job, per model: what ``nsr_study plan`` prints and what the
SLURM profile asks for (``mem_mb``, set per rule and model as ``runtime`` is).

Only the process that reads a model from disk holds its full weights in host memory: a one-GPU
job, or rank 0 of a job of several (``nsr_study.distributed.load_sharded``: the others build the
model on the meta device and receive their shards by broadcast). Rank 0 of a training job holds,
one at a time, the policy's fp32 weights as read (4 B/param; the bf16 reference, 2 B/param, is
read after them), the policy gathered at the end (fp32, 4 B/param, converted tensor by tensor
to the compute dtype before it is written and read back: at most 4 B/param). An evaluation
job's rank 0 reads the model in its compute dtype (bf16: 2 B/param). Every rank adds its own
process: Python with torch, CUDA's host side, a vLLM engine's host structures, the tokenizer
(``RANK_BYTES``, an assumption: no GPU measured it here). At b14a05b every rank read the whole
policy and the reference: 4 ranks × 6 B/param for a GRPO 7B, 183 GB.
"""

from __future__ import annotations

import math

RANK_BYTES = 8 * 10**9  # per rank process, besides the weights read from disk (assumed, see above)
MARGIN = 1.25  # SLURM kills a job past its --mem: ask for a quarter more than the estimate
UNKNOWN_MEM_MB = 64_000  # a model whose parameters no measurement or config states


def train_bytes(parameters: int, ranks: int) -> int:
    """Peak host bytes of a training job: rank 0's largest copy of the weights (4 B/param, the
    fp32 policy read from disk and, at the end, gathered) and every rank's process."""
    return 4 * parameters + ranks * RANK_BYTES


def evaluate_bytes(parameters: int, ranks: int, dtype: str) -> int:
    """Peak host bytes of an evaluation job: rank 0 reads the model in the compute dtype."""
    return (2 if dtype == "bfloat16" else 4) * parameters + ranks * RANK_BYTES


def job_bytes(rule: str, parameters: int, ranks: int, dtype: str) -> int:
    return train_bytes(parameters, ranks) if rule == "train" else evaluate_bytes(parameters, ranks, dtype)


def mem_mb(nbytes: int | None) -> int:
    """SLURM's ``--mem`` in MiB for a job of ``nbytes`` (None: parameters unknown)."""
    return UNKNOWN_MEM_MB if nbytes is None else math.ceil(nbytes * MARGIN / 2**20)


def parameters(config: dict, throughput: dict | None = None) -> dict[str, int | None]:
    """Parameters by model name: a measurement's (nsr_study/throughput.yaml), else the model
    entry's ``parameters``, else None."""
    from nsr_study.rates import THROUGHPUT, load_throughput, model_parameters

    throughput = throughput or load_throughput(THROUGHPUT)
    return {m["name"]: model_parameters(throughput, m["id"]) or m.get("parameters") for m in config["models"]}


def rule_mem_mb(config: dict, throughput: dict | None = None) -> dict[str, dict[str, int]]:
    """{GPU rule: {model name: SLURM mem_mb}} (profiles/slurm leaves the GPU rules' mem_mb to this)."""
    counts, dtype = parameters(config, throughput), config["train"]["dtype"]
    return {rule: {m["name"]: mem_mb(counts[m["name"]] and job_bytes(rule, counts[m["name"]], m["gpus"], dtype))
                   for m in config["models"]} for rule in ("train", "evaluate_base", "evaluate_cell")}
