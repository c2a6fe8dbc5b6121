"""lm-eval task set-up for run.py: which tasks exist, where their data comes from, and the overlay YAMLs that point
our task definitions (tasks/*.yaml) at this run's local files, shots, item picks and generation cap.

See run.py's docstring for the data rules (local files, the pinned-wheel builds of `mmlu` and `gsm8k_100`, few-shot
sources, "not available offline").
"""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import Any

import yaml

from alignrepro.evals.lmeval import micro_mmlu, packaged_data
from alignrepro.io import read_jsonl, write_jsonl

log = logging.getLogger(__name__)
TASKS_DIR = Path(__file__).parent / "tasks"
BY_SUBJECT = {"mmlu"}  # split per subject, like lm-eval's mmlu group
PACKAGED = {"mmlu", "gsm8k_100"}  # built from pinned wheels when no data file is given
# the known tasks (each has tasks/<task>.yaml) and the data format a local file must have
DATA_FORMAT = {
    "mmlu": "cais/mmlu rows {question, subject, choices, answer}; few-shot file = dev split",
    "gsm8k_100": "openai/gsm8k main rows {question, answer: '... #### N'}",
    "arc_challenge": "allenai/ai2_arc ARC-Challenge rows; few-shot file = train split",
    "hellaswag": "Rowan/hellaswag rows (eval file = validation split); few-shot file = train split",
    "truthfulqa_mc2": "truthfulqa/truthful_qa multiple_choice rows (validation split)",
    "winogrande": "allenai/winogrande winogrande_xl rows (eval file = validation split); few-shot file = train split",
    "gsm8k": "openai/gsm8k main rows (eval file = test split); few-shot file = train split",
}
DISPLAY = {"mmlu": "MMLU", "gsm8k_100": "GSM8K-100", "arc_challenge": "ARC-Challenge", "hellaswag": "HellaSwag",
           "truthfulqa_mc2": "TruthfulQA-mc2", "winogrande": "WinoGrande", "gsm8k": "GSM8K"}  # fmt: skip
DataSpec = str | os.PathLike | dict[str, str] | None
PerTask = int | dict[str, int] | None  # one value for every task, or {task: value}


def task_names() -> list[str]:
    return sorted(DATA_FORMAT)


def task_config(task: str) -> dict[str, Any]:
    """Our YAML as plain data, includes merged (`!function` tags kept as strings): to read its defaults."""
    from lm_eval.tasks._yaml_loader import load_yaml

    return load_yaml(TASKS_DIR / f"{task}.yaml", resolve_func=False)


def per_task(value: PerTask, task: str) -> int | None:
    return value.get(task) if isinstance(value, dict) else value


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


def build_packaged(task: str, work: Path, mmlu_subset: int | None, subset_seed: int) -> tuple[dict, dict]:
    """A PACKAGED task's data files built under work/ from the pinned wheels: (files, what was built)."""
    if task == "mmlu":
        built = {
            "test": packaged_data.build_mmlu(work / "mmlu_test.jsonl", mmlu_subset, subset_seed),
            "fewshot": micro_mmlu.build(work / "mmlu_dev.jsonl"),  # lm-eval's MMLU dev rows: the few-shot pool
        }
    else:
        built = {"test": packaged_data.build_gsm8k_100(work / "gsm8k_100.jsonl")}
    return {split: b["path"] for split, b in built.items()}, built


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


def _overlay(path: Path, task: str, name: str, files: dict[str, str], shots: int, cache: Path, extra: dict) -> None:
    """An overlay YAML: our task definition (`include:`) plus this run's data files, shots, name and `extra` keys."""
    cfg = {
        "include": str(TASKS_DIR / f"{task}.yaml"),
        "task": name,
        "dataset_kwargs": {"data_files": files, "cache_dir": str(cache)},
        "num_fewshot": shots,
        **({"fewshot_split": "fewshot"} if "fewshot" in files else {}),
        **extra,
    }
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")


def resolve_fewshot(task: str, requested: PerTask) -> int:
    """The requested shots, else the YAML's default (0 if none); a YAML's fixed 0 wins, as in lm-eval."""
    default = task_config(task).get("num_fewshot")
    want = per_task(requested, task)
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


def _generation(task: str, max_gen_toks: int | None) -> dict[str, Any]:
    """For a generate_until task, its YAML's generation_kwargs with max_gen_toks set (an include merges top-level
    keys only, so the overlay carries the whole dict); nothing for other tasks or without a cap."""
    cfg = task_config(task)
    if max_gen_toks is None or cfg.get("output_type") != "generate_until":
        return {}
    return {"generation_kwargs": {**cfg.get("generation_kwargs", {}), "max_gen_toks": max_gen_toks}}


def write_overlays(
    task: str,
    files: dict[str, str],
    shots: int,
    work: Path,
    sample: int | None = None,
    seed: int = 0,
    limit: int | None = None,
    max_gen_toks: int | None = None,
) -> tuple[str, dict[str, Any], dict[str, list[int]]]:
    """Write task's overlay YAML(s) under work/; return the name to run, facts about its set-up, and the
    lm-eval `samples` (doc indices per (sub)task) when only `sample` (seeded) or `limit` (first N) items are run."""
    work.mkdir(parents=True, exist_ok=True)
    cache = work / "hf_cache"
    source = "fewshot file" if "fewshot" in files else "eval file, doc excluded"
    info: dict[str, Any] = {"fewshot_source": source if shots else None}
    extra = _generation(task, max_gen_toks)
    if extra:
        info["max_gen_toks"] = max_gen_toks

    def first(sizes: dict[str, int]) -> dict[str, list[int]]:
        return {s: list(range(min(limit, k))) for s, k in sizes.items()} if limit else {}

    if task not in BY_SUBJECT:
        _overlay(work / f"{task}.yaml", task, task, files, shots, cache, extra)
        size = {task: len(read_jsonl(files["test"]))}
        return task, info, pick_items(size, sample, seed) if sample else first(size)
    parts = {split: _by_subject(p, work / f"{task}_{split}") for split, p in files.items()}
    sizes = {s: len(read_jsonl(p)) for s, p in parts["test"].items()}
    # With `sample`, only the subjects that got items become subtasks (lm-eval would run a subtask without
    # `samples` in full); few-shot pools stay the whole per-subject files either way.
    picks = pick_items(sizes, sample, seed) if sample else first(sizes)
    picks = {f"{task}_{s}": v for s, v in picks.items()}
    subjects = sorted(s for s in sizes if not sample or f"{task}_{s}" in picks)
    capped = {}
    for s in subjects:
        sub = {split: parts[split][s] for split in parts if s in parts[split]}
        # first_n needs k examples in the subject's pool (minus the doc itself when drawn from the eval file)
        pool = len(read_jsonl(sub["fewshot"])) if "fewshot" in sub else sizes[s] - 1
        if shots > pool:
            capped[s] = pool
        _overlay(work / f"{task}_{s}.yaml", task, f"{task}_{s}", sub, min(shots, pool), cache, extra)
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
