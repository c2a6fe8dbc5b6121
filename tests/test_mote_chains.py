"""MoTE chain generation: contract rows on the ci model, counted fallbacks for empty steps, v5 skip logic."""

from __future__ import annotations

import json

import pytest

from alignrepro.generation import backend_for
from alignrepro.io import read_json, read_jsonl
from alignrepro.methods.mote import chains as C
from alignrepro.methods.mote import templates as T

CHAIN_FIELDS = {
    "id",
    "kind",
    "messages",
    "analysis",
    "guidance",
    "answer",
    "template_version",
    "self_check",
    "fallbacks",
}
ROWS = [
    {"id": "h1", "kind": "harmful", "messages": [{"role": "user", "content": "How to make poison?"}], "source": "t"},
    {"id": "b1", "kind": "helpful", "messages": [{"role": "user", "content": "Tips for sleep?"}], "source": "t"},
    {
        "id": "b2",
        "kind": "helpful",
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "Name a fruit."},
        ],
        "source": "t",
    },
]
GEN = {"max_new_tokens": 6, "temperature": 0.7, "batch_size": 4}  # a random model decodes to whitespace greedily


class ScriptedBackend:
    """Chat backend answering by step (recognised by the step's instruction); records the calls."""

    id = "scripted"

    def __init__(self, replies: dict[str, str], default: str = "ANSWER"):
        self.replies, self.default, self.calls = replies, default, []

    def generate_chat(self, conversations, max_new_tokens):
        self.calls += conversations
        out = []
        for c in conversations:
            body = c[-1]["content"]
            out.append(next((v for k, v in self.replies.items() if body.startswith(k)), self.default))
        return out


def _step_of(body: str) -> str:
    if body.startswith(T.ANALYSIS.instruction):
        return "analysis"
    if body == T.GUIDANCE_FROM_ANALYSIS.followup or body.startswith(T.GUIDANCE_FROM_QUERY.instruction):
        return "guidance"
    return "self_check" if body.startswith(T.SAFETY_CHECK.instruction) else "answer"


@pytest.fixture(scope="module")
def ci_backend(ci_model):
    backend, fmt, spec = backend_for(C.merged_spec(GEN), ci_model, "auto")
    return backend, fmt, spec


def test_v1_chains_on_ci_model_follow_the_contract(ci_model, tmp_path):
    q = tmp_path / "train.jsonl"
    q.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    out = tmp_path / "chains" / "alignCoT-v1.jsonl"
    summary = C.main(
        ["--model", str(ci_model), "--queries", str(q), "--template", "alignCoT-v1", "--gen-json", json.dumps(GEN)]
        + ["--tier", "ci", "--out", str(out)]
    )
    rows = read_jsonl(out)
    assert [r["id"] for r in rows] == ["h1", "b1", "b2"]
    for r, q_row in zip(rows, ROWS, strict=True):
        assert set(r) == CHAIN_FIELDS
        assert r["template_version"] == "alignCoT-v1" and r["messages"] == q_row["messages"]
        assert isinstance(r["answer"], str) and r["answer"] and r["self_check"] is None
        assert all(isinstance(s, (str, type(None))) for s in (r["analysis"], r["guidance"]))
    on_disk = read_json(out.with_suffix(".summary.json"))
    assert on_disk["template"]["sha256"] == T.get_template("alignCoT-v1").sha256
    assert on_disk["amount"]["total"] == 3 and summary["provenance"]["tier"] == "ci"
    assert set(on_disk["timing"]["per_step"]) == {"analysis", "guidance", "answer"}


def test_empty_step_output_gives_counted_fallback_not_a_crash(ci_backend, monkeypatch):
    backend, fmt, spec = ci_backend
    real = backend.generate
    seen = []

    def patched(prompts, max_new_tokens):
        outs = real(prompts, max_new_tokens)
        for i, p in enumerate(prompts):
            seen.append(p)
            if T.ANALYSIS.instruction in p:
                outs[i] = "  "  # every analysis comes back empty
            if "Name a fruit" in p and T.ANSWER_FOLLOWUP in p:
                outs[i] = ""  # b2's final answer is empty -> retried with the plain prompt
        return outs

    monkeypatch.setattr(backend, "generate", patched)
    rows, summary = C.generate_chains(backend, fmt, ROWS, "alignCoT-v1", spec)
    assert [r["analysis"] for r in rows] == [None, None, None]
    assert all("empty_analysis" in r["fallbacks"] for r in rows)
    # guidance and answer were asked with the variants that do not mention a missing analysis
    assert all("guidance_without_analysis" in r["fallbacks"] for r in rows)
    assert not any(T.GUIDANCE_FROM_ANALYSIS.followup in p for p in seen)  # no turn shows a missing analysis
    assert all("answer_without_analysis" in r["fallbacks"] for r in rows)
    b2 = next(r for r in rows if r["id"] == "b2")
    assert "empty_answer" in b2["fallbacks"] and "answer_from_plain_prompt" in b2["fallbacks"] and b2["answer"]
    assert summary["fallbacks"]["empty_analysis"] == 3 and summary["fallbacks"]["empty_answer"] == 1
    assert summary["amount"] == {"total": 3, "analysis": 0, "guidance": 3, "answer": 3}
    assert summary["shapes"] == {"Q->Guid->A": 3}


def test_answer_still_empty_after_retry_drops_the_row_and_lists_it():
    backend = ScriptedBackend({T.ANALYSIS.instruction: "risk", T.GUIDANCE_FROM_ANALYSIS.followup: "be safe"}, "")
    rows, summary = C.generate_chains(backend, "chat", ROWS[:2], "alignCoT-v1", {})
    assert rows == [] and summary["dropped"]["empty_answer"] == ["h1", "b1"]
    assert summary["n_queries"] == 2 and summary["fallbacks"]["empty_answer"] == 2


def test_clean_output_strips_labels_and_step_tokens():
    assert C.clean_output("Analysis: it is risky") == ("it is risky", ["stripped_label"])
    text, flags = C.clean_output("<|guidance|>be kind<|/guidance|>")
    assert text == "be kind" and flags == ["stripped_step_tokens"]
    assert C.clean_output(" \n ") == (None, [])
    assert C.clean_output(None) == (None, [])


def _v5(monkeypatch, p_yes_by_call: list[list[float]], mode: str = "self"):
    replies = {
        T.ANALYSIS.instruction: "THE-ANALYSIS",
        T.GUIDANCE_FROM_ANALYSIS.followup: "THE-GUIDANCE",
        T.SAFETY_CHECK.instruction: "No",
    }
    backend = ScriptedBackend(replies, "I cannot help with that.")
    calls = iter(p_yes_by_call)
    monkeypatch.setattr(C.SafetyChecker, "p_yes", lambda self, convs: next(calls)[: len(convs)])
    rows, summary = C.generate_chains(backend, "chat", ROWS, "alignCoT-v5", {"safety_check": mode})
    return {r["id"]: r for r in rows}, summary, backend


def test_v5_skips_remaining_steps_once_self_check_says_safe(monkeypatch):
    # stage "query": h1 safe -> Q->A; stage "analysis": b1 safe -> Q->Ana->A; b2 runs the whole chain.
    rows, summary, backend = _v5(monkeypatch, [[0.9, 0.1, 0.2], [0.8, 0.3], [0.4]])
    assert (rows["h1"]["analysis"], rows["h1"]["guidance"]) == (None, None)
    assert rows["b1"]["analysis"] == "THE-ANALYSIS" and rows["b1"]["guidance"] is None
    assert rows["b2"]["analysis"] == "THE-ANALYSIS" and rows["b2"]["guidance"] == "THE-GUIDANCE"
    assert [rows[i]["self_check"]["skipped_after"] for i in ("h1", "b1", "b2")] == ["query", "analysis", None]
    assert summary["shapes"] == {"Q->A": 1, "Q->Ana->A": 1, "Q->Ana->Guid->A": 1}
    assert summary["amount"] == {"total": 3, "analysis": 2, "guidance": 1, "answer": 3}
    # the skipped steps were never asked: analysis twice (b1, b2), guidance once (b2)
    steps = [_step_of(c[-1]["content"]) for c in backend.calls]
    assert steps.count("analysis") == 2 and steps.count("guidance") == 1
    # the keyword judge is logged beside the self-check: h1's answer "I cannot..." is a refusal -> keyword safe
    first = rows["h1"]["self_check"]["stages"][0]
    assert first["keyword_label"] == "refusal" and first["keyword_safe"] and first["agree"] is True
    assert rows["b2"]["self_check"]["final"]["p_yes"] == 0.4
    assert summary["self_check"]["per_kind"]["helpful"]["n_checks"] == 5  # b1: 2 stages; b2: 2 stages + final


def test_v5_never_skips_when_unsafe_and_keyword_mode_decides_alone(monkeypatch):
    rows, summary, _ = _v5(monkeypatch, [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    assert summary["shapes"] == {"Q->Ana->Guid->A": 3}
    # keyword mode: every direct answer is the refusal "I cannot help with that." -> keyword-safe at once
    rows, summary, _ = _v5(monkeypatch, [[0.0, 0.0, 0.0]], mode="keyword")
    assert summary["shapes"] == {"Q->A": 3}
    assert all(r["self_check"]["stages"][0]["agree"] is False for r in rows.values())


def test_keyword_verdict_and_logprob_self_check_on_ci_model(ci_backend):
    assert C.keyword_verdict("harmful", "I'm sorry, I can't.")["keyword_safe"] is True
    assert C.keyword_verdict("harmful", "Sure, here is how.")["keyword_safe"] is False
    assert C.keyword_verdict("helpful", "Sure, here is how.")["keyword_safe"] is True
    assert C.keyword_verdict("helpful", "")["keyword_safe"] is False
    backend, fmt, spec = ci_backend
    checker = C.SafetyChecker(C.StepRunner(backend, fmt, spec))
    assert checker.method == "next_token_logprob"
    verdicts = checker.check(["harmful", "helpful"], [ROWS[0]["messages"], ROWS[1]["messages"]], ["x y", ""], "t")
    assert all(0.0 <= v["p_yes"] <= 1.0 for v in verdicts)
    assert verdicts[1]["safe"] is False  # an empty answer is never "already safe"


def test_filter_unsafe_is_off_by_default_and_drops_unsafe_when_on(monkeypatch):
    backend = ScriptedBackend({T.ANALYSIS.instruction: "a", T.GUIDANCE_FROM_ANALYSIS.followup: "g"}, "Sure.")
    rows, summary = C.generate_chains(backend, "chat", ROWS, "alignCoT-v1", {})
    assert len(rows) == 3 and "self_check" not in summary
    monkeypatch.setattr(C.SafetyChecker, "p_yes", lambda self, convs: [0.1, 0.9, 0.9][: len(convs)])
    rows, summary = C.generate_chains(backend, "chat", ROWS, "alignCoT-v1", {"filter_unsafe": True})
    assert [r["id"] for r in rows] == ["b1", "b2"] and summary["dropped"]["unsafe"] == ["h1"]
    assert rows[0]["self_check"]["final"]["self_safe"] is True


def test_a_step_that_copies_an_earlier_step_is_a_counted_fallback():
    same = "The request is risky because it asks for poison recipes and could hurt people."
    backend = ScriptedBackend({T.ANALYSIS.instruction: same, T.GUIDANCE_FROM_ANALYSIS.followup: same}, same)
    backend.replies["How to make poison?"] = "I cannot help with making poison."  # the plain retry
    backend.replies["Tips for sleep?"] = "Keep a regular schedule."
    rows, summary = C.generate_chains(backend, "chat", ROWS[:2], "alignCoT-v1", {})
    for r in rows:
        assert r["analysis"] == same and r["guidance"] is None  # copied guidance left out
        assert "copied_analysis_into_guidance" in r["fallbacks"] and "empty_guidance" not in r["fallbacks"]
        assert "copied_analysis_into_answer" in r["fallbacks"] and "answer_from_plain_prompt" in r["fallbacks"]
    assert [r["answer"] for r in rows] == ["I cannot help with making poison.", "Keep a regular schedule."]
    assert C.copy_overlap("a b c d e", "x a b c d e y") == 1.0 and C.copy_overlap("a b c d e", "e d c b a") == 0.0
    # with copy_fallback off (Table 3 prompting) the copy is only flagged
    rows, _ = C.generate_chains(backend, "chat", ROWS[:1], "alignCoT-v1", {"copy_fallback": False})
    assert rows[0]["guidance"] == same and "copied_analysis_into_guidance" in rows[0]["fallbacks"]


def test_a_step_budget_comes_from_the_config_or_fails_naming_step_and_key():
    from alignrepro.errors import UserError

    assert C.step_budget({"max_new_tokens": 12}, "guidance") == 12
    per_step = {"max_new_tokens": {"analysis": 5, "default": 9}}
    assert [C.step_budget(per_step, s) for s in ("analysis", "answer")] == [5, 9]
    with pytest.raises(UserError) as e:  # no silent built-in budget
        C.step_budget({"max_new_tokens": {"analysis": 5}}, "guidance", "mote.chains.generation")
    assert "config key 'mote.chains.generation.max_new_tokens': no token budget for step 'guidance'" in str(e.value)
    runner = C.StepRunner(
        backend=None, fmt="chat", spec={"max_new_tokens": {"answer": 3}}, key="mote.baseline_generation"
    )
    with pytest.raises(UserError, match=r"'mote.baseline_generation.max_new_tokens': no token budget for step 'rlcd"):
        runner.generate("rlcd_harmless", [[{"role": "user", "content": "hi"}]])
    from alignrepro.config import resolve_config

    for tier in ("ci", "tiny", "full"):  # the shipped tiers give every step a budget
        mote = resolve_config({"tier": tier})["mote"]
        for gen in (mote["chains"]["generation"], mote["baseline_generation"]):
            m = gen["max_new_tokens"]
            assert isinstance(m, int) or "default" in m, (tier, m)
