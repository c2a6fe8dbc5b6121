"""LAB's whole DAG at the ci tier (targets lab_tables + lab_ablations: the tables from the session's ci run of the
default target, the ablation on a copy of it): the leaves validate, each SDG pipeline runs against the served
(scripted) teacher with its filters removing rows, the phases replay as Table 1 says, each phase's checkpoint is
selected, the tables carry the reported Table 3 beside the reproduced rows; a second run is a no-op; the full tier
dry-runs with the vLLM-served teacher."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from workflow import job_stats, smk

TARGETS = ["lab_tables", "lab_ablations"]
CI = ["--config", "tier=ci"]


@pytest.fixture(scope="module")
def ci_run(ci_workflow, ci_workflow_output, tmp_path_factory) -> Path:
    """A copy of the session's ci run of the default target (LAB's tables), plus the stacked ablation: LAB's whole
    DAG without running its main jobs a second time."""
    assert "LAB at tier ci (seed" in ci_workflow_output  # lab_tables printed its summary at the end (`&& cat`)
    work = tmp_path_factory.mktemp("lab_ci") / "work"
    shutil.copytree(ci_workflow, work, symlinks=True)
    res = smk(work, *TARGETS, *CI)  # targets first: --config takes every later word
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-5000:]
    stats = job_stats(res.stdout + res.stderr)
    assert "lab_tables" not in stats and "lab_sdg" not in stats and stats["lab_ablations"] == 1  # main DAG reused
    return work


@pytest.mark.slow
def test_sdg_ran_every_leaf_with_its_library_pipeline(ci_run):
    r = ci_run / "results/lab/ci"
    leaves = {leaf["name"]: leaf for leaf in json.loads((r / "taxonomy/leaves.json").read_text())["leaves"]}
    assert {n: leaf["kind"] for n, leaf in leaves.items()} == {
        "siblings": "freeform_skill", "punctuation": "grounded_skill", "phoenix": "knowledge"
    }  # fmt: skip
    stages = {n: json.loads((r / f"sdg/{n}/stages.json").read_text()) for n in leaves}
    assert [s["block"] for s in stages["phoenix"]["stages"]][-2:] == ["filter_verify_question", "to_messages"]
    removed = [s for st in stages.values() for s in st["stages"] if s["type"].startswith("Filter")
               and s["rows_out"] < s["rows_in"]]  # fmt: skip
    assert removed  # the teacher's verdicts remove rows
    keep = (r / "tables/sdg_keep_rates.md").read_text()
    assert "filter_faithfulness" in keep and "gen_grounded_questions" in keep and "post_process_mcq" in keep


@pytest.mark.slow
def test_knowledge_leaf_questions_join_mmlu_branch(ci_run):
    # phoenix ships no MMLU-branch questions: the library's mmlu_bench pipeline writes them, and every model's
    # MMLU-branch (selection and evaluation) scores them beside the 27 shipped tonsils questions.
    r = ci_run / "results/lab/ci"
    rows = [json.loads(line) for line in (r / "mmlu_bench/phoenix/questions.jsonl").read_text().splitlines()]
    assert rows and all(len(q["choices"]) == 4 and q["answer"] in "ABCD" for q in rows)
    assert not (r / "mmlu_bench/tonsils").exists() and not (r / "mmlu_bench/siblings").exists()
    for scored in (r / "eval/lab.json", r / "models/kt1/epoch1.mmlu_branch.json"):
        ids = set(json.loads(scored.read_text())["per_item"]["mmlu_branch"])
        assert {q["id"] for q in rows} <= ids and any(i.startswith("tonsils/") for i in ids)


@pytest.mark.slow
def test_phases_replay_and_selection(ci_run):
    r = ci_run / "results/lab/ci"
    m = json.loads((r / "phases/manifest.json").read_text())
    phases = m["phases"]
    kt1, kt2, st = (set(phases[p]["ids"]) for p in ("kt1", "kt2", "st"))
    assert kt1 <= kt2 and kt1 | kt2 <= st  # KT/2 replays KT/1; ST replays both
    for p, epochs in (("kt1", 2), ("kt2", 2), ("st", 2), ("stacked", 6)):  # stacked: the phases' epochs together
        sel = json.loads((r / f"models/{p}/selected.json").read_text())
        assert set(sel["scores"]) == {str(k) for k in range(1, epochs + 1)}
        assert sel["selected_epoch"] in range(1, epochs + 1) and (r / f"models/{p}/selected/model.json").is_file()
    kt2_epoch = json.loads((r / "models/kt2/epoch1/model.json").read_text())
    assert kt2_epoch["base"] == "results/lab/ci/models/kt1/selected"  # KT/2 starts from KT/1's selected checkpoint


@pytest.mark.slow
def test_tables_beside_reported(ci_run):
    t = ci_run / "results/lab/ci/tables"
    table = (t / "table3.md").read_text()
    assert "Merlinite-7B" in table and "7.66" in table  # the reported Table 3, as reported
    assert "LAB" in table and "MMLU-branch" in table
    assert (t / "ablation/table3.md").is_file()


@pytest.mark.slow
def test_second_run_is_a_noop(ci_run):
    res = smk(ci_run, *TARGETS, "-n", *CI)
    assert res.returncode == 0 and "Nothing to be done" in res.stdout + res.stderr, res.stdout[-2000:]


@pytest.mark.slow
def test_full_tier_dry_runs_with_the_vllm_teacher(tmp_path):
    res = smk(tmp_path, "lab_tables", "-n", "--config", "tier=full", "papers=[lab]",
              "lab={teacher: {base_url: 'http://127.0.0.1:8000/v1'}}", timeout=300)  # fmt: skip
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    jobs = job_stats(res.stdout)
    assert jobs["lab_taxonomy"] == 1  # the SDG jobs follow from the checked-out leaves
    # The skills phase is selected by MT-Bench at full (paper): each of ST's 7 epochs answers and is graded.
    assert jobs["lab_epoch_mtbench_answers"] == jobs["lab_epoch_mtbench"] == 7
