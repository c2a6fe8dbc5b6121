"""One-line summaries of a judge card (evals/judges/card.py) for the head of a paper's tables: every judged number
names its judge and how far that judge agrees with the labelled set. Shared by the papers (MORLAIF, MoTE), so it
lives here, not in one of them."""

from __future__ import annotations

import math
from typing import Any


def card_line(card: dict[str, Any] | None, judge: str) -> str:
    """ "judge `<id>` (card `<name>`: pairwise agreement <a> % [lo, hi], n=<n>)", flagged when the judge is a heuristic;
    "(no judge card)" when the judge has none."""
    if not card:
        return f"judge `{judge}` (no judge card)"
    pw = card["pairwise"]
    c = pw.get("ci95") or [math.nan, math.nan]
    agreement = math.nan if pw.get("agreement") is None else pw["agreement"]  # None: no pair had parsed verdicts
    line = (f"judge `{card['judge_id']}` (card `{card['name']}`: pairwise agreement {agreement:.1f} % "
            f"[{c[0]:.1f}, {c[1]:.1f}], n={pw['n']})")  # fmt: skip
    unparsable = (pw.get("checks") or {}).get("n_unparsable")
    if unparsable:
        line += f"; {unparsable} of {pw['checks']['n_judgments']} card verdicts unparsable"
    if card.get("heuristic"):
        line += " — **a HEURISTIC judge (ci tier): its numbers mean nothing**"
    return line
