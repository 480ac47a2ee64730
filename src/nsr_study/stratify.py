"""Stratified sampling by (subject, level) with proportional allocation.

Pure functions on counts and index lists, so the allocation can be checked by hand.
Allocation: each stratum's exact share is ``fraction * n_s``. Every stratum gets
``floor(share)`` (but at least ``min_per_stratum`` when it has rows), and the rows still
missing to reach ``round(fraction * N)`` go to the strata with the largest remainders
(largest-remainder / Hamilton rounding; ties broken by stratum order). Hence every stratum
is within 1 of its exact share, and the total equals the target unless the minimum forced
extra rows.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence

import numpy as np


def allocate(counts: Mapping[Hashable, int], fraction: float, min_per_stratum: int = 1) -> dict:
    """Rows to draw from each stratum; see the module doc for the rule."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    keys = list(counts)
    shares = {k: fraction * counts[k] for k in keys}
    alloc = {k: min(counts[k], max(math.floor(shares[k]), min_per_stratum if counts[k] else 0)) for k in keys}
    missing = round(fraction * sum(counts.values())) - sum(alloc.values())
    by_remainder = sorted(
        (k for k in keys if alloc[k] < counts[k] and shares[k] - alloc[k] > 0),
        key=lambda k: -(shares[k] - alloc[k]),  # stable sort: ties keep stratum order
    )
    for k in by_remainder[: max(missing, 0)]:
        alloc[k] += 1
    return alloc


def stratified_sample(
    strata: Sequence[Hashable],
    fraction: float,
    seed: int,
    min_per_stratum: int = 1,
) -> list[int]:
    """Indices (sorted) of a stratified sample of rows whose stratum labels are ``strata``.

    Deterministic for a seed: strata are visited in sorted order and each draws its rows
    without replacement from one ``numpy`` generator.
    """
    groups: dict[Hashable, list[int]] = {}
    for i, s in enumerate(strata):
        groups.setdefault(s, []).append(i)
    keys = sorted(groups, key=repr)
    alloc = allocate({k: len(groups[k]) for k in keys}, fraction, min_per_stratum)
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for k in keys:
        chosen.extend(rng.choice(groups[k], size=alloc[k], replace=False).tolist())
    return sorted(chosen)
