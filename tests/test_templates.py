"""The Alpaca prompt formats moved from CUT's folder into the engine (alignrepro/templates.py): every rendered prompt,
CUT's template hash and the ci tokenizer's training corpus are byte-identical to what they were before the move
(the expected values below were rendered by the old methods/cut/templates.py), so no ci-tier number changes."""

from __future__ import annotations

import hashlib
import json

import pytest

from alignrepro.data.records import Record
from alignrepro.generation import format_conversation, format_prompt
from alignrepro.methods.cut import templates as cut
from alignrepro.models import _ci_corpus
from alignrepro.templates import alpaca_judged_prompt, alpaca_prompt

PLAIN_HEAD = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
)
JUDGED_HEAD = (
    "Below is an instruction that describes a task. Write a response to the instruction and the response should "
    "match the corresponding judgment.\n\n"
)


@pytest.mark.parametrize("instruction", ["What is 12 plus 7?", "Sort {a}, {b} and 2.\nBe brief.", "Ünï “q” \\ %s", ""])
def test_plain_prompt_is_unchanged(instruction):
    want = PLAIN_HEAD + f"### Instruction:\n{instruction}\n\n### Response:\n"
    assert cut.plain_prompt(instruction) == want
    assert alpaca_prompt(instruction) == want


@pytest.mark.parametrize("judgment", ["The response is incorrect.", "{x} $ERROR$"])
def test_judged_prompt_is_unchanged(judgment):
    instruction = "Sort {a}, {b} and 2.\nBe brief."
    want = JUDGED_HEAD + f"### Instruction:\n{instruction}\n\n### Judgment:\n{judgment}\n\n### Response:\n"
    assert cut.judge_prompt(instruction, judgment) == want
    assert alpaca_judged_prompt(instruction, judgment) == want


def test_generation_renders_the_same_alpaca_prompts():
    rec = Record(id="r", instruction="Ünïcode — “quotes” \\ and %s", input="ctx {y}")
    assert format_prompt("alpaca", rec) == PLAIN_HEAD + (
        "### Instruction:\nÜnïcode — “quotes” \\ and %s\nctx {y}\n\n### Response:\n"
    )
    conversation = [
        {"role": "user", "content": "Hi {there}"},
        {"role": "assistant", "content": "  Hello. "},
        {"role": "user", "content": "Again?"},
    ]
    assert format_conversation("alpaca", conversation) == PLAIN_HEAD + (
        "### Instruction:\nHi {there}\n\n### Response:\n Hello.\n\n### Instruction:\nAgain?\n\n### Response:\n"
    )


def test_cut_template_hash_and_ci_corpus_are_unchanged():
    """CUT's provenance hash and the ci tokenizer's corpus (hence every ci-tier token id) as before the move."""
    assert cut.TEMPLATE_HASH == "75c533e1fb5a57e36901571211ab4d24859fde02c1a19639f3ba8d45135496d0"
    corpus_sha = hashlib.sha256(json.dumps(_ci_corpus()).encode()).hexdigest()
    assert corpus_sha == "5644310fef8ec947333769386734c6cf31c79c5992f2d12748c1ae98d3711560"
    assert cut.RESPONSE_SPLIT == "### Response:"
