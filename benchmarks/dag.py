"""Workflow-level costs, measured on a scratch copy of a completed ci-tier run (fast; the DAG is the tiny tier's):
the no-op rerun, the cost of adding one CUT row (jobs run, judge calls made vs cache hits), and the fixed start-up
of the entry points the rules call (`python -m <module> --help`: its imports) plus one model load."""

from __future__ import annotations

import re
import resource
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.stats import summary

REPO = Path(__file__).resolve().parents[1]
PY = Path(sys.executable)
SNAKEMAKE = PY.parent / "snakemake"


def run_child(cmd: list[str], cwd: Path | None = None, timeout: int = 3600) -> dict[str, Any]:
    """Run a command; wall seconds, CPU seconds of it and its children (user + system), return code, output."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": wall, "cpu_s": cpu, "rc": proc.returncode, "out": proc.stdout + proc.stderr}


def smk_cmd(workdir: Path, *args: str) -> list[str]:
    return [str(SNAKEMAKE), "-s", str(REPO / "Snakefile"), "--directory", str(workdir), "--cores", "2", "--nocolor",
            *args]  # fmt: skip


def job_stats(output: str) -> dict[str, int]:
    """Snakemake's "Job stats:" table as {rule: count}; {} when there was nothing to do."""
    if "Job stats:" not in output:
        return {}
    block = output.split("Job stats:", 1)[1]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", block, re.M) if m.group(1) != "total"}


def copy_run(src: Path, dst: Path) -> Path:
    """A scratch copy of a run directory with its file times (Snakemake's mtime trigger) and metadata, no locks."""
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst, symlinks=True, ignore=shutil.ignore_patterns("locks", "incomplete", "*.lock"))
    return dst


def fresh_ci_run(workdir: Path, config: list[str]) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    res = run_child(smk_cmd(workdir, "--config", *config), timeout=7200)
    return {"wall_s": round(res["wall_s"], 1), "cpu_s": round(res["cpu_s"], 1), "rc": res["rc"],
            "jobs": sum(job_stats(res["out"]).values()), "tail": res["out"][-2000:] if res["rc"] else ""}  # fmt: skip


def update(workdir: Path, config: list[str], targets: tuple[str, ...] = ()) -> dict[str, Any]:
    """Bring the copy up to date (code changed since it ran reruns those jobs); what ran is reported."""
    res = run_child(smk_cmd(workdir, *targets, "--keep-going", "--config", *config), timeout=7200)
    return {"wall_s": round(res["wall_s"], 1), "rc": res["rc"], "jobs_run": job_stats(res["out"]),
            "tail": res["out"][-2000:] if res["rc"] else ""}  # fmt: skip


def noop_rerun(workdir: Path, config: list[str], repeats: int, targets: tuple[str, ...] = ()) -> dict[str, Any]:
    """Wall and CPU seconds of `snakemake` on a completed run (it must find nothing to do)."""
    runs = [run_child(smk_cmd(workdir, *targets, "--config", *config)) for _ in range(repeats)]
    return {
        "wall_s": summary([r["wall_s"] for r in runs]),
        "cpu_s": summary([r["cpu_s"] for r in runs]),
        "nothing_to_do": all(r["rc"] == 0 and not job_stats(r["out"]) for r in runs),
        "jobs_run_first": job_stats(runs[0]["out"]),
    }


def _judge_rows(workdir: Path) -> int:
    rows = 0
    for db in (workdir / "results").rglob("judge_cache*.sqlite"):
        with sqlite3.connect(db) as conn:
            rows += conn.execute("SELECT COUNT(*) FROM judgments").fetchone()[0]
    return rows


def judge_cache_counts(logs: list[Path]) -> dict[str, int]:
    """Sum of the "judge cache: H hits, M misses" lines the judging steps log."""
    hits = misses = 0
    for log in logs:
        for m in re.finditer(r"judge cache: (\d+) hits, (\d+) misses", log.read_text(errors="replace")):
            hits, misses = hits + int(m.group(1)), misses + int(m.group(2))
    return {"hits": hits, "misses": misses}


def add_row(workdir: Path, config: list[str], row: str = "ipo", targets: tuple[str, ...] = ()) -> dict[str, Any]:
    """The README's recipe: copy CUT's shipped row folder, enable it, run; which jobs ran and what the judges did."""
    rows = workdir / "bench_rows"
    shutil.rmtree(rows, ignore_errors=True)
    target = rows / f"bench_{row}"
    shutil.copytree(REPO / "methods" / "cut" / "rows" / row, target)
    yaml = target / "row.yaml"
    yaml.write_text(re.sub(r"^enabled: false", "enabled: true", yaml.read_text(), flags=re.M))
    judged_before, start = _judge_rows(workdir), time.time()
    res = run_child(smk_cmd(workdir, *targets, "--config", *config, f"row_dirs=[{rows}]"), timeout=7200)
    logs = [p for p in (workdir / "results").rglob("*.log") if p.stat().st_mtime >= start]
    return {
        "rc": res["rc"],
        "wall_s": round(res["wall_s"], 1),
        "cpu_s": round(res["cpu_s"], 1),
        "jobs_run": job_stats(res["out"]),
        "n_jobs": sum(job_stats(res["out"]).values()),
        "judge_cache_log": judge_cache_counts(logs),
        "judgments_added": _judge_rows(workdir) - judged_before,
        "tail": res["out"][-2000:] if res["rc"] else "",
    }


def entry_overhead(modules: list[str], model_dir: Path, repeats: int) -> dict[str, Any]:
    """CPU seconds of `python -m <module> --help` per entry point (interpreter + the module's imports), and of
    loading the tokenizer + model on top of torch/transformers' own import; interleaved over repeats."""
    model_load = (
        "import torch, transformers; from alignrepro.models import load_model, load_tokenizer; "
        f"load_tokenizer({str(model_dir)!r}); load_model({str(model_dir)!r})"
    )
    commands = {m: [str(PY), "-m", m, "--help"] for m in modules}
    commands["(torch + transformers import)"] = [str(PY), "-c", "import torch, transformers"]
    commands["(same + tokenizer + model load)"] = [str(PY), "-c", model_load]
    samples: dict[str, list[dict[str, Any]]] = {k: [] for k in commands}
    for r in range(repeats):
        for name in list(commands)[:: 1 if r % 2 == 0 else -1]:
            samples[name].append(run_child(commands[name], cwd=REPO))
    out = {k: {"cpu_s": summary([x["cpu_s"] for x in v]), "wall_s": summary([x["wall_s"] for x in v]),
               "rc": v[0]["rc"]} for k, v in samples.items()}  # fmt: skip
    load = (
        out["(same + tokenizer + model load)"]["cpu_s"]["median"]
        - out["(torch + transformers import)"]["cpu_s"]["median"]
    )
    return {"per_module": out, "model_load_cpu_s": round(max(load, 0.0), 2)}


def overhead_share(modules: dict[str, dict[str, int]], measured: dict[str, Any], run_cpu_s: float) -> dict[str, Any]:
    """Estimated fixed CPU of a run: each job pays its entry point's start-up (median of `--help`; an unmeasured module
    the median of the measured ones); a job that reads a model folder pays at least torch + transformers' import
    (entry points import them lazily, so `--help` may not) and one model load."""
    per = measured["per_module"]
    known = [per[m]["cpu_s"]["median"] for m in modules if m in per]
    fallback = sorted(known)[len(known) // 2] if known else 0.0
    torch_import = per.get("(torch + transformers import)", {}).get("cpu_s", {}).get("median", 0.0)
    total = 0.0
    n_jobs = 0
    for m, row in modules.items():
        start = per[m]["cpu_s"]["median"] if m in per else fallback
        total += (row["jobs"] - row["model_jobs"]) * start
        total += row["model_jobs"] * (max(start, torch_import) + measured["model_load_cpu_s"])
        n_jobs += row["jobs"]
    return {
        "jobs": n_jobs,
        "fixed_cpu_s": round(total, 1),
        "per_job_cpu_s": round(total / n_jobs, 2) if n_jobs else None,
        "share_of_run_cpu": round(total / run_cpu_s, 4) if run_cpu_s else None,
    }
