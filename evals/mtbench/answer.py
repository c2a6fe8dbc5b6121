"""MT-Bench answers of one model: turn 1 for every question, then turn 2 with the model's own turn-1 answer in the
conversation (FastChat's gen_model_answer protocol). One JSONL per model, plus a .provenance.json beside it.

Each row: {question_id, category, turns: [q1, q2], answers: [a1, a2], generator}.
Decoding is the backend's (greedy by default) for every category; FastChat's per-category temperatures are not used.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from alignrepro.evals.mtbench.data import Question, data_provenance, load_questions, select_questions
from alignrepro.generation import answer_conversations, backend_for, parse_spec
from alignrepro.io import atomic_write_json, stable_hash, write_jsonl
from alignrepro.provenance import provenance

log = logging.getLogger(__name__)
TEMPLATES = ("auto", "chat", "alpaca")


def answer_questions(backend: Any, questions: list[Question], template: str, max_new_tokens: int) -> list[dict]:
    """Two batched calls: all first turns, then all second turns (each conversation carrying its own answer)."""
    first = [[{"role": "user", "content": q.turns[0]}] for q in questions]
    answers_1 = answer_conversations(backend, first, template, max_new_tokens)
    second = [
        [*conv, {"role": "assistant", "content": a1}, {"role": "user", "content": q.turns[1]}]
        for conv, a1, q in zip(first, answers_1, questions, strict=True)
    ]
    answers_2 = answer_conversations(backend, second, template, max_new_tokens)
    return [
        {
            "question_id": q.question_id,
            "category": q.category,
            "turns": list(q.turns),
            "answers": [a1, a2],
            "generator": backend.id,
        }
        for q, a1, a2 in zip(questions, answers_1, answers_2, strict=True)
    ]


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(prog="python -m alignrepro.evals.mtbench.answer", description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, help="model folder (with model.json); not needed for an openai backend")
    ap.add_argument("--out", type=Path, required=True, help="answers JSONL (written atomically)")
    ap.add_argument("--per-category", type=int, default=None, help="questions per category (default: all 10)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the question subset")
    ap.add_argument("--max-new-tokens", type=int, default=1024, help="per turn (FastChat's default: 1024)")
    ap.add_argument("--template", choices=TEMPLATES, default="auto", help="auto = the model's training format")
    ap.add_argument(
        "--spec-json", default="{}", help='generation backend spec, e.g. {"backend": "hf", "batch_size": 8}'
    )
    ap.add_argument("--data-dir", type=Path, default=None, help="FastChat-format data folder instead of the wheel")
    ap.add_argument("--tier", default="unknown", help="the tier, recorded in the provenance block")
    ap.add_argument("--fastchat-out", type=Path, default=None, help="also write FastChat's model_answer lines here")
    ap.add_argument("--model-id", default=None, help="the model's name in FastChat files (default: its id)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    spec = parse_spec(json.loads(args.spec_json), args.model, "--spec-json")
    backend, template, spec = backend_for(spec, args.model, args.template)
    questions = select_questions(load_questions(args.data_dir), args.per_category, args.seed)
    log.info("answering %d MT-Bench questions with %s (template %s)", len(questions), backend.id, template)
    rows = answer_questions(backend, questions, template, args.max_new_tokens)
    write_jsonl(args.out, rows)
    if args.fastchat_out is not None:
        from alignrepro.evals.mtbench.fastchat_files import answer_lines, fastchat_name

        write_jsonl(args.fastchat_out, answer_lines(rows, fastchat_name(args.model_id or backend.id)))
    config = {
        **spec.to_dict(),
        "template": template,
        "max_new_tokens": args.max_new_tokens,
        "per_category": args.per_category,
    }
    atomic_write_json(
        args.out.with_suffix(".provenance.json"),
        provenance(
            tier=args.tier,
            config=config,
            seed=args.seed,
            generation=config,
            model=getattr(backend, "identity", backend.id),
            generator=backend.id,
            data=data_provenance(args.data_dir),
            question_ids=[q.question_id for q in questions],
            questions_sha256=stable_hash([[q.question_id, q.turns] for q in questions], 64),
            stats=getattr(backend, "last_stats", {}),
        ),
    )
    log.info("wrote %d answer rows -> %s", len(rows), args.out)
    return rows


if __name__ == "__main__":
    main()
