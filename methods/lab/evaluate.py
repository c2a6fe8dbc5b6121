"""LAB's judge-free evaluation of one model folder, per item (so base, LAB and stacked compare paired, same items):

  1. MMLU-branch accuracy (paper §3.3; InstructLab's MMLU-branch): multiple-choice rows on the knowledge leaves, the
     27 tonsils questions of instructlab 0.26.1 (taxonomy.tonsils_mmlu_branch) plus optional JSONL rows, e.g. Phoenix
     questions from instructlab-sdg's mmlu_bench pipeline. Scored as lm-eval's MMLU, 0-shot: prompt "question\\nA. ..
     \\nB. ..\\nAnswer:", the log-likelihood of each letter continuation (" A", " B", ...) tokenized as lm-eval does
     (context + continuation encoded whole, split at the context's length; the tokenizer's own special tokens); the
     highest wins, the first on ties. Beside it: the majority-answer baseline (always the most frequent gold letter;
     the earliest letter on ties) and chance (mean of 1/#choices). `choice_form: text` scores the choice texts
     instead, as the task YAML instructlab-sdg writes for its mmlu_bench data does (doc_to_choice = the choices).
  2. oracle accuracy on the foundational slice: held-out verifiable tasks (gold in `reference`, as written by
     alignrepro.data.verifiable.generate_tasks) answered with the model's chat template, checked by `is_correct`.
  3. held-out NLL: per held-out messages record, the mean NLL per token of its assistant answers, by
     select.heldout_nll_items (the tokens the training loss covers); `heldout_nll_token_weighted` is select's number.

Metrics (means of the per-item values) carry the per-item keys: metrics.mmlu_branch, .oracle, .heldout_nll.

Extra MC rows (JSONL): {"question", "choices": [2-26 strings], "answer": index or letter, "id"?, "subject"?}.
Write letters when the rows come from the library's _post_process_mcq: its class_encode_column numbers the letters
present in the data, so a set without any "A" answer shifts every index.

`python -m alignrepro.methods.lab.evaluate --help`
"""

from __future__ import annotations

import argparse
import json
import logging
import string
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from alignrepro import generation
from alignrepro.data.records import Record, load_records, save_records
from alignrepro.data.verifiable import is_correct
from alignrepro.errors import UserError
from alignrepro.io import atomic_write_json, read_jsonl
from alignrepro.methods.lab.select import heldout_nll_items
from alignrepro.models import choose_dtype, load_model, load_tokenizer, model_identity
from alignrepro.provenance import provenance

log = logging.getLogger("lab.evaluate")
LETTERS = string.ascii_uppercase
PARTS = ("mmlu_branch", "oracle", "heldout_nll")
# (context, continuations) per question -> log-likelihood of each continuation
Scorer = Callable[[list[tuple[str, list[str]]]], list[list[float]]]


# ---- MMLU-branch ---------------------------------------------------------------------------------------------------


def mc_row(raw: dict[str, Any], rid: str, where: str) -> dict[str, Any]:
    """A validated MC row with `answer` as an index."""
    choices, answer = raw.get("choices"), raw.get("answer")
    if not isinstance(raw.get("question"), str) or not raw["question"].strip():
        raise UserError(f"{where}: no 'question'")
    if not isinstance(choices, list) or not 2 <= len(choices) <= 26 or not all(isinstance(c, str) for c in choices):
        raise UserError(f"{where}: 'choices' must be a list of 2-26 strings")
    letter = answer.strip().upper() if isinstance(answer, str) else ""
    if len(letter) == 1 and letter in LETTERS[: len(choices)]:
        answer = LETTERS.index(letter)
    if isinstance(answer, bool) or not isinstance(answer, int) or not 0 <= answer < len(choices):
        raise UserError(f"{where}: 'answer' {raw.get('answer')!r} is no index or letter of its {len(choices)} choices")
    return {
        "id": rid,
        "question": raw["question"],
        "choices": choices,
        "answer": answer,
        "subject": raw.get("subject", ""),
    }


def load_mc_rows(tonsils: bool, extra: list[Path]) -> list[dict[str, Any]]:
    rows = []
    if tonsils:
        from alignrepro.methods.lab.taxonomy import tonsils_mmlu_branch

        _, questions = tonsils_mmlu_branch()
        rows += [mc_row(q, f"tonsils/{i:02d}", f"tonsils MMLU-branch row {i}") for i, q in enumerate(questions)]
    for path in extra:
        for i, raw in enumerate(read_jsonl(path)):
            rows.append(mc_row(raw, str(raw.get("id") or f"{path.stem}/{i:03d}"), f"{path}:{i + 1}"))
    dupes = [k for k, n in Counter(r["id"] for r in rows).items() if n > 1]
    if dupes:
        raise UserError(f"MMLU-branch rows: ids used twice: {dupes[:5]}")
    return rows


def mc_prompt(row: dict[str, Any]) -> str:
    """lm-eval's MMLU doc_to_text (also the MMLU-branch task YAML of instructlab-sdg)."""
    lines = [row["question"].strip(), *(f"{LETTERS[i]}. {c}" for i, c in enumerate(row["choices"]))]
    return "\n".join(lines) + "\nAnswer:"


def continuations(row: dict[str, Any], form: str) -> list[str]:
    if form == "letter":
        return [f" {LETTERS[i]}" for i in range(len(row["choices"]))]
    if form == "text":
        return [f" {c}" for c in row["choices"]]
    raise UserError(f"choice_form {form!r} (expected 'letter' or 'text')")


def score_mc(rows: list[dict[str, Any]], scorer: Scorer, form: str = "letter") -> dict[str, Any]:
    """Per item: 1 if the highest-scoring continuation is the gold one (the first on ties, as numpy's argmax)."""
    scores = scorer([(mc_prompt(r), continuations(r, form)) for r in rows])
    correct, pred = {}, {}
    for r, s in zip(rows, scores, strict=True):
        k = max(range(len(s)), key=lambda i: (s[i], -i))
        pred[r["id"]], correct[r["id"]] = LETTERS[k], int(k == r["answer"])
    return {"correct": correct, "pred": pred, "logliks": {r["id"]: s for r, s in zip(rows, scores, strict=True)}}


def majority_baseline(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Always answering the most frequent gold letter (the earliest on ties), and chance."""
    if not rows:
        return {"letter": None, "acc": None, "chance": None}
    counts = Counter(r["answer"] for r in rows)
    top = min(counts, key=lambda k: (-counts[k], k))
    return {
        "letter": LETTERS[top],
        "acc": counts[top] / len(rows),
        "chance": sum(1 / len(r["choices"]) for r in rows) / len(rows),
    }


def encode_pair(tok, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """lm-eval's HFLM._encode_pair for causal models (trailing spaces move to the continuation)."""
    n = len(context) - len(context.rstrip())
    if n:
        context, continuation = context[:-n], context[-n:] + continuation
    whole, ctx = tok.encode(context + continuation), tok.encode(context)
    return ctx, whole[len(ctx) :]


def mc_jobs(tok, context: str, conts: list[str]) -> list[tuple[list[int], list[tuple[int, list[int]]]]]:
    """Forward passes for one question: (input ids, [(start, continuation ids)]). One-token continuations after the
    same context share one pass over the context (as lm-eval's context grouping); else one pass per continuation."""
    pairs = [encode_pair(tok, context, c) for c in conts]
    if all(len(x) == 1 and c == pairs[0][0] for c, x in pairs):
        return [(pairs[0][0], [(len(pairs[0][0]), x) for _, x in pairs])]
    return [(c + x, [(len(c), x)]) for c, x in pairs]


def model_scorer(model, tok, batch_size: int = 8, max_length: int = 2048) -> Scorer:
    @torch.inference_mode()
    def score(requests: list[tuple[str, list[str]]]) -> list[list[float]]:
        jobs = [(qi, job) for qi, (ctx, conts) in enumerate(requests) for job in mc_jobs(tok, ctx, conts)]
        out: list[list[float]] = [[] for _ in requests]
        pad = tok.pad_token_id
        for b in range(0, len(jobs), batch_size):
            chunk = jobs[b : b + batch_size]
            seqs = [ids[-max_length:] for _, (ids, _) in chunk]
            width = max(len(s) for s in seqs)
            ids = torch.tensor([s + [pad] * (width - len(s)) for s in seqs])
            attn = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs])
            logits = model(input_ids=ids, attention_mask=attn).logits
            for row, ((qi, (full, scored)), s) in enumerate(zip(chunk, seqs, strict=True)):
                cut = len(full) - len(s)  # left truncation shifts positions
                for start, cont in scored:
                    pos = [start - 1 - cut + j for j in range(len(cont))]
                    logp = torch.log_softmax(logits[row, pos].float(), -1)  # only where a continuation is scored
                    out[qi].append(float(logp[range(len(cont)), cont].sum()))
        return out

    return score


# ---- held-out NLL ---------------------------------------------------------------------------------------------------


# ---- oracle ---------------------------------------------------------------------------------------------------------


def oracle_items(
    tasks: list[Record], backend: Any, max_new_tokens: int, system_prompt: str | None = None
) -> tuple[dict[str, int], list[str]]:
    """id -> 1 if is_correct(task, answer), and the answers, with the chat template (a system turn if given)."""
    tok = backend.tokenizer
    if system_prompt:
        prompts = [
            generation.format_conversation(
                "chat", [{"role": "system", "content": system_prompt}, {"role": "user", "content": t.prompt_text}], tok
            )
            for t in tasks
        ]
    else:
        prompts = [generation.format_prompt("chat", t, tok) for t in tasks]
    texts = backend.generate(prompts, max_new_tokens)
    return {t.id: int(is_correct(t, text)) for t, text in zip(tasks, texts, strict=True)}, texts


def mean(d: dict[str, float]) -> float | None:
    return sum(d.values()) / len(d) if d else None


def evaluate(args: argparse.Namespace, spec: dict[str, Any]) -> dict[str, Any]:
    parts = set(args.only or PARTS)
    mc = load_mc_rows(args.tonsils, args.mc_extra or []) if "mmlu_branch" in parts else []
    heldout = read_jsonl(args.heldout) if args.heldout and "heldout_nll" in parts else []
    tasks = load_records(args.verifiable) if args.verifiable and "oracle" in parts else []
    ids = [r.get("id") if isinstance(r, dict) else None for r in heldout]
    if not all(isinstance(i, str) and i for i in ids) or len(set(ids)) != len(ids):
        raise UserError(f"{args.heldout}: every held-out record needs a unique string 'id'")
    if not (mc or heldout or tasks):
        raise UserError("lab evaluate: nothing to evaluate (no MC rows, --heldout or --verifiable)")
    dtype = choose_dtype(spec.get("dtype", "float32"))
    bs = spec.get("batch_size", 8)
    mmlu: dict[str, Any] = {"correct": {}, "pred": {}}
    nll_parts: dict[str, tuple[float, int]] = {}
    if mc or heldout:
        tok = load_tokenizer(args.model, padding_side="right")
        model = load_model(args.model, dtype=dtype).eval()
        if mc:
            mmlu = score_mc(mc, model_scorer(model, tok, bs), spec.get("choice_form", "letter"))
        if heldout:
            nll_parts = heldout_nll_items(model, tok, heldout, spec.get("max_length", 1024), bs)
        del model
    oracle: dict[str, int] = {}
    if tasks:
        gen = {
            "template": "chat",
            "batch_size": bs,
            **spec.get("generation", {}),
            "dtype": spec.get("dtype", "float32"),
        }
        backend = generation.make_backend(gen, args.model)
        oracle, texts = oracle_items(tasks, backend, spec["max_new_tokens"], spec.get("system_prompt"))
        for t, text in zip(tasks, texts, strict=True):
            t.output = text
        save_records(args.out.with_suffix(".answers.jsonl"), tasks)
    nll = {rid: s / n for rid, (s, n) in nll_parts.items()}
    tokens = sum(n for _, n in nll_parts.values())
    base = majority_baseline(mc)
    return {
        "model": model_identity(args.model),
        "per_item": {"mmlu_branch": mmlu["correct"], "oracle": oracle, "heldout_nll": nll},
        "metrics": {
            "mmlu_branch": mean(mmlu["correct"]),
            "mmlu_branch_majority": base["acc"],
            "mmlu_branch_majority_letter": base["letter"],
            "mmlu_branch_chance": base["chance"],
            "oracle": mean(oracle),
            "heldout_nll": mean(nll),
            "heldout_nll_token_weighted": sum(s for s, _ in nll_parts.values()) / tokens if tokens else None,
        },
        "n": {
            "mmlu_branch": len(mmlu["correct"]),
            "oracle": len(oracle),
            "heldout": len(nll),
            "heldout_skipped": len({r["id"] for r in heldout} - set(nll)),
            "heldout_tokens": tokens,
        },
        "details": {
            "mmlu_branch_pred": mmlu["pred"],
            "mmlu_branch_gold": {r["id"]: LETTERS[r["answer"]] for r in mc},
            "choice_form": spec.get("choice_form", "letter"),
            "prompt": "0-shot, lm-eval MMLU doc_to_text",
            "inputs": {
                "tonsils": args.tonsils,
                "mc_extra": [str(p) for p in args.mc_extra or []],
                "heldout": str(args.heldout or ""),
                "verifiable": str(args.verifiable or ""),
            },
        },
        "provenance": provenance(tier=args.tier, config=spec),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(
        prog="python -m alignrepro.methods.lab.evaluate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", type=Path, required=True, help="the model folder evaluated (model.json)")
    p.add_argument(
        "--tonsils",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="score the 27 tonsils MMLU-branch questions (default: yes)",
    )
    p.add_argument("--mc-extra", type=Path, nargs="*", help="JSONL of extra MC rows (e.g. Phoenix, mmlu_bench)")
    p.add_argument("--verifiable", "--foundational", type=Path, help="held-out verifiable tasks (gold in 'reference')")
    p.add_argument("--heldout", type=Path, help="held-out messages records (SDG pairs kept out of training): NLL")
    p.add_argument(
        "--spec-json",
        default="{}",
        help='{"dtype", "batch_size", "max_length" (NLL), "choice_form": "letter"|"text", "max_new_tokens", '
        '"system_prompt" (oracle; default none), "generation": {...local backend spec...}}',
    )
    p.add_argument("--only", nargs="+", choices=PARTS, help="evaluate only these parts (default: all given)")
    for flag, kind in (("--dtype", str), ("--batch-size", int), ("--max-new-tokens", int), ("--max-length", int),
                       ("--choice-form", str), ("--system-prompt", str)):  # fmt: skip
        p.add_argument(flag, type=kind, help=f"overrides the spec's {flag[2:].replace('-', '_')}")
    p.add_argument("--tier", default="unknown")
    p.add_argument("--out", type=Path, required=True, help="JSON: per-item values, their means, n, provenance")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    spec = json.loads(args.spec_json)
    for key in ("dtype", "batch_size", "max_new_tokens", "max_length", "choice_form", "system_prompt"):
        if getattr(args, key) is not None:
            spec[key] = getattr(args, key)
    if args.verifiable and "oracle" in (args.only or PARTS) and "max_new_tokens" not in spec:
        raise UserError("--verifiable needs max_new_tokens in --spec-json")
    result = evaluate(args, spec)
    atomic_write_json(args.out, result)
    log.info("%s: %s", args.model, result["metrics"])
    return result


if __name__ == "__main__":
    main()
