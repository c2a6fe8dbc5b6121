"""Critique-Revise as DPO pairs: the row's data builder (row.yaml `data: "pairs.py:revision_pairs"`)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from alignrepro.methods.mote.baselines import build_critique_revise, prompts_from
from alignrepro.methods.mote.chains import StepRunner


@prompts_from("baseline-critique-revise")  # the templates.py card recorded in the data's summary
def revision_pairs(runner: StepRunner, queries: list[dict[str, Any]]) -> tuple[list[dict], list[dict], Counter]:
    """One answer -> critique -> revision round per query (the Critique-Revise row's own builder), then
    chosen = the revision, rejected = the first answer. A query without both, or whose revision repeats the answer,
    gives no pair (counted: DPO learns nothing from it)."""
    _, trace, counts = build_critique_revise(runner, queries)
    rows = []
    for query, texts in zip(queries, trace, strict=True):
        answer, revision = texts.get("answer"), texts.get("revision")
        if answer is None or revision is None:
            counts["dropped_no_pair"] += 1
        elif answer.strip() == revision.strip():
            counts["dropped_identical"] += 1
        else:
            rows.append({"id": query["id"], "messages": query["messages"], "chosen": revision, "rejected": answer})
    counts["n_pairs"] = len(rows)
    return rows, trace, counts
