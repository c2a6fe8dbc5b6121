"""The judge step: oracle critiques on verifiable tasks, and the full tier's GPT-4 critic path (the paper's Fig. 8
prompt over an OpenAI-compatible endpoint) against a loopback server."""

from __future__ import annotations

from pathlib import Path

from test_openai_client import completion  # the loopback `server` fixture: tests/conftest.py

from alignrepro.data.records import Record
from alignrepro.methods.cut.data_steps import CRITIC_SYSTEM, critic_for, judge


def test_judge_step_uses_oracle_and_api_critic(server):
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


def test_local_critic_builds_the_backend_hf_did(monkeypatch, caplog):
    """`local` is the in-process critic's one name; the old `hf` still builds the very same backend, with a warning."""
    import alignrepro.generation as generation

    built = []

    class FakeHF:
        def __init__(self, model_ref, **kw):
            built.append((model_ref, kw))
            self.id = f"hf:{model_ref}"

    monkeypatch.setattr(generation, "HFBackend", FakeHF)
    monkeypatch.setattr(generation, "kind_object", lambda ref, role: None)  # a plain model folder
    spec = {"model": "ci-random-llama", "max_new_tokens": 8, "batch_size": 8, "dtype": "float32"}
    local = critic_for({"backend": "local", **spec}, Path("models"))
    assert not [r for r in caplog.records if "deprecated" in r.getMessage()]
    old = critic_for({"backend": "hf", **spec}, Path("models"))
    assert built[0] == built[1] and built[0][0] == Path("models/ci-random-llama")
    assert local.id == old.id == "critic:hf:models/ci-random-llama"  # critic ids (in the triplets) unchanged
    assert any("'hf' is deprecated" in r.getMessage() for r in caplog.records)
