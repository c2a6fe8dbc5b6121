"""A workflow run's time from its own records: Snakemake's `benchmark:` tsv files (s, cpu_time per job) and
`.snakemake/metadata` (rule, start and end of every job). Jobs are matched to their benchmark file by their log path
(`.../logs/<x>.log` <-> `.../benchmarks/<x>.tsv`, the project's convention); a benchmark file no job claims is grouped
under its folder and name prefix."""

from __future__ import annotations

import base64
import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class BenchRow:
    path: str  # relative to the run directory
    s: float  # wall seconds of the job
    cpu_time: float  # CPU seconds of the job's processes (psutil, as Snakemake measures it)
    max_rss: float | None = None  # MB


@dataclass
class Job:
    rule: str
    start: float
    end: float
    log: list[str]
    shellcmd: str = ""
    model_input: bool = False  # the job reads a model folder (model.json input): it pays a model load


def read_benchmark_tsv(path: Path) -> list[dict[str, float]]:
    """Rows of a Snakemake benchmark file (one per `repeat`); "NA" fields become None."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    out = []
    for row in rows:
        parsed = {}
        for key in ("s", "cpu_time", "max_rss"):
            value = row.get(key)
            parsed[key] = None if value in (None, "", "NA", "-") else float(value)
        out.append(parsed)
    return out


def benchmark_rows(run_dir: Path) -> list[BenchRow]:
    """Every `benchmark:` file under run_dir/results (a file in a folder named `benchmarks`), its first repeat."""
    rows = []
    for path in sorted((run_dir / "results").rglob("*.tsv")):
        rel = path.relative_to(run_dir)
        if "benchmarks" not in rel.parts[:-1]:
            continue
        parsed = read_benchmark_tsv(path)
        if parsed and parsed[0]["s"] is not None:
            first = parsed[0]
            rows.append(BenchRow(str(rel), first["s"], first["cpu_time"] or 0.0, first["max_rss"]))
    return rows


def metadata_jobs(run_dir: Path) -> list[Job]:
    """One Job per (rule, job_hash) recorded in .snakemake/metadata (a job with several outputs has several records)."""
    jobs: dict[tuple[str, Any], Job] = {}
    meta = run_dir / ".snakemake" / "metadata"
    for path in sorted(meta.glob("*")) if meta.is_dir() else []:
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if rec.get("starttime") is None or rec.get("endtime") is None or rec.get("incomplete"):
            continue
        key = (rec["rule"], rec.get("job_hash"))
        if key not in jobs:
            inputs = rec.get("input") or []
            jobs[key] = Job(
                rule=rec["rule"],
                start=float(rec["starttime"]),
                end=float(rec["endtime"]),
                log=list(rec.get("log") or []),
                shellcmd=rec.get("shellcmd") or "",
                model_input=any(str(i).endswith("model.json") for i in inputs),
            )
    return list(jobs.values())


def output_of(record_name: str) -> str:
    """The output path a metadata file is named after (Snakemake names it by the path's urlsafe base64)."""
    return base64.urlsafe_b64decode(record_name + "=" * (-len(record_name) % 4)).decode()


def bench_path_for_log(log: str) -> str:
    return re.sub(r"/logs/", "/benchmarks/", log, count=1).rsplit(".", 1)[0] + ".tsv"


def unmatched_group(path: str) -> str:
    """A benchmark file no job claims: its folder below `benchmarks/` and the name's first word (`train_x_y` ->
    `train`)."""
    parts = Path(path).parts
    i = parts.index("benchmarks")
    head = "/".join(parts[:i][-2:-1])  # the paper or `evals` folder (results/<paper>/<tier>/benchmarks)
    sub = "/".join(parts[i + 1 : -1])
    stem = re.split(r"[_\-.]|\d", Path(path).stem, maxsplit=1)[0] or Path(path).stem
    return "?" + "/".join(x for x in (head, sub, stem) if x)


def per_rule(benches: list[BenchRow], jobs: list[Job]) -> list[dict[str, Any]]:
    """Rows {rule, jobs, cpu_s, wall_s, max_rss_mb}, most CPU first. CPU comes from benchmark files; jobs without
    one (small steps with no `benchmark:`) count their wall time from the metadata, with cpu_s unknown (None)."""
    by_path = {b.path: b for b in benches}
    table: dict[str, dict[str, Any]] = {}

    def add(rule: str, wall: float, cpu: float | None, rss: float | None) -> None:
        row = table.setdefault(rule, {"rule": rule, "jobs": 0, "cpu_s": None, "wall_s": 0.0, "max_rss_mb": None})
        row["jobs"] += 1
        row["wall_s"] += wall
        if cpu is not None:
            row["cpu_s"] = (row["cpu_s"] or 0.0) + cpu
        if rss is not None:
            row["max_rss_mb"] = max(row["max_rss_mb"] or 0.0, rss)

    for job in jobs:
        bench = next((by_path.pop(p) for p in map(bench_path_for_log, job.log) if p in by_path), None)
        if bench is not None:
            add(job.rule, bench.s, bench.cpu_time, bench.max_rss)
        else:
            add(job.rule, job.end - job.start, None, None)
    for bench in by_path.values():
        add(unmatched_group(bench.path), bench.s, bench.cpu_time, bench.max_rss)
    return sorted(table.values(), key=lambda r: (-(r["cpu_s"] or 0.0), -r["wall_s"], r["rule"]))


def run_summary(run_dir: Path, top: int = 10) -> dict[str, Any]:
    """Wall time (first job start to last job end, from the metadata), the sums of the benchmark files and the
    rules ranked by CPU time."""
    benches, jobs = benchmark_rows(run_dir), metadata_jobs(run_dir)
    rules = per_rule(benches, jobs)
    cpu = sum(b.cpu_time for b in benches)
    out: dict[str, Any] = {
        "run_dir": str(run_dir),
        "n_benchmark_files": len(benches),
        "n_jobs": len(jobs),
        "cpu_s": round(cpu, 1),
        "job_wall_s": round(sum(b.s for b in benches), 1),
        "wall_s": round(max(j.end for j in jobs) - min(j.start for j in jobs), 1) if jobs else None,
        "top_rules": rules[:top],
        "rules": rules,
    }
    for row in rules:
        row["cpu_share"] = round(row["cpu_s"] / cpu, 4) if cpu and row["cpu_s"] is not None else None
    return out


def entry_modules(jobs: list[Job]) -> dict[str, dict[str, int]]:
    """The `python -m <module>` each job's shell command runs, with its job count and how many of them read a model
    folder; jobs running no module (run: blocks, scripts) are counted under ""."""
    out: dict[str, dict[str, int]] = {}
    for job in jobs:
        m = re.search(r"-m\s+([\w.]+)", job.shellcmd)
        row = out.setdefault(m.group(1) if m else "", {"jobs": 0, "model_jobs": 0})
        row["jobs"] += 1
        row["model_jobs"] += job.model_input
    return dict(sorted(out.items(), key=lambda kv: -kv[1]["jobs"]))
