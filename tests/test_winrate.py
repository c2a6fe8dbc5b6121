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
from alignrepro.errors import UserError
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
    assert out["per_item"] == {"1": 1, "2": 0, "3": 1}  # kept for paired comparisons; the open record is not scored
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


def _open_pairs(tmp_path):
    """Open instructions (one asked twice, as alpaca_eval's set can): model longer, shorter, equal, longer."""
    rows = [("o1", "Write a haiku.", "A long haiku about spring rain.", "Rain."),
            ("o2", "Say hi.", "hi", "hello there"),
            ("o3", "Name a colour.", "red", "red"),
            ("o4", "Say hi.", "hi, how are you today?", "hey")]  # fmt: skip
    save_records(tmp_path / "model.jsonl", [Record(id=i, instruction=q, output=m) for i, q, m, _ in rows])
    save_records(tmp_path / "ref.jsonl", [Record(id=i, instruction=q, output=r) for i, q, _, r in rows])
    return rows


def _winrate(tmp_path, model, ref, *extra):
    out = tmp_path / f"wr-{model.stem}-{ref.stem}.json"
    judge = ["--judge-config", '{"backend": "heuristic"}']
    winrate.main(["--model-outputs", str(model), "--reference-outputs", str(ref), *judge, "--out", str(out), *extra])
    return json.loads(out.read_text())


def test_alpaca_eval_model_outputs_json_gives_the_same_win_rate(tmp_path):
    rows = _open_pairs(tmp_path)
    export = ["--export-alpaca-eval", str(tmp_path)]
    records = _winrate(tmp_path, tmp_path / "model.jsonl", tmp_path / "ref.jsonl", *export)
    assert records["win_rate"] == pytest.approx(62.5)  # (1 + 0 + 0.5 + 1) / 4, the length heuristic by hand
    exported = json.loads((tmp_path / "model_outputs.json").read_text())
    assert [set(d) for d in exported] == [{"instruction", "output", "generator", "dataset"}] * 4
    assert [(d["instruction"], d["output"]) for d in exported] == [(q, m) for _, q, m, _ in rows]
    # alpaca_eval's own files, written by hand in its format, the model's in another order: paired by instruction
    model_ae = [{"instruction": q, "output": m, "generator": "mine", "dataset": "helpful_base"} for _, q, m, _ in rows]
    ref_ae = [{"instruction": q, "output": r, "generator": "ref", "dataset": "helpful_base"} for _, q, _, r in rows]
    order = [2, 1, 0, 3]  # the two "Say hi." keep their order: the k-th repeat pairs with the k-th
    (tmp_path / "m_ae.json").write_text(json.dumps([model_ae[i] for i in order], indent=2))
    (tmp_path / "r_ae.json").write_text(json.dumps(ref_ae))
    both = _winrate(tmp_path, tmp_path / "m_ae.json", tmp_path / "r_ae.json")
    mixed = _winrate(tmp_path, tmp_path / "model.jsonl", tmp_path / "r_ae.json")  # ids on one side: kept
    exported_back = _winrate(tmp_path, tmp_path / "model_outputs.json", tmp_path / "reference_outputs.json")
    for res in (both, mixed, exported_back):
        assert res["win_rate"] == records["win_rate"] and res["n_total"] == 4
    prefs = [a["preference"] for a in records["annotations"]]
    assert [a["preference"] for a in both["annotations"]] == [prefs[i] for i in order]
    assert [a["id"] for a in both["annotations"]] == [f"alpaca_eval:{i}" for i in order]  # the reference's items
    assert [a["id"] for a in mixed["annotations"]] == ["o1", "o2", "o3", "o4"]
    assert [a["preference"] for a in mixed["annotations"]] == [2.0, 1.0, 1.5, 2.0]
    assert both["inputs"]["model_outputs"]["format"] == "alpaca_eval"
    assert both["provenance"]["model_outputs_generator"] == "mine"


def test_outputs_file_of_neither_format_is_refused_naming_it(tmp_path):
    _open_pairs(tmp_path)
    bad = {
        "csv.txt": "instruction,output\nSay hi.,hi\n",
        "object.json": json.dumps({"instruction": "Say hi.", "output": "hi"}, indent=2),
        "strings.json": json.dumps(["hi", "there"]),
        "broken.json": '[{"instruction": "Say hi.", ',
    }
    for name, text in bad.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(UserError, match=rf"{name}: .*alpaca_eval's model_outputs\.json"):
            _winrate(tmp_path, tmp_path / name, tmp_path / "ref.jsonl")
    (tmp_path / "other.json").write_text(json.dumps([{"instruction": "Unknown?", "output": "x"}]))
    with pytest.raises(ValueError, match="no reference output with the same instruction"):
        _winrate(tmp_path, tmp_path / "other.json", tmp_path / "ref.jsonl")


def test_model_outputs_json_written_for_every_model_reads_back_as_alpaca_eval_reads_it(tmp_path):
    """respond writes each model's answers also as alpaca_eval's model_outputs.json (write_model_outputs): alpaca_eval's
    own loader reads it, and as --model-outputs it gives the win rate of the JSONL it came from."""
    import warnings
    from dataclasses import replace

    from alignrepro.data.records import load_records

    _open_pairs(tmp_path)
    records = [replace(r, meta={"generator": "hf:backend-id"}) for r in load_records(tmp_path / "model.jsonl")]
    save_records(tmp_path / "model.jsonl", records)
    winrate.write_model_outputs(tmp_path / "model_outputs.json", records, "cut__ours")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from alpaca_eval.utils import load_or_convert_to_dataframe

    df = load_or_convert_to_dataframe(tmp_path / "model_outputs.json")
    assert list(df["output"]) == [r.output for r in records] and set(df["generator"]) == {"cut__ours"}
    assert list(df["instruction"]) == [r.prompt_text for r in records]
    jsonl = _winrate(tmp_path, tmp_path / "model.jsonl", tmp_path / "ref.jsonl")
    json_in = _winrate(tmp_path, tmp_path / "model_outputs.json", tmp_path / "ref.jsonl")
    assert json_in["win_rate"] == jsonl["win_rate"] == pytest.approx(62.5) and json_in["n_total"] == 4
    assert [a["preference"] for a in json_in["annotations"]] == [a["preference"] for a in jsonl["annotations"]]
    assert json_in["inputs"]["model_outputs"]["format"] == "alpaca_eval"


def test_length_controlled_minimal_uses_alpaca_eval_glm_offline():
    """alpaca_eval's length_controlled_minimal GLM, fitted on the judged pairs alone (no hub download): a judge
    that prefers the model regardless of length keeps its win rate; with too few pairs it says why it has none."""
    import random

    from alignrepro.evals.alpacaeval.winrate import length_controlled_minimal
    from alignrepro.judges.base import PairItem

    rng = random.Random(0)
    items = [PairItem("q", "a" * rng.randint(10, 400), "b" * rng.randint(10, 400)) for _ in range(60)]
    prefs = [2.0 if rng.random() < 0.7 else 1.0 for _ in items]
    lc = length_controlled_minimal(items, prefs)
    assert 55.0 < lc["length_controlled_minimal"] < 85.0 and "no instruction difficulty" in lc["lc_minimal_note"]
    few = length_controlled_minimal(items[:5], prefs[:5])
    assert few["length_controlled_minimal"] is None and "5 judged pairs" in few["lc_minimal_note"]


def test_unparsable_and_truncated_judgments_are_counted_per_score_file():
    from alignrepro.evals.alpacaeval.winrate import evaluate
    from alignrepro.judges.base import Judgment, PairItem

    class Details:
        id, prompt_hash, heuristic, settings, min_answer_mass = "fake:details", "p", False, {}, 0.5

        def preferences(self, items):
            self.last_judgments = [
                Judgment(math.nan, 0.2, True) if it.output_2 == "low"
                else Judgment(2.0, 0.8, False, truncated=it.output_2 == "cut")
                for it in items
            ]  # fmt: skip
            return [j.value for j in self.last_judgments]

    recs = [Record(id=f"r{i}", instruction=f"q{i}") for i in range(3)]
    items = [PairItem(f"q{i}", "ref", out, recs[i]) for i, out in enumerate(["low", "cut", "fine"])]
    res = evaluate(items, {"all": Details()}, ["all"] * 3)
    assert res["n_unparsable"] == 1 and res["unparsable_ids"] == ["r0"] and res["n_failed"] == 1
    assert res["n_truncated"] == 1 and res["truncated_ids"] == ["r1"]
    assert res["win_rate"] == 100.0 and res["groups"]["all"]["min_answer_mass"] == 0.5  # NaN never scored
    assert res["annotations"][0]["unparsable"] and res["annotations"][0]["answer_mass"] == 0.2
