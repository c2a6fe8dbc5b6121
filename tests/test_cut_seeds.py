"""Several training seeds (config `seeds`): CUT's Table 2 rows train again per extra seed on the same data and
evaluation items, and the table reports each row's mean and t-interval over seeds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from workflow import job_stats, smk

from alignrepro.methods.cut.aggregate import add_seed_columns, seeds_cell


def _eval(root: Path, bench: str, model_id: str, value: float | None) -> None:
    path = root / "eval" / bench / "b" / f"{model_id}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"accuracy" if bench == "accuracy" else "win_rate": value}))


def test_seed_columns_mean_and_t_interval(tmp_path):
    spec = {"root": str(tmp_path), "seed": 42, "seeds": [42, 43, 44], "offline": "online_iter1",
            "rows": {"fp": {}, "cut": {}}}  # fmt: skip
    accs = {"base": [10.0], "fp": [20.0, 30.0, 40.0], "cut": [50.0, 50.0, 50.0]}
    for m, values in accs.items():
        for k, v in enumerate(values):
            mid = m if k == 0 else f"{m}-seed{42 + k}"
            _eval(tmp_path, "accuracy", mid, v)
            _eval(tmp_path, "winrate", mid, None)  # an all-unparsable judge: no win rate, counted as missing
    rows = [{"model_id": m} for m in accs]
    add_seed_columns(spec, "b", rows)
    base, fp, cut = rows
    assert base["n_seeds"] == 1 and base["accuracy_seeds_ci"] is None and seeds_cell(base) == "1 seed"
    # fp: mean 30, sd 10, t(0.975, 2) = 4.3027 -> half width 4.3027 * 10 / sqrt(3) = 24.84
    assert fp["n_seeds"] == 3 and fp["accuracy_seeds_mean"] == pytest.approx(30.0)
    assert fp["accuracy_seeds_ci"] == pytest.approx([30 - 24.841, 30 + 24.841], abs=1e-2)
    assert cut["accuracy_seeds_ci"] == pytest.approx([50.0, 50.0]) and fp["win_rate_seeds_mean"] is None
    assert "(n=3)" in seeds_cell(fp)


def test_one_seed_adds_nothing(tmp_path):
    rows = [{"model_id": "fp"}]
    add_seed_columns({"root": str(tmp_path), "seed": 42, "seeds": [42], "rows": {"fp": {}}}, "b", rows)
    assert rows == [{"model_id": "fp"}]


def test_extra_seeds_train_only_the_table2_rows(tmp_path):
    args = ("-n", "--config", "tier=ci", "papers=[cut]", "evals={shared: false}")
    one, two = smk(tmp_path / "a", *args, timeout=300), smk(tmp_path / "b", *args, "seeds=2", timeout=300)
    assert one.returncode == 0 and two.returncode == 0, two.stderr[-2000:]
    n1, n2 = job_stats(one.stdout + one.stderr), job_stats(two.stdout + two.stderr)
    # the 5 manifest rows again with seed 43 (the online iterations and the base model keep one seed)
    assert n2["cut_train"] - n1["cut_train"] == 5
    assert n2["cut_generate"] - n1["cut_generate"] == 5 and n2["eval_accuracy"] - n1["eval_accuracy"] == 5
    shown = smk(tmp_path / "c", "-n", "-p", "cut_tables", *args[1:], "seeds=2", timeout=300).stdout
    assert '"seed": 43' in shown and "ilf_dpo-seed43/model.json" in shown
