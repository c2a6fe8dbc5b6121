"""The judge step: oracle critiques on verifiable tasks, and the full tier's GPT-4 critic path (the paper's Fig. 8
prompt over an OpenAI-compatible endpoint) against a loopback server."""

from __future__ import annotations

from pathlib import Path

from test_openai_client import completion, server  # noqa: F401  (loopback fixture)

from alignrepro.data.records import Record
from alignrepro.methods.cut.data_steps import CRITIC_SYSTEM, critic_for, judge


def test_judge_step_uses_oracle_and_api_critic(server):  # noqa: F811
    server.script = [
        (200, {}, completion("The response is incorrect: Paris is the capital."), 0),
        (200, {}, completion("Perfect"), 0),
    ]
    critics = {
        "verifiable": critic_for({"backend": "oracle"}, Path("unused")),
        "open": critic_for(
            {"backend": "openai", "model": "gpt-4-0613", "base_url": server.url, "max_new_tokens": 64}, Path("unused")
        ),
    }
    records = [
        Record(
            id="v1",
            instruction="What is 2 plus 3?",
            output="The answer is 6.",
            reference="5",
            task="arithmetic",
            meta={"answer_type": "int"},
        ),
        Record(id="o1", instruction="Capital of France?", output="Lyon."),
        Record(id="o2", instruction="Say hi.", output="Hi!"),
    ]
    out = {r.id: r for r in judge(records, critics)}
    assert not out["v1"].is_positive and "5" in out["v1"].judgment and "6" in out["v1"].judgment
    assert out["o1"].judgment.startswith("The response is incorrect") and not out["o1"].is_positive
    assert out["o2"].is_positive  # "Perfect" marks a positive, the paper's rule
    assert out["o1"].meta["critic"] == "critic:openai:gpt-4-0613" and out["o1"].meta["critic_prompt_hash"]
    sent = server.requests[0]["body"]["messages"]
    assert (
        sent[0]["content"] == CRITIC_SYSTEM
        and "### Instruction: Capital of France?" in sent[0]["content"] + sent[1]["content"]
    )
