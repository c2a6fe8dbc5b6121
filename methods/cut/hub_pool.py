"""Full tier: the Stanford Alpaca instructions the paper's online iterations sample from (hub or local folder)."""

from __future__ import annotations

import random

from alignrepro.data.records import Record


def load_alpaca_instructions(path: str, seed: int, n: int, split: str = "train") -> list[Record]:
    """`path` is a hub id (tatsu-lab/alpaca) or a local folder in the same layout; 1000 fresh instructions per
    iteration, no reuse (cut.md §7.16)."""
    from datasets import load_dataset

    ds = load_dataset(path, split=split)
    for field in ("instruction", "input"):
        if field not in ds.column_names:
            raise ValueError(f"{path}: Alpaca data lacks field '{field}' (has {ds.column_names})")
    idx = random.Random(seed).sample(range(len(ds)), n)
    return [
        Record(
            id=f"alpaca-{i}", instruction=ds[i]["instruction"], input=ds[i]["input"], task="open", source=f"hub:{path}"
        )
        for i in idx
    ]
