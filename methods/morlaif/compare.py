"""MORLAIF's policy comparisons (figures C and E): every PPO arm answers the held-out prompts, then a judge compares
the arms pairwise, both orders, on the same prompts.

  respond  one policy answers data/prompts_eval.jsonl (the engine's backends and chat template)
  matrix   win rate of every column arm against every row arm (figure E; figure C is its MORLAIF-vs-single-PM cell)

The paper's judge is GPT-4-Turbo; its prompt and tie rule are unknown (note §7.14), so the suite's pairwise judge
(AlpacaEval 2's classifier prompt, both orders, a tie counts one half) stands in and is named with every number.
The paper's figure E duplicated its Single-PM column; here every cell is computed, and cell (row, col) = 1 - (col, row)
up to the judge's own order effects, which both-order judging removes.

`python -m alignrepro.methods.morlaif.compare {respond,matrix} --help`
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
from pathlib import Path
from typing import Any

from alignrepro.evals.alpacaeval.winrate import compute_winrate
from alignrepro.generation import answer_conversations, backend_for, parse_spec
from alignrepro.io import atomic_write_json, read_jsonl, sha256_file, write_jsonl
from alignrepro.judges import JudgeSpec, make_judge
from alignrepro.judges.base import PairItem
from alignrepro.judges.cache import JudgmentCache, cached_preferences
from alignrepro.methods.morlaif.principles import render_conversation
from alignrepro.provenance import provenance
from alignrepro.settings import SettingsError

log = logging.getLogger("morlaif.compare")


def render_dialogue(messages: list[dict[str, str]]) -> str:
    """The judge's instruction: a single question as it is, a dialogue in HH-RLHF's Human/Assistant form."""
    return messages[0]["content"] if len(messages) == 1 else render_conversation(messages)


def respond(model: Path, prompts: Path, gen: dict[str, Any], tier: str, out: Path) -> None:
    rows = read_jsonl(prompts)
    spec = parse_spec(gen, model, "morlaif.generation")
    if spec.max_new_tokens is None:
        raise SettingsError("morlaif.generation.max_new_tokens: required (the answer budget of every arm)")
    backend, template, spec = backend_for(spec, model)
    outputs = answer_conversations(backend, [r["messages"] for r in rows], template, spec.max_new_tokens)
    write_jsonl(
        out, [{"id": r["id"], "messages": r["messages"], "output": o} for r, o in zip(rows, outputs, strict=True)]
    )
    atomic_write_json(
        out.with_suffix(".provenance.json"),
        provenance(
            tier=tier,
            config=spec.to_dict(),
            model=getattr(backend, "identity", backend.id),
            prompts_sha256=sha256_file(prompts),
            template=template,
        ),
    )


def pair_items(rows_1: list[dict], rows_2: list[dict]) -> list[PairItem]:
    by_id = {r["id"]: r for r in rows_2}
    if set(by_id) != {r["id"] for r in rows_1}:
        raise ValueError("the two arms answered different prompt sets; regenerate both from the same prompts file")
    return [
        PairItem(render_dialogue(r["messages"]), output_1=r["output"], output_2=by_id[r["id"]]["output"])
        for r in rows_1
    ]


def win_matrix(gens: dict[str, list[dict]], judge: Any, cache: JudgmentCache | None) -> dict[str, Any]:
    """cells[row][col] = win rate (%) of `col` against `row`; each unordered pair is judged once (both orders)."""
    arms = list(gens)
    cells: dict[str, dict[str, Any]] = {a: {} for a in arms}
    for row, col in itertools.combinations(arms, 2):
        items = pair_items(gens[row], gens[col])
        same = [it.output_1.strip() == it.output_2.strip() for it in items]
        todo = [it for it, s in zip(items, same, strict=True) if not s]
        judged = iter((cached_preferences(judge, todo, cache) if cache else judge.preferences(todo)) if todo else [])
        prefs = [1.5 if s else float(next(judged)) for s in same]
        res = compute_winrate(prefs)
        cells[row][col] = {k: res.get(k) for k in ("win_rate", "standard_error", "ci95", "n_failed")} | {
            "n": len(prefs),
            "n_identical": sum(same),
        }
        mirrored = [3.0 - p for p in prefs]  # the same judgments seen from the other arm
        res = compute_winrate(mirrored)
        cells[col][row] = {k: res.get(k) for k in ("win_rate", "standard_error", "ci95", "n_failed")} | {
            "n": len(prefs),
            "n_identical": sum(same),
        }
        log.info("%s vs %s: %s %% (n=%d)", col, row, cells[row][col]["win_rate"], len(prefs))
    return {"arms": arms, "cells": cells}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m alignrepro.methods.morlaif.compare", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("respond", help="one policy answers the evaluation prompts")
    r.add_argument("--model", type=Path, required=True, help="model folder (model.json)")
    r.add_argument("--prompts", type=Path, required=True, help="data/prompts_eval.jsonl ({id, messages})")
    r.add_argument("--gen-json", required=True, help='generation settings, e.g. {"max_new_tokens": 48}')
    r.add_argument("--tier", default="unknown")
    r.add_argument("--out", type=Path, required=True)
    m = sub.add_parser("matrix", help="pairwise win rates between arms")
    m.add_argument("--gens", nargs="+", required=True, metavar="ARM=FILE", help="each arm's answers (respond)")
    m.add_argument("--judge-json", required=True, help="judge spec (evals.judges entry), JSON")
    m.add_argument("--models-dir", default="results/models", help="where local judges' registry models live")
    m.add_argument("--cache", type=Path, default=None, help="SQLite judgment cache shared with the other rules")
    m.add_argument("--tier", default="unknown")
    m.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.cmd == "respond":
        respond(args.model, args.prompts, json.loads(args.gen_json), args.tier, args.out)
        return
    gens, files = {}, {}
    for spec in args.gens:
        arm, _, path = spec.partition("=")
        if not path:
            raise SystemExit(f"--gens: expected ARM=FILE, got {spec!r}")
        gens[arm], files[arm] = read_jsonl(path), sha256_file(path)
    judge_spec = JudgeSpec.from_dict(json.loads(args.judge_json), "--judge-json")
    judge = make_judge(judge_spec.resolved(args.models_dir))
    cache = JudgmentCache(args.cache) if args.cache else None
    result = win_matrix(gens, judge, cache)
    result |= {
        "judge_id": judge.id,
        "judge_prompt_hash": judge.prompt_hash,
        "heuristic": bool(judge.heuristic),
        "provenance": provenance(tier=args.tier, config={"judge": judge_spec.to_dict()}, generations_sha256=files),
    }
    atomic_write_json(args.out, result)


if __name__ == "__main__":
    main()
