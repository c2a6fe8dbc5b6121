"""The CUT paper's Alpaca templates (Fig. 5; identical to `templates/alpaca.json` of the official code).

Align-P and Misalign use the plain template (`prompt_no_input`); Align-N uses the judgment template
(`prompt_no_input_judge`). The official code never uses the `prompt_input` variant: an Alpaca `input` is appended
to the instruction with "\\n" (see `Record.prompt_text`). Inference (Fig. 6) uses the plain template.
"""

from __future__ import annotations

import json

from alignrepro.io import sha256_text
from alignrepro.templates import ALPACA_JUDGED, ALPACA_PLAIN, ALPACA_RESPONSE, alpaca_judged_prompt, alpaca_prompt

# The formats are the engine's (alignrepro/templates.py: generation prompts trained models in them too).
PROMPT_PLAIN = ALPACA_PLAIN
PROMPT_JUDGE = ALPACA_JUDGED
RESPONSE_SPLIT = ALPACA_RESPONSE

# Provenance: changes whenever either template changes.
TEMPLATE_HASH = sha256_text(json.dumps([PROMPT_PLAIN, PROMPT_JUDGE]))


def plain_prompt(instruction: str) -> str:
    """Align-P / Misalign / inference context: the instruction only (x)."""
    return alpaca_prompt(instruction)


def judge_prompt(instruction: str, judgment: str) -> str:
    """Align-N context: the instruction plus the (negative) judgment ([x, j])."""
    return alpaca_judged_prompt(instruction, judgment)
