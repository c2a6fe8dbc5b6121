"""The one record schema every dataset in the suite is converted to."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alignrepro.io import DataError, read_jsonl, write_jsonl


@dataclass
class Record:
    """An instruction, optionally with a response, a judgment of it and a reference.

    `judgment` is the judge's text as written; a judgment that begins with "Perfect" marks a positive
    (the CUT paper's rule, see `is_positive`). `reference` is the gold answer of a verifiable task or a
    reference output. `task` names the generator (e.g. "arithmetic") or "open" for open instructions.
    """

    id: str
    instruction: str
    input: str = ""
    output: str | None = None
    judgment: str | None = None
    reference: str | None = None
    task: str = "open"
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def prompt_text(self) -> str:
        # The official CUT code appends an Alpaca `input` to the instruction with a newline.
        return f"{self.instruction}\n{self.input}" if self.input else self.instruction

    @property
    def is_positive(self) -> bool:
        return self.judgment is not None and is_positive_judgment(self.judgment)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "record") -> Record:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise DataError(f"{where}: unknown field(s) {sorted(unknown)}; expected a subset of {sorted(names)}")
        for required in ("id", "instruction"):
            if required not in d:
                raise DataError(f"{where}: missing required field '{required}'")
        return cls(**d)


def is_positive_judgment(judgment: str) -> bool:
    return judgment.strip().lower().startswith("perfect")


def save_records(path: str | Path, records: list[Record]) -> None:
    write_jsonl(path, (r.to_dict() for r in records))


def load_records(path: str | Path) -> list[Record]:
    return [Record.from_dict(d, where=f"{path}:{i + 1}") for i, d in enumerate(read_jsonl(path))]
