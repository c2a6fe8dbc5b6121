"""`alignrepro evaluate` runs the workflow's own eval steps on any model folder and writes scores with provenance."""

from __future__ import annotations

import json
import shutil

import pytest

from alignrepro.data.records import Record, save_records
from alignrepro.data.shipped import load_open_instructions
from alignrepro.errors import UserError
from alignrepro.evals import evaluate


def test_evaluate_a_model_folder_outside_the_workflow(ci_model, tmp_path, capsys):
    ref = tmp_path / "reference.jsonl"  # a fixed reference model: the same answer to every instruction
    save_records(ref, [Record(**{**r.to_dict(), "output": "I do not know."}) for r in load_open_instructions("test")])
    out = tmp_path / "eval"
    results = evaluate.main(
        ["--model", str(ci_model), "--tier", "ci", "--reference-outputs", str(ref), "--out-dir", str(out),
         "--benchmarks", "alpacaeval,mtbench,safety"]
    )  # fmt: skip
    assert set(results) == {"alpacaeval", "mtbench", "safety"}
    ae = json.loads((out / "scores/alpacaeval.json").read_text())
    assert ae["n_total"] == 4 and ae["heuristic"] and ae["provenance"]["tier"] == "ci"
    mt = json.loads((out / "scores/mtbench.json").read_text())
    assert mt["n"] + mt["n_failed"] == 16  # 8 questions x 2 turns at the ci tier's 1 per category
    assert "HEURISTIC judge" in capsys.readouterr().out


def test_evaluate_a_hand_written_minimal_model_json(ci_model, tmp_path):
    model = tmp_path / "mine"  # an HF folder with the least model.json one would write by hand: no name, no weights
    shutil.copytree(ci_model, model)
    (model / "model.json").write_text('{"kind": "base"}')
    out = tmp_path / "eval"
    results = evaluate.main(["--model", str(model), "--tier", "ci", "--out-dir", str(out), "--benchmarks", "mtbench"])
    assert results["mtbench"]["n"] + results["mtbench"]["n_failed"] == 16
    identity = json.loads((out / "answers/respond.provenance.json").read_text())["model"]
    assert identity["name"] == "mine" and identity["weights"] == "."
    with pytest.raises(UserError, match="drop --base/--prompt-template"):  # model.json already says these
        evaluate.main(["--model", str(model), "--prompt-template", "hh", "--tier", "ci", "--out-dir", str(out)])
