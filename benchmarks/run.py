"""`python -m benchmarks.run`: the project's per-op speed against raw HF/TRL (interleaved, repeated), the
workflow's fixed costs on a ci-tier run, and a run's time from its `benchmark:` files. Writes bench.json and
bench.md under --out. See README "Performance"."""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from alignrepro.io import atomic_write_json, atomic_write_text

PARTS = ("generation", "training", "judging", "overhead", "dag", "run")
CI_CONFIG = ["tier=ci"]
REPO = Path(__file__).resolve().parents[1]


def sizes(quick: bool) -> dict[str, int]:
    """Work per part: --quick finishes in a few minutes on an idle 2-core machine."""
    if quick:
        return {"prompts": 8, "new_tokens": 16, "gen_repeats": 2, "judgments": 8, "judge_repeats": 2,
                "triplets": 8, "train_repeats": 1, "modules": 4, "overhead_repeats": 1, "noop_repeats": 1}  # fmt: skip
    return {"prompts": 32, "new_tokens": 32, "gen_repeats": 3, "judgments": 32, "judge_repeats": 3,
            "triplets": 32, "train_repeats": 3, "modules": 12, "overhead_repeats": 3, "noop_repeats": 3}  # fmt: skip


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    p.add_argument("--out", type=Path, default=REPO / "results" / "bench", help="folder for bench.json / bench.md")
    p.add_argument("--quick", action="store_true", help="small sizes, fewer repeats (a few minutes)")
    p.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="which parts to run (default all)")
    p.add_argument("--model", type=Path, default=REPO / "results" / "models" / "smollm2-135m-instruct",
                   help="model folder for the per-op parts (the tiny tier's base)")  # fmt: skip
    p.add_argument(
        "--run-dir",
        type=Path,
        default=REPO,
        help="a completed default run's directory (its results/**/benchmarks/*.tsv and .snakemake/metadata)",
    )
    p.add_argument("--ci-run", type=Path,
                   help="a completed ci-tier run directory, copied to scratch for the DAG parts (default: a fresh ci "
                        "run in scratch; with --quick and no --ci-run the DAG parts are skipped)")  # fmt: skip
    p.add_argument("--targets", nargs="*", default=[],
                   help="Snakemake targets for the workflow parts (default: the default target)")  # fmt: skip
    p.add_argument("--threads", type=int, default=1, help="torch threads for the per-op parts (tiny jobs use 1)")
    p.add_argument("--repeats", type=int, help="override the repeats of every per-op part")
    return p.parse_args(argv)


def per_op(args: argparse.Namespace, size: dict[str, int], result: dict[str, Any]) -> None:
    from benchmarks import ops

    outputs: list[str] = []
    if "generation" in args.parts or "judging" in args.parts or "training" in args.parts:
        reps = args.repeats or size["gen_repeats"]
        gen = ops.bench_generation(args.model, size["prompts"], size["new_tokens"], 8, reps)
        outputs = gen.pop("outputs")
        if "generation" in args.parts:
            result["generation"] = gen
    if "judging" in args.parts:
        reps = args.repeats or size["judge_repeats"]
        n = size["judgments"]
        result["judging"] = ops.bench_judge(args.model, (outputs * (n // len(outputs) + 1))[:n], 4, reps)
    if "training" in args.parts:
        from benchmarks.train_ops import bench_training

        reps = args.repeats or size["train_repeats"]
        result["training"] = bench_training(args.model, outputs, size["triplets"], reps)


def workflow(args: argparse.Namespace, size: dict[str, int], result: dict[str, Any]) -> None:
    from benchmarks import dag, runlog

    if "run" in args.parts and (args.run_dir / ".snakemake" / "metadata").is_dir():
        result["run"] = runlog.run_summary(args.run_dir)
    ci_dir: Path | None = None
    targets = tuple(args.targets)
    if ("dag" in args.parts or "overhead" in args.parts) and (args.ci_run or not args.quick):
        scratch = Path(tempfile.mkdtemp(prefix="alignrepro-bench-"))
        if args.ci_run:
            ci_dir = dag.copy_run(args.ci_run, scratch / "ci_run")
            result["dag"] = {"update": dag.update(ci_dir, CI_CONFIG, targets)}
        else:
            ci_dir = scratch / "ci_run"
            result["dag"] = {"fresh_ci_run": dag.fresh_ci_run(ci_dir, CI_CONFIG)}
        if ci_dir is not None:
            result["ci_run"] = runlog.run_summary(ci_dir)
    if "dag" in args.parts and ci_dir is not None:
        result["dag"]["targets"] = list(targets)
        result["dag"]["scratch"] = str(ci_dir)  # kept for inspection; delete it when done
        result["dag"]["noop"] = dag.noop_rerun(ci_dir, CI_CONFIG, size["noop_repeats"], targets)
        result["dag"]["add_row"] = dag.add_row(ci_dir, CI_CONFIG, targets=targets)
    if "overhead" in args.parts:
        # The entry points of the default run when its metadata is there, else the ci run's (same rules).
        source = result.get("run") and args.run_dir or ci_dir
        if source is None:
            result["overhead_skipped"] = "no run directory with .snakemake/metadata (give --run-dir or --ci-run)"
            return
        modules = runlog.entry_modules(runlog.metadata_jobs(source))
        top = [m for m in modules if m][: size["modules"]]
        measured = dag.entry_overhead(top, args.model, size["overhead_repeats"])
        run = runlog.run_summary(source)
        result["overhead"] = {"source": str(source), "measured": measured, "modules": modules,
                              "share": dag.overhead_share(modules, measured, run["cpu_s"])}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("WANDB_MODE", "disabled")
    import torch

    torch.set_num_threads(args.threads)
    from benchmarks.machine import machine_info
    from benchmarks.report import markdown

    size = sizes(args.quick)
    result: dict[str, Any] = {"machine": machine_info(), "mode": "quick" if args.quick else "full", "sizes": size}
    per_op(args, size, result)
    workflow(args, size, result)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "bench.json", result)
    atomic_write_text(args.out / "bench.md", markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
