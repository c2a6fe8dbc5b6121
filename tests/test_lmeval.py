"""lm-eval family: micro-MMLU parsing, our task YAMLs against lm-eval's own, and end-to-end runs on the ci model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from alignrepro.evals.lmeval import micro_mmlu, run
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
    name, _, _ = run.write_overlays(task, {"test": str(tmp_path / "d.jsonl")}, shots, tmp_path / "w")
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
    name, info, _ = run.write_overlays("arc_challenge", {"test": str(tmp_path / "arc.jsonl")}, 2, tmp_path / "w")
    from lm_eval.tasks import TaskManager

    task = TaskManager(include_path=str(tmp_path / "w"), include_defaults=False).load([name])["tasks"][name]
    task.set_fewshot_seed(1234)
    for doc in task.eval_docs:
        ctx = task.fewshot_context(doc, 2)
        assert ctx.count(doc["question"]) == 1  # only as the question asked, never as an example
    assert info["fewshot_source"] == "eval file, doc excluded"


def test_micro_mmlu_on_ci_model(ci_model, tmp_path):
    out = run.evaluate(
        ci_model,
        ["micro_mmlu"],
        limit=1,
        num_fewshot={"micro_mmlu": 1},
        batch_size=4,
        dtype="float32",
        work_dir=tmp_path,
    )
    r = out["tasks"]["micro_mmlu"]
    assert r["status"] == "ok" and 0.0 <= r["acc"] <= 1.0
    assert r["n"] == 57 and r["subjects"] == 57  # limit is per subject
    assert r["num_fewshot"] == 1
    assert out["micro_mmlu_build"]["parsed"] >= 280
    assert out["data"]["micro_mmlu"]["test"]["sha256"] == out["micro_mmlu_build"]["sha256"]


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
    picks = run.pick_items({"a": 5, "b": 3, "c": 1}, 4, seed=1)
    assert sum(map(len, picks.values())) == 4 and set(picks) == {"a", "b", "c"}
    assert picks == run.pick_items({"a": 5, "b": 3, "c": 1}, 4, seed=1)


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
