"""LAB's phase datasets (paper Table 1) from SDG / foundational messages records.

  KT/1  knowledge with short answers
  KT/2  knowledge with long answers + foundational skills, replaying KT/1's data
  ST    compositional skills (freeform + grounded), replaying KT/1's and KT/2's data
  stacked (ablation, "Unveiling the Secret Recipe"): one SFT on the union of everything, each record once

Short vs long: knowledge records are split at a threshold on the assistant answer's length in tokens of the
student's tokenizer: `median` (of the knowledge answers) or an integer. An answer of length <= threshold is short, so
answers at the median (and ties) go to KT/1. Foundational records all go to KT/2 (Table 1), whatever their length.
Replay: `replay_fraction` 1.0 replays every earlier phase's own records; < 1 a seeded subset of each (drawn
separately per replaying phase), at least one record when the fraction is > 0.

The workflow writes the knowledge phases first (`--knowledge-only`: kt1/kt2 from the knowledge and foundational
records, knowledge.json), so that KT/1 trains while the skills leaves are still being generated; the full step then
writes ST and the stacked set and checks that its plan gives KT/1 and KT/2 exactly those records
(`--knowledge-manifest`).

`python -m alignrepro.methods.lab.phases --help`
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import statistics
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from alignrepro.errors import UserError
from alignrepro.io import atomic_write_json, content_sha256, read_json, read_jsonl, sha256_file, write_jsonl

log = logging.getLogger("lab.phases")
KINDS = ("knowledge", "foundational", "freeform_skill", "grounded_skill")
PHASES = ("kt1", "kt2", "st")
STACKED = "stacked"
LABELS = {"kt1": "KT/1", "kt2": "KT/2", "st": "ST", STACKED: "stacked"}
REPLAYS = {"kt1": (), "kt2": ("kt1",), "st": ("kt1", "kt2")}  # Table 1's replay buffers
KNOWLEDGE_PHASES = ("kt1", "kt2")


def load_records(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """Messages records of every file; a bad row or an id seen twice fails naming the file and the id."""
    rows, seen = [], {}
    for path in paths:
        for n, r in enumerate(read_jsonl(path), 1):
            rid = r.get("id") if isinstance(r, dict) else None
            where = f"{path}: row {rid!r}" if rid else f"{path}:{n}"
            if not isinstance(rid, str) or not rid:
                raise UserError(f"{where}: no 'id'")
            if r.get("kind") not in KINDS:
                raise UserError(f"{where}: kind {r.get('kind')!r} (expected one of {list(KINDS)})")
            answer_text(r, where)  # validates messages
            if rid in seen:
                raise UserError(f"{where}: id also in {seen[rid]} (ids must be unique across the inputs)")
            seen[rid] = str(path)
            rows.append(r)
    if not rows:
        raise UserError("lab phases: the inputs hold no records")
    return rows


def answer_text(record: dict[str, Any], where: str = "") -> str:
    """The record's assistant answers joined (SDG records have one)."""
    msgs = record.get("messages")
    ok = isinstance(msgs, list) and all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in msgs
    )
    if not ok:
        raise UserError(f"{where or record.get('id')}: 'messages' must be a list of {{role, content}}")
    answers = [m["content"] for m in msgs if m["role"] == "assistant"]
    if not answers or not msgs or msgs[-1]["role"] != "assistant" or msgs[0]["role"] == "assistant":
        raise UserError(
            f"{where or record.get('id')}: messages must start with a prompt and end with an assistant turn"
        )
    return "\n".join(answers)


def completion_rows(record: dict[str, Any]) -> list[dict[str, Any]]:
    """TRL conversational prompt/completion rows: one per assistant turn, with the turns before it as the prompt
    (loss on the assistant's tokens only; see train.py for why not TRL's assistant_only_loss)."""
    answer_text(record)
    msgs = [{"role": m["role"], "content": m["content"]} for m in record["messages"]]
    return [{"prompt": msgs[:i], "completion": [m]} for i, m in enumerate(msgs) if m["role"] == "assistant" and i]


def split_threshold(lengths: list[int], split: str | int) -> float:
    """The short/long threshold: the median of `lengths` (split "median") or the integer given."""
    if isinstance(split, bool):
        raise UserError(f"lab phases: split {split!r} (expected 'median' or an integer number of tokens)")
    if isinstance(split, int):
        return float(split)
    if isinstance(split, str) and split.strip().isdigit():
        return float(int(split))
    if split != "median":
        raise UserError(f"lab phases: split {split!r} (expected 'median' or an integer number of tokens)")
    if not lengths:
        raise UserError("lab phases: no knowledge records to split at the median answer length")
    return float(statistics.median(lengths))


def replay_subset(ids: list[str], fraction: float, seed: int, label: str) -> list[str]:
    """`fraction` of `ids` (sorted), all of them at 1.0; a seeded draw of round(fraction * n) (>= 1) otherwise."""
    if not 0 <= fraction <= 1 or math.isnan(fraction):
        raise UserError(f"lab phases: replay_fraction {fraction!r} (expected a number in [0, 1])")
    ids = sorted(ids)
    if fraction >= 1 or not ids:
        return ids
    if fraction == 0:
        return []
    k = max(1, round(fraction * len(ids)))
    return sorted(random.Random(f"{seed}:{label}").sample(ids, k))


def assign_phases(
    records: list[dict[str, Any]],
    n_tokens: Callable[[str], int],
    split: str | int = "median",
    replay_fraction: float = 1.0,
    seed: int = 0,
    phases: tuple[str, ...] = PHASES,
) -> dict[str, Any]:
    """{threshold, lengths, own: {phase: ids}, replay: {phase: {earlier phase: ids}}, ids: {phase: ids}} where
    `own` is each phase's new data and `ids` its whole training set (own + replay), each sorted and unique. With
    `phases` = KNOWLEDGE_PHASES only KT/1 and KT/2 (no skills records needed), else every phase and the stacked set."""
    by_kind: dict[str, list[dict[str, Any]]] = {k: [] for k in KINDS}
    for r in records:
        by_kind[r["kind"]].append(r)
    lengths = {r["id"]: n_tokens(answer_text(r)) for r in by_kind["knowledge"]}
    threshold = split_threshold(list(lengths.values()), split)
    short = [i for i, n in lengths.items() if n <= threshold]
    long = [i for i, n in lengths.items() if n > threshold]
    own = {
        "kt1": sorted(short),
        "kt2": sorted(long + [r["id"] for r in by_kind["foundational"]]),
        "st": sorted(r["id"] for k in ("freeform_skill", "grounded_skill") for r in by_kind[k]),
    }
    own = {phase: own[phase] for phase in phases}
    needs = {
        "kt1": "short knowledge answers",
        "kt2": "long knowledge answers or foundational records",
        "st": "freeform or grounded skill records",
    }
    for phase, ids in own.items():
        if not ids:
            raise UserError(
                f"lab phases: phase {LABELS[phase]} has no data of its own (no {needs[phase]}; threshold "
                f"{threshold:g} tokens, {len(lengths)} knowledge records): a phase of replay alone is not LAB's"
            )
    replay = {
        phase: {src: replay_subset(own[src], replay_fraction, seed, f"{phase}<-{src}") for src in REPLAYS[phase]}
        for phase in phases
    }
    ids = {phase: sorted({*own[phase], *(i for src in replay[phase].values() for i in src)}) for phase in phases}
    if phases == PHASES:
        ids[STACKED] = sorted(r["id"] for r in records)
    return {"threshold": threshold, "lengths": dict(sorted(lengths.items())), "own": own, "replay": replay, "ids": ids}


def token_counter(model_dir: str | Path) -> Callable[[str], int]:
    """Answer length in tokens of the student's tokenizer (no special tokens)."""
    from alignrepro.models import load_tokenizer

    tok = load_tokenizer(model_dir)
    return lambda text: len(tok(text, add_special_tokens=False)["input_ids"])


def write_phases(
    inputs: list[Path],
    tokenizer_model: Path,
    out_dir: Path,
    split: str | int = "median",
    replay_fraction: float = 1.0,
    seed: int = 0,
    knowledge_only: bool = False,
    knowledge_manifest: Path | None = None,
) -> dict[str, Any]:
    """<out>/{kt1,kt2,st,stacked}.jsonl (the records, each with `source_phase`: the phase whose own data it is) and
    <out>/manifest.json (written last): ids per phase, counts, the threshold, every file's sha256.
    `knowledge_only`: kt1/kt2 and <out>/knowledge.json alone. `knowledge_manifest` (that file): KT/1 and KT/2 are
    not written again; the plan must give them the same records (a UserError otherwise)."""
    from alignrepro.training import input_identity

    records = load_records(inputs)
    phases = KNOWLEDGE_PHASES if knowledge_only else PHASES
    plan = assign_phases(records, token_counter(tokenizer_model), split, replay_fraction, seed, phases)
    origin = {i: phase for phase, ids in plan["own"].items() for i in ids}
    by_id = {r["id"]: r for r in records}
    known = read_json(knowledge_manifest)["phases"] if knowledge_manifest else {}
    for phase, entry in known.items():
        if entry["ids"] != plan["ids"][phase]:
            raise UserError(
                f"lab phases: {LABELS[phase]}'s records differ from {knowledge_manifest} (written from the knowledge "
                "records alone): the same inputs must give the same knowledge phases"
            )
    out_dir.mkdir(parents=True, exist_ok=True)
    out = {}
    for phase in plan["ids"]:  # the planned phases, and the stacked set unless knowledge_only
        if phase in known:
            out[phase] = known[phase]
            continue
        path = out_dir / f"{phase}.jsonl"
        write_jsonl(path, [{**by_id[i], "source_phase": origin[i]} for i in plan["ids"][phase]])
        counts = {src: len(ids) for src, ids in plan["replay"].get(phase, {}).items()}
        out[phase] = {
            "label": LABELS[phase],
            "file": path.name,
            "sha256": sha256_file(path),
            "count": len(plan["ids"][phase]),
            "own_count": len(plan["own"].get(phase, plan["ids"][phase])),
            "replay_counts": counts,
            "ids": plan["ids"][phase],
            "own": plan["own"].get(phase, plan["ids"][phase]),
            "replay": plan["replay"].get(phase, {}),
            "kinds": _kind_counts(by_id[i] for i in plan["ids"][phase]),
        }
    lengths = list(plan["lengths"].values())
    manifest = {
        "split": {
            "rule": split,
            "threshold_tokens": plan["threshold"],
            "at_threshold": "short (KT/1): short means answer tokens <= threshold",
            "tokenizer": input_identity(tokenizer_model),
            "knowledge_answer_tokens": plan["lengths"],
            "knowledge_short": len(plan["own"]["kt1"]),
            "knowledge_long": len(lengths) - len(plan["own"]["kt1"]),
        },
        "replay_fraction": replay_fraction,
        "seed": seed,
        "inputs": {str(p): content_sha256(p) for p in inputs},
        "phases": out,
    }
    atomic_write_json(out_dir / ("knowledge.json" if knowledge_only else "manifest.json"), manifest)
    return manifest


def _kind_counts(rows: Iterable[dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in rows:
        out[r["kind"]] = out.get(r["kind"], 0) + 1
    return dict(sorted(out.items()))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(
        prog="python -m alignrepro.methods.lab.phases",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--records", type=Path, nargs="+", required=True, help="JSONL messages records (SDG, foundational)")
    p.add_argument("--tokenizer-model", type=Path, required=True, help="the student's model folder (its tokenizer)")
    p.add_argument("--split", default="median", help="'median' or an integer answer length in tokens")
    p.add_argument("--replay-fraction", type=float, default=1.0, help="share of each earlier phase replayed")
    p.add_argument("--seed", type=int, default=0, help="seed of the replay subsets (replay-fraction < 1)")
    p.add_argument("--out", type=Path, required=True, help="folder for the phase files and manifest.json")
    p.add_argument("--knowledge-only", action="store_true", help="KT/1 and KT/2 alone (knowledge.json)")
    p.add_argument("--knowledge-manifest", type=Path, help="knowledge.json: KT/1 and KT/2 as written there (checked)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    split = int(args.split) if args.split.strip().isdigit() else args.split
    manifest = write_phases(args.records, args.tokenizer_model, args.out, split, args.replay_fraction, args.seed,
                            args.knowledge_only, args.knowledge_manifest)  # fmt: skip
    summary = {k: {"count": v["count"], "replay": v["replay_counts"]} for k, v in manifest["phases"].items()}
    print(json.dumps({"threshold_tokens": manifest["split"]["threshold_tokens"], "phases": summary}, indent=2))
    return manifest


if __name__ == "__main__":
    main()
