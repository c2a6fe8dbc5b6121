"""The ci tier's teacher: a scripted stand-in served by alignrepro.serve, so LAB's whole DAG runs in seconds.

A random 2-layer model never writes the library's tags, so every SDG pipeline would stop at its first stage (an
empty stage is an error, never a silent empty dataset). This engine answers each of instructlab-sdg's prompts in the
tag format its parsers expect — questions, contexts, answers, knowledge Q&A, and verdicts that pass or fail by a
hash of the prompt (about 1 in 4 fails), so every filter removes some rows. Its numbers mean nothing and every
table of the ci tier says so; tiny and full use a real model (SmolLM2, Mixtral via vLLM). A guided request
(`guided_regex`, sdg_formats.py) is answered only if the scripted answer matches it: the ci DAG thus checks every
derived format against answers the library's parsers read.

It is a model kind of its own (`lab_scripted_teacher`, registered in methods/lab/paper.yaml as the server's
`serve_engine`): `python -m alignrepro.methods.lab.scripted_teacher --out DIR` writes the folder.
"""

from __future__ import annotations

import argparse
import hashlib
import re
from pathlib import Path
from typing import Any

from alignrepro.io import atomic_write_json

KIND = "lab_scripted_teacher"
VERSION = 1


def tag(name: str, text: str) -> str:
    return f"[Start of {name}]\n{text}\n[End of {name}]"


def _h(text: str, salt: str = "") -> int:
    return int(hashlib.sha256((salt + text).encode()).hexdigest()[:8], 16)


def script(prompt: str, j: int) -> str:
    """Choice j of the answer to one SDG prompt (the tail of the prompt decides the verdicts: it holds the item)."""
    h, tail = _h(prompt, str(j)), prompt[-400:]
    fail = _h(tail) % 4 == 0
    if "multiple choice questions" in prompt:  # mmlu_bench: an MCQ on the document, the answer letter by hash
        letter = "ABCD"[h % 4]
        options = "\n".join(f"{x}) option {x.lower()} of item {h % 997}" for x in "ABCD")
        return (
            tag("Question", f"Which option does item {h % 997} state?\n{options}")
            + "\n"
            + tag("Answer", f"{letter}) option {letter.lower()} of item {h % 997}")
        )
    if "diverse context" in prompt:
        return tag("Context", f"Context {h % 997}: a short passage written for this task, variant {j}.")
    if "diverse questions" in prompt:
        return "\n".join(tag("Question", f"What does item {h % 997}{x} ask for?") for x in "abc")
    if "evaluate the synthetic questions" in prompt or "evaluate the question" in prompt:
        return tag("Evaluation", "checked") + "\n" + tag("Score", 0 if fail else 1)
    if "generate a response" in prompt:
        return tag("Response", f"Item {h % 997} asks for a short, clear answer; here it is.")
    if "quality of the answer" in prompt:
        return tag("Evaluation", "rated") + "\n" + tag("Score", 1 if fail else 2 + _h(tail, "q") % 2)
    if "fixing spelling errors" in prompt:
        return f"Corrected text {h % 997}."
    if "educational question and answer pairs" in prompt:
        return "\n".join(f"[QUESTION]\nWhat is fact {h % 997}{x}?\n[ANSWER]\nFact {h % 997}{x} is stated in the "
                         f"document.\n[END]" for x in "abcd")  # fmt: skip
    if "corroborated by the given context" in prompt:
        return tag("Explanation", "compared") + "\n" + tag("Answer", "NO" if fail else "YES")
    if "assess the relevance" in prompt:
        return tag("Feedback", "assessed") + "\n" + tag("Score", 1 if fail else 2)
    if "verify if it meets below requirements" in prompt:
        return tag("Explanation", "verified") + "\n" + tag("Rating", 0 if fail else 1)
    return f"A scripted answer ({h % 997})."


class _ByteTokenizer:
    """What the server asks of a tokenizer: text -> ids (UTF-8 bytes) and back."""

    chat_template = None

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, list[int]]:
        return {"input_ids": list(text.encode("utf-8"))}

    def decode(self, ids: list[int]) -> str:
        return bytes(ids).decode("utf-8", errors="replace")


class ScriptedEngine:
    """alignrepro.serve's engine interface (prefix_cache.Engine): run(prompts, fields, max_tokens, where, stop)."""

    def __init__(self, model_dir: str | Path, **_: Any) -> None:
        self.tok, self.vocab, self.max_len = _ByteTokenizer(), 256, 1 << 30
        self.stats = {"requests": 0}

    def all_stats(self) -> dict[str, int]:
        return dict(self.stats)

    def run(self, prompts: list[list[int]], fields: dict, max_tokens: int | None, where: str, should_stop):
        from alignrepro.prefix_cache import Choice, RequestError

        self.stats["requests"] += 1
        choices, regex = [], fields.get("regex")
        for ids in prompts:
            text = self.tok.decode(ids)
            for j in range(fields.get("n", 1)):
                out = script(text, j)
                if regex is not None and not re.fullmatch(regex, out):
                    raise RequestError("guided_regex", f"the scripted answer {out[:200]!r} does not match {regex!r}")
                choices.append(Choice(text=out, finish_reason="stop", tokens=len(out.split())))
        n_prompt, n_new = sum(map(len, prompts)), sum(c.tokens for c in choices)
        return choices, {"prompt_tokens": n_prompt, "completion_tokens": n_new, "total_tokens": n_prompt + n_new}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m alignrepro.methods.lab.scripted_teacher", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--out", type=Path, required=True, help="the teacher's model folder (model.json)")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "model.json", {"kind": KIND, "name": "scripted-teacher", "weights": "none",
                                                "version": VERSION, "files": {}})  # fmt: skip


if __name__ == "__main__":
    main()
