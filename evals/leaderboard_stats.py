"""The leaderboard's statistics: its ranking, a 95 % interval for every numeric column the score files allow, and
each model's average answer length.

- Ranking (`evals.leaderboard.rank_by`): one of RANKABLE, in that column's better direction; equal values share a
  rank (competition ranking: 1, 2, 2, 4) and are listed by model key; models without a value come last, unranked.
- Intervals: rates (k of n) get Wilson intervals; means over items (MT-Bench ratings, pairwise preferences,
  Harm-Help ratings, answer lengths) a percentile bootstrap over the per-item values of the score file
  (alignrepro.stats.bootstrap_mean_ci, seeded); AlpacaEval keeps its own interval (alpaca_eval's standard error).
  A column with a value but no interval records why in row["no_ci"], never an invented interval.
- Length: whitespace-separated words of each AlpacaEval answer (answers/<key>/alpacaeval.jsonl, field `output`;
  an empty answer counts as 0 words), averaged over the model's answers.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from alignrepro.evals.verifiable.accuracy import wilson
from alignrepro.io import read_jsonl
from alignrepro.stats import bootstrap_mean_ci

DEFAULT_RANK_BY = "mmlu_acc"  # judge-free and run at every tier (MMLU test items from a pinned wheel)
# column -> (label, higher is better); config/schema.yaml's evals.leaderboard.rank_by enum lists the same keys
RANKABLE: dict[str, tuple[str, bool]] = {
    "mmlu_acc": ("MMLU acc %", True),
    "alpacaeval_win_rate": ("AlpacaEval win %", True),
    "mtbench_score": ("MT-Bench 1-10", True),
    "mtbench_pairwise_win_rate": ("MT-Bench pairwise win %", True),
    "harmless_strmatch": ("harmless % (string-match)", True),
    "harmless_judge": ("harmless % (judge)", True),
    "over_refusal": ("over-refusal % (string-match)", False),
    "jailbreak_harmless_strmatch": ("jailbreak harmless % (string-match)", True),
}
# value column -> its interval column (the first five predate this module: their CSV names stay)
CI_KEY = {
    "alpacaeval_win_rate": "alpacaeval_ci95",
    "mtbench_score": "mtbench_score_ci95",
    "mtbench_turn1": "mtbench_turn1_ci95",
    "mtbench_turn2": "mtbench_turn2_ci95",
    "mtbench_pairwise_win_rate": "mtbench_pairwise_win_rate_ci95",
    "mmlu_acc": "mmlu_ci95",
    "harmless_strmatch": "harmless_strmatch_ci95",
    "harmless_judge": "harmless_judge_ci95",
    "harm_help": "harm_help_ci95",
    "over_refusal": "over_refusal_ci95",
    "jailbreak_harmless_strmatch": "jailbreak_harmless_strmatch_ci95",
    "avg_words": "avg_words_ci95",
}
NO_ITEMS = "no per-item values in the score file"


def _num(x: Any) -> float | None:
    if x is None or isinstance(x, bool) or not isinstance(x, int | float) or math.isnan(x):
        return None
    return float(x)


def mean_ci(values: list[Any], seed: int = 0) -> tuple[list[float] | None, str | None]:
    """(bootstrap 95 % interval of the mean, None) or (None, why not); None/NaN items are left out."""
    vals = [v for v in map(_num, values) if v is not None]
    if len(vals) < 2:
        return None, f"n={len(vals)} item{'s' if len(vals) != 1 else ''}"
    return bootstrap_mean_ci(vals, seed=seed), None


def rate_ci(metric: dict[str, Any] | None) -> tuple[list[float] | None, str | None]:
    """Wilson interval of a rate metric {k, n} (in %), else the file's own interval, else why not."""
    if not metric:
        return None, "not in the score file"
    k, n = metric.get("k"), metric.get("n")
    if isinstance(k, int) and isinstance(n, int) and n > 0:
        return wilson(k, n), None
    if metric.get("ci95"):
        return metric["ci95"], None
    return None, "no item counts in the score file"


def mtbench_cis(mt: dict[str, Any], seed: int = 0) -> dict[str, tuple[list[float] | None, str | None]]:
    """Bootstrap intervals of the MT-Bench score, overall and per turn, over the per-(question, turn) ratings."""
    ann = mt.get("annotations")
    if not isinstance(ann, list):
        return dict.fromkeys(("mtbench_score", "mtbench_turn1", "mtbench_turn2"), (None, NO_ITEMS))
    return {
        "mtbench_score": mean_ci([a.get("rating") for a in ann], seed),
        "mtbench_turn1": mean_ci([a.get("rating") for a in ann if a.get("turn") == 1], seed),
        "mtbench_turn2": mean_ci([a.get("rating") for a in ann if a.get("turn") == 2], seed),
    }


def pairwise_ci(pw: dict[str, Any], seed: int = 0) -> tuple[list[float] | None, str | None]:
    """MT-Bench pairwise win rate = mean(preference - 1) x 100 (ties = 1/2): bootstrap over the pairs."""
    ann = pw.get("annotations")
    if not isinstance(ann, list):
        return None, NO_ITEMS
    prefs = [_num(a.get("preference")) for a in ann]
    return mean_ci([100 * (p - 1) for p in prefs if p is not None], seed)


def harm_help_ci(sf: dict[str, Any], seed: int = 0) -> tuple[list[float] | None, str | None]:
    """Harm-Help = mean helpfulness rating on the harmful set: bootstrap over its per-answer ratings."""
    ann = sf.get("annotations")
    if not isinstance(ann, list):
        return None, NO_ITEMS
    return mean_ci([a.get("helpfulness") for a in ann if a.get("eval_set") == "harmful"], seed)


def answer_lengths(path: Path, seed: int = 0) -> dict[str, Any]:
    """Average words per AlpacaEval answer (whitespace split; empty answers count 0) with its bootstrap interval."""
    if not path.is_file():
        return {"avg_words": None, "avg_words_ci95": None, "n_answers": 0, "_why": "no answers file"}
    words = [len(str(r.get("output") or "").split()) for r in read_jsonl(path)]
    ci, why = mean_ci(words, seed)
    avg = sum(words) / len(words) if words else None
    return {"avg_words": avg, "avg_words_ci95": ci, "n_answers": len(words), "_why": why}


def attach_ci(row: dict[str, Any], col: str, ci: list[float] | None, why: str | None) -> None:
    """row[CI_KEY[col]] = ci; a value without an interval records why in row["no_ci"]."""
    row[CI_KEY[col]] = ci
    if ci is None and _num(row.get(col)) is not None:
        row.setdefault("no_ci", {})[col] = why or "no interval in the score file"


def rank_rows(rows: list[dict[str, Any]], rank_by: str) -> list[dict[str, Any]]:
    """Rows sorted by rank_by in its better direction, each with "rank" first (None: no value, listed last)."""
    if rank_by not in RANKABLE:
        raise ValueError(f"rank_by {rank_by!r}: not a rankable column ({', '.join(RANKABLE)})")
    sign = -1.0 if RANKABLE[rank_by][1] else 1.0

    def value(r: dict[str, Any]) -> float | None:
        v = _num(r.get(rank_by))
        return None if v is None else round(v, 9)  # 1e-9: equal rates computed along other paths still tie

    present = sorted((r for r in rows if value(r) is not None), key=lambda r: (sign * value(r), r["model"]))
    missing = sorted((r for r in rows if value(r) is None), key=lambda r: r["model"])
    out, prev, rank = [], None, 0
    for i, r in enumerate(present, 1):
        if value(r) != prev:
            rank, prev = i, value(r)
        out.append({"rank": rank, **{k: v for k, v in r.items() if k != "rank"}})
    out += [{"rank": None, **{k: v for k, v in r.items() if k != "rank"}} for r in missing]
    return out


def rank_sentence(rank_by: str, rows: list[dict[str, Any]]) -> str:
    """What ranks the table, in which direction, and how ties and missing values are placed."""
    label, higher = RANKABLE[rank_by]
    text = (
        f"Ranked by **{label}** (`evals.leaderboard.rank_by: {rank_by}`), {'higher' if higher else 'lower'} is "
        "better; equal values share a rank (listed by model key); models without a value come last, unranked (–). "
        "Ranks follow the point estimates: where two models' intervals overlap, their order is not significant."
    )
    if all(r["rank"] is None for r in rows):
        text += f" **No model has a {label} value**: the table is in model-key order."
    return text
