"""Grading of judge prompts that a benchmark renders itself (MT-Bench's `[[rating]]` and `[[A]]/[[B]]/[[C]]`
prompts, the safety prompts): the benchmark owns the template, the judge only turns a rendered prompt into a number.

- `rate`: single-answer grading on an integer scale (MT-Bench: 1-10). Text judges parse `[[rating]]`; local judges
  take the expected rating over the constrained rating tokens. NaN = the judge's answer could not be parsed.
- `choose`: one pairwise verdict in the alpaca_eval convention (1.0 = the answer shown first, 2.0 = the second,
  1.5 = tie). One order only: benchmarks render both orders and average them (`average_orders`).
"""

from __future__ import annotations

import json
import logging
import math
import re
from typing import Any, Protocol, runtime_checkable

from alignrepro.io import stable_hash
from alignrepro.judges.base import Judgment, last_judgments

log = logging.getLogger(__name__)
Messages = list[dict[str, str]]

# FastChat's own patterns (llm_judge/common.py): "[[8]]", then the looser "[8]" as a fallback.
_RATING = re.compile(r"\[\[(\d+\.?\d*)\]\]")
_RATING_LOOSE = re.compile(r"\[(\d+\.?\d*)\]")
VERDICTS = {"[[A]]": 1.0, "[[B]]": 2.0, "[[C]]": 1.5}


def parse_rating(text: str, scale: tuple[int, int] = (1, 10)) -> float:
    """The `[[rating]]` in a judge's answer, NaN when absent or outside the scale (never a silent 0)."""
    m = _RATING.search(text) or _RATING_LOOSE.search(text)
    if not m:
        return math.nan
    value = float(m.group(1))
    return value if scale[0] <= value <= scale[1] else math.nan


def parse_verdict(text: str) -> float:
    """MT-Bench pairwise verdict: [[A]] -> 1.0, [[B]] -> 2.0, [[C]] (tie) -> 1.5; NaN if none or several differ."""
    found = {v for k, v in VERDICTS.items() if k in text}
    return found.pop() if len(found) == 1 else math.nan


def average_orders(first: list[float], swapped: list[float]) -> list[float]:
    """Verdicts on (x, y) and on (y, x) mapped back (p -> 3 - p) and averaged; NaN in either order gives NaN."""
    if len(first) != len(swapped):
        raise ValueError(f"{len(first)} verdicts in one order but {len(swapped)} in the other")
    return [(a + 3.0 - b) / 2.0 for a, b in zip(first, swapped, strict=True)]


@runtime_checkable
class GradingJudge(Protocol):
    id: str
    heuristic: bool
    settings: dict[str, Any]

    def rate(self, prompts: list[Messages], scale: tuple[int, int] = (1, 10)) -> list[float]: ...

    def choose(self, prompts: list[Messages]) -> list[float]: ...


def grade_key(judge: Any, kind: str, messages: Messages, extra: dict[str, Any] | None = None) -> str:
    settings = dict(getattr(judge, "settings", {}))
    return stable_hash([judge.id, kind, settings, extra or {}, messages], length=32)


def cached_grades(
    judge: Any,
    kind: str,
    prompts: list[Messages],
    cache: Any | None = None,
    scale: tuple[int, int] = (1, 10),
    chunk_size: int = 64,
) -> list[float]:
    """judge.rate (kind="rate") or judge.choose (kind="choose") over `prompts`, asking only for what `cache`
    (a JudgmentCache) lacks. NaN results are not cached, so a later run asks again."""
    return [j.value for j in cached_grade_judgments(judge, kind, prompts, cache, scale, chunk_size)]


def cached_grade_judgments(
    judge: Any,
    kind: str,
    prompts: list[Messages],
    cache: Any | None = None,
    scale: tuple[int, int] = (1, 10),
    chunk_size: int = 64,
) -> list[Judgment]:
    """As cached_grades, with each grade's answer-token mass, unparsable and truncated flags (local judges)."""
    if kind not in ("rate", "choose"):
        raise ValueError(f"kind must be 'rate' or 'choose', not {kind!r}")

    def ask(batch: list[Messages]) -> list[Judgment]:
        out = judge.rate(batch, scale=scale) if kind == "rate" else judge.choose(batch)
        if len(out) != len(batch):
            raise ValueError(f"{judge.id}.{kind} returned {len(out)} values for {len(batch)} prompts")
        return last_judgments(judge, [float(v) for v in out])

    if cache is None:
        return ask(prompts) if prompts else []
    extra = {"scale": list(scale)} if kind == "rate" else {}
    keys = [grade_key(judge, kind, m, extra) for m in prompts]
    found = cache.get_judgments(keys)
    todo: dict[str, Messages] = {}
    for k, m in zip(keys, prompts, strict=True):
        if k not in found:
            todo.setdefault(k, m)
    log.info("grade cache (%s, %s): %d hits, %d to judge", judge.id, kind, len(keys) - len(todo), len(todo))
    pending = list(todo.items())
    results = dict(found)
    # One call per template (same first message): a local judge encodes a call's shared prefix only once.
    groups: dict[str, list[tuple[str, Messages]]] = {}
    for k, m in pending:
        groups.setdefault(json.dumps(m[:1], sort_keys=True), []).append((k, m))
    chunks = [g[i : i + chunk_size] for g in groups.values() for i in range(0, len(g), chunk_size)]
    for chunk in chunks:
        fresh = dict(zip([k for k, _ in chunk], ask([m for _, m in chunk]), strict=True))
        cache.put_judgments(fresh)
        results.update(fresh)
    return [results[k] for k in keys]
