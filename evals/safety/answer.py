"""Answers of one model to the safety prompt sets (one user turn each), as one JSONL plus a .provenance.json beside it.

Each row: the prompt row of prompts.py (id, prompt, pool, category, eval_set, ...) + "answer" + "generator".
CLI: `python -m alignrepro.evals.safety.answer --model DIR --prompts-dir DIR --out FILE`.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from alignrepro.generation import answer_conversations, backend_for, parse_spec
from alignrepro.io import atomic_write_json, read_json, read_jsonl, sha256_file, write_jsonl
from alignrepro.provenance import provenance

log = logging.getLogger(__name__)
TEMPLATES = ("auto", "chat", "alpaca")


def answer_prompts(backend: Any, rows: list[dict], template: str, max_new_tokens: int) -> list[dict]:
    """One batched call: each row's prompt as a single user turn; the rows come back with answer and generator."""
    conversations = [[{"role": "user", "content": r["prompt"]}] for r in rows]
    answers = answer_conversations(backend, conversations, template, max_new_tokens)
    return [{**r, "answer": a, "generator": backend.id} for r, a in zip(rows, answers, strict=True)]


def load_prompt_sets(prompts_dir: Path) -> tuple[list[dict], dict[str, Any]]:
    """The rows of every set in the manifest, after checking each file against its recorded sha256."""
    manifest = read_json(prompts_dir / "manifest.json")
    rows = []
    for name, info in manifest["sets"].items():
        path = prompts_dir / info["file"]
        if sha256_file(path) != info["sha256"]:
            raise ValueError(f"{path}: sha256 differs from manifest.json; rebuild the prompt sets")
        rows += read_jsonl(path)
        log.info("%s: %d prompts", name, info["n"])
    return rows, manifest


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(prog="python -m alignrepro.evals.safety.answer", description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, help="model folder (with model.json); not needed for an openai backend")
    ap.add_argument("--prompts-dir", type=Path, required=True, help="output folder of alignrepro.evals.safety.prompts")
    ap.add_argument("--out", type=Path, required=True, help="answers JSONL (written atomically)")
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--template", choices=TEMPLATES, default="auto", help="auto = the model's training format")
    ap.add_argument(
        "--spec-json", default="{}", help='generation backend spec, e.g. {"backend": "hf", "batch_size": 8}'
    )
    ap.add_argument("--tier", default="unknown", help="the tier, recorded in the provenance block")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    spec = parse_spec(json.loads(args.spec_json), args.model, "--spec-json")
    rows, manifest = load_prompt_sets(args.prompts_dir)  # a stale prompt file fails before the model loads
    backend, template, spec = backend_for(spec, args.model, args.template)
    log.info("answering %d safety prompts with %s (template %s)", len(rows), backend.id, template)
    out = answer_prompts(backend, rows, template, args.max_new_tokens)
    write_jsonl(args.out, out)
    config = {**spec.to_dict(), "template": template, "max_new_tokens": args.max_new_tokens}
    atomic_write_json(
        args.out.with_suffix(".provenance.json"),
        provenance(
            tier=args.tier,
            config=config,
            seed=manifest.get("params", {}).get("seed"),
            generation=config,
            model=getattr(backend, "identity", backend.id),
            generator=backend.id,
            prompt_sets={name: {"file": s["file"], "sha256": s["sha256"]} for name, s in manifest["sets"].items()},
            prompt_params=manifest.get("params"),
            stats=getattr(backend, "last_stats", {}),
        ),
    )
    log.info("wrote %d answers -> %s", len(out), args.out)
    return out


if __name__ == "__main__":
    main()
