"""Deterministic oracle critic: the tiny tier's stand-in for CUT's GPT-4 judgments on verifiable tasks.

Like the paper's judge it replies "Perfect." to a correct response, and otherwise writes a short critique. Here the
critique quotes the wrong span exactly as written and states the right value, so p(y_t | x, j) / p(y_t | x) should
peak at the erroneous tokens, which is what CUT's token detection relies on (cut.md section 6, option a).
"""

from __future__ import annotations

import dataclasses
import json

from alignrepro.data.records import Record
from alignrepro.data.verifiable_answers import find_answer, same_answer
from alignrepro.io import sha256_text, stable_hash

POSITIVE = "Perfect."
WRONG_TEMPLATES = (
    "The response is incorrect. The final answer should be {gold}, not {wrong}.",
    "The response gives {wrong}, which is wrong. The correct answer is {gold}.",
    "The answer {wrong} is incorrect; it should be {gold}.",
)
MISSING_TEMPLATES = (
    "The response does not give a final answer. The correct answer is {gold}.",
    "The response never states a clear answer. It should answer {gold}.",
)


def _show(record: Record, value: str) -> str:
    # Words and letters read better quoted; numbers and lists are left bare.
    return f'"{value}"' if record.meta.get("answer_type", "str") == "str" else value


def _pick(templates: tuple[str, ...], record: Record, response: str) -> str:
    # Phrasing varies across items but is a pure function of (id, response): reruns give identical judgments.
    return templates[int(stable_hash([record.id, response]), 16) % len(templates)]


def oracle_critique(record: Record, response: str) -> str:
    """ "Perfect." when the response's final answer matches the gold, else a critique naming wrong and right values."""
    if record.reference is None:
        raise ValueError(f"{record.id}: the oracle critic needs a gold answer (Record.reference)")
    found = find_answer(record, response)
    gold = _show(record, record.reference)
    if found is None:
        return _pick(MISSING_TEMPLATES, record, response).format(gold=gold)
    if same_answer(record, found.value):
        return POSITIVE
    return _pick(WRONG_TEMPLATES, record, response).format(gold=gold, wrong=_show(record, found.raw))


class OracleCritic:
    """Judge interface shared with model judges: an `id`, a `prompt_hash`, and `critique(record, response)`."""

    id: str = "oracle-critic-v1"
    prompt_hash: str = sha256_text(
        json.dumps({"positive": POSITIVE, "wrong": WRONG_TEMPLATES, "missing": MISSING_TEMPLATES}, sort_keys=True)
    )

    def critique(self, record: Record, response: str) -> str:
        return oracle_critique(record, response)

    def judge(self, record: Record, response: str) -> Record:
        """A copy of `record` carrying the response, its judgment, and the judge's id and prompt hash."""
        meta = {**record.meta, "judge": self.id, "judge_prompt_hash": self.prompt_hash}
        return dataclasses.replace(record, output=response, judgment=self.critique(record, response), meta=meta)
