"""An iteration's SPIN pairs and their weights. Read top to bottom:

  1. `pairs`: each training prompt's real answer (chosen) against the policy's own answer (rejected); from iteration 1
     on, the previous iteration's pairs too (SPIN's data mixing). Empty answers are dropped, the same for every arm.
  2. `weights`: w = f(d) from the latent distances, scaled to mean 1 within [low, high] (so the effective learning
     rate is SPIN's, and a degenerate answer's huge distance cannot dominate), plus diagnostics: how well d separates
     wrong from right answers on the verifiable pairs (AUC) and how much it merely measures length.

`python -m alignrepro.methods.ld_align.weights --help`
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from alignrepro.data.records import Record, load_records
from alignrepro.data.verifiable import is_correct
from alignrepro.errors import UserError
from alignrepro.io import atomic_write_json, read_jsonl, write_jsonl
from alignrepro.rows import load_ref

log = logging.getLogger("ld_align.weights")


# ------------------------------------------------------------------------------------------------------- pairs
def build_pairs(train: list, generations: list[tuple[str, list]]) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """(prompt, real, generated) rows, one per training prompt and generation file `(tag, records)`."""
    real = {r.id: r for r in train}
    rows, dropped = [], {}
    for tag, records in generations:
        dropped[tag] = 0
        for g in records:
            if g.id not in real:
                raise UserError(f"generation {tag}: record {g.id!r} is not a training prompt")
            text = (g.output or "").strip()
            if not text:
                dropped[tag] += 1
                continue
            r = real[g.id]
            rows.append(
                {"id": f"{g.id}@{tag}", "prompt": r.instruction, "real": r.reference, "generated": text, "weight": 1.0}
            )
    return rows, dropped


def guide_texts(train: list, sft: list, generated: list, which: str) -> list[dict[str, str]]:
    """{prompt, response} rows: real answers of the training prompts / SFT samples, iteration 0's own answers."""
    out = []
    for part in which.split(","):
        if part == "train_real":
            out += [{"prompt": r.instruction, "response": r.reference} for r in train]
        elif part == "sft_real":
            out += [{"prompt": r.instruction, "response": r.reference} for r in sft]
        elif part == "generated_iter0":
            out += [
                {"prompt": g.instruction, "response": g.output.strip()} for g in generated if (g.output or "").strip()
            ]
        else:
            raise UserError(f"ld_align.guide.data: unknown part {part!r} (train_real, generated_iter0, sft_real)")
    return out


# ----------------------------------------------------------------------------------------------------- weights
def scale_to_mean_one(raw: np.ndarray, low: float, high: float) -> np.ndarray:
    """clip(s * raw, low, high) with the s that makes the mean 1 (bisection: the mean is monotone in s). The order
    of the raw values is kept, so weights still rise with what they measure."""
    if not low <= 1.0 <= high:
        raise UserError(f"ld_align.weights.clip: [{low}, {high}] must contain 1 (weights have mean 1)")
    raw = np.asarray(raw, dtype=np.float64)
    if raw.size == 0 or np.allclose(raw, raw.mean()) or raw.mean() <= 0:
        return np.ones_like(raw)
    lo, hi = 0.0, high / raw[raw > 0].min()
    for _ in range(200):
        s = (lo + hi) / 2
        if np.clip(s * raw, low, high).mean() < 1.0:
            lo = s
        else:
            hi = s
    return np.clip(hi * raw, low, high)


def raw_weights(d: np.ndarray, row: dict[str, Any], settings: dict[str, Any], seed: int) -> np.ndarray:
    kind = row["weighting"]
    mean = d.mean() if d.size and d.mean() > 0 else 1.0
    if kind == "constant":
        return np.ones_like(d)
    if kind == "inverse":
        return 1.0 / (d / mean + 1e-3)
    if kind == "custom":
        fn = load_ref(row["weight_fn"], row.get("folder") or None)
        out = np.asarray(fn(d.tolist(), settings, seed), dtype=np.float64)
        if out.shape != d.shape or not np.isfinite(out).all() or (out < 0).any():
            want = f"expected {d.shape}, finite, >= 0"
            raise UserError(f"row {row['name']!r}: weight_fn returned {out.shape} values; {want}")
        return out
    if settings["form"] == "softmax":
        z = d / (settings["temperature"] * mean)
        e = np.exp(z - z.max())
        base = d.size * e / e.sum()
    else:
        base = d / mean
    if kind == "permuted":  # the same weights on other pairs: does *which* pair gets weight matter?
        base = base[np.random.default_rng(seed).permutation(d.size)]
    return base


def weights_for(d: list[float], row: dict[str, Any], settings: dict[str, Any], seed: int) -> np.ndarray:
    settings = {**settings, **(row.get("weights") or {})}
    arr = np.asarray(d, dtype=np.float64)
    if row["weighting"] == "constant":
        return np.ones_like(arr)
    low, high = settings["clip"]
    return scale_to_mean_one(raw_weights(arr, row, settings, seed), low, high)


# ------------------------------------------------------------------------------------------------- diagnostics
def auc(scores: list[float], positive: list[bool]) -> float | None:
    """P(score of a positive > score of a negative), ties half (Mann-Whitney); None without both classes."""
    pos = [s for s, p in zip(scores, positive, strict=True) if p]
    neg = [s for s, p in zip(scores, positive, strict=True) if not p]
    if not pos or not neg:
        return None
    wins = sum((a > b) + 0.5 * (a == b) for a in pos for b in neg)
    return wins / (len(pos) * len(neg))


def diagnostics(pairs: list[dict], dist: dict[str, dict], w: np.ndarray, train: dict[str, Any]) -> dict[str, Any]:
    d = np.array([dist[p["id"]]["distance"] for p in pairs], dtype=np.float64)
    len_diff = np.array([dist[p["id"]]["len_real"] - dist[p["id"]]["len_generated"] for p in pairs], dtype=np.float64)
    wrong, scores = [], []
    for p, di in zip(pairs, d, strict=True):
        rec = train.get(p["id"].split("@")[0])
        if rec is not None and "gold" in (rec.meta or {}):
            gold_rec = Record.from_dict({**rec.to_dict(), "reference": rec.meta["gold"]})
            wrong.append(not is_correct(gold_rec, p["generated"]))
            scores.append(float(di))

    def corr(a: np.ndarray, b: np.ndarray) -> float | None:
        return None if a.size < 3 or a.std() == 0 or b.std() == 0 else float(np.corrcoef(a, b)[0, 1])

    return {
        "n_pairs": len(pairs),
        "distance": {"mean": float(d.mean()), "min": float(d.min()), "max": float(d.max()), "std": float(d.std())},
        "weight": {"mean": float(w.mean()), "min": float(w.min()), "max": float(w.max()), "std": float(w.std())},
        "corr_distance_abs_len_diff": corr(d, np.abs(len_diff)),
        "corr_weight_distance": corr(w, d),
        "verifiable": {"n": len(wrong), "n_wrong": int(sum(wrong)), "auc_distance_wrong": auc(scores, wrong)},
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m alignrepro.methods.ld_align.weights",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("pairs", help="an iteration's (prompt, real, generated) pairs, weight 1")
    a.add_argument("--train", type=Path, required=True, help="train.jsonl of the data step")
    a.add_argument("--generations", nargs="+", required=True, help="TAG=FILE: the policy's answers (newest last)")
    a.add_argument("--out", type=Path, required=True)
    b = sub.add_parser("weights", help="weights from latent distances, with diagnostics")
    b.add_argument("--train", type=Path, required=True)
    b.add_argument("--pairs", type=Path, required=True)
    b.add_argument("--distances", type=Path, required=True, help="rows {id, distance, len_real, len_generated}")
    b.add_argument("--row-json", required=True, help="the arm's row entry")
    b.add_argument("--weights-json", required=True, help="config ld_align.weights")
    b.add_argument("--seed", type=int, required=True)
    b.add_argument("--out", type=Path, required=True)
    b.add_argument("--diagnostics", type=Path, required=True)
    c = sub.add_parser("texts", help="the texts the guide model learns to reconstruct")
    c.add_argument("--train", type=Path, required=True)
    c.add_argument("--sft", type=Path, required=True)
    c.add_argument("--generations", type=Path, required=True, help="iteration 0's answers")
    c.add_argument("--which", required=True, help="comma-separated: train_real, generated_iter0, sft_real")
    c.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    train = load_records(args.train)
    if args.cmd == "texts":
        write_jsonl(args.out, guide_texts(train, load_records(args.sft), load_records(args.generations), args.which))
        return
    if args.cmd == "pairs":
        gens = []
        for item in args.generations:
            tag, _, path = item.partition("=")
            gens.append((tag, load_records(path)))
        rows, dropped = build_pairs(train, gens)
        write_jsonl(args.out, rows)
        atomic_write_json(args.out.with_suffix(".json"), {"n_pairs": len(rows), "dropped_empty": dropped})
        return
    pairs = read_jsonl(args.pairs)
    dist = {r["id"]: r for r in read_jsonl(args.distances)}
    missing = [q["id"] for q in pairs if q["id"] not in dist]
    if missing:
        raise UserError(f"{args.distances}: no distance for pairs {missing[:3]} (of {len(missing)})")
    row = json.loads(args.row_json)
    w = weights_for([dist[q["id"]]["distance"] for q in pairs], row, json.loads(args.weights_json), args.seed)
    for q, wi in zip(pairs, w, strict=True):
        q["weight"] = float(wi)
        q["distance"] = float(dist[q["id"]]["distance"])
    write_jsonl(args.out, pairs)
    diag = diagnostics(pairs, dist, w, {r.id: r for r in train})
    atomic_write_json(args.diagnostics, {"row": row["name"], **diag})
    log.info("weights: %s", json.dumps(diag))


if __name__ == "__main__":
    main()
