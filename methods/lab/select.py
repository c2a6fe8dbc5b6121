"""LAB's checkpoint selection (paper §3.3): score each epoch of a phase, keep the best, the EARLIER one on ties.

Knowledge phases: MMLU-branch accuracy (higher is better); skills phase: MT-Bench (higher) or, at tiny, held-out NLL
of assistant answers (lower). "Ties" are scores within `tolerance` of the best: the earliest such epoch wins (the
paper prefers earlier checkpoints to avoid overtraining), so a later epoch must beat every earlier one by more than
the tolerance.

Writes <phase>/selected.json and <phase>/selected/model.json: a reference to the chosen epoch's files (paths
"../epoch<k>/…" in its `files` manifest, verified on every load like any model folder), so the next phase starts
from a fixed path without copying weights. Its name and hashes are the epoch's, so it has the epoch's identity.

`python -m alignrepro.methods.lab.select --help`
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from alignrepro.errors import UserError
from alignrepro.io import atomic_write_json, read_json, read_jsonl
from alignrepro.methods.lab.phases import completion_rows
from alignrepro.models import read_model_meta

log = logging.getLogger("lab.select")
LOWER_IS_BETTER = ("heldout_nll", "nll", "loss", "perplexity")


def pick(scores: Mapping[int, float], higher_is_better: bool = True, tolerance: float = 0.0) -> int:
    """The earliest epoch whose score is within `tolerance` of the best one."""
    if not scores:
        raise UserError("checkpoint selection: no scores")
    bad = {k: v for k, v in scores.items() if not isinstance(v, int | float) or not math.isfinite(v)}
    if bad:
        raise UserError(f"checkpoint selection: non-finite scores {bad}")
    if tolerance < 0 or not math.isfinite(tolerance):
        raise UserError(f"checkpoint selection: tolerance {tolerance!r} (expected a finite number >= 0)")
    sign = 1.0 if higher_is_better else -1.0
    best = max(sign * v for v in scores.values())
    return min(k for k, v in scores.items() if sign * v >= best - tolerance)


def answer_nll_rows(
    model, tok, records: list[dict[str, Any]], max_length: int = 1024, batch_size: int = 8, where: str = ""
) -> list[tuple[str, float, int]]:
    """(record id, summed NLL of the answer tokens, their number) per prompt/completion row of messages records, with
    the model's chat template: the tokens the training loss covers (the answer and its end-of-turn). A row whose
    answer max_length cuts away entirely is left out."""
    import torch

    seqs = []
    for r in records:
        for row in completion_rows(r):
            prompt = _ids(tok, row["prompt"], add_generation_prompt=True)
            full = _ids(tok, row["prompt"] + row["completion"])
            if full[: len(prompt)] != prompt:
                raise UserError(f"{where}the chat template's prompt is no prefix of prompt + answer ({r['id']})")
            if len(prompt) < min(len(full), max_length):  # else the answer is cut away entirely
                seqs.append((r["id"], full[:max_length], len(prompt)))
    out = []
    pad = tok.pad_token_id
    with torch.no_grad():
        for i in range(0, len(seqs), batch_size):
            chunk = seqs[i : i + batch_size]
            width = max(len(s) for _, s, _ in chunk)
            ids = torch.tensor([s + [pad] * (width - len(s)) for _, s, _ in chunk])
            attn = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for _, s, _ in chunk])
            logits = model(input_ids=ids, attention_mask=attn).logits[:, :-1].float()
            nll = -torch.log_softmax(logits, -1).gather(-1, ids[:, 1:, None]).squeeze(-1)
            for row, (rid, s, p) in enumerate(chunk):
                out.append((rid, float(nll[row, p - 1 : len(s) - 1].sum()), len(s) - p))
    return out


def heldout_nll_items(
    model, tok, records: list[dict[str, Any]], max_length: int = 1024, batch_size: int = 8
) -> dict[str, tuple[float, int]]:
    """id -> (summed NLL of its answer tokens, number of tokens); a record whose answers all fall past max_length is
    left out (as heldout_nll drops the row)."""
    out: dict[str, tuple[float, int]] = {}
    for rid, total, count in answer_nll_rows(model, tok, records, max_length, batch_size):
        t, c = out.get(rid, (0.0, 0))
        out[rid] = (t + total, c + count)
    return out


def heldout_nll(
    model_dir: str | Path,
    records: list[dict[str, Any]],
    *,
    max_length: int = 1024,
    batch_size: int = 8,
    dtype: str = "float32",
) -> dict[str, Any]:
    """Mean per-token NLL of the assistant answers of messages records under a model folder (answer_nll_rows),
    token-weighted over all rows."""
    from alignrepro.models import choose_dtype, load_model, load_tokenizer

    tok = load_tokenizer(model_dir, padding_side="right")
    model = load_model(model_dir, dtype=choose_dtype(dtype)).eval()
    rows = answer_nll_rows(model, tok, records, max_length, batch_size, where=f"{model_dir}: ")
    if not rows:
        raise UserError(f"held-out NLL: no answer tokens within max_length {max_length}")
    total, count = sum(r[1] for r in rows), sum(r[2] for r in rows)
    return {"nll": total / count, "tokens": count, "rows": len(rows), "max_length": max_length}


def _ids(tok, messages, add_generation_prompt: bool = False) -> list[int]:
    out = tok.apply_chat_template(
        messages, tokenize=True, return_dict=True, add_generation_prompt=add_generation_prompt
    )
    return list(out["input_ids"])


def phase_epochs(phase_dir: Path) -> list[dict[str, Any]]:
    path = phase_dir / "phase.json"
    if not path.is_file():
        raise UserError(f"{path}: missing: {phase_dir} is not a finished LAB phase")
    return read_json(path)["epochs"]


def write_selection(
    phase_dir: Path,
    scores: Mapping[int, float],
    metric: str,
    higher_is_better: bool,
    tolerance: float = 0.0,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Pick the epoch, write <phase>/selected/model.json (a reference) and then <phase>/selected.json."""
    epochs = {e["epoch"]: e for e in phase_epochs(phase_dir)}
    if set(scores) != set(epochs):
        raise UserError(f"{phase_dir}: scores for epochs {sorted(scores)}, the phase has epochs {sorted(epochs)}")
    k = pick(scores, higher_is_better, tolerance)
    chosen = phase_dir / epochs[k]["dir"]
    doc = {
        "phase": read_json(phase_dir / "phase.json")["phase"],
        "metric": metric,
        "higher_is_better": higher_is_better,
        "tolerance": tolerance,
        "rule": "best score; on ties (within tolerance of the best) the earliest epoch",
        "scores": {str(e): scores[e] for e in sorted(scores)},
        "selected_epoch": k,
        "selected_dir": epochs[k]["dir"],
        "selected_model": str(phase_dir / "selected"),
        "details": details or {},
    }
    reference(chosen, phase_dir / "selected", {"selected_epoch": k, "metric": metric, "scores": doc["scores"]})
    atomic_write_json(phase_dir / "selected.json", doc)
    return doc


def reference(epoch_dir: Path, out: Path, selection: dict[str, Any]) -> dict[str, Any]:
    """<out>/model.json pointing at a sibling model folder's files (LoRA: its adapter; full: its weights)."""
    meta = read_model_meta(epoch_dir)  # verifies the epoch's files first
    up = f"../{epoch_dir.name}/"
    ref = {**meta, "files": {up + rel: f for rel, f in meta.get("files", {}).items()}}
    ref["selected_from"] = epoch_dir.name
    ref["selection"] = selection
    if meta["kind"] == "lora":
        ref["adapter"] = up + meta["adapter"]
    elif meta["kind"] == "base" and meta["weights"] != ".":
        ref["weights"] = up + meta["weights"]
    else:
        raise UserError(f"{epoch_dir}: kind {meta['kind']!r} with weights {meta.get('weights')!r} is no LAB epoch")
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    atomic_write_json(out / "model.json", ref)
    read_model_meta(out)  # the reference checks itself like any model folder
    return ref


def _score_from(path: Path, key: str) -> float:
    value: Any = read_json(path)
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            raise UserError(f"{path}: no {key!r} (path {part!r} missing)")
        value = value[part]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UserError(f"{path}: {key!r} is {value!r}, not a number")
    return float(value)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(
        prog="python -m alignrepro.methods.lab.select",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--phase-dir", type=Path, required=True, help="a finished phase folder (train.py: phase.json)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--scores", type=Path, nargs="+", help="one JSON per epoch, in epoch order (e.g. MMLU-branch)")
    src.add_argument("--heldout", type=Path, help="JSONL messages records: score each epoch by held-out NLL")
    p.add_argument("--key", default="accuracy", help="dotted key of the score in each --scores file")
    p.add_argument("--metric", help="the metric's name (default: heldout_nll with --heldout, else --key)")
    p.add_argument(
        "--direction",
        choices=("higher", "lower"),
        help="which is better (default: lower for NLL/loss metrics, else higher)",
    )
    p.add_argument("--tolerance", type=float, default=0.0, help="scores this close to the best tie")
    p.add_argument("--max-length", type=int, default=1024, help="held-out NLL: tokens per row")
    p.add_argument("--batch-size", type=int, default=8, help="held-out NLL: rows per forward pass")
    p.add_argument("--dtype", default="float32")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    epochs = phase_epochs(args.phase_dir)
    details: dict[str, Any] = {}
    if args.heldout:
        metric = args.metric or "heldout_nll"
        records = read_jsonl(args.heldout)
        scores = {}
        for e in epochs:
            res = heldout_nll(
                args.phase_dir / e["dir"],
                records,
                max_length=args.max_length,
                batch_size=args.batch_size,
                dtype=args.dtype,
            )
            scores[e["epoch"]] = res["nll"]
            details[str(e["epoch"])] = res
        details["heldout"] = str(args.heldout)
    else:
        metric = args.metric or args.key
        if len(args.scores) != len(epochs):
            raise UserError(f"{len(args.scores)} --scores files for {len(epochs)} epochs of {args.phase_dir}")
        scores = {e["epoch"]: _score_from(f, args.key) for e, f in zip(epochs, args.scores, strict=True)}
        details = {str(e["epoch"]): str(f) for e, f in zip(epochs, args.scores, strict=True)}
    direction = args.direction or ("lower" if metric in LOWER_IS_BETTER else "higher")
    doc = write_selection(args.phase_dir, scores, metric, direction == "higher", args.tolerance, details)
    print(json.dumps({k: doc[k] for k in ("phase", "metric", "scores", "selected_epoch")}, indent=2))
    return doc


if __name__ == "__main__":
    main()
