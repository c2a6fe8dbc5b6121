"""Win rate (alpaca_eval aggregation, ties = 1/2) and oracle accuracy, including both CLIs end to end."""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys

import pytest
from test_judges import fake_verifiable

from alignrepro.data.records import Record, save_records
from alignrepro.evals.alpacaeval import winrate
from alignrepro.evals.alpacaeval.winrate import compute_winrate
from alignrepro.evals.verifiable import accuracy as acc_mod
from alignrepro.evals.verifiable.accuracy import accuracy, wilson


def test_winrate_matches_hand_computation():
    out = compute_winrate([2, 1, 1.5, 2])
    assert out["win_rate"] == pytest.approx(62.5)  # (1 + 0 + 0.5 + 1) / 4
    assert (out["n_wins"], out["n_wins_base"], out["n_draws"], out["n_total"], out["n_failed"]) == (2, 1, 1, 4, 0)
    se = statistics.stdev([1, 0, 0.5, 1]) / math.sqrt(4) * 100
    assert out["standard_error"] == pytest.approx(se)
    assert out["ci95"] == pytest.approx([62.5 - 1.96 * se, min(100.0, 62.5 + 1.96 * se)])
    json.dumps(out)  # plain Python numbers, no numpy scalars


def test_winrate_soft_nan_and_edge_cases():
    assert compute_winrate([1.25, 1.75])["win_rate"] == pytest.approx(50.0)  # soft preferences count proportionally
    out = compute_winrate([2.0, float("nan"), 1.0])
    assert out["win_rate"] == pytest.approx(50.0) and out["n_total"] == 2 and out["n_failed"] == 1
    assert compute_winrate([0, 2])["win_rate"] == pytest.approx(75.0)  # 0 is alpaca_eval's legacy draw
    one = compute_winrate([2.0])
    assert one["win_rate"] == 100.0 and one["standard_error"] is None and one["ci95"] is None
    assert compute_winrate([])["win_rate"] is None
    with pytest.raises(ValueError, match=r"\[1, 2\]"):
        compute_winrate([2.5])


def test_wilson_interval_and_accuracy(monkeypatch, tmp_path):
    from scipy.stats import binomtest

    ci = binomtest(3, 4).proportion_ci(method="wilson")  # scipy uses z = 1.95996..., we use 1.96
    assert wilson(3, 4) == pytest.approx([100 * ci.low, 100 * ci.high], abs=1e-3)
    assert wilson(0, 5)[0] == 0.0 and wilson(5, 5)[1] == 100.0 and wilson(0, 0) is None
    fake_verifiable(monkeypatch, tmp_path, right={"42", "abc"})
    recs = [
        Record(id="1", instruction="6*7", output="42", reference="42", task="arithmetic"),
        Record(id="2", instruction="6*7", output="41", reference="42", task="arithmetic"),
        Record(id="3", instruction="sort", output="abc", reference="abc", task="sorting"),
        Record(id="4", instruction="poem", output="roses", task="open"),
    ]
    out = accuracy(recs)
    assert out["accuracy"] == pytest.approx(200 / 3) and out["n"] == 3 and out["n_skipped_open"] == 1
    assert out["per_task"]["arithmetic"]["accuracy"] == 50.0 and out["per_task"]["sorting"]["n_correct"] == 1
    assert out["judge_id"] == "oracle-v1" and out["ci95"] == pytest.approx(wilson(2, 3))
    gen = tmp_path / "gen.jsonl"
    save_records(gen, recs)
    acc_mod.main(["--generations", str(gen), "--out", str(tmp_path / "acc.json")])
    assert json.loads((tmp_path / "acc.json").read_text())["n_correct"] == 2


def _pair_files(tmp_path):
    model = [
        Record(id="v1", instruction="6*7", output="42", reference="42", task="arithmetic"),
        Record(id="v2", instruction="6*8", output="40", reference="48", task="arithmetic"),
        Record(id="o1", instruction="Write a haiku.", output="A long and lovely haiku about spring rain."),
        Record(id="o2", instruction="Say hi.", output="hi"),
    ]
    ref = [
        Record(id="v1", instruction="6*7", output="41", task="arithmetic"),
        Record(id="v2", instruction="6*8", output="48", task="arithmetic"),
        Record(id="o1", instruction="Write a haiku.", output="Rain."),
        Record(id="o2", instruction="Say hi.", output="hi"),
    ]
    save_records(tmp_path / "model.jsonl", model)
    save_records(tmp_path / "ref.jsonl", ref)


def test_winrate_cli_with_judge_groups_and_cache(monkeypatch, tmp_path):
    fake_verifiable(monkeypatch, tmp_path, right={"42", "48"})
    _pair_files(tmp_path)
    cfg = tmp_path / "judges.yaml"
    cfg.write_text("verifiable: {backend: oracle}\nopen: {backend: heuristic}\n")
    argv = [
        "--model-outputs",
        str(tmp_path / "model.jsonl"),
        "--reference-outputs",
        str(tmp_path / "ref.jsonl"),
        "--judge-config",
        str(cfg),
        "--cache",
        str(tmp_path / "cache.sqlite"),
        "--out",
        str(tmp_path / "wr.json"),
    ]
    winrate.main(argv)
    out = json.loads((tmp_path / "wr.json").read_text())
    # v1 model right, v2 model wrong, o1 model longer, o2 equal -> 2, 1, 2, 1.5
    assert [a["preference"] for a in out["annotations"]] == [2.0, 1.0, 2.0, 1.5]
    assert out["win_rate"] == pytest.approx(62.5) and out["n_total"] == 4
    assert [a["judge_id"] for a in out["annotations"]] == ["oracle-v1"] * 2 + ["HEURISTIC-length-v1"] * 2
    g = out["groups"]
    assert g["verifiable"]["judge_id"] == "oracle-v1" and g["verifiable"]["win_rate"] == 50.0
    assert g["open"]["heuristic"] is True and g["open"]["win_rate"] == 75.0 and out["heuristic"] is True
    assert (
        out["judge_ids"] == ["HEURISTIC-length-v1", "oracle-v1"] and out["cache"]["misses"] == 3
    )  # o2's identical pair is a tie, never judged
    winrate.main(argv)  # second run: everything from the cache
    assert json.loads((tmp_path / "wr.json").read_text())["cache"] == {
        "path": str(tmp_path / "cache.sqlite"),
        "hits": 3,
        "misses": 0,
    }


def test_winrate_cli_rejects_bad_inputs(tmp_path):
    _pair_files(tmp_path)
    base = ["--model-outputs", str(tmp_path / "model.jsonl"), "--out", str(tmp_path / "x.json")]
    with pytest.raises(ValueError, match="backend"):
        winrate.main(base + ["--reference-outputs", str(tmp_path / "ref.jsonl"), "--judge-config", '{"backend": "x"}'])
    save_records(tmp_path / "short.jsonl", [Record(id="v1", instruction="6*7", output="41")])
    with pytest.raises(ValueError, match="no reference output"):
        winrate.main(
            base + ["--reference-outputs", str(tmp_path / "short.jsonl"), "--judge-config", '{"backend": "heuristic"}']
        )
    assert not (tmp_path / "x.json").exists()


@pytest.mark.parametrize("module", ["alignrepro.evals.alpacaeval.winrate", "alignrepro.evals.verifiable.accuracy"])
def test_cli_help(module):
    r = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "--out" in r.stdout


def test_identical_outputs_are_ties_without_asking_the_judge():
    from alignrepro.judges.base import PairItem

    class Exploding:
        id, prompt_hash, heuristic = "boom", "none", False

        def preferences(self, items):
            raise AssertionError(f"judge called on {len(items)} identical pairs")

    items = [PairItem("q", "same answer", "same answer "), PairItem("q2", "x", "x")]
    res = winrate.evaluate(items, {"all": Exploding()}, ["all", "all"])
    assert res["win_rate"] == 50.0 and res["groups"]["all"]["n_identical"] == 2
