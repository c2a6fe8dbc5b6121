"""MoTE's whole DAG at the ci tier (targets mote_tables + mote_ablations: the main tables from the session's ci run
of the default target, the ablations on a copy of it): it runs, its tables are well formed, carry provenance and the
reported rows, a second run is a no-op; the full tier dry-runs with the expected job counts, the ablations included
in its default target."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
from pathlib import Path

import pytest
from workflow import job_stats, smk

TARGETS = ["mote_tables", "mote_ablations"]
CI = ["--config", "tier=ci", "papers=[mote]"]


@pytest.fixture(scope="module")
def ci_run(ci_workflow, ci_workflow_output, tmp_path_factory) -> Path:
    """A copy of the session's ci run of the default target (MoTE's main DAG: mote_tables), plus the ablations:
    the same jobs as MoTE's whole DAG run on its own, without running the main ones a second time."""
    assert "# MoTE summary (tier ci)" in ci_workflow_output  # mote_tables printed its summary at the end (`&& cat`)
    work = tmp_path_factory.mktemp("mote_ci") / "work"
    shutil.copytree(ci_workflow, work, symlinks=True)  # a copy: the session's run stays without the ablations
    res = smk(work, *TARGETS, *CI)  # targets first: --config takes every later word
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-5000:]
    assert "mote_tables" not in job_stats(res.stdout + res.stderr)  # the main DAG was reused, not rerun
    assert "# MoTE ablations summary (tier ci)" in res.stdout + res.stderr  # printed at the end too
    return work


def _csv(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text())))


@pytest.mark.slow
def test_headline_tables_have_reported_and_reproduced_rows_with_provenance(ci_run):
    t = ci_run / "results/mote/ci/tables"
    md = (t / "tables.md").read_text()
    for heading in ("Table 1", "Table 2", "Table 3"):
        assert heading in md
    assert "HEURISTIC judge" in md  # the judge card line of the judge used
    rows = _csv(t / "tables.csv")
    rep = {(r["table"], r["row"]) for r in rows if r["source"] == "reported (v5)"}
    assert {
        ("table1", "o1"),
        ("table1", "MoTE-WVU-7B"),
        ("table2", "MATRIX"),
        ("table3", "analysis-guidance-answer"),
    } <= rep
    reported_only = {r["row"]: r["note"] for r in rows if r["table"] == "table1" and "reported only" in r["note"]}
    assert set(reported_only) == {"o1", "o3-mini", "MATRIX"}
    repro = [r for r in rows if r["source"] == "reproduced"]
    t1 = {r["row"] for r in repro if r["table"] == "table1"}
    assert t1 == {"MoTE-ci-random-llama", "SFT", "RLCD"}
    assert {r["row"] for r in repro if r["table"] == "table3"} == {"WVU", "analysis-guidance-answer"}
    t2 = {r["row"]: r for r in repro if r["table"] == "table2"}
    assert set(t2) == {"total_reasoning_chain", "analysis", "guidance", "safe_answer"}
    assert int(t2["total_reasoning_chain"]["amount"]) >= 1
    prov = json.loads((t / "tables.provenance.json").read_text())
    assert prov["tier"] == "ci" and isinstance(prov["seed"], int)
    for r in repro:
        assert (
            r["tier"] == "ci" and r["seed"] == str(prov["seed"]) and re.fullmatch(r"[0-9a-f]{12}", r["data_sha256"])
        ), r
        if r["table"] != "table2":
            assert r["judge"].startswith("HEURISTIC") and r["model"].startswith("ci-random-llama:"), r
            assert r["harm"] != "" and 0 <= float(r["harm"]) <= 100, r
    mote = next(r for r in repro if r["row"] == "MoTE-ci-random-llama")
    assert mote["goodness_at_0.1"] != "" and mote["not_overrefuse"] != ""  # the Table 1 stand-ins are computed
    assert all(0 <= float(r["harm_strmatch"]) <= 100 for r in repro if r["table"] != "table2")  # judge-free column
    infer = json.loads((ci_run / "results/mote/ci/ci-random-llama/answers/mote/mote.summary.json").read_text())
    assert f"chains of its {infer['n_rows']} answers:" in mote["note"]  # what adaptive decoding produced
    rlcd = json.loads((ci_run / "results/mote/ci/ci-random-llama/models/baseline_rlcd/model.json").read_text())
    assert not rlcd["untrained_no_data"]  # the two sampled sides differ: DPO trains on real pairs at ci too
    ev = json.loads((ci_run / "results/mote/ci/ci-random-llama/eval/table1.json").read_text())
    assert ev["provenance"]["judge_id"] == ev["judge"]["id"] and ev["provenance"]["data_sha256"]
    assert ev["systems"]["MoTE"]["n"]["jailbreak"] > 0
    # every reproduced row has its CIs (Table 2: bootstrap over the hypotheses), and MoTE - each baseline is paired
    for r in repro:  # (a Table 2 step with fewer than 2 texts has no Self-BLEU at all)
        cols = ["self_bleu"] if r["table"] == "table2" else ["harm", "harm_strmatch"]
        if r["table"] != "table2" or int(r["amount"]) >= 2:
            assert all(json.loads(r[f"{c}_ci95"]) for c in cols), r
    diffs = _csv(t / "differences.csv")
    harm = {d["b_row"]: d for d in diffs if d["table"] == "table1" and d["metric"] == "harm_strmatch"}
    assert set(harm) == {"sft", "rlcd"} and all(d["test"] == "McNemar exact" and d["p_value"] for d in harm.values())
    assert 0 < int(harm["sft"]["n"]) <= ev["systems"]["MoTE"]["n"]["harmful"]  # prompts answered by both


@pytest.mark.slow
def test_ablation_tables_and_plots(ci_run):
    t = ci_run / "results/mote/ci/tables"
    rows = _csv(t / "ablations.csv")
    t4 = {r["row"] for r in rows if r["table"] == "table4" and r["source"] == "reproduced"}
    assert t4 == {"MoTE", "LoRA", "MoTE-minus-both"}
    t6 = {r["row"]: r for r in rows if r["table"] == "table6" and r["source"] == "reproduced"}
    assert set(t6) == {"explicit_extra_datasets", "MoTE"}
    # the reference row's flops_rel is 1 by definition: check MoTE's against the two measured counts instead
    flops = {k: float(t6[k]["flops"]) for k in t6}
    assert float(t6["MoTE"]["flops_rel"]) == pytest.approx(flops["MoTE"] / flops["explicit_extra_datasets"])
    assert 0 < float(t6["MoTE"]["flops_rel"]) < 1  # one pass over D_train costs less than the expanded datasets
    f6 = {r["row"] for r in rows if r["table"] == "fig6"}
    assert f6 == {"q_a-12", "adaptive-12"}
    for png in ("fig6_harm_vs_budget.png", "table4_architectures.png"):
        assert (t / png).read_bytes()[:4] == b"\x89PNG"
    from alignrepro.wandb_runs import run_ids  # the offline W&B run of the tables, in the one W&B folder

    assert any(i.startswith("mote-") and "-aggregate-" in i for i in run_ids(ci_run / "results/wandb/wandb"))


@pytest.mark.slow
def test_second_run_is_a_noop(ci_run):
    res = smk(ci_run, *TARGETS, "-n", *CI)
    assert res.returncode == 0 and "Nothing to be done" in res.stdout + res.stderr, res.stdout[-2000:]


@pytest.mark.slow
def test_full_tier_dry_run_job_counts(tmp_path):
    res = smk(tmp_path, *TARGETS, "-n", "--config", "tier=full", "papers=[mote]", timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    stats = job_stats(res.stdout)
    expected = {
        "base_model": 2,  # WVU-7B, Llama-3.1-8B-Instruct
        "mote_chains": 2,  # self-generated per base
        "mote_self_bleu": 2,
        "mote_baseline_data": 4,  # SFT, Critique-Revise, Mistake Analysis, RLCD on WVU
        "mote_train_baseline": 4,
        "mote_generate_baseline": 4,
        "mote_train": 10,  # MoTE x 2 bases + 7 Table 4 archs + the explicit-datasets MoTE (Table 6)
        "mote_infer": 10,
        "mote_infer_fig6": 16,  # 4 modes x 4 budgets
        "mote_prompting": 6,  # Table 3
        "mote_evaluate": 5,  # table1 x 2 bases, table3, table4, fig6
        "mote_efficiency": 1,
        "mote_tables": 1,
        "mote_ablations": 1,
    }
    assert {k: stats.get(k) for k in expected} == expected
    # in the default papers: the default target builds the tables and, at full, the ablations
    res = smk(tmp_path, "--config", "tier=full", "-n", timeout=300)
    assert res.returncode == 0 and {"mote_tables", "mote_ablations"} <= set(job_stats(res.stdout))


def test_shared_evals_name_must_be_a_trained_row(tmp_path):
    # vanilla_moe is an architecture row, but not trained at ci (mote.archs): refused, naming the key and the fix
    res = smk(tmp_path, "-n", "--config", "tier=ci", "papers=[mote]", "mote={shared_evals: [vanilla_moe]}")
    assert res.returncode != 0
    message = "config key 'mote.shared_evals': 'vanilla_moe' is a row this run does not train (add it to mote.archs)"
    assert message in res.stdout + res.stderr
    res = smk(tmp_path, "-n", "--config", "tier=ci", "papers=[mote]", "mote={shared_evals: [mote_no_both]}")
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "results/evals/ci/answers/mote/mote_no_both/safety.jsonl" in res.stdout
