"""Pairwise judge interface (alpaca_eval convention) and helpers shared by the judge backends.

A preference is 1.0 when output_1 is better, 2.0 when output_2 is better and 1.5 for a tie; any float in [1, 2] is a
soft preference and NaN means the judge could not decide (e.g. unparsable answer). In the win-rate code output_1 is
the reference model and output_2 the model under test, so a high preference is a win for the model.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import yaml

from alignrepro.data.records import Record


@dataclass
class PairItem:
    instruction: str
    output_1: str
    output_2: str
    record: Record | None = None


@runtime_checkable
class PairwiseJudge(Protocol):
    id: str  # model name + weights hash / snapshot: what made the numbers
    prompt_hash: str
    heuristic: bool  # True only for ci-tier heuristic judges, whose numbers mean nothing

    def preferences(self, items: list[PairItem]) -> list[float]: ...


@dataclass(frozen=True)
class Judgment:
    """One judgment with what a local judge can say about it: its value (a preference, rating or verdict; NaN = no
    judgment), the next-token probability mass on the allowed answer tokens (None where not measured: API and rule
    judges, or a judgment read from a cache written before it was recorded), whether that mass fell below the judge's
    threshold (the judgment is then NaN: "unparsable", never scored), and whether the prompt was cut to fit."""

    value: float
    answer_mass: float | None = None
    unparsable: bool = False
    truncated: bool = False
    renormalised: float | None = None  # the value over the allowed tokens before the threshold (cards' bias numbers)

    def to_dict(self) -> dict[str, Any]:
        return {"answer_mass": self.answer_mass, "unparsable": self.unparsable, "truncated": self.truncated}


def last_judgments(judge: Any, values: list[float]) -> list[Judgment]:
    """The details of a judge's last call when it records them (`last_judgments`, in input order), else bare values."""
    details = getattr(judge, "last_judgments", None)
    if details is not None and len(details) == len(values):
        pairs = zip(details, values, strict=True)
        if all(d.value == v or (math.isnan(d.value) and math.isnan(v)) for d, v in pairs):  # not an earlier call's
            return list(details)
    return [Judgment(float(v)) for v in values]


def swapped(item: PairItem) -> PairItem:
    return replace(item, output_1=item.output_2, output_2=item.output_1)


def check_preferences(prefs: list[float], n: int, who: str) -> list[float]:
    if len(prefs) != n:
        raise ValueError(f"{who} returned {len(prefs)} preferences for {n} items")
    out = [float(p) for p in prefs]
    bad = [p for p in out if not math.isnan(p) and not 1.0 <= p <= 2.0]
    if bad:
        raise ValueError(f"{who} returned preferences outside [1, 2]: {bad[:5]}")
    return out


def both_orders(judge_fn: Callable[[list[PairItem]], list[float]], items: list[PairItem]) -> list[float]:
    """Judge (o1, o2) and (o2, o1), map the swapped answer back (p -> 3 - p) and average.

    Small judges answer the same position almost always; averaging both orders cancels any constant position bias
    (a judge that always says "first" yields 1.5 for every item). Both orders go in one call so backends can batch.
    A NaN in either order makes the item NaN: half a judgment would bring the position bias back.
    """
    if not items:
        return []
    n = len(items)
    prefs = check_preferences(judge_fn(list(items) + [swapped(it) for it in items]), 2 * n, "judge")
    return [(a + (3.0 - b)) / 2.0 for a, b in zip(prefs[:n], prefs[n:], strict=True)]


# --- alpaca_eval's own annotator prompts --------------------------------------------------------------------------

PLACEHOLDERS = ("instruction", "output_1", "output_2")


def alpaca_eval_configs_dir() -> Path:
    with warnings.catch_warnings():  # alpaca_eval imports pkg_resources, which warns on import
        warnings.simplefilter("ignore")
        import alpaca_eval
    return Path(alpaca_eval.__file__).parent / "evaluators_configs"


@cache
def load_annotator(name: str) -> tuple[str, dict[str, Any]]:
    """(prompt template text, annotator config) of an annotator shipped inside the installed alpaca_eval package."""
    folder = alpaca_eval_configs_dir() / name
    cfg_path = folder / "configs.yaml"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"alpaca_eval has no annotator config {cfg_path}")
    cfg = yaml.safe_load(cfg_path.read_text(encoding="utf-8"))[name]
    template = (folder.parent / cfg["prompt_template"]).read_text(encoding="utf-8")
    return template, cfg


def template_to_messages(template: str) -> list[dict[str, str]]:
    """Split an alpaca_eval <|im_start|>role ... <|im_end|> template into chat messages (alpaca_eval's own parser).

    The split happens on the TEMPLATE, before the outputs are filled in, so an output that contains chat markers
    cannot inject messages.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from alpaca_eval.utils import prompt_to_chatml
    return [{"role": m["role"], "content": m["content"]} for m in prompt_to_chatml(template)]


def fill(text: str, item: PairItem) -> str:
    # One pass over the placeholders, so "{output_1}" inside an instruction is not substituted again.
    values = {"instruction": item.instruction, "output_1": item.output_1, "output_2": item.output_2}
    out, pos = [], 0
    while True:
        hits = [(text.find("{" + k + "}", pos), k) for k in PLACEHOLDERS]
        hits = [(i, k) for i, k in hits if i >= 0]
        if not hits:
            return "".join(out) + text[pos:]
        i, k = min(hits)
        out += [text[pos:i], values[k]]
        pos = i + len(k) + 2


def render_messages(messages: list[dict[str, str]], item: PairItem) -> list[dict[str, str]]:
    return [{"role": m["role"], "content": fill(m["content"], item)} for m in messages]
