"""Oracle-scored accuracy (in %) on verifiable tasks, overall and per task kind, with Wilson 95% intervals.

Records with task == "open" have no gold answer and are skipped (counted in n_skipped_open). `per_item` keeps each
scored record's 0/1 by id, so two models on the same items compare paired (alignrepro.stats.paired_compare).
"""

from __future__ import annotations

import argparse
import logging
import math
from collections import defaultdict
from typing import Any

from alignrepro.data.records import Record, load_records
from alignrepro.io import atomic_write_json, sha256_file
from alignrepro.judges.oracle import OracleJudge
from alignrepro.provenance import provenance

log = logging.getLogger(__name__)
Z95 = 1.96


def wilson(k: int, n: int, z: float = Z95) -> list[float] | None:
    """Wilson score interval in %: unlike the normal approximation it stays inside [0, 100] and works at 0/n and n/n."""
    if n == 0:
        return None
    p = k / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return [100 * max(0.0, center - half), 100 * min(1.0, center + half)]


def _summary(k: int, n: int) -> dict[str, Any]:
    return {"accuracy": 100 * k / n if n else None, "n_correct": k, "n": n, "ci95": wilson(k, n)}


def accuracy(records_with_outputs: list[Record | dict[str, Any]]) -> dict[str, Any]:
    from alignrepro.data.verifiable import is_correct  # lazy: written separately from the judges

    records = [r if isinstance(r, Record) else Record.from_dict(r) for r in records_with_outputs]
    per_task: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    per_item: dict[str, int] = {}
    for r in records:
        if r.task == "open":
            continue
        if r.output is None:
            raise ValueError(f"record {r.id} has no output to score")
        counts = per_task[r.task]
        per_item[str(r.id)] = int(bool(is_correct(r, r.output)))
        counts[0] += per_item[str(r.id)]
        counts[1] += 1
    k, n = sum(c[0] for c in per_task.values()), sum(c[1] for c in per_task.values())
    return _summary(k, n) | {
        "per_task": {t: _summary(*c) for t, c in sorted(per_task.items())},
        "n_skipped_open": sum(r.task == "open" for r in records),
        "per_item": per_item,
        "judge_id": OracleJudge.id,
        "checker_hash": OracleJudge().prompt_hash,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--generations", required=True, help="JSONL of Record dicts with `output`")
    ap.add_argument("--out", required=True, help="result JSON")
    ap.add_argument("--tier", default="unknown", help="the tier, recorded in the provenance block")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    result = accuracy(load_records(args.generations))
    result["inputs"] = {"generations": {"path": args.generations, "sha256": sha256_file(args.generations)}}
    result["provenance"] = provenance(tier=args.tier, config={"judge": "oracle"}, judge_id=result.get("judge_id"))
    atomic_write_json(args.out, result)
    log.info(
        "accuracy %s%% (95%% CI %s, n=%d) by %s -> %s",
        result["accuracy"],
        result["ci95"],
        result["n"],
        result["judge_id"],
        args.out,
    )
    return result


if __name__ == "__main__":
    main()
