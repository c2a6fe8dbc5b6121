"""alignrepro.stats against hand-computed values: exact McNemar, the sign test, the minimum detectable effects, the
paired comparison and the summary over seeds; and the papers' tables that use them (CUT's paired accuracy against
base, MORLAIF's figure B against the single PM, LD-Align's rows over seeds)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from alignrepro import stats as S


def test_mcnemar_exact_matches_the_binomial_by_hand():
    # b=10, c=2: p = 2 P(X <= 2 | n=12, 1/2) = 2 (1 + 12 + 66) / 4096
    assert S.mcnemar_exact(10, 2) == pytest.approx(2 * 79 / 4096)
    assert S.mcnemar_exact(10, 2) == pytest.approx(0.0386, abs=1e-4)
    assert S.mcnemar_exact(2, 10) == S.mcnemar_exact(10, 2)  # two-sided: symmetric
    assert S.mcnemar_exact(6, 0) == pytest.approx(2 / 64)  # the fewest one-way pairs significant at .05
    assert S.mcnemar_exact(5, 0) == pytest.approx(2 / 32)
    assert S.mcnemar_exact(3, 3) == 1.0  # capped at 1
    assert S.mcnemar_exact(0, 0) == 1.0  # no discordant pair: no evidence


def test_sign_test_drops_zeros():
    r = S.sign_test([0.5, 2.0, -1.0, 0.0, 3.0, 0.0])
    assert (r["n_pos"], r["n_neg"], r["n_zero"]) == (3, 1, 2)
    assert r["p_value"] == pytest.approx(2 * (1 + 4) / 16)  # 2 P(X <= 1 | 4, 1/2)


def test_min_exact_discordant():
    assert S.min_exact_discordant(0.05) == 6
    assert S.min_exact_discordant(0.01) == 8  # 2 / 2^8 = 0.0078


def test_mde_binary_solves_connors_formula():
    n, psi = 100, 0.2
    d = S.mde_paired_binary(n, psi)
    # n = (z_a sqrt(psi) + z_b sqrt(psi - d^2))^2 / d^2 holds at the returned d
    za, zb = 1.959964, 0.841621
    assert n == pytest.approx((za * math.sqrt(psi) + zb * math.sqrt(psi - d * d)) ** 2 / d**2, rel=1e-4)
    assert 0.12 < d < 0.13
    # more discordance or fewer items: a larger MDE
    assert S.mde_paired_binary(100, 0.4) > d > S.mde_paired_binary(400, 0.2)


def test_mde_binary_floor_and_edge_cases():
    assert S.mde_paired_binary(100, 0.0) == pytest.approx(6 / 100)  # nothing differs: the exact test's floor
    assert S.mde_paired_binary(200, 0.001) == pytest.approx(6 / 200)  # the formula's value is below the floor
    assert S.mde_paired_binary(3, 0.5) is None  # n < z^2: no solution
    assert S.mde_paired_binary(10, 1.0) <= 1.0


def test_mde_continuous_by_hand():
    assert S.mde_paired_continuous(100, 2.0) == pytest.approx((1.959964 + 0.841621) * 2.0 / 10, rel=1e-5)
    assert S.mde_paired_continuous(100, 0.0) is None
    assert S.mde_paired_continuous(1, 1.0) is None


def _binary_case() -> tuple[dict[str, float], dict[str, float]]:
    # 40 items: 10 right only for a, 2 right only for b, 18 both right, 10 both wrong
    a = [1] * 10 + [0] * 2 + [1] * 18 + [0] * 10
    b = [0] * 10 + [1] * 2 + [1] * 18 + [0] * 10
    return {f"q{i}": float(v) for i, v in enumerate(a)}, {f"q{i}": float(v) for i, v in enumerate(b)}


def test_paired_compare_binary_uses_mcnemar_and_the_discordance():
    a, b = _binary_case()
    r = S.paired_compare(a, b, n_boot=500, seed=0)
    assert r["test"] == "McNemar exact"
    assert (r["n_a_only"], r["n_b_only"]) == (10, 2)
    assert r["p_value"] == pytest.approx(2 * 79 / 4096)
    assert r["diff"] == pytest.approx(8 / 40)
    assert r["mde"] == pytest.approx(S.mde_paired_binary(40, 12 / 40))
    assert r["mde_basis"] == "discordance 12/40"
    # the same items in % (0/100): the same test, the MDE in %
    r100 = S.paired_compare({k: 100 * v for k, v in a.items()}, {k: 100 * v for k, v in b.items()}, n_boot=500)
    assert r100["p_value"] == r["p_value"] and r100["mde"] == pytest.approx(100 * r["mde"])


def test_paired_compare_continuous_uses_the_sign_test_and_the_sd():
    rng = np.random.default_rng(0)
    base = rng.normal(size=30)
    a = {f"q{i}": float(v + 0.5) for i, v in enumerate(base)}
    b = {f"q{i}": float(v) for i, v in enumerate(base)}
    b["q0"] = a["q0"] + 1  # one item the other way
    r = S.paired_compare(a, b, n_boot=500)
    assert r["test"] == "sign test"
    assert (r["n_a_only"], r["n_b_only"]) == (29, 1)
    assert r["p_value"] == pytest.approx(2 * 31 / 2**30)  # 2 P(X <= 1 | 30, 1/2) = 2 (1 + 30) / 2^30
    diff = np.array([a[k] - b[k] for k in sorted(a)])
    assert r["mde"] == pytest.approx(S.mde_paired_continuous(30, float(diff.std(ddof=1))))


def test_paired_compare_no_difference_says_why():
    same = {f"q{i}": float(i) / 7 for i in range(10)}
    r = S.paired_compare(same, dict(same), n_boot=100)
    assert r["p_value"] == 1.0 and r["mde"] is None and "no item differs" in r["mde_why"]
    ints = {f"q{i}": float(i + 2) for i in range(10)}  # scores: every one 1 higher on side a
    shifted = S.paired_compare({k: v + 1 for k, v in ints.items()}, ints, n_boot=100)
    assert shifted["mde"] is None and shifted["mde_why"] == "every item differs by the same amount (SD 0)"
    assert shifted["p_value"] == pytest.approx(2 / 2**10)
    with pytest.raises(ValueError, match="not all 0/1"):
        S.paired_compare(same, dict(same), binary=True)
    none = S.paired_compare({"a": 1.0}, {"b": 0.0}, binary=True)  # no common item: nothing to test, no error
    assert none["n"] == 0 and none["diff"] is None and none["p_value"] == 1.0 and none["mde"] is None


def test_over_seeds_t_interval_by_hand(tmp_path):
    runs = [{"seed": 0, "acc": 0.5, "nll": 2.0}, {"seed": 1, "acc": 0.6, "nll": None},
            {"provenance": {"seed": 2}, "acc": 0.7, "nll": 2.5}]  # fmt: skip
    path = tmp_path / "s2.json"
    path.write_text(json.dumps(runs[2]))
    r = S.over_seeds([runs[0], runs[1], path], keys=["acc", "nll"])
    assert r["n_seeds"] == 3 and r["seeds"] == [0, 1, 2]
    acc = r["metrics"]["acc"]
    assert acc["mean"] == pytest.approx(0.6) and acc["sd"] == pytest.approx(0.1)
    half = 4.302653 * 0.1 / math.sqrt(3)  # t(0.975, 2 df)
    assert acc["ci"] == pytest.approx([0.6 - half, 0.6 + half], rel=1e-5)
    nll = r["metrics"]["nll"]  # one seed has no value: left out and counted
    assert nll["n_seeds"] == 2 and nll["n_missing"] == 1 and nll["mean"] == pytest.approx(2.25)
    one = S.over_seeds([runs[0]])
    assert set(one["metrics"]) == {"acc", "nll"}  # numeric top-level fields by default, never the seed
    assert one["metrics"]["acc"]["ci"] is None and "one seed" in one["metrics"]["acc"]["why"]
    with pytest.raises(ValueError):
        S.over_seeds([])


def _ld_eval(acc: float, nll: float) -> dict:
    items = {"heldout_nll": {"a": nll, "b": nll + 1}, "implicit_reward": {"a": 1.0, "b": 0.0},
             "oracle": {"x": 1.0, "y": 0.0}}  # fmt: skip
    metrics = {"heldout_nll": nll + 0.5, "implicit_reward_acc": 0.5, "oracle_acc": acc}
    return {"per_item": items, "metrics": metrics, "n": {"heldout": 2, "verifiable": 2}, "model": {}}


def test_seed_columns_in_an_aggregate_row(tmp_path):
    """LD-Align's rows take the mean and t-interval over seeds when the spec lists several seeds' evaluations."""
    from alignrepro.methods.ld_align import aggregate as LD

    paths = []
    for seed, acc in enumerate((0.2, 0.4, 0.6)):
        paths.append(tmp_path / f"start.seed{seed}.json")
        paths[-1].write_text(json.dumps({**_ld_eval(acc, 2.0), "seed": seed}))
    spec = {"sft": True, "base": "b", "rows": {}, "bootstrap": 100, "seed": 0, "seed_evals": {"start": paths}}
    (row,) = LD.metric_rows(spec, {"start": _ld_eval(0.2, 2.0)})
    assert row["n_seeds"] == 3 and row["seeds"] == [0, 1, 2]
    assert row["oracle_acc_seeds_mean"] == pytest.approx(0.4)
    half = 4.302653 * 0.2 / math.sqrt(3)
    assert row["oracle_acc_seeds_ci"] == pytest.approx([0.4 - half, 0.4 + half], rel=1e-5)
    assert "3 seeds: 0.400 [" in LD.over_seeds_cell(row, "oracle_acc")
    (one,) = LD.metric_rows({**spec, "seed_evals": {}}, {"start": _ld_eval(0.2, 2.0)})
    assert "n_seeds" not in one and LD.over_seeds_cell(one, "oracle_acc") == ""


def test_cut_rows_carry_the_paired_accuracy_against_base(tmp_path):
    """CUT's tables: each method's oracle accuracy minus the base's on the same items (points), McNemar p and MDE;
    an accuracy file without per-item outcomes says so."""
    from alignrepro.methods.cut import aggregate as CUT

    acc = tmp_path / "eval/accuracy/b"
    acc.mkdir(parents=True)
    base, cut = [0] * 12 + [1] * 8, [1] * 10 + [0] * 2 + [1] * 8  # 10 items right only for CUT, none only for base
    for name, items in (("base", base), ("cut", cut)):
        (acc / f"{name}.json").write_text(json.dumps({"per_item": {f"q{i}": v for i, v in enumerate(items)}}))
    (acc / "old.json").write_text(json.dumps({"accuracy": 10.0}))
    spec = {"root": str(tmp_path), "offline": "separate", "seed": 0, "bootstrap": 200}
    rows = [{"model_id": "base"}, {"model_id": "cut"}, {"model_id": "old"}]
    CUT.add_paired_accuracy(spec, "b", rows)
    assert rows[0]["accuracy_vs_base"] is None and rows[0]["accuracy_vs_base_note"] == ""
    assert rows[1]["accuracy_vs_base"] == pytest.approx(50.0) and rows[1]["accuracy_vs_base_n"] == 20
    assert rows[1]["accuracy_vs_base_p"] == pytest.approx(2 / 2**10)
    assert rows[1]["accuracy_vs_base_mde"] == pytest.approx(100 * S.mde_paired_binary(20, 10 / 20))
    assert rows[2]["accuracy_vs_base"] is None and rows[2]["accuracy_vs_base_note"] == "no per-item outcomes"
    assert CUT.paired_cell(rows[1]).startswith("+50.0 [") and "p=0.002" in CUT.paired_cell(rows[1])


def test_morlaif_figure_b_is_paired_against_the_single_pm():
    """Figure B's claim line and CSV columns come from McNemar on the same pairs, not from two overlapping CIs."""
    from alignrepro.methods.morlaif import aggregate as M

    lin = {f"p{i}": int(i < 15) for i in range(20)}  # right on 15 of 20
    single = {f"p{i}": int(i < 9) for i in range(20)}  # right on 9: linear right only on 6, single only on 0
    b = object.__new__(M.Base)
    b.name, b.c, b.weights = "gpt2", None, {"weights": {}, "negative": []}
    b.b = {"objectives": {"linear": {"accuracy": 0.75, "n": 20, "ci95": [0.53, 0.89], "per_item": lin}},
           "baselines": {M.SINGLE_PM: {"accuracy": 0.45, "n": 20, "ci95": [0.26, 0.66], "per_item": single}},
           "multi_pm_ceiling": {"accuracy": 0.8, "n": 20}}  # fmt: skip
    d = M.vs_single_pm(b, "linear", 0)
    assert d["vs_single_pm"] == pytest.approx(0.3) and d["vs_single_pm_n"] == 20
    assert d["vs_single_pm_p"] == pytest.approx(2 / 2**6)  # 6 vs 0 discordant: 0.031
    assert d["vs_single_pm_mde"] == pytest.approx(S.mde_paired_binary(20, 6 / 20))
    assert M.vs_single_pm(b, M.SINGLE_PM, 0) == {}  # the reference itself
    line = M.claims([b], "linear")[0]
    assert "paired +0.300 [" in line and "p=0.031" in line and "CIs overlap" not in line
