"""lm-eval benchmarks (micro-MMLU and the Open LLM Leaderboard v1 set) on a local model, reading local data only.

Task definitions are ours (`tasks/*.yaml`), copied from lm-eval 0.4.13's own with `dataset_path: json`, and say
nothing about where the data is. At run time each task gets an overlay YAML that `include:`s it and adds
`dataset_kwargs.data_files` (lm-eval's documented include + override mechanism; local keys win), and only those
overlays are indexed (TaskManager(include_defaults=False)), so no built-in task, hub dataset or hub model is touched.

Data per task: a path (the eval file, becomes split "test") or {"test": path, "fewshot": path}. With a few-shot file
the examples come from it (ARC/GSM8K/WinoGrande/HellaSwag train, MMLU dev); without one they come from the eval file
with the evaluated doc excluded (lm-eval 0.4.13 excludes it exactly when fewshot_split == test_split). A task with no
data (or a missing file) is reported {"status": "not available offline"}: never a number from something else.
micro_mmlu needs no data: it is built from lm-eval's own file (see micro_mmlu.py). MMLU-style tasks are split by
subject into subtasks under a group reporting the size-weighted mean, as lm-eval's mmlu; `limit` is then per subject.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import yaml

# Before `datasets` is imported anywhere: it reads these once, and without them every load retries the hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from alignrepro.evals.lmeval import micro_mmlu  # noqa: E402
from alignrepro.io import atomic_write_json, read_jsonl, sha256_file, write_jsonl  # noqa: E402
from alignrepro.provenance import provenance  # noqa: E402

log = logging.getLogger(__name__)
TASKS_DIR = Path(__file__).parent / "tasks"
BY_SUBJECT = {"micro_mmlu", "mmlu"}  # split per subject, like lm-eval's mmlu group
DATA_FORMAT = {
    "micro_mmlu": "built from lm-eval's _cot_prompts.json",
    "mmlu": "cais/mmlu rows {question, subject, choices, answer}; few-shot file = dev split",
    "arc_challenge": "allenai/ai2_arc ARC-Challenge rows; few-shot file = train split",
    "hellaswag": "Rowan/hellaswag rows (eval file = validation split); few-shot file = train split",
    "truthfulqa_mc2": "truthfulqa/truthful_qa multiple_choice rows (validation split)",
    "winogrande": "allenai/winogrande winogrande_xl rows (eval file = validation split); few-shot file = train split",
    "gsm8k": "openai/gsm8k main rows (eval file = test split); few-shot file = train split",
}
DataSpec = str | os.PathLike | dict[str, str] | None


def task_names() -> list[str]:
    return sorted(p.stem for p in TASKS_DIR.glob("*.yaml"))


def task_config(task: str) -> dict[str, Any]:
    """Our YAML as plain data (`!function` tags kept as strings): to read its defaults."""
    loader = type("_Loader", (yaml.SafeLoader,), {})
    loader.add_constructor("!function", lambda ld, node: ld.construct_scalar(node))
    return yaml.load((TASKS_DIR / f"{task}.yaml").read_text(encoding="utf-8"), Loader=loader)


def data_splits(spec: DataSpec) -> dict[str, str] | None:
    """A task's data spec -> {"test": path[, "fewshot": path]}, or None when not given."""
    if spec is None:
        return None
    files = {"test": str(spec)} if isinstance(spec, str | os.PathLike) else {k: str(v) for k, v in spec.items()}
    if set(files) - {"test", "fewshot"} or "test" not in files:
        raise ValueError(f"data spec {spec!r}: give a path or {{'test': path, 'fewshot': path}}")
    if "fewshot" in files and Path(files["fewshot"]).resolve() == Path(files["test"]).resolve():
        del files["fewshot"]  # same file: draw from it as the eval file, so that the doc itself is excluded
    return files


def missing_reason(task: str, files: dict[str, str] | None) -> str | None:
    if files is None:
        return f"no local data file given for {task} ({DATA_FORMAT[task]}); the Hugging Face hub is unreachable"
    absent = [p for p in files.values() if not Path(p).is_file()]
    return f"data file(s) not found: {absent}" if absent else None


def _by_subject(path: str, out_dir: Path) -> dict[str, str]:
    """One JSONL per subject (order kept), so each subject is its own lm-eval subtask with its own few-shot pool."""
    groups: dict[str, list[dict]] = {}
    for row in read_jsonl(path):
        groups.setdefault(row["subject"], []).append(row)
    out = {}
    for subject, rows in groups.items():
        out[subject] = str(out_dir / f"{subject}.jsonl")
        write_jsonl(out[subject], rows)
    return out


def _overlay(path: Path, task: str, name: str, files: dict[str, str], shots: int, cache: Path) -> None:
    """An overlay YAML: our task definition (`include:`) plus this run's data files, shots and name."""
    cfg = {
        "include": str(TASKS_DIR / f"{task}.yaml"),
        "task": name,
        "dataset_kwargs": {"data_files": files, "cache_dir": str(cache)},
        "num_fewshot": shots,
        **({"fewshot_split": "fewshot"} if "fewshot" in files else {}),
    }
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")


def resolve_fewshot(task: str, requested: dict[str, int] | None) -> int:
    """The requested shots, else the YAML's default (0 if none); a YAML's fixed 0 wins, as in lm-eval."""
    default = task_config(task).get("num_fewshot")
    want = (requested or {}).get(task)
    if default == 0 and want:
        log.warning("%s is 0-shot by definition; ignoring num_fewshot=%s (lm-eval does the same)", task, want)
        return 0
    return want if want is not None else (default or 0)


def pick_items(subjects: dict[str, int], n: int, seed: int) -> dict[str, list[int]]:
    """n items spread over subjects with a seeded shuffle: one per subject (in shuffled order) before any gets two."""
    rng = random.Random(seed)
    order = sorted(subjects)
    rng.shuffle(order)
    pools = {s: rng.sample(range(subjects[s]), subjects[s]) for s in order}
    picks: dict[str, list[int]] = {}
    for rank in range(max(subjects.values(), default=0)):
        for s in order:
            if sum(map(len, picks.values())) < n and rank < len(pools[s]):
                picks.setdefault(s, []).append(pools[s][rank])
    return {s: sorted(v) for s, v in picks.items()}


def write_overlays(
    task: str, files: dict[str, str], shots: int, work: Path, sample: int | None = None, seed: int = 0
) -> tuple[str, dict[str, Any], dict[str, list[int]]]:
    """Write task's overlay YAML(s) under work/; return the name to run, facts about its set-up, and the
    lm-eval `samples` (doc indices per (sub)task) when only `sample` items are to be evaluated."""
    work.mkdir(parents=True, exist_ok=True)
    cache = work / "hf_cache"
    source = "fewshot file" if "fewshot" in files else "eval file, doc excluded"
    info: dict[str, Any] = {"fewshot_source": source if shots else None}
    if task not in BY_SUBJECT:
        _overlay(work / f"{task}.yaml", task, task, files, shots, cache)
        picks = pick_items({task: len(read_jsonl(files["test"]))}, sample, seed) if sample else {}
        return task, info, picks
    parts = {split: _by_subject(p, work / f"{task}_{split}") for split, p in files.items()}
    sizes = {s: len(read_jsonl(p)) for s, p in parts["test"].items()}
    # With `sample`, only the subjects that got items become subtasks (lm-eval would run a subtask without
    # `samples` in full); few-shot pools stay the whole per-subject files either way.
    picks = {f"{task}_{s}": v for s, v in pick_items(sizes, sample, seed).items()} if sample else {}
    subjects = sorted(s for s in sizes if not sample or f"{task}_{s}" in picks)
    capped = {}
    for s in subjects:
        sub = {split: parts[split][s] for split in parts if s in parts[split]}
        # first_n needs k examples in the subject's pool (minus the doc itself when drawn from the eval file)
        pool = len(read_jsonl(sub["fewshot"])) if "fewshot" in sub else sizes[s] - 1
        if shots > pool:
            capped[s] = pool
        _overlay(work / f"{task}_{s}.yaml", task, f"{task}_{s}", sub, min(shots, pool), cache)
    group = {
        "group": task,
        "task": [f"{task}_{s}" for s in subjects],
        "aggregate_metric_list": [{"metric": "acc", "aggregation": "mean", "weight_by_size": True}],
        "metadata": {"version": 1.0},
    }
    (work / f"{task}_group.yaml").write_text(yaml.safe_dump(group, sort_keys=False), encoding="utf-8")
    info["subjects"] = len(subjects)
    if capped:
        info["fewshot_capped"] = capped  # subjects with fewer examples than asked: they got this many
    return task, info, picks


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
    num_fewshot: dict[str, int] | None = None,
    limit: int | None = None,
    batch_size: int = 8,
    dtype: str = "float32",
    seed: int = 1234,
    work_dir: str | Path | None = None,
    sample: int | None = None,
) -> dict[str, Any]:
    """Run `tasks` through lm_eval.simple_evaluate; per task the metrics, n and shots, or a not-available status.

    `limit`: the first N docs per task (per subject for MMLU-style tasks). `sample`: N docs per task drawn with
    `seed` (spread one per subject first for MMLU-style tasks), through lm-eval's `samples`; not with `limit`.
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
        "batch_size": batch_size,
        "dtype": dtype,
        "seed": seed,
    }
    out: dict[str, Any] = {"tasks": {}, "data": {}, "task_yaml_sha256": {}, "settings": settings}
    with tempfile.TemporaryDirectory(prefix="lmeval_") as tmp:
        work = Path(work_dir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        run, setup, samples = [], {}, {}

        def shown(path: str) -> str:  # a file in this run's temp folder is named by its file name (same every run)
            return f"<tmp>/{Path(path).name}" if work_dir is None and str(path).startswith(str(work)) else str(path)

        for task in tasks:
            files = data_splits(data_files.get(task))
            if task == "micro_mmlu" and files is None:
                out["micro_mmlu_build"] = micro_mmlu.build(work / "micro_mmlu.jsonl")
                out["micro_mmlu_build"]["path"] = shown(out["micro_mmlu_build"]["path"])
                files = {"test": str(work / "micro_mmlu.jsonl")}
            if reason := missing_reason(task, files):
                log.warning("%s: not available offline (%s)", task, reason)
                out["tasks"][task] = {"status": "not available offline", "reason": reason}
                continue
            out["data"][task] = {s: {"path": shown(p), "sha256": sha256_file(p)} for s, p in files.items()}
            out["task_yaml_sha256"][task] = sha256_file(TASKS_DIR / f"{task}.yaml")
            shots = resolve_fewshot(task, num_fewshot)
            name, setup[task], picks = write_overlays(task, files, shots, work, sample, seed)
            run.append(name)
            samples |= picks
        if run:
            results, out["timing"] = _run(model_dir, run, limit, samples or None, batch_size, dtype, seed, work)
            out["tasks"] |= {t: summarize(t, results) | setup[t] for t in run}
    out["tasks"] = {t: out["tasks"][t] for t in tasks}  # the caller's order
    return out


def _run(model_dir, run, limit, samples, batch_size, dtype, seed, work) -> tuple[dict[str, Any], dict[str, float]]:
    import lm_eval
    from lm_eval.tasks import TaskManager

    log.info("loading %s", model_dir)
    start = time.perf_counter()
    lm = build_lm(model_dir, dtype, batch_size)
    loaded = time.perf_counter()
    # Only the overlays are indexed: no built-in task can answer under one of our names (and indexing is fast).
    manager = TaskManager(include_path=str(work), include_defaults=False)
    log.info("running %s (limit=%s, sample=%s)", run, limit, samples and sum(map(len, samples.values())))
    results = lm_eval.simple_evaluate(
        model=lm,
        tasks=run,
        task_manager=manager,
        limit=limit,
        samples=samples,
        log_samples=False,
        random_seed=seed,
        numpy_random_seed=seed,
        torch_random_seed=seed,
        fewshot_random_seed=seed,
    )
    timing = {"load_s": round(loaded - start, 1), "eval_s": round(time.perf_counter() - loaded, 1)}
    log.info("lm-eval finished %s: %s", run, timing)
    return results, timing


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="python -m alignrepro.evals.lmeval.run", description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="model folder with model.json")
    ap.add_argument("--tasks", required=True, help=f"comma-separated, from {task_names()}")
    ap.add_argument(
        "--data-json",
        default="{}",
        help='JSON {task: path or {"test": path, "fewshot": path}}; a task without data is reported not available',
    )
    ap.add_argument("--num-fewshot", default=None, help="an int for every task, or JSON {task: int}; default: YAML's")
    size = ap.add_mutually_exclusive_group()
    size.add_argument("--limit", type=int, default=None, help="the first N docs per task (per subject: MMLU-style)")
    size.add_argument("--sample", type=int, default=None, help="N docs per task drawn with --seed, over subjects")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--dtype", default="float32", help="float32 | bfloat16 | auto (bf16 where native)")
    ap.add_argument("--seed", type=int, default=1234, help="lm-eval's python/numpy/torch/few-shot seeds")
    ap.add_argument("--work-dir", default=None, help="keep overlay YAMLs and per-subject files here (default: temp)")
    ap.add_argument("--out", required=True, help="result JSON")
    ap.add_argument("--tier", default="unknown", help="the tier, recorded in the provenance block")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    shots = None if args.num_fewshot is None else json.loads(args.num_fewshot)
    shots = {t: shots for t in tasks} if isinstance(shots, int) else shots
    result = evaluate(
        args.model,
        tasks,
        json.loads(args.data_json),
        num_fewshot=shots,
        limit=args.limit,
        batch_size=args.batch_size,
        dtype=args.dtype,
        seed=args.seed,
        work_dir=args.work_dir,
        sample=args.sample,
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
