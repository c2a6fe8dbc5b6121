"""The benchmark script's bookkeeping (benchmarks/): run records -> per-rule table, interleaving and ratios, the
overhead estimate, the Markdown; and that `python -m benchmarks.run --help` starts. Nothing here is timed."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # benchmarks/ is a top-level folder, not an installed package

from benchmarks import dag, runlog, stats  # noqa: E402
from benchmarks.report import markdown  # noqa: E402

TSV_HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def _bench(run: Path, rel: str, s: float, cpu: float, rss: float = 100.0) -> None:
    path = run / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(TSV_HEADER + f"{s}\t0:00:{int(s):02d}\t{rss}\t1\t1\t1\t0\t0\t50\t{cpu}\n")


def _job(run: Path, output: str, rule: str, start: float, end: float, log: str, cmd: str, inputs=()) -> None:
    meta = run / ".snakemake" / "metadata"
    meta.mkdir(parents=True, exist_ok=True)
    name = base64.urlsafe_b64encode(output.encode()).decode().rstrip("=")
    rec = {"rule": rule, "job_hash": hash((rule, output)), "starttime": start, "endtime": end, "log": [log],
           "shellcmd": cmd, "input": list(inputs), "incomplete": False}  # fmt: skip
    (meta / name).write_text(json.dumps(rec))


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    r = "results/cut/tiny"
    _bench(tmp_path, f"{r}/benchmarks/train_base_cut.tsv", 100.0, 90.0, 500.0)
    _bench(tmp_path, f"{r}/benchmarks/train_base_fp.tsv", 50.0, 40.0, 450.0)
    _bench(tmp_path, f"{r}/benchmarks/generate_base_cut.tsv", 30.0, 25.0)
    _bench(tmp_path, "results/evals/tiny/benchmarks/mtbench/cut/cut.tsv", 12.0, 10.0)  # no job claims it
    model = ["results/models/base/model.json"]
    train = "python -m alignrepro.methods.cut.train --out x"
    _job(tmp_path, f"{r}/models/cut/model.json", "cut_train", 1000.0, 1100.0, f"{r}/logs/train_base_cut.log", train,
         model)  # fmt: skip
    _job(tmp_path, f"{r}/models/fp/model.json", "cut_train", 1000.0, 1050.0, f"{r}/logs/train_base_fp.log", train,
         model)  # fmt: skip
    _job(tmp_path, f"{r}/gen/cut.jsonl", "cut_generate", 1100.0, 1130.0, f"{r}/logs/generate_base_cut.log",
         "python -m alignrepro.generation --model m", model)  # fmt: skip
    _job(tmp_path, f"{r}/tables/t.md", "cut_tables", 1130.0, 1134.0, f"{r}/logs/tables.log", "")  # no benchmark
    return tmp_path


def test_per_rule_table_sums_benchmark_files_by_rule(run_dir: Path):
    s = runlog.run_summary(run_dir)
    rows = {r["rule"]: r for r in s["rules"]}
    assert rows["cut_train"]["jobs"] == 2 and rows["cut_train"]["cpu_s"] == pytest.approx(130.0)
    assert rows["cut_train"]["wall_s"] == pytest.approx(150.0) and rows["cut_train"]["max_rss_mb"] == 500.0
    assert rows["cut_generate"]["cpu_s"] == pytest.approx(25.0)
    assert rows["cut_tables"]["cpu_s"] is None and rows["cut_tables"]["wall_s"] == pytest.approx(4.0)
    assert rows["?evals/mtbench/cut/cut"]["cpu_s"] == pytest.approx(10.0)  # unclaimed file: its folder and name
    assert [r["rule"] for r in s["top_rules"]][:2] == ["cut_train", "cut_generate"]  # most CPU first
    assert s["cpu_s"] == pytest.approx(165.0) and s["n_benchmark_files"] == 4 and s["n_jobs"] == 4
    assert s["wall_s"] == pytest.approx(134.0)  # first start to last end
    assert rows["cut_train"]["cpu_share"] == pytest.approx(130.0 / 165.0, abs=1e-4)


def test_entry_modules_count_jobs_and_model_loads(run_dir: Path):
    mods = runlog.entry_modules(runlog.metadata_jobs(run_dir))
    assert mods["alignrepro.methods.cut.train"] == {"jobs": 2, "model_jobs": 2}
    assert mods["alignrepro.generation"] == {"jobs": 1, "model_jobs": 1}
    assert mods[""] == {"jobs": 1, "model_jobs": 0}


def test_overhead_share_adds_start_up_and_model_loads():
    measured = {"per_module": {"a": {"cpu_s": {"median": 2.0}}, "b": {"cpu_s": {"median": 4.0}},
                               "(torch + transformers import)": {"cpu_s": {"median": 3.0}}},
                "model_load_cpu_s": 1.5}  # fmt: skip
    modules = {"a": {"jobs": 3, "model_jobs": 2}, "b": {"jobs": 1, "model_jobs": 1}, "c": {"jobs": 2, "model_jobs": 0}}
    share = dag.overhead_share(modules, measured, run_cpu_s=100.0)
    # a: 1*2 + 2*(max(2, 3) + 1.5) = 11; b: 1*(max(4, 3) + 1.5) = 5.5; c (unmeasured): 2 jobs at the run's
    # measured entry points' median (of 2.0 and 4.0: the upper, 4.0) = 8
    assert share["fixed_cpu_s"] == pytest.approx(24.5) and share["jobs"] == 6
    assert share["share_of_run_cpu"] == pytest.approx(0.245)


def test_interleaving_alternates_order_and_ratios_pair_repeats():
    calls = []

    def variant(name: str, units: float):
        def run():
            calls.append(name)
            return units, name

        return run

    series = stats.interleaved({"a": variant("a", 10), "b": variant("b", 10)}, repeats=4)
    assert calls == ["a", "b", "b", "a", "a", "b", "b", "a"]
    proj = stats.Series("p", [stats.Sample(1.0, 1.0, 100), stats.Sample(2.0, 2.0, 100), stats.Sample(1.0, 4.0, 100)])
    base = stats.Series("r", [stats.Sample(2.0, 2.0, 100), stats.Sample(2.0, 2.0, 100), stats.Sample(4.0, 2.0, 100)])
    assert stats.ratio(proj, base) == {"n": 3, "min": 1.0, "median": 2.0, "max": 4.0}
    assert stats.ratio(proj, base, "cpu_s")["min"] == 0.5
    assert len(series["a"].samples) == 4 and series["a"].samples[0].units == 10


def test_job_stats_and_judge_cache_lines(tmp_path: Path):
    out = "Job stats:\njob            count\n-------------  -----\ncut_train      1\neval_winrate   2\ntotal  3\n"
    assert dag.job_stats(out) == {"cut_train": 1, "eval_winrate": 2}
    assert dag.job_stats("Nothing to be done (all requested files are present and up to date).") == {}
    log = tmp_path / "x.log"
    log.write_text("judge cache: 10 hits, 2 misses (j)\nfoo\njudge cache: 5 hits, 0 misses (k)\n")
    assert dag.judge_cache_counts([log]) == {"hits": 15, "misses": 2}


def test_markdown_reports_ratios_and_top_rules(run_dir: Path):
    machine = {"created_utc": "t", "git_commit": "c", "cpu_model": "CPU X", "cores": 2, "load_avg_1_5_15": [0, 0, 0],
               "torch_threads": 1, "native_bf16": False, "cpu_flags": ["avx2"]}  # fmt: skip
    series = {"project": stats.Series("project", [stats.Sample(1.0, 1.0, 50)]),
              "raw_hf": stats.Series("raw_hf", [stats.Sample(1.0, 1.0, 40)])}  # fmt: skip
    gen = {"settings": {}, "identical_outputs": "8/8", "variants": stats.rate_table(series, "tokens"),
           "ratio_project_vs_raw": stats.ratio(series["project"], series["raw_hf"]),
           "ratio_project_vs_raw_cpu": stats.ratio(series["project"], series["raw_hf"], "cpu_s")}  # fmt: skip
    md = markdown({"machine": machine, "mode": "quick", "generation": gen, "run": runlog.run_summary(run_dir)})
    assert "avx2" in md and "8/8" in md and "**1.25 (1.25–1.25, n=1)**" in md
    assert "| cut_train | 2 | 130.0 | 78.8 % |" in md


def test_help_starts():
    res = subprocess.run([sys.executable, "-m", "benchmarks.run", "--help"], cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "--quick" in res.stdout and "--ci-run" in res.stdout
