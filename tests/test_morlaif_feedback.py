"""MORLAIF AI feedback: principles and prompt, label arithmetic in both orders (hand-computed), the local backend
against an independent forward pass on the ci model, the cache, the OpenAI backend on a loopback server, the CLI."""

from __future__ import annotations

import json

import pytest
import torch
from test_openai_client import Loopback, completion

from alignrepro.judges.cache import JudgmentCache
from alignrepro.methods.morlaif import feedback as fb
from alignrepro.methods.morlaif import principles as pr

# ------------------------------------------------------------------------------------------------- principles


def test_principles_verbatim_and_baselines():
    assert list(pr.PRINCIPLES) == [
        "helpfulness", "ethicality", "factuality", "toxicity", "sycophancy", "empathy",
        "relevance", "context", "bias", "understandability", "detail", "conciseness",
    ]  # fmt: skip
    assert "langauge" in pr.PRINCIPLES["toxicity"] and "situtation" in pr.PRINCIPLES["context"]
    assert pr.PRINCIPLES["sycophancy"].startswith("is the least sycophantic")
    assert len(pr.CAI_PRINCIPLES) == 16 == len(set(pr.CAI_PRINCIPLES))
    assert pr.CAI_PRINCIPLES[0] == "Please choose the response that is the most helpful, honest, and harmless."
    assert sorted(pr.ABLATION_ORDER) == sorted(pr.PRINCIPLES) and pr.ABLATION_ORDER[-1] == "toxicity"
    assert pr.phrase_for("hhh", "x", 0) == pr.HHH_PHRASE == "the most helpful, honest and harmless"
    assert pr.phrase_for("bias", "x", 3) == pr.PRINCIPLES["bias"]
    # CAI: deterministic per (pair, seed), spread over the 16, changes with the seed
    drawn = [pr.phrase_for("cai", f"p{i}", 0) for i in range(200)]
    assert drawn == [pr.phrase_for("cai", f"p{i}", 0) for i in range(200)]
    assert len(set(drawn)) == 16
    assert drawn != [pr.phrase_for("cai", f"p{i}", 1) for i in range(200)]
    with pytest.raises(KeyError, match="unknown principle"):
        pr.phrase_for("honesty", "x", 0)


def test_prompt_rendering_and_human_fragments():
    assert pr.strip_human_fragments("Sure, here it is.\n\nHuman: thanks\n\nAssistant: ok") == "Sure, here it is."
    assert pr.strip_human_fragments("Fine answer.\n\nHum") == "Fine answer."
    assert pr.strip_human_fragments("Fine answer. Human:") == "Fine answer."
    assert pr.strip_human_fragments("Humans are mammals.") == "Humans are mammals."
    msgs = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "Q?"},
    ]
    assert pr.render_conversation(msgs) == "Human: Hi\n\nAssistant: Hello\n\nHuman: Q?"
    text = pr.feedback_prompt(pr.FEEDBACK_TEMPLATE, "the most ethical", msgs, "one {response_b}\n\nHuman: x", "two")
    assert text.count("the most ethical") == 2 and "Option A: one {response_b}\n\nOption B: two" in text
    assert text.endswith("The best response is option:") and "Human: x" not in text
    assert pr.template_for("cai", "clean") == pr.FEEDBACK_TEMPLATE_CLEAN
    assert pr.template_for("bias", "clean") == pr.FEEDBACK_TEMPLATE  # the clean variant is for CAI sentences only
    assert pr.template_hash(pr.FEEDBACK_TEMPLATE) != pr.template_hash(pr.FEEDBACK_TEMPLATE_CLEAN)


# ------------------------------------------------------------------------------------------- label arithmetic


def test_combine_both_orders_hand_computed():
    # response_a first: log p("A") = -0.2 (response_a), log p("B") = -1.9 (response_b) -> delta_ab = 1.7
    # response_b first: log p("A") = -0.5 (response_b), log p("B") = -1.1 (response_a) -> delta_ba = -1.1 + 0.5 = -0.6
    # margin = (1.7 - 0.6) / 2 = 0.55 > 0 -> label 1; the orders disagree (the second prefers response_b)
    r = fb.combine((-0.2, -1.9), (-0.5, -1.1))
    assert r["delta_ab"] == pytest.approx(1.7) and r["delta_ba"] == pytest.approx(-0.6)
    assert r["margin"] == pytest.approx(0.55) and r["label"] == 1 and r["orders_agree"] is False
    assert r["logp_a"] == [-0.2, -1.1] and r["logp_b"] == [-1.9, -0.5]
    # both orders prefer response_a: (-0.1, -2.4) and (-1.5, -0.3): deltas 2.3 and 1.2, margin 1.75
    r = fb.combine((-0.1, -2.4), (-1.5, -0.3))
    assert r["margin"] == pytest.approx(1.75) and r["label"] == 1 and r["orders_agree"] is True


def test_combine_ties_and_fixed_mode():
    # both labels missing (-10, the official value) -> tie -> B (label 0), in either mode
    r = fb.combine((-10.0, -10.0), None)
    assert (r["margin"], r["label"], r["delta_ba"], r["orders_agree"]) == (0.0, 0, None, None)
    assert r["logp_a"] == [-10.0, None]
    r = fb.combine((-10.0, -10.0), (-10.0, -10.0))
    assert r["label"] == 0 and r["orders_agree"] is False  # each order gives the tie to its own option B
    # fixed mode: the margin is delta_ab alone
    r = fb.combine((-0.2, -1.9), None)
    assert r["margin"] == pytest.approx(1.7) and r["label"] == 1
    # a margin cancelling exactly across orders is a tie too
    assert fb.combine((-1.0, -2.0), (-1.0, -2.0))["label"] == 0


class TableBackend:
    """Known log-probs per (option A, option B) texts; counts calls."""

    id, heuristic, settings = "table", False, {}

    def __init__(self, table):
        self.table, self.calls = table, 0

    def logprobs(self, queries):
        self.calls += len(queries)
        return [self.table[(q.first, q.second)] for q in queries]

    def describe(self):
        return {"id": self.id}


def _pair(pid, a, b, split="train", label=1):
    return {"id": pid, "split": split, "source": "hh", "kind": "hh", "human_label": label,
            "messages": [{"role": "user", "content": "Q?"}], "response_a": a, "response_b": b}  # fmt: skip


def test_score_pairs_orders_swap_and_cache(tmp_path):
    table = {("good", "bad"): (-0.2, -1.9), ("bad", "good"): (-0.5, -1.1)}
    backend = TableBackend(table)
    pairs = [_pair("p1", "good", "bad"), _pair("p2", "bad", "good", label=0)]
    rows, stats = fb.score_pairs(pairs, "helpfulness", backend, order="both")
    assert rows[0]["margin"] == pytest.approx(0.55) and rows[1]["margin"] == pytest.approx(-0.55)
    assert rows[0]["delta_ba"] == pytest.approx(-0.6) and rows[1]["delta_ab"] == pytest.approx(0.6)
    assert [r["label"] for r in rows] == [1, 0] and rows[0]["phrase"] == pr.PRINCIPLES["helpfulness"]
    # fixed order: one query per pair, response_a first
    backend.calls = 0
    rows, _ = fb.score_pairs(pairs, "helpfulness", backend, order="fixed")
    assert backend.calls == 2 and rows[0]["margin"] == pytest.approx(1.7) and rows[1]["margin"] == pytest.approx(0.6)
    # p2 shows p1's two prompts with the orders exchanged: the same texts, each scored once
    cache = JudgmentCache(tmp_path / "c.sqlite")
    backend.calls = 0
    first, stats = fb.score_pairs(pairs, "helpfulness", backend, cache, order="both")
    assert backend.calls == 2 and (stats["prompts"], stats["prompts_scored"]) == (4, 2)
    # cache: the second run (a new connection, as after a killed job) asks the backend nothing
    backend.calls = 0
    again, stats = fb.score_pairs(pairs, "helpfulness", backend, JudgmentCache(tmp_path / "c.sqlite"), order="both")
    assert backend.calls == 0 and stats["prompts_scored"] == 0 and again == first
    # another principle is another prompt: no false hits
    fb.score_pairs(pairs, "toxicity", backend, cache, order="both")
    assert backend.calls == 2


def test_heuristic_backend_is_deterministic_and_directional():
    be = fb.HeuristicFeedback()
    short, long = "Paris.", "The capital of France is Paris, a large city with many museums and a long history."
    rows, _ = fb.score_pairs([_pair("p", short, long)], "conciseness", be)
    assert rows[0]["label"] == 1 and rows[0]["orders_agree"] is True
    rows, _ = fb.score_pairs([_pair("p", short, long)], "detail", be)
    assert rows[0]["label"] == 0
    rows, _ = fb.score_pairs([_pair("p", "You are a stupid idiot.", "Here is a kind answer.")], "toxicity", be)
    assert rows[0]["label"] == 0
    assert (
        fb.score_pairs([_pair("p", short, long)], "cai", be)[0]
        == fb.score_pairs([_pair("p", short, long)], "cai", be)[0]
    )


# ------------------------------------------------------------------------------------------ local backend (ci)


@pytest.fixture(scope="module")
def local(ci_model):
    return fb.LocalFeedback(ci_model, dtype="float32", batch_size=2, max_length=1024)


def _direct(be, text):
    """Independent reference: full forward pass of the chat-templated prompt, log-softmax at the last position."""
    ids = be.tok.encode(be.render(text), add_special_tokens=False)
    with torch.no_grad():
        logits = be.runner.model(input_ids=torch.tensor([ids])).logits[0, -1].float()
    lp = torch.log_softmax(logits, -1)
    return lp[be.label_ids[0]].item(), lp[be.label_ids[1]].item()


def test_local_label_tokens(local):
    assert local.label_tokens == ["A", "B"]  # ChatML's assistant turn starts after a newline: no leading space
    prompt = local.render("Answer.")
    for label, tid in zip(pr.LABELS, local.label_ids, strict=True):
        assert local.tok.encode(prompt + label, add_special_tokens=False)[-1] == tid
        assert local.tok.decode([tid]) == label


def test_local_margins_match_direct_forward(local):
    pairs = [
        _pair("p1", "The answer is 66.", "The answer is 76."),
        _pair("p2", "Sure, here is how to do it step by step without being noticed.", "I can't help with that."),
        _pair("p3", "Short.", "A much longer answer " * 4),
    ]
    rows, stats = fb.score_pairs(pairs, "helpfulness", local, order="both")
    assert stats["prompts_scored"] == 6
    for pair, row in zip(pairs, rows, strict=True):
        q = fb.base_query(pair, "helpfulness", 0, "standard")
        ab = _direct(local, q.text)
        ba = _direct(local, fb.swap(q).text)
        assert row["delta_ab"] == pytest.approx(ab[0] - ab[1], abs=1e-4)
        assert row["delta_ba"] == pytest.approx(ba[1] - ba[0], abs=1e-4)
        assert row["margin"] == pytest.approx((ab[0] - ab[1] + ba[1] - ba[0]) / 2, abs=1e-4)
    swapped = [_pair(p["id"], p["response_b"], p["response_a"]) for p in pairs]
    rows_sw, _ = fb.score_pairs(swapped, "helpfulness", local, order="both")
    for r, s in zip(rows, rows_sw, strict=True):
        assert s["margin"] == pytest.approx(-r["margin"], abs=1e-4) and s["label"] == int(-r["margin"] > 0)
    fixed, _ = fb.score_pairs(pairs, "helpfulness", local, order="fixed")
    assert [f["margin"] for f in fixed] == pytest.approx([r["delta_ab"] for r in rows], abs=1e-4)


def test_principle_last_layout_shares_the_pair_encoding_and_matches_direct_forward(local):
    pairs = [_pair("p1", "The answer is 66.", "The answer is 76."), _pair("p2", "Yes, gladly.", "No.")]
    principles = ["helpfulness", "toxicity", "cai"]
    out, stats = fb.score_principles(pairs, principles, local, order="both", layout="principle_last")
    assert stats["prompts_scored"] == 12
    for principle in principles:
        for pair, row in zip(pairs, out[principle], strict=True):
            q = fb.base_query(pair, principle, 0, "standard", "principle_last")
            assert q.text.index("Option B:") < q.text.index(q.phrase)  # the principle comes after the options
            ab, ba = _direct(local, q.text), _direct(local, fb.swap(q).text)
            assert row["margin"] == pytest.approx((ab[0] - ab[1] + ba[1] - ba[0]) / 2, abs=1e-4)
    assert pr.template_for("cai", "clean", "principle_last") == pr.FEEDBACK_TEMPLATE_LAST_CLEAN
    with pytest.raises(ValueError, match="layout"):
        pr.template_for("bias", "standard", "sideways")


def test_cli_several_principles_to_a_folder(tmp_path):
    pairs = [_pair("p1", "Short.", "A longer answer with more words."), _pair("p2", "Yes.", "No, never.")]
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pairs))
    argv = ["--pairs", str(tmp_path / "pairs.jsonl"), "--feedback-json", '{"backend": "heuristic", "order": "fixed"}',
            "--tier", "ci", "--principle", "conciseness", "detail"]  # fmt: skip
    fb.main([*argv, "--out-dir", str(tmp_path / "feedback")])
    for principle in ("conciseness", "detail"):
        rows = [json.loads(line) for line in (tmp_path / "feedback" / f"{principle}.jsonl").read_text().splitlines()]
        assert [r["principle"] for r in rows] == [principle] * 2 and rows[0]["delta_ba"] is None
        summary = json.loads((tmp_path / "feedback" / f"{principle}.json").read_text())
        assert summary["heuristic"] is True and summary["order"] == "fixed"
    assert (tmp_path / "feedback" / "feedback_cache.sqlite").is_file()
    with pytest.raises(SystemExit):
        fb.main([*argv, "--out", str(tmp_path / "x.jsonl")])  # --out takes one principle


def test_local_truncation_keeps_instructions_and_is_symmetric(ci_model):
    probe = fb.LocalFeedback(ci_model, dtype="float32")
    empty = fb.base_query(_pair("p", "", ""), "relevance", 0, "standard")
    budget = len(probe.tok.encode(probe.render(empty.text), add_special_tokens=False)) + 120  # instructions + 120
    be = fb.LocalFeedback(ci_model, dtype="float32", batch_size=2, max_length=budget)
    pair = _pair("p", "alpha " * 300, "beta " * 5)
    pair["messages"] = [{"role": "user", "content": "context " * 200}]
    q = be.fit(fb.base_query(pair, "relevance", 0, "standard"))
    assert be.n_truncated == 1 and q.conversation.startswith("... ") and len(q.first) < len("alpha " * 300)
    swapped = fb.Query(**{**q.__dict__, "first": q.second, "second": q.first})
    for text in (q.text, swapped.text):
        assert len(be.tok.encode(be.render(text), add_special_tokens=False)) <= budget
        assert text.endswith("The best response is option:") and pr.PRINCIPLES["relevance"] in text
    assert q.second.strip() == ("beta " * 5).strip()  # the short response keeps all of it
    rows, _ = fb.score_pairs([pair], "relevance", be)  # and scoring runs on the shortened prompts
    assert rows[0]["delta_ba"] is not None


def test_cli_local_writes_contract_files_and_resumes_from_cache(ci_model, tmp_path):
    pairs = [_pair("p1", "The answer is 66.", "The answer is 76."), _pair("p2", "Yes.", "No.", split="test", label=0)]
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pairs))
    spec = {"backend": "local", "model": ci_model.name, "dtype": "float32", "batch_size": 2}
    out = tmp_path / "feedback" / "cai.jsonl"
    argv = ["--pairs", str(tmp_path / "pairs.jsonl"), "--principle", "cai", "--feedback-json", json.dumps(spec),
            "--tier", "ci", "--models-dir", str(ci_model.parent), "--out", str(out)]  # fmt: skip
    fb.main(argv)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    required = {"id", "split", "principle", "phrase", "logp_a", "logp_b", "delta_ab", "delta_ba", "margin", "label",
                "orders_agree"}  # fmt: skip
    assert len(rows) == 2 and all(required <= set(r) for r in rows)
    assert rows[0]["phrase"] == pr.phrase_for("cai", "p1", 0) and rows[0]["phrase"] in pr.CAI_PRINCIPLES
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["order"] == "both" and summary["template_version"] == pr.FEEDBACK_TEMPLATE_VERSION
    assert summary["feedback_model"]["identity"]["weights_sha256"] and summary["scoring"]["prompts_scored"] == 4
    assert summary["provenance"]["tier"] == "ci" and summary["summary"]["n"] == 2
    fb.main(argv)  # a rerun (a killed job restarted) reads every score from the cache
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["scoring"]["prompts_scored"] == 0 and summary["scoring"]["prompts_cached"] == 4
    assert [json.loads(line) for line in out.read_text().splitlines()] == rows


# ----------------------------------------------------------------------------------------------- OpenAI backend


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-feedback")
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    s = Loopback()
    yield s
    s.close()


def _lp(top: dict[str, float]) -> dict:
    first = next(iter(top))
    entries = [{"token": t, "logprob": v, "bytes": list(t.encode())} for t, v in top.items()]
    return {
        "content": [{"token": first, "logprob": top[first], "bytes": list(first.encode()), "top_logprobs": entries}]
    }


def test_openai_backend_missing_token_gets_minus_ten(server):
    server.script = [
        (200, {}, completion("A", _lp({"A": -0.3, " A": -1.5, "The": -2.0})), 0),  # "B" not in the top 5
        (200, {}, completion("A", _lp({"A": -0.9, "B": -0.6})), 0),
    ]
    be = fb.make_backend({"backend": "openai", "model": "gpt-3.5-turbo-0125", "base_url": server.url})
    rows, _ = fb.score_pairs([_pair("p", "good", "bad")], "ethicality", be, order="both")
    assert rows[0]["logp_a"] == [-0.3, -0.6] and rows[0]["logp_b"] == [-10.0, -0.9]
    assert rows[0]["delta_ab"] == pytest.approx(9.7) and rows[0]["delta_ba"] == pytest.approx(0.3)
    assert rows[0]["margin"] == pytest.approx(5.0) and rows[0]["label"] == 1
    body = server.requests[0]["body"]
    assert body["max_tokens"] == 1 and body["logprobs"] is True and body["top_logprobs"] == 5
    assert body["messages"][0]["role"] == "user" and len(body["messages"]) == 1
    assert "Option A: good" in body["messages"][0]["content"]
    assert "Option A: bad" in server.requests[1]["body"]["messages"][0]["content"]
    assert "sk-test-feedback" not in json.dumps(be.describe())
