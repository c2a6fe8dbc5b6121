"""One model answers every shared benchmark's prompts in one process (the model is loaded once):
AlpacaEval instructions, MT-Bench's two turns, the safety pools. Each benchmark's answers go to its own file, and
the first two also in the field's own formats: alpaca_eval's `model_outputs.json` (a JSON list of instruction,
output, generator, dataset: `alpaca_eval --model_outputs` reads it) and FastChat's MT-Bench `model_answer` lines
(`mtbench_fastchat.jsonl`; alignrepro.evals.mtbench.fastchat_files). Both name the model `--model-id`.

CLI: `python -m alignrepro.evals.respond --help`.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from alignrepro.data.records import load_records, save_records
from alignrepro.evals.alpacaeval.winrate import write_model_outputs
from alignrepro.evals.mtbench.answer import answer_questions
from alignrepro.evals.mtbench.data import data_provenance, load_questions, select_questions
from alignrepro.evals.mtbench.fastchat_files import answer_lines, fastchat_name
from alignrepro.evals.safety.answer import answer_prompts, load_prompt_sets
from alignrepro.generation import answer_conversations, backend_for, parse_spec
from alignrepro.io import atomic_write_json, sha256_file, write_jsonl
from alignrepro.provenance import provenance

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m alignrepro.evals.respond", description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, help="model folder (with model.json); not needed for an openai backend")
    ap.add_argument("--alpacaeval-prompts", type=Path, required=True, help="JSONL of records (AlpacaEval instructions)")
    ap.add_argument(
        "--safety-prompts-dir", type=Path, required=True, help="folder from alignrepro.evals.safety.prompts"
    )
    ap.add_argument("--mtbench-per-category", type=int, default=None, help="MT-Bench questions per category (all: 10)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the MT-Bench subset")
    ap.add_argument("--spec-json", default="{}", help='generation spec, e.g. {"max_new_tokens": 48, "batch_size": 16}')
    ap.add_argument("--template", default="auto", help="auto = the format the model was trained in")
    ap.add_argument(
        "--out-dir",
        type=Path,
        required=True,
        help="writes alpacaeval.jsonl, mtbench.jsonl, safety.jsonl, model_outputs.json and mtbench_fastchat.jsonl",
    )
    ap.add_argument(
        "--model-id", default=None, help="the model's name in model_outputs.json and FastChat files (default: its id)"
    )
    ap.add_argument("--tier", default="unknown")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    spec = parse_spec(json.loads(args.spec_json), args.model, "--spec-json")
    max_new = spec.max_new_tokens or 256
    backend, template, spec = backend_for(spec, args.model, args.template)
    log.info("model %s answers in the %r format", backend.id, template)

    records = load_records(args.alpacaeval_prompts)
    texts = answer_conversations(
        backend, [[{"role": "user", "content": r.prompt_text}] for r in records], template, max_new
    )
    for r, t in zip(records, texts, strict=True):
        r.output, r.meta = t, {**r.meta, "generator": backend.id}
    stats = {"alpacaeval": getattr(backend, "last_stats", {})}

    questions = select_questions(load_questions(), args.mtbench_per_category, args.seed)
    mt_rows = answer_questions(backend, questions, template, max_new)
    stats["mtbench"] = getattr(backend, "last_stats", {})

    safety_rows, manifest = load_prompt_sets(args.safety_prompts_dir)
    safety = answer_prompts(backend, safety_rows, template, max_new)
    stats["safety"] = getattr(backend, "last_stats", {})

    out = args.out_dir
    save_records(out / "alpacaeval.jsonl", records)
    write_jsonl(out / "mtbench.jsonl", mt_rows)
    write_jsonl(out / "safety.jsonl", safety)
    name = fastchat_name(args.model_id or backend.id)
    write_model_outputs(out / "model_outputs.json", records, name)
    write_jsonl(out / "mtbench_fastchat.jsonl", answer_lines(mt_rows, name))
    atomic_write_json(
        out / "respond.provenance.json",
        provenance(
            tier=args.tier,
            config={**spec.to_dict(), "max_new_tokens": max_new, "template": template},
            seed=args.seed,
            model=getattr(backend, "identity", backend.id),
            generator=backend.id,
            template=template,
            inputs={
                "alpacaeval_prompts": sha256_file(args.alpacaeval_prompts),
                "safety_manifest": sha256_file(args.safety_prompts_dir / "manifest.json"),
                "mtbench": data_provenance(None) | {"question_ids": [q.question_id for q in questions]},
            },
            stats=stats,
        ),
    )
    log.info("answers: %d AlpacaEval, %d MT-Bench, %d safety -> %s", len(records), len(mt_rows), len(safety), out)


if __name__ == "__main__":
    main()
