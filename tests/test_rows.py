"""Method rows are one entry each: the manifest's rows and a user's row folder are found, checked at start (a row
that cannot be built fails naming its file), and a folder row trains through the same trainer code."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from test_cut_resume import _args, _triplets

from alignrepro.config import ConfigError, resolve_config
from alignrepro.errors import UserError
from alignrepro.io import read_json
from alignrepro.methods.cut import train as cut_train
from alignrepro.rows import enabled, paper_rows

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "methods" / "cut" / "rows" / "ipo"


def _user_row(tmp_path: Path, text: str | None = None, name: str = "my_ipo") -> Path:
    rows = tmp_path / "my_rows"
    shutil.copytree(EXAMPLE, rows / name)
    row = rows / name / "row.yaml"
    row.write_text(text if text is not None else row.read_text().replace("enabled: false", "enabled: true"))
    return rows


def test_manifest_rows_and_the_shipped_example():
    rows = paper_rows("cut")
    assert [r for r in rows if rows[r].folder is None] == ["fp", "hindsight", "ilf_mle", "ilf_dpo", "cut"]
    assert rows["ilf_dpo"].label == "ILF-DPO" and rows["ilf_dpo"].spec["trainer"] == "trl:DPOTrainer"
    assert rows["ipo"].folder == EXAMPLE and not rows["ipo"].enabled  # shipped, but not in the default run
    assert [r.name for r in enabled("cut", ["fp", "cut"])] == ["fp", "cut"]


def test_an_enabled_row_folder_joins_its_paper(tmp_path):
    rows = _user_row(tmp_path)
    names = [r.name for r in enabled("cut", ["fp", "cut"], [rows])]
    assert names == ["fp", "cut", "my_ipo"]


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda t: t.replace('trainer: "trl:DPOTrainer"', "trainer: ppo"), "field 'trainer'"),
        (lambda t: t.replace("config: {loss_type: [ipo]}", "config: {loss_typ: [ipo]}"), "loss_typ"),
        (lambda t: t.replace("ilf_dpo_rows", "ilf_dpo_rowz"), "ilf_dpo_rowz"),
        (lambda t: t.replace('"alignrepro.methods.cut.baseline_data:ilf_dpo_rows"', '"pairs.py:build"'), "pairs.py"),
        (lambda t: "\n".join(x for x in t.splitlines() if not x.startswith("data:")), "'data' is a required"),
        (lambda t: t.replace("paper: cut", "paper: cutt"), "unknown paper 'cutt'"),
    ],
)
def test_a_row_that_cannot_be_built_fails_at_start_naming_its_file(tmp_path, edit, needle):
    text = (EXAMPLE / "row.yaml").read_text().replace("enabled: false", "enabled: true")
    rows = _user_row(tmp_path, edit(text), name="broken")
    with pytest.raises(UserError, match=needle) as e:
        enabled("cut", ["cut"], [rows])
    assert str(rows / "broken" / "row.yaml") in str(e.value)


def test_a_duplicate_row_name_is_an_error(tmp_path):
    rows = _user_row(tmp_path, name="ilf_dpo")
    with pytest.raises(UserError, match="already declared"):
        paper_rows("cut", [rows])


def test_config_lists_only_manifest_rows():
    with pytest.raises(ConfigError, match=r"cut\.methods\[1\]"):
        resolve_config({"tier": "ci", "cut": {"methods": ["cut", "sft"]}})
    with pytest.raises(ConfigError, match="row_dirs"):
        resolve_config({"tier": "ci", "row_dirs": "my_rows"})


def test_a_folder_row_with_its_own_builder_trains(ci_model, tmp_path):
    triplets, recs = _triplets(tmp_path, n=4)
    refinements = tmp_path / "refinements.jsonl"
    refinements.write_text("".join(json.dumps({"id": r.id, "output": f"It is {r.reference}."}) + "\n" for r in recs))
    text = (EXAMPLE / "row.yaml").read_text().replace("enabled: false", "enabled: true")
    rows = _user_row(tmp_path, text.replace('"alignrepro.methods.cut.baseline_data:ilf_dpo_rows"', '"pairs.py:build"'))
    (rows / "my_ipo" / "pairs.py").write_text(
        "from alignrepro.methods.cut.baseline_data import ilf_dpo_rows\n\n\n"
        "def build(triplets, refinements):\n    return ilf_dpo_rows(triplets, refinements)[:2]  # the first two pairs\n"
    )
    row = paper_rows("cut", [rows])["my_ipo"]
    out = tmp_path / "models" / "base" / "my_ipo"
    extra = ["--refinements", str(refinements), "--row-json", json.dumps(row.public())]
    cut_train.main(_args(ci_model, triplets, out, method="my_ipo", extra=extra))
    meta = read_json(out / "model.json")
    assert meta["row"]["config"] == {"loss_type": ["ipo"]} and meta["data"]["n_examples"] == 2


def test_cut_shared_evals_picks_the_leaderboard_models_and_a_row_folder_always_joins(tmp_path):
    from workflow import smk

    rows = _user_row(tmp_path)
    args = ("evals_leaderboard", "-n", "-p", "--config", "tier=ci", f"row_dirs=[{rows}]")
    res = smk(tmp_path / "w", *args, "cut={shared_evals: [cut]}", timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    out = res.stdout + res.stderr
    keys = set(re.findall(r"answers/(cut/\w+)/alpacaeval\.jsonl", out))
    assert keys == {"cut/cut", "cut/my_ipo"}  # the listed model and the user's row; fp, …, cut_iter2 left out
    bad = smk(tmp_path / "b", *args, "cut={shared_evals: [ilf_dpoo]}", timeout=300)
    said = bad.stdout + bad.stderr
    assert bad.returncode != 0 and "cut.shared_evals" in said and "ilf_dpoo" in said
