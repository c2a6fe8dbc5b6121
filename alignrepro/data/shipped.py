"""Small datasets shipped inside the package (no download needed)."""

from __future__ import annotations

from pathlib import Path

from alignrepro.data.records import Record, load_records

OPEN_INSTRUCTIONS = Path(__file__).with_name("open_instructions.jsonl")
SPLITS = ("train", "test")


def load_open_instructions(split: str | None = None) -> list[Record]:
    """The hand-written open instructions (CC0-1.0): 60 "train", 20 "test"; all 80 when `split` is None."""
    if split is not None and split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS} or None")
    records = load_records(OPEN_INSTRUCTIONS)
    return [r for r in records if split is None or r.meta.get("split") == split]
