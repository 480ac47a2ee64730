"""Pure statistics of an evaluation: the unbiased pass@k estimator and means with their
standard errors over problems. Free of torch, so the analysis environment can use them."""

from __future__ import annotations

import math

import numpy as np


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k (Chen et al. 2021): 1 − C(n−c, k)/C(n, k), from n samples with c correct.

    Computed as 1 − Π_{i=n−c+1..n} (1 − k/i), which never forms the huge binomials.
    """
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def ks_for(n: int) -> list[int]:
    """1, 2, 4, … up to n."""
    return [2**i for i in range(int(math.log2(n)) + 1)] if n >= 1 else []


def mean_se(values) -> tuple[float, float]:
    """Mean and its standard error over problems (sample sd / √count; NaN for one problem)."""
    v = np.asarray(values, dtype=float)
    return float(v.mean()), float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else float("nan")


def summarize(problems: list[dict], n: int) -> dict:
    """Greedy accuracy and mean pass@k over ``problems`` (each with greedy_correct and c), each
    with ``<metric>_se``, its standard error over problems: the test set is a sample of
    problems, and this is the uncertainty a single seed's number carries."""
    out = {"problems": len(problems)}
    out["greedy_accuracy"], out["greedy_accuracy_se"] = mean_se([p["greedy_correct"] for p in problems])
    for k in ks_for(n):
        out[f"pass@{k}"], out[f"pass@{k}_se"] = mean_se([pass_at_k(n, p["correct"], k) for p in problems])
    return out
