"""The CUT paper's Alpaca templates (Fig. 5; identical to `templates/alpaca.json` of the official code).

Align-P and Misalign use the plain template (`prompt_no_input`); Align-N uses the judgment template
(`prompt_no_input_judge`). The official code never uses the `prompt_input` variant: an Alpaca `input` is appended
to the instruction with "\\n" (see `Record.prompt_text`). Inference (Fig. 6) uses the plain template.
"""

from __future__ import annotations

import json

from alignrepro.io import sha256_text

PROMPT_PLAIN = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request."
    "\n\n### Instruction:\n{instruction}\n\n### Response:\n"
)
PROMPT_JUDGE = (
    "Below is an instruction that describes a task. Write a response to the instruction and the response should "
    "match the corresponding judgment.\n\n### Instruction:\n{instruction}\n\n### Judgment:\n{judgment}"
    "\n\n### Response:\n"
)
RESPONSE_SPLIT = "### Response:"

# Provenance: changes whenever either template changes.
TEMPLATE_HASH = sha256_text(json.dumps([PROMPT_PLAIN, PROMPT_JUDGE]))


def plain_prompt(instruction: str) -> str:
    """Align-P / Misalign / inference context: the instruction only (x)."""
    return PROMPT_PLAIN.format(instruction=instruction)


def judge_prompt(instruction: str, judgment: str) -> str:
    """Align-N context: the instruction plus the (negative) judgment ([x, j])."""
    return PROMPT_JUDGE.format(instruction=instruction, judgment=judgment)
