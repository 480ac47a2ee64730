"""The study's wall-clock on a node of N GPUs: the DAG's GPU jobs as a list schedule, with the
bounds that hold for any order Snakemake may pick. Pure functions.

Each job runs on its model's ``gpus`` GPUs (the rules ask for that many, and
``nsr_study.devices`` gives each job its own): a job starts when that many GPUs are free, an
``evaluate_cell`` shard after its ``train`` job, ``evaluate_base`` beside training. The CPU jobs
(data, tiny models, tables, figures) take minutes and are not counted."""

from __future__ import annotations

import math
from dataclasses import dataclass

from nsr_study.cost import Row
from nsr_study.rates import PlanError


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
