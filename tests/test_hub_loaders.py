"""The full tier's loaders, run offline on tmp folders laid out like the hub / official repositories."""

from __future__ import annotations

import json
import os

import pytest

# Set before `datasets` is first imported (the loaders import it lazily): the hub must never be contacted here.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from alignrepro.data.hub import (  # noqa: E402
    load_alpaca_eval_set,
    load_cut_online_iter,
    load_shepherd,
    resolve_data_file,
)

ALPACA_ROWS = [
    {"instruction": "Name some famous actors.", "output": "Tom Hanks.", "generator": "text_davinci_003",
     "dataset": "helpful_base"},
    {"instruction": "How do I wrap a present neatly?", "output": "Use tape.", "generator": "text_davinci_003",
     "dataset": "oasst"},
]  # fmt: skip
SHEPHERD_ROWS = [
    {"question": "What is 2 + 3?", "answer": "2 + 3 = 6.", "feedback": "The sum is wrong; 2 + 3 = 5."},
    {"question": "Is the sky green?", "answer": "Yes.", "feedback": "The answer is incorrect, the sky is blue."},
]
CUT_ROWS = [
    {"id": 11, "instruction": "Name a color.", "input": "", "output": "Sure! Blue.", "judgment": None},
    {"id": 12, "instruction": "Translate.", "input": "Hola", "output": "Goodbye.", "judgment": "It is wrong."},
    {"id": 13, "instruction": "Add.", "input": "1 and 2", "output": "3", "judgment": "$ERROR$"},
]  # fmt: skip


@pytest.fixture
def cache(tmp_path):
    return str(tmp_path / "hf-cache")


def _write_json(path, rows) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows), encoding="utf-8")
    return str(path)


def _write_jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def test_resolve_hub_id_and_local_folder(tmp_path):
    assert resolve_data_file("tatsu-lab/alpaca_eval", "alpaca_eval.json") == (
        "hf://datasets/tatsu-lab/alpaca_eval@main/alpaca_eval.json"
    )
    assert resolve_data_file("tatsu-lab/alpaca_eval", "alpaca_eval.json", revision="abc123").endswith(
        "@abc123/alpaca_eval.json"
    )
    _write_json(tmp_path / "alpaca_eval" / "alpaca_eval.json", ALPACA_ROWS)
    assert resolve_data_file(str(tmp_path / "alpaca_eval"), "alpaca_eval.json") == str(
        tmp_path / "alpaca_eval" / "alpaca_eval.json"
    )
    with pytest.raises(FileNotFoundError):
        resolve_data_file(str(tmp_path / "missing"), "alpaca_eval.json")


def test_alpaca_eval_from_local_hub_layout(tmp_path, cache):
    _write_json(tmp_path / "alpaca_eval" / "alpaca_eval.json", ALPACA_ROWS)
    records = load_alpaca_eval_set(str(tmp_path / "alpaca_eval"), cache_dir=cache)
    assert [r.instruction for r in records] == [row["instruction"] for row in ALPACA_ROWS]
    assert records[0].reference == "Tom Hanks." and records[0].output is None and records[0].task == "open"
    assert records[1].meta == {"generator": "text_davinci_003", "dataset": "oasst"}
    assert len({r.id for r in records}) == 2


def test_shepherd_all_negatives(tmp_path, cache):
    records = load_shepherd(_write_jsonl(tmp_path / "human_data_for_model.jsonl", SHEPHERD_ROWS), cache_dir=cache)
    assert [(r.instruction, r.output, r.judgment) for r in records] == [
        (row["question"], row["answer"], row["feedback"]) for row in SHEPHERD_ROWS
    ]
    assert not any(r.is_positive for r in records)
    assert all(r.meta["score"] == 1 for r in records)


def test_cut_iter_null_is_positive_and_error_is_kept(tmp_path, cache):
    path = _write_json(tmp_path / "data" / "iter" / "train-alpaca-sample-iter1.json", CUT_ROWS)
    pos, neg, err = load_cut_online_iter(path, cache_dir=cache)
    assert pos.id == "11" and pos.judgment == "Perfect." and pos.is_positive and pos.meta["judgment_was_null"]
    assert neg.input == "Hola" and neg.prompt_text == "Translate.\nHola" and not neg.is_positive
    assert err.judgment == "$ERROR$" and err.meta["judgment_error"] and not err.is_positive
    assert pos.source == "cut:train-alpaca-sample-iter1"


@pytest.mark.parametrize(
    ("loader", "filename", "rows", "dropped"),
    [
        ("alpaca", "alpaca_eval.json", ALPACA_ROWS, "generator"),
        ("shepherd", "human_data_for_model.jsonl", SHEPHERD_ROWS, "feedback"),
        ("cut", "train-alpaca-sample-iter2.json", CUT_ROWS, "output"),
    ],
)
def test_missing_field_names_file_and_field(tmp_path, cache, loader, filename, rows, dropped):
    rows = [{k: v for k, v in row.items() if k != dropped} for row in rows]
    folder = tmp_path / "src"
    folder.mkdir()
    path = (
        _write_jsonl(folder / filename, rows) if filename.endswith(".jsonl") else _write_json(folder / filename, rows)
    )
    with pytest.raises(ValueError) as err:
        if loader == "alpaca":
            load_alpaca_eval_set(str(folder), data_file=filename, cache_dir=cache)
        elif loader == "shepherd":
            load_shepherd(path, cache_dir=cache)
        else:
            load_cut_online_iter(path, cache_dir=cache)
    assert filename in str(err.value) and f"'{dropped}'" in str(err.value)


def test_field_missing_in_one_row_only(tmp_path, cache):
    rows = [dict(SHEPHERD_ROWS[0]), {"question": "q", "answer": "a"}]
    path = _write_jsonl(tmp_path / "human_data_for_model.jsonl", rows)
    with pytest.raises(ValueError, match=r"human_data_for_model\.jsonl: row 2: missing field 'feedback'"):
        load_shepherd(path, cache_dir=cache)
