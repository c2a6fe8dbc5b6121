"""The MMLU dev questions that ship inside lm-eval, rebuilt as rows in MMLU's own (cais/mmlu) format: the few-shot
pool of the `mmlu` task (run.py; the first k of the same subject, as lm-eval's mmlu uses the dev split).

Source: `lm_eval/tasks/mmlu/flan_cot_fewshot/_cot_prompts.json`, lm-eval's chain-of-thought few-shot prompts. Their
questions, options and answers are the MMLU *dev* split (about 5 per subject, 57 subjects) of Hendrycks et al.,
"Measuring Massive Multitask Language Understanding" (github.com/hendrycks/test, licence MIT), with a worked
explanation added per item. (It was once scored itself as "micro-MMLU"; the test split now comes from a pinned wheel:
packaged_data.py.)

Each block reads "Q: <question>\\n(A) .. (B) .. (C) .. (D) ..\\nA: Let's think step by step. ... The answer is (X)."
Rows come out as {question, subject, choices: [4 strings], answer: 0-3}, in the file's order (subjects sorted as in
the file, items in prompt order). Blocks that do not parse into exactly four options and one answer letter are dropped
and counted (one college_chemistry item has a fifth option "(E)"). Known artefact kept as is: in the second
abstract_algebra item the previous answer's last sentence leaked into the question text.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
from pathlib import Path
from typing import Any

from alignrepro.io import sha256_file, write_jsonl

log = logging.getLogger(__name__)
LETTERS = "ABCD"
# Options are separated by a space or a newline; the last option must not run into a fifth "(E)".
_CHOICES = re.compile(r"\(A\) (.*?)\s+\(B\) (.*?)\s+\(C\) (.*?)\s+\(D\) (.*)", re.S)
_ANSWER = re.compile(r"answer is \(([A-Z])\)")


def source_path() -> Path:
    """The prompts file inside the installed lm-eval."""
    import lm_eval

    return Path(lm_eval.__file__).parent / "tasks" / "mmlu" / "flan_cot_fewshot" / "_cot_prompts.json"


def parse_block(block: str, subject: str) -> dict[str, Any] | None:
    """One "Q: ... A: ..." block -> a cais/mmlu row, or None when it is not a clean 4-option item."""
    question, sep, explanation = block.partition("\nA: ")
    stem, has_options, options = question.rpartition("\n(A) ")
    if not sep or not has_options:
        return None
    m = _CHOICES.fullmatch("(A) " + options.strip())
    letters = set(_ANSWER.findall(explanation))
    if m is None or re.search(r"\([E-Z]\) ", m.group(4)) or len(letters) != 1 or not letters <= set(LETTERS):
        return None
    return {
        "question": stem.strip(),
        "subject": subject,
        "choices": [c.strip() for c in m.groups()],
        "answer": LETTERS.index(letters.pop()),
    }


def parse_prompts(prompts: dict[str, str]) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """All subjects' blocks -> (rows, {"parsed": n, "dropped": n, "subjects": n})."""
    rows, dropped = [], 0
    for subject, text in prompts.items():
        for block in text.split("\n\nQ: ")[1:]:  # [0] is the "The following are ..." header
            row = parse_block(block, subject)
            if row is None:
                dropped += 1
                log.debug("dropped an unparseable %s item: %r", subject, block[:80])
            else:
                rows.append(row)
    return rows, {"parsed": len(rows), "dropped": dropped, "subjects": len({r["subject"] for r in rows})}


def build(out: str | Path, source: str | Path | None = None) -> dict[str, Any]:
    """Write the rows to `out` (JSONL, atomic) and return the facts to record: counts, hashes, lm-eval version."""
    from importlib.metadata import version

    src = Path(source) if source else source_path()
    rows, counts = parse_prompts(json.loads(src.read_text(encoding="utf-8")))
    write_jsonl(out, rows)
    info = {
        "path": str(out),
        "sha256": sha256_file(out),
        **counts,
        "source": {"path": str(src), "sha256": sha256_file(src), "lm_eval_version": version("lm_eval")},
        "split": "MMLU dev (hendrycks/test, MIT)",
    }
    log.info(
        "MMLU dev rows: %d items over %d subjects (%d dropped) -> %s",
        counts["parsed"],
        counts["subjects"],
        counts["dropped"],
        out,
    )
    return info


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(
        prog="python -m alignrepro.evals.lmeval.micro_mmlu", description=__doc__.splitlines()[0]
    )
    ap.add_argument("--out", required=True, help="output JSONL (cais/mmlu rows)")
    ap.add_argument("--source", default=None, help="a _cot_prompts.json (default: the installed lm-eval's)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    info = build(args.out, args.source)
    print(json.dumps(info, indent=2))
    return info


if __name__ == "__main__":
    main()
