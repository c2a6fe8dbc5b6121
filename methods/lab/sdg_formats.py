"""The output format each LLM block of instructlab-sdg's pipelines is parsed with, written as a regular expression
for guided decoding (vLLM's `guided_regex`; alignrepro.serve follows it through lm-format-enforcer).

Derived from the library, not restated: a block's tags come from its prompt config (`start_tags`/`end_tags`), a
column's values from the filter that reads it (a float filter reads one digit; the faithfulness filter YES or NO),
and a block repeats its format when its prompt asks for a count (`num_samples`) or a series (custom parsers, MCQs).
The server closes a guided completion within max_tokens (alignrepro.guided), so a judge that rambles still reaches
its verdict; a counted bound on the rationale (`{0,300}`) would do the same at a heavy cost: each count is a
parser state of its own, and lm-format-enforcer caches the allowed tokens per state.
The constraint fixes the format, never the verdict: every score a judge prompt allows stays allowed, so a filter
still removes what the teacher rates low. Blocks whose tags are empty (spellcheck, simple QA) stay unconstrained.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from alignrepro.errors import UserError

FREE = r"\s*[^\[\s][^\[]*"  # text up to the next tag (the parsers cut at the next tag too)
LINE = r"[^\[\n]+"
DIGIT = r"\s*[0-9]\s*"
CHOICES = {"YES": r"\s*(YES|NO)\s*", "NO": r"\s*(YES|NO)\s*"}
# mcq_generation's examples. eval_data._extract_options reads every `X) ` as an option: the question and the options
# hold no `)`, so exactly four are found (SmolLM2 otherwise wrote questions that began with "A) ").
NO_PAREN = r"[^\[\n)]+"
MCQ = rf"\s*{NO_PAREN}\n\s*A\) {NO_PAREN}\n\s*B\) {NO_PAREN}\n\s*C\) {NO_PAREN}\n\s*D\) {NO_PAREN}\s*"
# The library's custom parsing patterns -> the format each reads (knowledge Q&A: `[QUESTION] … [ANSWER] … [END]`).
CUSTOM = {
    r"\[(?:Question|QUESTION)\]\s*(.*?)\s*\[(?:Answer|ANSWER)\]\s*(.*?)\s*(?=\[(?:Question|QUESTION)\]|$)": (
        rf"\[QUESTION\]{FREE}\[ANSWER\]{FREE}\[END\]"
    ),
}
# Columns whose values the prompt fixes beyond the tags (mcq_generation: four options, a lettered answer).
COLUMN_BODIES = {"mmlubench_question": MCQ, "mmlubench_answer": rf"\s*[A-D]\) {LINE}\s*"}
_SPECIAL = set("\\.^$*+?{}[]()|")


def escape(text: str) -> str:
    """Regex-escape only what is special: lm-format-enforcer's regex parser (interegular) reads `\\ ` badly."""
    return "".join("\\" + c if c in _SPECIAL else c for c in text)


def _prompt_config(block: dict[str, Any], library_path: Path) -> dict[str, Any]:
    path = (library_path.parent / block["config"]["config_path"]).resolve()
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _filtered(column: str, later: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The config of the first filter that reads `column`, if any."""
    for block in later:
        cfg = block.get("config", {})
        if block["type"] == "FilterByValueBlock" and cfg.get("filter_column") == column:
            return cfg
    return None


def _body(column: str, later: list[dict[str, Any]], where: str) -> str:
    if column in COLUMN_BODIES:
        return COLUMN_BODIES[column]
    cfg = _filtered(column, later)
    if cfg is None:
        return FREE
    if cfg.get("convert_dtype") in ("float", "int"):
        return DIGIT
    if (value := cfg.get("filter_value")) in CHOICES:
        return CHOICES[value]
    raise UserError(f"{where}: no guided format for the values of column {column!r} (filter value {value!r})")


def block_regex(blocks: list[dict[str, Any]], index: int, library_path: Path, pipeline: str) -> str | None:
    """The regex block `index` of a pipeline must produce, or None for an unconstrained block."""
    block = blocks[index]
    where = f"SDG pipeline {pipeline}, block {block['name']}"
    cfg = block["config"]
    parser = cfg.get("parser_kwargs") or {}
    if parser.get("parser_name") == "custom":
        pattern = parser.get("parsing_pattern")
        if pattern not in CUSTOM:
            raise UserError(f"{where}: no guided format for the custom parsing pattern {pattern!r}")
        return rf"(\s*{CUSTOM[pattern]})+\s*"
    prompt = _prompt_config(block, library_path)
    starts, ends, cols = prompt.get("start_tags", []), prompt.get("end_tags", []), cfg["output_cols"]
    if not any(starts) and not any(ends):
        return None
    if len(starts) != len(cols) or len(ends) != len(cols):
        raise UserError(f"{where}: {len(cols)} output columns but {len(starts)} start / {len(ends)} end tags")
    later = blocks[index + 1 :]
    parts = zip(starts, ends, cols, strict=True)
    one = r"\s*".join(escape(s) + _body(c, later, where) + escape(e) for s, e, c in parts)
    series = "num_samples" in cfg.get("batch_kwargs", {}) or any(c in COLUMN_BODIES for c in cols)
    return rf"(\s*{one})+\s*" if series else rf"\s*{one}\s*"
