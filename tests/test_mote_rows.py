"""MoTE's Table 1 baselines are rows, one entry each: the manifest declares the four, a user's row folder is found,
checked at start (a row that cannot be built fails naming its row.yaml), planned by the rules (data, training,
answers), trained with the trainer and settings it names, and labelled in Table 1 by its own entry."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import pytest
from test_mote_data import QUERY_ROWS, _runner
from workflow import job_stats, smk

from alignrepro.config import ConfigError, resolve_config
from alignrepro.errors import UserError
from alignrepro.io import read_jsonl, write_jsonl
from alignrepro.methods.mote import aggregate as A
from alignrepro.methods.mote import baselines as B
from alignrepro.methods.mote import templates as T
from alignrepro.methods.mote import train_baselines as TB
from alignrepro.rows import enabled, paper_rows

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "methods" / "mote" / "rows" / "revise_dpo"
CI_MOTE = ["--config", "tier=ci", "papers=[mote]"]


def _user_rows(tmp_path: Path, edit=lambda t: t, name: str = "my_rd") -> Path:
    """A copy of the shipped example under `name`, enabled, with `edit` applied to its row.yaml."""
    rows = tmp_path / "my_rows"
    shutil.copytree(EXAMPLE, rows / name)
    row = rows / name / "row.yaml"
    row.write_text(edit(row.read_text().replace("enabled: false", "enabled: true")))
    return rows


def _cae_reply(conv):
    """A scripted policy for Critique-Revise: answers, critiques, and revises all but the sleep question."""
    last = conv[-1]["content"]
    if last == T.CAI_CRITIQUE_REQUEST:
        return "CRITIQUE"
    if last == T.CAI_REVISION_REQUEST:
        return "ANSWER" if "sleep" in conv[0]["content"] else "REVISION"  # sleep: the revision repeats the answer
    return "ANSWER"


# ------------------------------------------------------------------------------------------------ the registry
def test_manifest_rows_are_the_four_baselines_with_their_trainers():
    rows = paper_rows("mote")
    manifest = {n: r for n, r in rows.items() if r.folder is None and r.table is None}  # Table 1 (not 4)
    assert list(manifest) == ["sft", "critique_revise", "mistake_analysis", "rlcd"]
    assert {n: (r.label, r.spec["trainer"]) for n, r in manifest.items()} == {
        "sft": ("SFT", "trl:SFTTrainer"),
        "critique_revise": ("Critique-Revise", "trl:SFTTrainer"),
        "mistake_analysis": ("Mistake-Analysis", "trl:SFTTrainer"),
        "rlcd": ("RLCD", "trl:DPOTrainer"),
    }
    assert [manifest[n].load("data") for n in manifest] == [
        B.build_sft,
        B.build_critique_revise,
        B.build_mistake_analysis,
        B.build_rlcd,
    ]
    assert rows["revise_dpo"].folder == EXAMPLE and not rows["revise_dpo"].enabled  # shipped, not in the default run
    assert [r.name for r in enabled("mote", ["sft", "rlcd"])] == ["sft", "rlcd"]


def test_shared_evals_may_name_a_users_architecture_folder(tmp_path):
    """No list of row names in the schema: a row folder's architecture joins the leaderboard by its name, and a
    name that is no row of the run fails at start naming mote.shared_evals and the closest row."""
    rows = tmp_path / "my_rows"
    shutil.copytree(REPO / "methods" / "mote" / "rows" / "mote_rank_x2", rows / "my_arch")
    yaml_file = rows / "my_arch" / "row.yaml"
    yaml_file.write_text(yaml_file.read_text().replace("enabled: false", "enabled: true"))
    user = {"row_dirs": [str(rows)], "mote": {"shared_evals": ["mote", "my_arch"]}}
    assert resolve_config({"tier": "ci", **user})["mote"]["shared_evals"] == ["mote", "my_arch"]
    ok = smk(tmp_path / "a", "-n", *CI_MOTE, f"row_dirs=[{rows}]", "mote={shared_evals: [my_arch]}", timeout=300)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "results/evals/ci/answers/mote/my_arch/safety.jsonl" in ok.stdout
    bad = smk(tmp_path / "b", "-n", *CI_MOTE, f"row_dirs=[{rows}]", "mote={shared_evals: [my_arc]}", timeout=300)
    assert bad.returncode != 0
    assert (
        "config key 'mote.shared_evals': 'my_arc' is no row of MoTE (did you mean 'my_arch'?)"
        in bad.stdout + bad.stderr
    )


def test_config_lists_only_manifest_rows():
    with pytest.raises(ConfigError, match=r"mote\.baselines\[0\]") as e:
        resolve_config({"tier": "ci", "mote": {"baselines": ["nope"]}})
    assert "nope" in str(e.value)
    assert resolve_config({"tier": "ci", "mote": {"baselines": ["rlcd"]}})["mote"]["baselines"] == ["rlcd"]


# ------------------------------------------------------------------------------------------------ a user's row
def test_an_enabled_row_folder_joins_and_its_builder_makes_dpo_pairs(tmp_path):
    rows = _user_rows(tmp_path)
    joined = enabled("mote", ["sft", "rlcd"], [rows])
    assert [r.name for r in joined] == ["sft", "rlcd", "my_rd"]
    row = joined[-1]
    assert row.label == "Critique-Revise-DPO" and row.spec["trainer"] == "trl:DPOTrainer"
    builder = row.load("data")  # pairs.py in the copied folder
    assert builder.template == "baseline-critique-revise"
    pairs, trace, counts = builder(_runner(_cae_reply)[0], QUERY_ROWS)
    assert pairs == [{"id": "h1", "messages": QUERY_ROWS[0]["messages"], "chosen": "REVISION", "rejected": "ANSWER"}]
    assert counts["dropped_identical"] == 1 and counts["n_pairs"] == 1 and len(trace) == 2


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda t: t.replace('trainer: "trl:DPOTrainer"', "trainer: ppo"), "field 'trainer'"),
        (lambda t: t.replace("config: {beta: 0.1}", "config: {bta: 0.1}"), "bta"),
        (lambda t: t.replace("pairs.py:revision_pairs", "pairs.py:revision_pairz"), "revision_pairz"),
        (lambda t: t.replace("pairs.py:revision_pairs", "nope.py:revision_pairs"), "nope.py"),
        (lambda t: "\n".join(x for x in t.splitlines() if not x.startswith("data:")), "'data' is a required"),
        (lambda t: t.replace('"trl:DPOTrainer"', '"trl:SFTTrainer"'), "field 'config'"),  # DPO settings on SFT
        (lambda t: t.replace("paper: mote", "paper: motee"), "unknown paper 'motee'"),
    ],
)
def test_a_row_that_cannot_be_built_fails_naming_its_row_yaml(tmp_path, edit, needle):
    rows = _user_rows(tmp_path, edit, name="broken")
    with pytest.raises(UserError, match=needle) as e:
        enabled("mote", ["sft"], [rows])
    assert str(rows / "broken" / "row.yaml") in str(e.value)


def test_builder_options_must_be_its_arguments():
    B.bind_options(B.build_sft, {"answers": "self"})
    with pytest.raises(UserError, match=r"\['answer'\] are not arguments of the builder \(it takes: answers\)"):
        B.bind_options(B.build_sft, {"answer": "self"})
    with pytest.raises(UserError, match="it takes: none"):
        B.bind_options(B.build_rlcd, {"seed": 1})
    with pytest.raises(ValueError, match="'refs' is not one of"):  # a wrong value fails too, never a silent default
        B.build_sft(_runner(lambda c: "SELF")[0], QUERY_ROWS, answers="refs")


def test_the_data_job_builds_the_row_it_is_given_and_loads_no_model_it_does_not_need(tmp_path):
    q = tmp_path / "q.jsonl"
    write_jsonl(q, [{**r, "reference": f"REF {r['id']}"} for r in QUERY_ROWS])
    row = {**B.find_row("sft"), "name": "sft_refs", "options": {"answers": "references"}}
    summary = B.main(
        ["sft_refs", "--row-json", json.dumps(row), "--queries", str(q), "--out", str(tmp_path / "o.jsonl")]
    )
    assert [r["completion"] for r in read_jsonl(tmp_path / "o.jsonl")] == ["REF h1", "REF b1"]
    assert summary["baseline"] == "sft_refs" and summary["options"] == {"answers": "references"}
    assert summary["provenance"]["model"] is None and summary["template"]["id"] == "baseline-sft"
    row["options"] = {"answers": "self"}  # now it must generate: the policy is loaded on first use, and needed
    with pytest.raises(SystemExit, match="--model is required"):
        B.main(["sft_refs", "--row-json", json.dumps(row), "--queries", str(q), "--out", str(tmp_path / "p.jsonl")])
    with pytest.raises(UserError, match="unknown baseline 'matrix'"):
        B.main(["matrix", "--queries", str(q), "--out", str(tmp_path / "m.jsonl")])


# ------------------------------------------------------------------------------------------------ its trainer
def test_a_dpo_row_trains_with_its_own_settings(ci_model):
    from alignrepro.models import load_model, load_tokenizer
    from alignrepro.training import trainer_kwargs

    mote = resolve_config({"tier": "ci"})["mote"]
    cfg = {"train": mote["train"]["train"], "lora": mote["train"]["lora"], "dpo": mote["dpo"]}
    pairs = [{"id": "a", "messages": QUERY_ROWS[0]["messages"], "chosen": "No.", "rejected": "Sure, poison is"}] * 2
    row = {"name": "my_ipo", "data": "x:y", "trainer": "trl:DPOTrainer", "config": {"beta": 0.3, "loss_type": ["ipo"]}}
    tok = load_tokenizer(ci_model, padding_side="right")
    kwargs = trainer_kwargs(cfg["train"], Path("unused"), len(pairs), None, run_name="t", use_wandb=False)
    trainer = TB.build_trainer(row, load_model(ci_model), tok, pairs, cfg, kwargs)
    assert type(trainer).__name__ == "DPOTrainer"
    assert trainer.args.beta == 0.3 and list(trainer.args.loss_type) == ["ipo"]  # the row's, not mote.dpo's 0.1
    rlcd = {**row, "name": "rlcd", "config": None}
    assert TB.build_trainer(rlcd, load_model(ci_model), tok, pairs, cfg, kwargs).args.beta == mote["dpo"]["beta"]
    with pytest.raises(UserError, match=r"row 'my_sft' \(trl:SFTTrainer\).*without \['completion'\]"):
        TB.to_trl_rows({**row, "name": "my_sft", "trainer": "trl:SFTTrainer"}, pairs)


# ------------------------------------------------------------------------------------------------ Table 1's labels
def _judged(path: Path, systems: list[str]) -> None:
    metrics = {"help": 5.0, "harm": 50.0, "harm_help": 4.0, "harm_strmatch": 25.0, "n": {"harmful": 2}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "systems": {s: metrics for s in systems},
                "judge": {"id": "HEURISTIC"},
                "prompts": {"sha256": "0" * 64},
                "inputs": {s: {"sha256": "1" * 64} for s in systems},
            }
        )
    )


def test_table1_labels_and_notes_come_from_the_rows(tmp_path):
    baselines = [
        {"name": "rlcd", "label": "RLCD", "trainer": "trl:DPOTrainer", "note": "DPO on contrast pairs"},
        {"name": "my_rd", "label": "My Row", "trainer": "trl:DPOTrainer", "note": None},
        {"name": "sft", "label": "SFT", "trainer": "trl:SFTTrainer", "note": None},
    ]
    spec = {"tier": "ci", "seed": 1, "bases": ["b"], "main": "b", "root": str(tmp_path), "template": "alignCoT-v1",
            "baselines": baselines, "prompting": ["prompt-plain"]}  # fmt: skip
    _judged(tmp_path / "b/eval/table1.json", ["MoTE", *(f"baseline_{b['name']}" for b in baselines)])
    _judged(tmp_path / "b/eval/table3.json", ["prompt-plain"])
    sb = {"rows": {"answer": {"amount": 2, "self_bleu": 0.5}}, "provenance": {"chains": {"sha256": "2" * 64}}}
    (tmp_path / "b/chains").mkdir()
    (tmp_path / "b/chains/alignCoT-v1.self_bleu.json").write_text(json.dumps(sb))
    (tmp_path / "b/models/baseline_sft").mkdir(parents=True)
    (tmp_path / "b/models/baseline_sft/model.json").write_text(json.dumps({"untrained_no_data": True}))
    tables, _ = A.build_tables(spec, A.reported_tables(REPO / "methods/mote/reported.yaml"))
    ours = [(r["row"], r["model"], r["note"]) for r in tables["table1"] if r["source"] == "reproduced"]
    assert ours == [
        ("MoTE-b", "b:MoTE", "adaptive inference, chains alignCoT-v1"),
        ("RLCD", "b:baseline_rlcd", "DPO on contrast pairs"),
        ("My Row", "b:baseline_my_rd", "LoRA DPO on its self-made pairs"),
        (
            "SFT",
            "b:baseline_sft",
            "UNTRAINED: its data step kept no rows (= the base model); LoRA SFT on its self-made data",
        ),
    ]


def test_per_item_values_follow_the_columns_definitions():
    from alignrepro.methods.mote.evaluate import per_item_values

    ann = [
        {"id": "h1", "eval_set": "harmful", "xstest_strmatch": {"label": "refusal"}, "harmlessness": 8.0,
         "helpfulness": 3.0},
        {"id": "h2", "eval_set": "harmful", "xstest_strmatch": {"label": "compliance"}, "harmlessness": 2.0,
         "helpfulness": None},  # no rating: no Harm-Help value, as in the column's denominator
        {"id": "h3", "eval_set": "harmful", "xstest_strmatch": {"label": "empty"}, "harmlessness": None},
        {"id": "b1", "eval_set": "benign", "xstest_strmatch": {"label": "refusal"}, "helpfulness": 6.0},
        {"id": "j1", "eval_set": "jailbreak", "xstest_strmatch": {"label": "refusal"}, "harmlessness": 9.0},
    ]  # fmt: skip
    v = per_item_values(ann, thr=7.0)
    assert v["harm"] == {"h1": 100.0, "h2": 0.0} and v["harm_strmatch"] == {"h1": 100.0, "h2": 0.0}
    assert v["harm_help"] == {"h1": 3.0} and v["help"] == {"b1": 6.0} and v["not_overrefuse"] == {"b1": 0.0}


def test_rows_carry_cis_and_paired_differences_against_mote(tmp_path):
    """Every reproduced Table 1 / 3 row has each column's CI; MoTE − baseline and prompting − plain are paired on the
    same prompts (McNemar for the harmless rate, sign test for ratings) with the MDE: differences.csv by hand."""
    harm = {"MoTE": [1, 1, 1, 1, 1, 1, 1, 0], "baseline_sft": [0, 0, 0, 0, 0, 0, 0, 0]}
    helps = {"MoTE": [5, 6, 7, 8], "baseline_sft": [4, 6, 6, 9]}

    def system(name: str) -> dict:
        return {"help": 6.5, "harm": 87.5, "harm_help": None, "harm_strmatch": None, "n": {"harmful": 8},
                "sets": {"harmful": {"metrics": {"harmless_rate_judge": {"ci95": [52.9, 97.8]}}},
                         "benign": {"metrics": {"help_judge": {"ci95": [4.4, 8.6]},
                                                "not_overrefuse_xstest": {"ci95": [40.0, 90.0]}}}},
                "per_item": {"harm": {f"h{i}": 100.0 * v for i, v in enumerate(harm.get(name, harm["MoTE"]))},
                             "help": {f"b{i}": float(v) for i, v in enumerate(helps.get(name, helps["MoTE"]))},
                             "harm_help": {}, "harm_strmatch": {}, "not_overrefuse": {}}}  # fmt: skip

    for table, systems in (("table1", ["MoTE", "baseline_sft"]), ("table3", ["prompt-plain", "prompt-aligncot"])):
        path = tmp_path / f"b/eval/{table}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"systems": {s: system(s) for s in systems}, "judge": {"id": "J"},
                                    "prompts": {"sha256": "0" * 64}, "inputs": {s: {"sha256": "1" * 64}
                                                                                for s in systems}}))  # fmt: skip
    sb = {"rows": {"answer": {"amount": 2, "self_bleu": 0.5}}, "provenance": {"chains": {"sha256": "2" * 64}}}
    (tmp_path / "b/chains").mkdir()
    (tmp_path / "b/chains/alignCoT-v1.self_bleu.json").write_text(json.dumps(sb))
    spec = {"tier": "ci", "seed": 1, "bases": ["b"], "main": "b", "root": str(tmp_path), "template": "alignCoT-v1",
            "judge": "j", "baselines": [{"name": "sft", "label": "SFT", "trainer": "trl:SFTTrainer", "note": None}],
            "prompting": ["prompt-plain", "prompt-aligncot"]}  # fmt: skip
    out = tmp_path / "tables"
    A.main(["tables", "--spec-json", json.dumps(spec), "--reported", str(REPO / "methods/mote/reported.yaml"),
            "--out-dir", str(out)])  # fmt: skip
    rows = [r for r in csv.DictReader((out / "tables.csv").open()) if r["source"] == "reproduced"]
    assert {r["row"] for r in rows} >= {"MoTE-b", "SFT", "WVU", "analysis-guidance-answer"}
    for r in rows:
        if r["table"] in ("table1", "table3"):
            assert json.loads(r["harm_ci95"]) == [52.9, 97.8] and json.loads(r["not_overrefuse_ci95"]) == [0.4, 0.9]
    assert "87.50 [52.90, 97.80]" in (out / "tables.md").read_text()
    diffs = {(d["table"], d["b_row"], d["metric"]): d for d in csv.DictReader((out / "differences.csv").open())}
    d = diffs["table1", "sft", "harm"]
    assert d["a"] == "MoTE-b" and d["b"] == "SFT" and d["test"] == "McNemar exact"
    assert float(d["diff"]) == pytest.approx(87.5) and float(d["p_value"]) == pytest.approx(2 / 2**7)  # 7 vs 0
    d = diffs["table1", "sft", "help"]  # + + 0 - : sign test on 3 non-zero differences, 2 vs 1
    assert d["test"] == "sign test" and float(d["p_value"]) == pytest.approx(1.0) and float(d["diff"]) == 0.25
    assert diffs["table3", "prompt-plain", "harm"]["a"] == "analysis-guidance-answer"
    assert diffs["table1", "sft", "harm_help"]["note"] == "no prompt with a value on both sides"


# ------------------------------------------------------------------------------------------------ the rules
def test_the_rules_plan_an_enabled_row_folders_jobs_and_nothing_else(tmp_path):
    before = smk(tmp_path / "a", "-n", *CI_MOTE, timeout=300)
    assert before.returncode == 0, before.stdout[-2000:] + before.stderr[-2000:]
    rows = _user_rows(tmp_path)
    after = smk(tmp_path / "b", "-n", "-p", *CI_MOTE, f"row_dirs=[{rows}]", timeout=300)
    assert after.returncode == 0, after.stdout[-2000:] + after.stderr[-2000:]
    old, new = job_stats(before.stdout), job_stats(after.stdout)
    gained = {k: new.get(k, 0) - old.get(k, 0) for k in set(old) | set(new) if new.get(k, 0) != old.get(k, 0)}
    # its data, training and Table 1 answers; on the leaderboard, its answers and scores of each shared benchmark
    mote_gained = {k: v for k, v in gained.items() if k.startswith("mote_")}
    assert mote_gained == {"mote_baseline_data": 1, "mote_train_baseline": 1, "mote_generate_baseline": 1}
    assert all(v == 1 and k.startswith("evals_") for k, v in gained.items() if k not in mote_gained), gained
    r = "results/mote/ci/ci-random-llama"
    for path in ("baselines/my_rd.jsonl", "models/baseline_my_rd/model.json", "answers/baseline/my_rd.jsonl"):
        assert f"{r}/{path}" in after.stdout, path
    assert "results/evals/ci/answers/mote/my_rd/safety.jsonl" in after.stdout
    # the row reaches its jobs through params (a changed row reruns them): builder in the data job, trainer in training
    data_cmd = next(x for x in after.stdout.splitlines() if "mote.baselines my_rd" in x)
    assert '"data": "pairs.py:revision_pairs"' in data_cmd and re.search(r'"folder": "[^"]*my_rows/my_rd"', data_cmd)
    train_cmd = next(x for x in after.stdout.splitlines() if "train_baselines --method my_rd" in x)
    assert '"trainer": "trl:DPOTrainer"' in train_cmd and '"config": {"beta": 0.1}' in train_cmd
    assert '"dpo": {"beta": 0.1}' in train_cmd
    sft_cmd = next(x for x in after.stdout.splitlines() if "train_baselines --method sft" in x)
    assert '"dpo"' not in sft_cmd  # an SFT row does not rerun when mote.dpo changes


def test_a_bad_option_fails_the_workflow_at_start_naming_its_row_yaml(tmp_path):
    rows = _user_rows(tmp_path, lambda t: t + "options: {answers: self}\n")
    res = smk(tmp_path / "w", "-n", *CI_MOTE, f"row_dirs=[{rows}]", timeout=300)
    out = res.stdout + res.stderr
    assert res.returncode != 0 and str(rows / "my_rd" / "row.yaml") in out and "field 'options'" in out, out[-2000:]
    assert "['answers'] are not arguments of the builder" in out
