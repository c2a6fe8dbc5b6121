"""LD-Align's data, pairs, weights and paired statistics (no model needed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from alignrepro.data.records import Record
from alignrepro.errors import UserError
from alignrepro.methods.ld_align import data as ld_data
from alignrepro.methods.ld_align.weights import auc, build_pairs, scale_to_mean_one, weights_for
from alignrepro.stats import paired_difference

REPO = Path(__file__).resolve().parents[1]
SETTINGS = {"form": "ratio", "clip": [0.25, 4.0], "temperature": 1.0}


def test_weights_mean_one_clipped_and_rising_with_distance():
    d = np.random.default_rng(0).gamma(2.0, 1.0, size=200).tolist() + [0.0, 50.0]  # an empty-ish and a huge one
    w = weights_for(d, {"name": "ld_align", "weighting": "distance"}, SETTINGS, seed=1)
    assert w.mean() == pytest.approx(1.0, abs=1e-6)
    assert w.min() >= 0.25 - 1e-12 and w.max() <= 4.0 + 1e-12
    assert w[-1] == pytest.approx(4.0) and w[-2] == pytest.approx(0.25)  # the extremes are clipped
    order = np.argsort(d)
    assert np.all(np.diff(w[order]) >= -1e-12)  # monotone non-decreasing in d
    assert np.corrcoef(w, d)[0, 1] > 0.5


def test_scale_to_mean_one_without_clipping_is_the_ratio():
    d = np.array([1.0, 2.0, 3.0])
    assert scale_to_mean_one(d, 0.01, 100.0) == pytest.approx(d / d.mean())


def test_spin_weights_are_one_and_other_rows():
    d = [0.5, 1.0, 2.0, 4.0]
    assert weights_for(d, {"name": "spin", "weighting": "constant"}, SETTINGS, 0).tolist() == [1.0] * 4
    inv = weights_for(d, {"name": "inv", "weighting": "inverse", "latent": "guide"}, SETTINGS, 0)
    assert np.all(np.diff(inv) < 0) and inv.mean() == pytest.approx(1.0)
    ld = weights_for(d, {"name": "ld", "weighting": "distance", "latent": "guide"}, SETTINGS, 0)
    perm = weights_for(d, {"name": "perm", "weighting": "permuted", "latent": "guide"}, SETTINGS, 3)
    assert sorted(perm) == pytest.approx(sorted(ld)) and perm.tolist() != ld.tolist()
    soft = weights_for(d, {"name": "s", "weighting": "distance", "weights": {"form": "softmax"}}, SETTINGS, 0)
    assert soft.mean() == pytest.approx(1.0) and np.all(np.diff(soft) > 0)


def test_custom_weight_function_is_loaded_and_checked(tmp_path):
    row = {"name": "mine", "weighting": "custom", "weight_fn": "w.py:square", "folder": str(tmp_path)}
    (tmp_path / "w.py").write_text("def square(d, settings, seed):\n    return [x * x for x in d]\n")
    w = weights_for([1.0, 2.0, 3.0], row, SETTINGS, 0)
    assert w.mean() == pytest.approx(1.0) and np.all(np.diff(w) > 0)
    (tmp_path / "w.py").write_text("def square(d, settings, seed):\n    return [1.0]\n")
    with pytest.raises(UserError, match="weight_fn returned"):
        weights_for([1.0, 2.0, 3.0], row, SETTINGS, 0)


def test_clip_must_contain_one():
    with pytest.raises(UserError, match="must contain 1"):
        weights_for([1.0, 2.0], {"name": "x", "weighting": "distance"}, {**SETTINGS, "clip": [1.5, 4.0]}, 0)


def test_pairs_mix_iterations_and_drop_empty_answers():
    train = [Record(id=f"t{i}", instruction=f"q{i}", reference=f"real {i}") for i in range(3)]
    g0 = [Record(id=f"t{i}", instruction=f"q{i}", output=f"gen0 {i}") for i in range(3)]
    g1 = [Record(id=f"t{i}", instruction=f"q{i}", output="  " if i == 1 else f"gen1 {i}") for i in range(3)]
    rows, dropped = build_pairs(train, [("g0", g0), ("g1", g1)])
    assert dropped == {"g0": 0, "g1": 1}
    assert [r["id"] for r in rows] == ["t0@g0", "t1@g0", "t2@g0", "t0@g1", "t2@g1"]
    assert rows[3] == {"id": "t0@g1", "prompt": "q0", "real": "real 0", "generated": "gen1 0", "weight": 1.0}
    with pytest.raises(UserError, match="not a training prompt"):
        build_pairs(train, [("g0", [Record(id="zz", instruction="q", output="x")])])


def test_auc():
    assert auc([3, 4, 1, 2], [True, True, False, False]) == 1.0
    assert auc([1, 1], [True, False]) == 0.5
    assert auc([1, 2], [True, True]) is None


def test_data_draws_are_disjoint_and_seeded():
    samples = [(f"prompt {i % 50}", f"answer {i}") for i in range(120)]  # duplicated prompts count once
    a = ld_data.draw(samples, {"sft": 10, "heldout": 10, "train": 20}, seed=1)
    b = ld_data.draw(samples, {"sft": 10, "heldout": 10, "train": 20}, seed=1)
    assert a == b
    prompts = [p for part in a.values() for p, _ in part]
    assert len(prompts) == len(set(prompts)) == 40
    with pytest.raises(UserError, match="only 50 fit"):
        ld_data.draw(samples, {"sft": 40, "train": 20}, seed=1)


def test_verifiable_train_items_state_the_gold(monkeypatch):
    monkeypatch.setattr(ld_data, "load_sdg_samples", lambda: [(f"p{i}", f"a{i}") for i in range(30)])
    cfg = {"source": "instructlab_sdg", "n_train": 5, "n_heldout": 4, "n_sft": 3, "max_prompt_chars": None,
           "max_response_chars": None, "verifiable": {"train": 3, "test": 4}}  # fmt: skip
    sets = ld_data.build(cfg, seed=7)
    assert [len(sets[k]) for k in ("sft", "train", "heldout", "verifiable_test")] == [3, 8, 4, 4]
    v = [r for r in sets["train"] if "gold" in r.meta]
    assert len(v) == 3 and all(r.reference == f"The answer is {r.meta['gold']}." for r in v)
    assert {r.id for r in v}.isdisjoint({r.id for r in sets["verifiable_test"]})


def test_paired_difference_sees_a_small_consistent_gain():
    rng = np.random.default_rng(0)
    base = {str(i): float(x) for i, x in enumerate(rng.normal(0, 1, 80))}
    better = {k: v + 0.1 for k, v in base.items()}  # +0.1 on every item: invisible to two independent CIs
    d = paired_difference(better, base, n_boot=500, seed=0)
    assert d["diff"] == pytest.approx(0.1) and d["excludes_zero"] and d["n"] == 80
    same = paired_difference(base, dict(base), n_boot=200, seed=0)
    assert same["diff"] == 0 and not same["excludes_zero"] and same["n_differ"] == 0


def _pairs_command(*config: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "-p", "--cores", "1", "--config", "tier=ci", "papers=[ld_align]",
         "evals={shared: false}", *config, "--", "results/ld_align/ci/pairs/ld_align/iter1.jsonl"],
        cwd=REPO, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return next(line for line in out.stdout.splitlines() if "--out results/ld_align/ci/pairs/ld_align/iter1" in line)


def test_iteration_pairs_mix_previous_generations_in_the_dag():
    """SPIN's configs: iteration k trains on the pairs of iterations k-1 and k (ld_align.mix_previous)."""
    cmd = _pairs_command()
    assert "g0=results/ld_align/ci/generations/iter0.jsonl" in cmd
    assert "g1=results/ld_align/ci/generations/ld_align/iter1.jsonl" in cmd
    alone = _pairs_command("ld_align={mix_previous: false}")
    assert "g0=" not in alone and "g1=results/ld_align/ci/generations/ld_align/iter1.jsonl" in alone


def _spin_split(path: Path, split: str, rows: list[tuple[str, str, str]]) -> None:
    """A local copy in the hub's layout of UCLA-AGI/SPIN_iter0: data/<split>-00000-of-00001.parquet."""
    import pandas as pd

    (path / "data").mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(
        {
            "real": [[{"role": "user", "content": q}, {"role": "assistant", "content": a}] for q, a, _ in rows],
            "generated": [[{"role": "user", "content": q}, {"role": "assistant", "content": g}] for q, _, g in rows],
        }
    )
    frame.to_parquet(path / "data" / f"{split}-00000-of-00001.parquet")


def test_full_tier_reads_spin_iter0_through_the_hub_loader(tmp_path):
    folder = tmp_path / "SPIN_iter0"
    _spin_split(folder, "train", [(f"q{i}", f"real {i}", f"gen {i}") for i in range(12)])
    _spin_split(folder, "test", [(f"t{i}", f"real t{i}", f"gen t{i}") for i in range(5)])
    assert ld_data.load_spin_split(str(folder), None, "test")[0] == ("t0", "real t0")
    cfg = {"source": "hub", "hub": {"spin": {"path": str(folder), "revision": None, "train_split": "train",
           "test_split": "test"}}, "n_train": 8, "n_heldout": 4, "n_sft": 0, "max_prompt_chars": None,
           "max_response_chars": None, "verifiable": {"train": 0, "test": 2}}  # fmt: skip
    sets = ld_data.build(cfg, seed=1)
    assert len(sets["train"]) == 8 and all(r.instruction.startswith("q") for r in sets["train"])
    assert len(sets["heldout"]) == 4 and all(r.instruction.startswith("t") for r in sets["heldout"])
    assert all(r.reference == f"real {r.instruction[1:]}" for r in sets["train"])  # the real answer, not generated
    _spin_split(tmp_path / "broken", "train", [])
    (tmp_path / "broken" / "data" / "train-00000-of-00001.parquet").unlink()
    import pandas as pd

    pd.DataFrame({"chosen": ["x"]}).to_parquet(tmp_path / "broken" / "data" / "train-00000-of-00001.parquet")
    with pytest.raises(UserError, match="no column 'real'"):
        ld_data.load_spin_split(str(tmp_path / "broken"), None, "train")
