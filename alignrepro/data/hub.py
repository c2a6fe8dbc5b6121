"""Loaders for the full tier's real datasets, all through `datasets.load_dataset("json", ...)`.

The same call reads the Hugging Face hub (`hf://datasets/...`), a URL, or a local folder laid out exactly like the
hub repository, so an offline mirror and the hub give identical records. Each loader checks its fields and raises
ValueError naming the file and the missing field instead of failing later on a KeyError.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alignrepro.data.records import Record

ALPACA_EVAL_FIELDS = ("instruction", "output", "generator", "dataset")
SHEPHERD_FIELDS = ("question", "answer", "feedback")
CUT_ITER_FIELDS = ("id", "instruction", "input", "output", "judgment")
POSITIVE_JUDGMENT = "Perfect."  # begins with "Perfect", so `Record.is_positive` holds
CUT_ERROR_JUDGMENT = "$ERROR$"  # the CUT repo's placeholder for a failed GPT-4 call (cut.md section 2)


def _looks_local(path: str) -> bool:
    # Hub ids are "owner/name"; anything absolute, relative-dotted or deeper is meant as a local path.
    if "://" in path:
        return False
    return path.startswith(("/", ".", "~")) or path.count("/") > 1 or Path(path).exists()


def _file_or_url(path: str) -> str:
    """A URL (http(s)://, hf://) as given, else an existing local file."""
    if "://" in path:
        return path
    local = Path(path).expanduser()
    if not local.is_file():
        raise FileNotFoundError(f"{local}: no such file")
    return str(local)


def resolve_data_file(path: str, data_file: str, revision: str | None = None) -> str:
    """A local file inside folder `path` when it exists, else the file in hub dataset repo `path` at `revision`."""
    if _looks_local(path):
        local = Path(path).expanduser()
        target = local / data_file if local.is_dir() else local
        if not target.is_file():
            raise FileNotFoundError(f"{target}: no such file (expected a local copy in the hub's layout)")
        return str(target)
    return f"hf://datasets/{path}@{revision or 'main'}/{data_file}"


def _read_rows(data_files: str, cache_dir: str | None) -> tuple[list[dict[str, Any]], list[str]]:
    import datasets  # imported lazily: it is slow to import and only the full tier needs it

    ds = datasets.load_dataset("json", data_files=data_files, split="train", cache_dir=cache_dir)
    return ds.to_list(), list(ds.column_names)


def _check_fields(
    rows: list[dict[str, Any]], columns: list[str], fields: tuple[str, ...], where: str, nullable: tuple[str, ...] = ()
) -> None:
    for name in fields:
        if name not in columns:
            raise ValueError(f"{where}: missing field '{name}' (fields present: {sorted(columns)})")
    # The json loader fills a field absent from some rows with None; only `nullable` fields may be None.
    for i, row in enumerate(rows):
        for name in fields:
            if row.get(name) is None and name not in nullable:
                raise ValueError(f"{where}: row {i + 1}: missing field '{name}'")


def load_alpaca_eval_set(
    path: str = "tatsu-lab/alpaca_eval",
    data_file: str = "alpaca_eval.json",
    revision: str | None = None,
    cache_dir: str | None = None,
) -> list[Record]:
    """AlpacaEval's prompts (805 in the official file); `reference` is the reference model's output."""
    where = resolve_data_file(path, data_file, revision)
    rows, columns = _read_rows(where, cache_dir)
    _check_fields(rows, columns, ALPACA_EVAL_FIELDS, where)
    return [
        Record(
            id=f"alpaca_eval-{i:03d}",
            instruction=row["instruction"],
            reference=row["output"],
            task="open",
            source="alpaca_eval",
            meta={"generator": row["generator"], "dataset": row["dataset"]},
        )
        for i, row in enumerate(rows)
    ]


def load_shepherd(path_or_url: str, cache_dir: str | None = None) -> list[Record]:
    """Shepherd's `human_data_for_model.jsonl`: every item is a negative (score 1) whose judgment is the feedback.

    Extra columns (e.g. `output_correct`, the gold refinement some baselines use) are kept in `meta`.
    """
    where = _file_or_url(path_or_url)
    rows, columns = _read_rows(where, cache_dir)
    _check_fields(rows, columns, SHEPHERD_FIELDS, where)
    return [
        Record(
            id=f"shepherd-{i:05d}",
            instruction=row["question"],
            output=row["answer"],
            judgment=row["feedback"],
            task="open",
            source="shepherd",
            meta={"score": 1, **{k: v for k, v in row.items() if k not in SHEPHERD_FIELDS and v is not None}},
        )
        for i, row in enumerate(rows)
    ]


def load_cut_online_iter(path: str, cache_dir: str | None = None) -> list[Record]:
    """The CUT repo's `data/iter/train-alpaca-sample-iter{k}.json`: null judgment = positive, stored as "Perfect.".

    `"$ERROR$"` judgments are kept verbatim (flagged in meta); the consumer decides whether to drop them.
    """
    where = _file_or_url(path)
    rows, columns = _read_rows(where, cache_dir)
    _check_fields(rows, columns, CUT_ITER_FIELDS, where, nullable=("input", "judgment"))
    records = []
    for row in rows:
        judgment = row["judgment"]
        meta: dict[str, Any] = {"file": Path(where).name, "judgment_was_null": judgment is None}
        if judgment == CUT_ERROR_JUDGMENT:
            meta["judgment_error"] = True
        records.append(
            Record(
                id=str(row["id"]),
                instruction=row["instruction"],
                input=row["input"] or "",
                output=row["output"],
                judgment=POSITIVE_JUDGMENT if judgment is None else judgment,
                task="open",
                source=f"cut:{Path(where).stem}",
                meta=meta,
            )
        )
    return records
