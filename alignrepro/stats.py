"""Shared statistics: paired comparisons on the same items, with percentile-bootstrap 95% intervals.

Two models evaluated on the same items are compared through the per-item differences (paired), never through two
independent intervals: the item-to-item variance cancels, so a real difference shows at a smaller sample.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def bootstrap_mean_ci(
    values: list[float], n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> list[float] | None:
    """Percentile-bootstrap interval of the mean over items; None for fewer than 2 items."""
    x = np.asarray(values, dtype=np.float64)
    if x.size < 2:
        return None
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    tail = (1 - level) / 2
    return [float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))]


def paired_difference(
    a: dict[str, float], b: dict[str, float], n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> dict[str, Any]:
    """mean(a - b) over the items both have, with its bootstrap interval and the share of items where they differ.
    Items missing on one side are counted, never silently dropped from the report."""
    common = sorted(set(a) & set(b))
    diff = [a[k] - b[k] for k in common]
    ci = bootstrap_mean_ci(diff, n_boot, seed, level)
    return {
        "n": len(common),
        "n_only_one_side": len(set(a) ^ set(b)),
        "mean_a": float(np.mean([a[k] for k in common])) if common else None,
        "mean_b": float(np.mean([b[k] for k in common])) if common else None,
        "diff": float(np.mean(diff)) if diff else None,
        "ci": ci,
        "excludes_zero": bool(ci is not None and (ci[0] > 0 or ci[1] < 0)),
        "n_differ": int(sum(abs(d) > 1e-12 for d in diff)),
    }
