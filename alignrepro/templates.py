"""Prompt formats the engine renders itself: the Alpaca format (identical to `templates/alpaca.json` of the official
CUT code), in which models trained in the "alpaca" format are prompted (`generation.format_prompt`), and its judged
variant (a "### Judgment:" block before the response), which the ci tier's tokenizer is trained on beside it.

They live here, not in a paper, because the engine needs them (layers import down only); CUT's Align-P / Align-N
contexts (methods/cut/templates.py) are these formats.
"""

from __future__ import annotations

ALPACA_INTRO = "Below is an instruction that describes a task. "
# One instruction block; a later turn of a multi-turn Alpaca prompt is just this block.
ALPACA_TURN = "### Instruction:\n{instruction}\n\n### Response:\n"
ALPACA_PLAIN = ALPACA_INTRO + "Write a response that appropriately completes the request.\n\n" + ALPACA_TURN
ALPACA_JUDGED = (
    ALPACA_INTRO + "Write a response to the instruction and the response should match the corresponding judgment."
    "\n\n### Instruction:\n{instruction}\n\n### Judgment:\n{judgment}\n\n### Response:\n"
)
ALPACA_RESPONSE = "### Response:"  # where the answer starts (the official code splits outputs here)


def alpaca_prompt(instruction: str) -> str:
    """The instruction alone in the Alpaca format (the official `prompt_no_input`)."""
    return ALPACA_PLAIN.format(instruction=instruction)


def alpaca_judged_prompt(instruction: str, judgment: str) -> str:
    """The instruction and a judgment of the response to write (the official `prompt_no_input_judge`)."""
    return ALPACA_JUDGED.format(instruction=instruction, judgment=judgment)


def alpaca_turn(instruction: str) -> str:
    """A later user turn of a multi-turn Alpaca prompt (no preamble)."""
    return ALPACA_TURN.format(instruction=instruction)
