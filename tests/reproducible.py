"""Compare two runs' results byte for byte, except what legitimately differs between runs (times, paths, ids of
W&B runs). Used by the pipeline test (two ci runs) and by tests/fault_harness.py (a killed-and-resumed run
against an uninterrupted one)."""

from __future__ import annotations

import json
import re
from pathlib import Path

# Folders that hold logs, timings and W&B's own files: different on every run by nature.
SKIP_PARTS = {"logs", "benchmarks", "wandb", ".snakemake", "checkpoints"}
SKIP_SUFFIXES = {".log", ".tsv", ".sqlite", ".sqlite-wal", ".sqlite-shm", ".lock", ".png"}
# JSON keys whose values are times, durations, speeds or host facts.
VOLATILE_KEY = re.compile(
    r"(^|_)(time|timestamp|date|created|started|finished|seconds|runtime|per_second|wall|elapsed|duration|host|"
    r"hostname|pid|cpu_flags|cpu|torch_threads|per_step|step_times|seconds_per_step_median)($|_)|"
    r"^(train_runtime|train_samples_per_second|train_steps_per_second|seconds_per_1000|s_per_1000)"
)
_NUMBER_SECONDS = re.compile(r"\b\d+(\.\d+)? ?(s|ms|seconds|CPU-s)\b")


def _scrub(obj, root_a: str, root_b: str):
    if isinstance(obj, dict):
        return {k: ("<volatile>" if VOLATILE_KEY.search(k) else _scrub(v, root_a, root_b)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_scrub(v, root_a, root_b) for v in obj]
    if isinstance(obj, str):
        return obj.replace(root_a, "<root>").replace(root_b, "<root>")
    return obj


def result_files(root: Path) -> list[str]:
    base = root / "results"
    out = []
    for p in sorted(base.rglob("*")):
        rel = p.relative_to(root)
        if p.is_file() and not (SKIP_PARTS & set(rel.parts)) and p.suffix not in SKIP_SUFFIXES:
            out.append(rel.as_posix())
    return out


def differences(a: Path, b: Path, only: str = "") -> tuple[list[str], int]:
    """(files that differ or exist on one side only, number of files compared) under results/`only`."""
    fa = [f for f in result_files(a) if f.startswith(f"results/{only}")]
    fb = [f for f in result_files(b) if f.startswith(f"results/{only}")]
    diffs = sorted(set(fa) ^ set(fb))
    for rel in sorted(set(fa) & set(fb)):
        ta, tb = (a / rel).read_bytes(), (b / rel).read_bytes()
        if ta == tb:
            continue
        if rel.endswith(".json"):
            ja, jb = json.loads(ta), json.loads(tb)
            if _scrub(ja, str(a), str(b)) == _scrub(jb, str(a), str(b)):
                continue
        elif rel.endswith(".jsonl"):
            la = [_scrub(json.loads(x), str(a), str(b)) for x in ta.decode().splitlines() if x.strip()]
            lb = [_scrub(json.loads(x), str(a), str(b)) for x in tb.decode().splitlines() if x.strip()]
            if la == lb:
                continue
        elif rel.endswith(".md"):
            sa = _NUMBER_SECONDS.sub("<t>", ta.decode().replace(str(a), "<root>"))
            sb = _NUMBER_SECONDS.sub("<t>", tb.decode().replace(str(b), "<root>"))
            if sa == sb:
                continue
        diffs.append(rel)
    return diffs, len(set(fa) & set(fb))
