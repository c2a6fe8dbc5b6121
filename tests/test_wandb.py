"""W&B dashboards (alignrepro/wandb_runs.py, alignrepro/wandb_report.py, evals/wandb_log.py), offline: one folder,
deterministic run ids (a rerun replaces its run), grouped runs with the evaluation data, Tables and artifacts, and
the saved Reports built (not published) for every paper and the leaderboard."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from PIL import Image

from alignrepro.io import atomic_write_json, atomic_write_text, write_jsonl
from alignrepro.papers import discover
from alignrepro.reporting import log_to_wandb, to_csv
from alignrepro.wandb_runs import WandbSettings, local_runs, run_id, run_ids, start_run


@pytest.fixture
def wb(tmp_path, monkeypatch) -> WandbSettings:
    for var in ("WANDB_RUN_ID", "WANDB_RESUME", "WANDB_JOB_TYPE", "WANDB_RUN_GROUP", "WANDB_DIR", "WANDB_PROJECT",
                "WANDB_DISABLED", "WANDB_ENTITY"):  # fmt: skip
        monkeypatch.setenv(var, "")  # recorded, so what setup_wandb sets is undone after the test
        monkeypatch.delenv(var)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    return WandbSettings(mode="offline", project="alignrepro-test", dir=tmp_path / "wandb", generations=2)


def wandb_bytes(settings: WandbSettings, rid: str) -> bytes:
    (folder,) = local_runs(settings.runs_dir, rid)
    return (folder / f"run-{rid}.wandb").read_bytes()


def test_run_ids_are_deterministic_valid_and_distinct():
    rid = run_id("alignrepro-ci", "cut", "cut/cut", "eval")
    assert rid == run_id("alignrepro-ci", "cut", "cut/cut", "eval")
    assert rid.startswith("cut-cut-cut-eval-") and len(rid) <= 64
    others = {
        run_id("alignrepro-tiny", "cut", "cut/cut", "eval"),  # another tier's project
        run_id("alignrepro-ci", "cut", "cut/cut", "train"),
        run_id("alignrepro-ci", "cut", "cut-cut", "eval"),  # same slug, another row
        run_id("alignrepro-ci", "mote", "cut/cut", "eval"),
    }
    assert rid not in others and len(others) == 4
    long = run_id("p", "morlaif", "x" * 300, "train")
    assert len(long) <= 64 and set(long) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")
    with pytest.raises(ValueError, match="stage"):
        run_id("p", "cut", "r", "evaluation")


def test_two_runs_with_the_same_id_leave_one_run(wb):
    for attempt in ("first-attempt", "second-attempt"):
        run = start_run(wb, "cut", "cut/cut", "eval", config={"attempt": attempt})
        run.summary.update({"alpacaeval_win_rate": 50.0})
        run.finish()
    other = start_run(wb, "cut", "cut/fp", "eval")
    other.finish()
    rid = run_id(wb.project, "cut", "cut/cut", "eval")
    assert sorted(run_ids(wb.runs_dir)) == sorted([rid, run_id(wb.project, "cut", "cut/fp", "eval")])
    data = wandb_bytes(wb, rid)  # the run kept is the rerun's
    assert b"second-attempt" in data and b"first-attempt" not in data
    assert b"alignrepro-test" in data and b"eval" in data  # project and job type recorded


def test_trainer_runs_share_the_folder_and_get_an_id(wb, monkeypatch):
    from alignrepro.training import setup_wandb

    rid = run_id(wb.project, "cut", "cut-ci-base-fp", "train")
    stale = wb.runs_dir / f"offline-run-20260101_000000-{rid}"
    stale.mkdir(parents=True)
    (stale / f"run-{rid}.wandb").write_bytes(b"old")
    keep = wb.runs_dir / "offline-run-20260101_000000-another"
    keep.mkdir()
    (keep / "run-another.wandb").write_bytes(b"other run")
    cfg = {"mode": "offline", "project": wb.project, "dir": str(wb.dir), "entity": None, "generations": 2}
    assert setup_wandb(cfg, Path("ignored/when/dir/is/set"), group="cut", run_name="cut-ci-base-fp")
    assert os.environ["WANDB_RUN_ID"] == rid and os.environ["WANDB_RESUME"] == "allow"
    assert os.environ["WANDB_DIR"] == str(wb.dir) and os.environ["WANDB_RUN_GROUP"] == "cut"
    assert os.environ["WANDB_JOB_TYPE"] == "train" and os.environ["WANDB_PROJECT"] == wb.project
    assert not stale.exists() and keep.exists()  # the retrained model's earlier run is replaced, others kept
    assert not setup_wandb({"mode": "disabled", "project": "x"}, wb.dir, group="cut", run_name="r")


def test_paper_tables_are_one_run_per_aggregate_step(wb):
    cfg = {"mode": "offline", "project": wb.project, "dir": str(wb.dir)}
    prov = {"config_hash": "abc", "seed": 1}
    for _ in range(2):  # a rerun replaces
        log_to_wandb(cfg, Path("unused"), "ci", {"table1": [{"model": "a", "acc": 0.5}]}, prov, paper="mote")
    log_to_wandb(cfg, Path("unused"), "ci", {"table4": [{"arch": "b", "acc": [1, 2]}]}, prov, paper="mote")
    assert sorted(run_ids(wb.runs_dir)) == sorted(
        [run_id(wb.project, "mote", "table1", "aggregate"), run_id(wb.project, "mote", "table4", "aggregate")]
    )
    assert b"table" in wandb_bytes(wb, run_id(wb.project, "mote", "table1", "aggregate"))  # the table artifact


def shared_results(root: Path, judges: Path, models: Path) -> dict:
    """A minimal tier of shared-benchmark results: two models, four benchmarks, one judge card."""
    keys = {"base/tiny": "-", "cut/cut": "cut"}
    for key in keys:
        d = root / "scores" / key
        ann = [{"id": f"q{i}", "preference": 2.0 if i % 2 else 1.0} for i in range(4)]
        atomic_write_json(d / "alpacaeval.json", {"win_rate": 62.5, "ci95": [40.0, 80.0], "annotations": ann,
                                                  "groups": {"all": {"n": 4, "win_rate": 62.5}},
                                                  "provenance": {"tier": "ci", "judge_id": "J1"}})  # fmt: skip
        atomic_write_json(d / "mtbench.json", {"score": 6.25, "turns": {"1": {"score": 7.0}}})
        atomic_write_json(d / "lmeval.json", {"lmeval": {"tasks": {"mmlu": {"acc": 0.4, "n": 10}}}})
        harmful = {"metrics": {"harmless_rate_judge": {"value": 0.9}}}
        atomic_write_json(d / "safety.json", {"sets": {"harmful": harmful}})
        write_jsonl(root / "answers" / key / "alpacaeval.jsonl",
                    [{"id": f"q{i}", "instruction": f"question {i}", "input": "", "output": f"answer {i} of {key}"}
                     for i in range(4)])  # fmt: skip
        atomic_write_json(models / key / "model.json", {"name": key, "kind": "hf", "weights_sha256": "w" * 8})
    rows = [{"model": k, "paper": p, "rank": i + 1, "alpacaeval_win_rate": 62.5, "alpacaeval_ci95": [40.0, 80.0],
             "mtbench_score": 6.25, "heuristic": False, "judge_ids": ["J1"]}
            for i, (k, p) in enumerate(keys.items())]  # fmt: skip
    atomic_write_text(root / "leaderboard.csv", to_csv(rows))
    atomic_write_text(root / "leaderboard.md", "| model |\n|---|\n| cut/cut |\n")
    Image.new("RGB", (8, 8), "white").save(root / "leaderboard.png")
    card = {"name": "judge-a", "judge_id": "J1", "pairwise": {"agreement": 80.0, "ci95": [70.0, 88.0], "n": 120,
            "by_kind": {"harmful": {"agreement": 60.0, "ci95": [40.0, 75.0], "n": 30}}}}  # fmt: skip
    atomic_write_json(judges / "judge-a.json", card)
    atomic_write_text(judges / "judge-a.md", "# judge-a\n")
    meta = {k: {"dir": str(models / k), "paper": p, "method": k.split("/")[1], "base": "tiny"} for k, p in keys.items()}
    return {"tier": "ci", "root": str(root), "models": meta, "benches": ["alpacaeval", "mtbench", "lmeval", "safety"],
            "cards": ["judge-a"], "judge": "judge-a"}  # fmt: skip


def test_shared_evaluation_runs_tables_and_artifacts(wb, tmp_path):
    from alignrepro.evals import wandb_log

    spec = shared_results(tmp_path / "evals", tmp_path / "judges", tmp_path / "models")
    cfg = json.dumps({"mode": "offline", "project": wb.project, "dir": str(wb.dir), "generations": 2})
    argv = ["--spec-json", json.dumps(spec), "--wandb-json", cfg, "--judges-dir", str(tmp_path / "judges"),
            "--out", str(tmp_path / "wandb.json")]  # fmt: skip
    wandb_log.main(argv)
    manifest = wandb_log.main(argv)  # a rerun: the same runs, replaced
    runs = {(r["group"], r["job_type"], r["name"]) for r in manifest["runs"]}
    assert runs == {("base", "eval", "base/tiny"), ("cut", "eval", "cut/cut"),
                    ("leaderboard", "leaderboard", "leaderboard"), ("judges", "judge-card", "judge-a")}  # fmt: skip
    assert sorted(run_ids(wb.runs_dir)) == sorted(r["id"] for r in manifest["runs"])  # one folder per run
    cut = next(r["id"] for r in manifest["runs"] if r["name"] == "cut/cut")
    data = wandb_bytes(wb, cut)
    # every benchmark's numbers in the summary: the leaderboard's columns and each score file's scalars
    for key in (
        b"alpacaeval_win_rate",
        b"alpacaeval_ci95_low",
        b"mtbench/turns/1/score",
        b"lmeval/lmeval/tasks/mmlu/acc",
        b"safety/sets/harmful/metrics/harmless_rate_judge/value",
    ):
        assert key in data, key
    assert (tmp_path / "models/cut/cut").resolve().as_uri().encode() in data  # the model, as a reference artifact
    (gen,) = local_runs(wb.runs_dir, cut)[0].glob("files/media/table/generations_*.table.json")
    table = json.loads(gen.read_text())
    assert table["columns"][:4] == ["id", "instruction", "input", "output"] and len(table["data"]) == 2
    assert table["data"][0][3] == "answer 0 of cut/cut" and table["data"][0][4] == 1.0  # with the judge's preference
    board = next(r["id"] for r in manifest["runs"] if r["job_type"] == "leaderboard")
    (lb,) = local_runs(wb.runs_dir, board)[0].glob("files/media/table/leaderboard_*.table.json")
    assert [row[0] for row in json.loads(lb.read_text())["data"]] == ["base/tiny", "cut/cut"]
    assert list(local_runs(wb.runs_dir, board)[0].glob("files/media/images/leaderboard_plot_*.png"))  # the plot
    card = next(r["id"] for r in manifest["runs"] if r["job_type"] == "judge-card")
    (jc,) = local_runs(wb.runs_dir, card)[0].glob("files/media/table/judge_card_*.table.json")
    assert ["pairwise", "harmful", 60.0, 40.0, 75.0, 30] in json.loads(jc.read_text())["data"]


def test_scalars_flatten_numbers_and_intervals():
    from alignrepro.evals.wandb_log import scalars

    got = scalars({"win_rate": 50, "ci95": [1, 2], "annotations": [{"x": 1}], "g": {"ok": True, "s": "text"}})
    assert got == {"win_rate": 50.0, "ci95_low": 1.0, "ci95_high": 2.0, "g/ok": 1.0}


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pydantic v1-style validators inside wandb-workspaces
def test_reports_list_every_paper_and_the_leaderboard():
    from alignrepro.wandb_report import build_reports

    settings = WandbSettings(mode="online", project="alignrepro-ci", entity="someone")
    reports = build_reports(settings, "ci")  # built, not saved: no network
    papers = discover()
    assert set(reports) == {*papers, "leaderboard"}
    for name, paper in papers.items():
        r = reports[name]
        assert paper.title[:40] in r.title and r.project == "alignrepro-ci" and r.entity == "someone"
        filters = [rs.filters for b in r.blocks for rs in getattr(b, "runsets", [])]
        assert {f"JobType = '{s}' and Group = '{name}'" for s in ("train", "aggregate", "eval")} == set(filters)
    lb = reports["leaderboard"]
    tables = [p.table_name for b in lb.blocks for p in getattr(b, "panels", []) if hasattr(p, "table_name")]
    assert {"leaderboard", "judge_card", "generations"} <= set(tables)


def test_one_project_per_tier():
    from alignrepro.config import resolve_config

    for tier in ("ci", "tiny"):
        w = resolve_config({"tier": tier})["wandb"]
        assert w["project"] == f"alignrepro-{tier}" and w["dir"] == "results/wandb"
        assert WandbSettings.from_dict(w).runs_dir == Path("results/wandb/wandb")
    with pytest.raises(ValueError, match="unknown keys"):
        WandbSettings.from_dict({"mode": "offline", "projct": "x"})
