"""Compare two runs' results byte for byte, except what legitimately differs between runs: times and speeds
(alignrepro.io.VOLATILE_KEY, in JSON, JSONL and CSV columns), the run folder's own path, logs, timings and W&B's
files. Used by the pipeline test (two ci runs) and by tests/fault_harness.py (a killed-and-resumed run against an
uninterrupted one)."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

from alignrepro.io import VOLATILE_KEY, without_volatile

# Folders of logs, timings and W&B's own files, and binary/derived files: different on every run by nature.
SKIP_PARTS = {"logs", "benchmarks", "wandb", ".snakemake", "checkpoints"}
SKIP_SUFFIXES = {".log", ".tsv", ".sqlite", ".sqlite-wal", ".sqlite-shm", ".lock", ".png", ".html"}
_TIMES = re.compile(r"\b\d+(\.\d+)? ?(s|ms|min|seconds|CPU-s)\b")


def result_files(root: Path) -> list[str]:
    out = []
    for p in sorted((root / "results").rglob("*")):
        rel = p.relative_to(root)
        if p.is_file() and not (SKIP_PARTS & set(rel.parts)) and p.suffix not in SKIP_SUFFIXES:
            out.append(rel.as_posix())
    return out


def _normal(rel: str, data: bytes, root: Path):
    text = data.decode("utf-8", errors="replace").replace(str(root), "<root>")
    if rel.endswith(".json"):
        return without_volatile(json.loads(text))
    if rel.endswith(".jsonl"):
        return [without_volatile(json.loads(x)) for x in text.splitlines() if x.strip()]
    if rel.endswith(".csv"):
        return [{k: v for k, v in r.items() if not VOLATILE_KEY.search(k)} for r in csv.DictReader(io.StringIO(text))]
    if rel.endswith(".md"):
        return _TIMES.sub("<t>", text)
    return text


def differences(a: Path, b: Path, only: str = "") -> tuple[list[str], int]:
    """(files that differ or exist on one side only, number of files compared) under results/`only`."""
    fa = {f for f in result_files(a) if f.startswith(f"results/{only}")}
    fb = {f for f in result_files(b) if f.startswith(f"results/{only}")}
    diffs = sorted(fa ^ fb)
    for rel in sorted(fa & fb):
        da, db = (a / rel).read_bytes(), (b / rel).read_bytes()
        if da != db and _normal(rel, da, a) != _normal(rel, db, b):
            diffs.append(rel)
    return sorted(diffs), len(fa & fb)
