"""Length heuristic judge: for the ci tier only, where no real judge is affordable; its numbers mean nothing."""

from __future__ import annotations

from alignrepro.judges.base import PairItem


class LengthHeuristicJudge:
    id = "HEURISTIC-length-v1"
    prompt_hash = "none"
    heuristic = True
    settings: dict = {}

    def rate(self, prompts: list[list[dict[str, str]]], scale: tuple[int, int] = (1, 10)) -> list[float]:
        # Longer judge prompt (hence longer answer) -> higher rating, capped: deterministic and meaningless.
        lo, hi = scale
        return [float(min(hi, lo + len(m[-1]["content"]) // 400)) for m in prompts]

    def choose(self, prompts: list[list[dict[str, str]]]) -> list[float]:
        return [1.5 for _ in prompts]  # no opinion: a tie

    def preferences(self, items: list[PairItem]) -> list[float]:
        out = []
        for it in items:
            n1, n2 = len(it.output_1.strip()), len(it.output_2.strip())
            out.append(1.5 if n1 == n2 else (1.0 if n1 > n2 else 2.0))  # longer (hence non-empty) answer wins
        return out
