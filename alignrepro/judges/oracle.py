"""Correctness oracle for verifiable tasks: the output that is right wins, two right or two wrong is a tie."""

from __future__ import annotations

import inspect

from alignrepro.io import sha256_file
from alignrepro.judges.base import PairItem


class OracleJudge:
    id = "oracle-v1"
    heuristic = False
    uses_reference = True  # the gold answer decides, so it belongs in the cache key

    def __init__(self) -> None:
        self._prompt_hash: str | None = None

    @property
    def prompt_hash(self) -> str:
        # The checker's source plays the role of the prompt: a changed checker must not reuse old cached verdicts.
        # Hash the file that defines is_correct (verifiable.py may only re-export it).
        if self._prompt_hash is None:
            self._prompt_hash = "checker:" + sha256_file(inspect.getfile(_verifiable().is_correct))[:16]
        return self._prompt_hash

    settings: dict = {}

    def rate(self, prompts: list, scale: tuple[int, int] = (1, 10)) -> list[float]:
        raise NotImplementedError("the oracle judge only compares answers to verifiable tasks; it cannot grade prompts")

    choose = rate

    def preferences(self, items: list[PairItem]) -> list[float]:
        is_correct = _verifiable().is_correct
        out = []
        for i, it in enumerate(items):
            if it.record is None:
                raise ValueError(f"OracleJudge: item {i} has no record, so there is no gold answer to check against")
            ok_1, ok_2 = bool(is_correct(it.record, it.output_1)), bool(is_correct(it.record, it.output_2))
            out.append(1.5 if ok_1 == ok_2 else (1.0 if ok_1 else 2.0))
        return out


def _verifiable():
    # Imported lazily: the verifiable-task module is written separately and must not be needed to import judges.
    from alignrepro.data import verifiable

    return verifiable
