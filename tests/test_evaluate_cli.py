"""`alignrepro evaluate` runs the workflow's own eval steps on any model folder and writes scores with provenance."""

from __future__ import annotations

import json

from alignrepro.data.records import Record, save_records
from alignrepro.data.shipped import load_open_instructions
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
