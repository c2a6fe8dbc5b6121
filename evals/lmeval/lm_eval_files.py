"""lm-eval's own outputs, kept beside the project's summary: its results JSON and one per-sample log per (sub)task.

Written by lm-eval's EvaluationTracker (the writer behind `lm_eval --output_path ... --log_samples`), so the files
are exactly what lm-eval's CLI writes and open with its tooling. The tracker names files with a timestamp
(`results_<date>.json`, `samples_<task>_<date>.jsonl`): it writes into a scratch folder, and each file is then moved
to a stable name, `results.json` and `samples_<task>.jsonl`, so a workflow can declare them as outputs.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

RESULTS = "results.json"


def samples_name(task: str) -> str:
    return f"samples_{task}.jsonl"


def save(tracker, results: dict[str, Any], samples: dict[str, list[dict]], out_dir: str | Path) -> dict[str, Any]:
    """Write lm-eval's results JSON and per-task samples to out_dir (stable names); return {results, samples} names.

    The tracker logs and swallows write errors, so each expected file is checked here."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    scratch = Path(tracker.output_path).parent
    scratch.mkdir(parents=True, exist_ok=True)
    tracker.save_results_aggregated(results=results, samples=samples)
    for task in results["configs"]:
        tracker.save_results_samples(task_name=task, samples=samples[task])
    written = {p.name: p for p in scratch.iterdir()}
    moved: dict[str, Any] = {"results": RESULTS, "samples": {}}
    agg = [p for n, p in written.items() if re.fullmatch(r"results_.+\.json", n)]
    if len(agg) != 1:
        raise RuntimeError(f"lm-eval's tracker wrote {len(agg)} results files in {scratch} (expected 1)")
    os.replace(agg[0], out / RESULTS)
    for task in results["configs"]:
        found = [p for n, p in written.items() if n.startswith(f"samples_{task}_") and n.endswith(".jsonl")]
        found = [p for p in found if p.name.removeprefix(f"samples_{task}_").count("_") == 0]  # not a longer name
        if len(found) != 1:
            raise RuntimeError(f"lm-eval's tracker wrote no single samples file for {task} in {scratch}")
        os.replace(found[0], out / samples_name(task))
        moved["samples"][task] = samples_name(task)
    return moved


def write(results: dict[str, Any], samples: dict[str, list[dict]], tracker, out_dir: str | Path) -> dict[str, Any]:
    """save() through a fresh scratch folder inside out_dir (same file system: the moves are atomic renames)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".lm_eval_", dir=out))
    try:
        tracker.output_path = str(scratch / "results.json")
        return save(tracker, results, samples, out)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
