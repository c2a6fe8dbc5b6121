"""Shared statistics: paired comparisons on the same items, with percentile-bootstrap 95% intervals.

Two models evaluated on the same items are compared through the per-item differences (paired), never through two
independent intervals: the item-to-item variance cancels, so a real difference shows at a smaller sample.

- paired_difference: mean(a - b) over the common items with its percentile-bootstrap CI.
- paired_compare: that, plus the test (exact McNemar for per-item correct/incorrect, the sign test for scores) and
  the minimum detectable effect at that n (alpha .05 two-sided, power .8): from the discordance rate for binary
  items (Connor 1987), from the SD of the differences for scores.
- over_seeds: one row's results over several seeds (mean, t-interval over seeds, n seeds).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

# scipy (binomial test, normal and t quantiles, root finding) is imported where used: the bootstrap alone (the
# leaderboard's) stays as cheap to import as numpy


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


# ---------------------------------------------------------------------------------------------------- paired tests
# alpha .05 two-sided, power .8: the minimum detectable effect (MDE) of every paired comparison
ALPHA, POWER = 0.05, 0.8


def mcnemar_exact(b: int, c: int) -> float:
    """Exact two-sided McNemar test: b items right only on side a, c right only on side b; the binomial test of b
    in the b + c discordant pairs at 1/2 (= 2 P(X <= min(b, c)), capped at 1). 1.0 without discordant pairs."""
    from scipy.stats import binomtest

    if b + c == 0:
        return 1.0
    return float(binomtest(int(b), int(b + c), 0.5).pvalue)


def sign_test(diffs: list[float]) -> dict[str, Any]:
    """Two-sided sign test on paired differences: zeros are dropped, the positives are binomial(n_nonzero, 1/2)."""
    pos, neg = sum(d > 1e-12 for d in diffs), sum(d < -1e-12 for d in diffs)
    return {"n_pos": pos, "n_neg": neg, "n_zero": len(diffs) - pos - neg, "p_value": mcnemar_exact(pos, neg)}


def min_exact_discordant(alpha: float = ALPHA) -> int:
    """The fewest discordant pairs, all one way, the exact two-sided test can call significant: 6 at alpha .05."""
    k = 1
    while 2 * 0.5**k > alpha:
        k += 1
    return k


def mde_paired_binary(n: int, discordance: float, alpha: float = ALPHA, power: float = POWER) -> float | None:
    """Minimum detectable difference of two paired proportions at n items (fraction), by Connor's (1987) McNemar power
    formula n = (z_a sqrt(psi) + z_b sqrt(psi - d^2))^2 / d^2 solved for d, psi = the discordance rate; never below
    the smallest effect the exact test can ever detect (min_exact_discordant / n), which is also the answer when no
    item differs (psi = 0: the data give no rate). None below 4 items (the formula has no solution)."""
    from scipy.optimize import brentq
    from scipy.stats import norm

    za, zb = float(norm.ppf(1 - alpha / 2)), float(norm.ppf(power))
    if n < za * za:
        return None
    floor = min(1.0, min_exact_discordant(alpha) / n)
    psi = min(max(float(discordance), 0.0), 1.0)
    if psi == 0:
        return floor

    def gap(d: float) -> float:
        return math.sqrt(n) * d - za * math.sqrt(psi) - zb * math.sqrt(max(psi - d * d, 0.0))

    d = brentq(gap, 0.0, math.sqrt(psi)) if gap(math.sqrt(psi)) >= 0 else math.sqrt(psi)
    return float(min(1.0, max(d, floor)))


def mde_paired_continuous(n: int, sd_diff: float, alpha: float = ALPHA, power: float = POWER) -> float | None:
    """Minimum detectable mean paired difference at n items: (z_a + z_b) * SD(differences) / sqrt(n) (normal
    approximation). None for fewer than 2 items or no spread (every difference equal: the data give no SD)."""
    from scipy.stats import norm

    if n < 2 or not sd_diff > 0:
        return None
    return float((norm.ppf(1 - alpha / 2) + norm.ppf(power)) * sd_diff / math.sqrt(n))


def _binary_scale(values: list[float]) -> float | None:
    """1 or 100 when every value is 0 or that (a per-item correct/incorrect, in fractions or %), else None."""
    for scale in (1.0, 100.0):
        if values and all(v == 0 or v == scale for v in values):
            return scale
    return None


def paired_compare(a: dict[str, float], b: dict[str, float], n_boot: int = 2000, seed: int = 0, level: float = 0.95,
                   binary: bool | None = None) -> dict[str, Any]:  # fmt: skip
    """paired_difference plus its test and its minimum detectable effect at this n (alpha .05 two-sided, power .8).

    Binary per-item values (0/1 or 0/100; detected unless `binary` says): exact McNemar on the discordant items, MDE
    from the discordance rate (mde_paired_binary). Otherwise: the sign test, MDE from the SD of the differences.
    The MDE is on the values' own scale; `mde_why` says why it is None."""
    d = paired_difference(a, b, n_boot, seed, level)
    common = sorted(set(a) & set(b))
    xa, xb = [a[k] for k in common], [b[k] for k in common]
    scale = _binary_scale(xa + xb) if binary is not False else None
    if binary and scale is None and common:
        raise ValueError("paired_compare(binary=True): per-item values are not all 0/1 (or 0/100)")
    n = len(common)
    if scale is not None:
        only_a = sum(x > y for x, y in zip(xa, xb, strict=True))
        only_b = sum(x < y for x, y in zip(xa, xb, strict=True))
        mde = mde_paired_binary(n, (only_a + only_b) / n) if n else None
        out = {"test": "McNemar exact", "p_value": mcnemar_exact(only_a, only_b), "n_a_only": only_a,
               "n_b_only": only_b, "mde": None if mde is None else mde * scale,
               "mde_basis": f"discordance {only_a + only_b}/{n}"}  # fmt: skip
        why = None if mde is not None else f"{n} item{'' if n == 1 else 's'}: too few for a power calculation"
    else:
        diff = np.asarray(xa, dtype=np.float64) - np.asarray(xb, dtype=np.float64)
        sign = sign_test(diff.tolist())
        sd = float(diff.std(ddof=1)) if n >= 2 else 0.0
        out = {"test": "sign test", "p_value": sign["p_value"], "n_a_only": sign["n_pos"], "n_b_only": sign["n_neg"],
               "mde": mde_paired_continuous(n, sd), "mde_basis": f"SD of differences {sd:.3g}"}  # fmt: skip
        flat = "no item differs" if not np.any(diff) else "every item differs by the same amount"
        why = None if out["mde"] is not None else ("fewer than 2 items" if n < 2 else f"{flat} (SD 0)")
    return d | out | {"mde_why": why, "alpha": ALPHA, "power": POWER}


# ---------------------------------------------------------------------------------------------------- seeds
def _dig(node: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _numeric_keys(result: dict[str, Any]) -> list[str]:
    return [k for k, v in result.items() if isinstance(v, int | float) and not isinstance(v, bool) and k != "seed"]


def over_seeds(results: list[dict[str, Any] | str | Path], keys: list[str] | None = None, level: float = 0.95,
               seed_key: str = "seed") -> dict[str, Any]:  # fmt: skip
    """One row's results over several seeds: per metric the mean, the t-interval over seeds (level), the SD and the
    number of seeds with a value. `results`: per-seed result dicts, or paths of JSON files holding them; `keys`:
    dotted paths into each (default: the numeric top-level fields of the first). A seed without a value for a key is
    left out of that key and counted (n_missing); with one seed the interval is None (why says so)."""
    from scipy.stats import t as student_t

    docs = [json.loads(Path(r).read_text()) if isinstance(r, str | Path) else r for r in results]
    if not docs:
        raise ValueError("over_seeds: no per-seed results")
    keys = keys if keys is not None else _numeric_keys(docs[0])
    seeds = [_dig(d, seed_key) if _dig(d, seed_key) is not None else _dig(d, f"provenance.{seed_key}") for d in docs]
    metrics = {}
    for key in keys:
        vals = [v for v in (_dig(d, key) for d in docs) if isinstance(v, int | float) and math.isfinite(v)]
        n = len(vals)
        mean = float(np.mean(vals)) if vals else None
        sd = float(np.std(vals, ddof=1)) if n >= 2 else None
        ci = None
        if n >= 2:
            half = float(student_t.ppf(1 - (1 - level) / 2, n - 1)) * sd / math.sqrt(n)
            ci = [mean - half, mean + half]
        why = None if ci else ("no seed has a value" if not n else "one seed: no interval over seeds")
        metrics[key] = {"mean": mean, "ci": ci, "sd": sd, "n_seeds": n, "n_missing": len(docs) - n,
                        "values": vals, "why": why}  # fmt: skip
    return {"n_seeds": len(docs), "seeds": seeds, "level": level, "interval": "t over seeds", "metrics": metrics}


def seed_columns(results: list[dict[str, Any] | str | Path], columns: dict[str, str]) -> dict[str, Any]:
    """A table row's columns over seeds (over_seeds): {column}_seeds_mean, {column}_seeds_ci (t-interval; None with
    one seed) and n_seeds. `columns`: table column -> dotted path into each per-seed result."""
    s = over_seeds(results, list(columns.values()))
    out: dict[str, Any] = {"n_seeds": s["n_seeds"], "seeds": s["seeds"]}
    for col, key in columns.items():
        out[f"{col}_seeds_mean"], out[f"{col}_seeds_ci"] = s["metrics"][key]["mean"], s["metrics"][key]["ci"]
    return out
