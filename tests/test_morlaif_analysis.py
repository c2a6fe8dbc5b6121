"""MORLAIF analysis and figure B on synthetic data whose answers are known: a principle equal to the human label gets
the largest weight and accuracy 1.0, a sign-flipped principle a negative weight, the ceiling's ablation curve falls as
informative principles are dropped; Wilson intervals and agreement proportions by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest

from alignrepro.io import read_json, write_jsonl
from alignrepro.methods.morlaif import analysis as A
from alignrepro.methods.morlaif import figure_b as FB
from alignrepro.methods.morlaif.arms import figure_b_arms
from alignrepro.methods.morlaif.principles import ABLATION_ORDER, PRINCIPLES
from alignrepro.methods.morlaif.scalarizers import SCALARIZERS, scalarize

NAMES = list(PRINCIPLES)


def synthetic(n_train: int, n_test: int, signal: dict[str, float], seed: int, exact: str | None = None):
    """Pairs with human labels; feedback margin of principle p = signal[p] * (+-1 for the human label) + N(0, 1);
    PM scores a/b = 5 +- (margin + N(0, 0.5)) / 2 + a shared offset. `exact`: that principle's margin has the human
    label's sign always (feedback label == human label, its PM separates the pairs)."""
    rng = np.random.default_rng(seed)
    pairs, feedback, pm_rows = [], {p: [] for p in [*signal, "cai", "hhh"]}, []
    for i in range(n_train + n_test):
        split = "train" if i < n_train else "test"
        y = int(rng.integers(0, 2))
        s = 2 * y - 1
        pid = f"x{i:05d}"
        pairs.append(
            {"id": pid, "split": split, "messages": [], "response_a": "a", "response_b": "b", "human_label": y}
        )
        sa, sb = {}, {}
        for p, mu in {**signal, "cai": 0.8, "hhh": 0.4}.items():
            m = s * (1 + abs(rng.normal())) if p == exact else mu * s + rng.normal()
            feedback[p].append({"id": pid, "split": split, "principle": p, "margin": m, "label": int(m > 0)})
            d = m if p == exact else m + rng.normal(0, 0.5)
            shared = rng.normal()
            sa[p], sb[p] = 5 + d / 2 + shared, 5 - d / 2 + shared
        pm_rows.append({"id": pid, "split": split, "scores_a": sa, "scores_b": sb})
    # an unlabelled (policy-sampled) pair: used for z-scores and agreement, never for fitting or human accuracy
    pairs.append(
        {"id": "u0", "split": "train", "messages": [], "response_a": "a", "response_b": "b", "human_label": None}
    )
    for p in feedback:
        feedback[p].append({"id": "u0", "split": "train", "principle": p, "margin": 1.0, "label": 1})
    pm_rows.append(
        {
            "id": "u0",
            "split": "train",
            "scores_a": dict.fromkeys(feedback, 6.0),
            "scores_b": dict.fromkeys(feedback, 4.0),
        }
    )
    return pairs, feedback, pm_rows


@pytest.fixture(scope="module")
def known():
    signal = dict.fromkeys(NAMES, 0.3)
    signal["sycophancy"] = -0.8  # sign-flipped
    pairs, feedback, pm_rows = synthetic(400, 300, signal, seed=1, exact="toxicity")
    out = A.run_analysis(pairs, feedback, pm_rows, {"principles": NAMES})
    # figure B, its own step: every scalarizer row of the manifest on the analysis step's weights.json
    out["B"] = FB.run_figure_b(pairs, pm_rows, out["weights"], list(figure_b_arms({}).values()), ["cai", "hhh"])
    return pairs, feedback, pm_rows, out


def test_wilson_by_hand():
    lo, hi = A.wilson(8, 10)
    assert (lo, hi) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    assert A.wilson(0, 0) is None
    assert A.wilson(10, 10)[1] == 1.0


def test_exact_principle_dominates(known):
    *_, out = known
    w = out["weights"]["weights"]
    assert out["weights"]["mode"] == "pm_regression"
    assert max(w, key=lambda p: abs(w[p])) == "toxicity" and w["toxicity"] > 0
    assert out["A"]["principles"]["toxicity"]["accuracy"] == 1.0
    assert out["B"]["objectives"]["linear"]["accuracy"] == 1.0
    assert out["B"]["multi_pm_ceiling"]["accuracy"] == 1.0
    assert out["B"]["objectives"]["linear"]["n"] == 300  # labelled test pairs only


def test_sign_flipped_principle_negative(known):
    *_, out = known
    assert out["weights"]["weights"]["sycophancy"] < 0
    assert "sycophancy" in out["weights"]["negative"]
    assert out["weights"]["modes"]["feedback_regression"]["weights"]["sycophancy"] < 0


def test_uniform_weights_reward_the_plain_sum_of_zscores(known):
    """weights=uniform (the weights are a constant in the code; what can break is their use): the PPO reward from
    weights.json is the unweighted sum of train-z-scored PM scores, by hand, and ranks the test pairs differently
    from the fitted weights."""
    import torch

    from alignrepro.methods.morlaif.scalarizers import scalarize

    pairs, feedback, pm_rows, fitted = known
    out = A.run_analysis(pairs, feedback, pm_rows, {"principles": NAMES, "weights": "uniform"})
    assert out["weights"]["mode"] == "uniform"
    assert out["weights"]["negative"] == []  # the sign-flipped principle keeps a positive weight here
    train = [r for r in pm_rows if r["split"] == "train"]
    both = np.array([[r[side][p] for p in NAMES] for r in train for side in ("scores_a", "scores_b")])
    mean, std = both.mean(0), both.std(0)
    test = [r for r in pm_rows if r["split"] == "test"]
    sa = np.array([[r["scores_a"][p] for p in NAMES] for r in test])
    by_hand = ((sa - mean) / std).sum(1)
    m, s, w = A.reward_params(out["weights"], NAMES)
    reward = scalarize("linear", (torch.tensor(sa, dtype=torch.float32) - m) / s, w)
    assert reward.numpy() == pytest.approx(by_hand, abs=1e-4)
    m, s, w = A.reward_params(fitted["weights"], NAMES)
    fitted_reward = scalarize("linear", (torch.tensor(sa, dtype=torch.float32) - m) / s, w)
    assert not np.allclose(fitted_reward.numpy(), by_hand, atol=1e-2)


def test_zscore_uses_train_split(known):
    pairs, _, pm_rows, out = known
    ids = {p["id"] for p in pairs if p["split"] == "train"}
    vals = [r[k]["bias"] for r in pm_rows if r["id"] in ids for k in ("scores_a", "scores_b")]
    assert out["weights"]["zscore"]["bias"]["mean"] == pytest.approx(np.mean(vals))
    assert out["weights"]["zscore"]["bias"]["std"] == pytest.approx(np.std(vals))


def test_reward_params_reproduce_figure_b(known):
    """PPO's reward transform (z-score, weights, scalarize) from weights.json gives figure B's decisions."""
    import torch

    pairs, _, pm_rows, out = known
    mean, std, w = A.reward_params(out["weights"], NAMES)
    test = [
        (p, r) for p, r in zip(pairs, pm_rows, strict=True) if p["split"] == "test" and p["human_label"] is not None
    ]
    sa = torch.tensor([[r["scores_a"][q] for q in NAMES] for _, r in test])
    sb = torch.tensor([[r["scores_b"][q] for q in NAMES] for _, r in test])
    for name in ("linear", "max_min"):
        ra = scalarize(name, (sa - mean) / std, w)
        rb = scalarize(name, (sb - mean) / std, w)
        acc = ((ra > rb).int() == torch.tensor([p["human_label"] for p, _ in test])).float().mean().item()
        assert acc == pytest.approx(out["B"]["objectives"][name]["accuracy"], abs=1 / len(test))


def test_figure_b_baselines_and_all_scalarizers(known):
    *_, out = known
    b = out["B"]
    assert list(b["objectives"]) == list(SCALARIZERS)  # the manifest's rows, in the library's order
    for r in b["objectives"].values():
        assert 0 <= r["accuracy"] <= 1 and r["ci95"][0] <= r["accuracy"] <= r["ci95"][1]
    assert set(b["baselines"]) == {"single_pm_rlaif_baseline", "single_principle_morlaif_baseline"}
    # a noisy single PM is worse than the ceiling
    assert b["baselines"]["single_pm_rlaif_baseline"]["accuracy"] < 1.0
    # per-pair outcomes kept by pair id (the tables' paired McNemar test): they add up to each accuracy
    pair_ids = {p["id"] for p in known[0]}
    for r in [*b["objectives"].values(), *b["baselines"].values()]:
        assert len(r["per_item"]) == r["n"] and sum(r["per_item"].values()) == r["correct"]
        assert set(r["per_item"]) <= pair_ids and set(r["per_item"].values()) <= {0, 1}


def test_figure_f_agreement(known):
    pairs, feedback, _, out = known
    f = out["F"]
    col = f["columns"].index("human_label")
    rows = f["rows"]
    tox, syc = rows.index("toxicity"), rows.index("sycophancy")
    assert f["agreement"][tox][col] == 1.0 and f["n"][tox][col] == 700  # the unlabelled pair is not counted
    assert f["agreement"][syc][col] < 0.5
    for i in range(len(rows)):
        assert f["agreement"][i][i] == 1.0
    # one cell by hand
    e = {r["id"]: r["label"] for r in feedback["ethicality"]}
    c = {r["id"]: r["label"] for r in feedback["context"]}
    by_hand = np.mean([e[i] == c[i] for i in e])
    assert f["agreement"][rows.index("ethicality")][f["columns"].index("context")] == pytest.approx(by_hand)
    assert f["n"][rows.index("ethicality")][f["columns"].index("context")] == len(pairs)


def test_ablation_curve_falls_when_principles_inform():
    pairs, feedback, pm_rows = synthetic(1500, 3000, dict.fromkeys(NAMES, 0.35), seed=3)
    out = A.run_analysis(pairs, feedback, pm_rows, {"principles": NAMES})
    g = out["G"]
    assert g["order"] == ABLATION_ORDER and g["k"] == list(range(12))
    assert g["rows"][11]["kept"] == ["toxicity"]
    ceiling = g["ceiling"]
    assert all(a >= b for a, b in zip(ceiling, ceiling[1:], strict=False)), ceiling
    assert ceiling[0] - ceiling[-1] > 0.15
    assert g["pm"][0] - g["pm"][-1] > 0.1
    assert ceiling[0] == pytest.approx(out["weights"]["multi_pm_ceiling"]["accuracy"])


def test_cli_writes_every_file_with_provenance(known, tmp_path):
    pairs, feedback, pm_rows, out = known
    write_jsonl(tmp_path / "pairs.jsonl", pairs)
    write_jsonl(tmp_path / "pm_scores.jsonl", pm_rows)
    for p, rows in feedback.items():
        write_jsonl(tmp_path / "feedback" / f"{p}.jsonl", rows)
    cfg = {"weights": "feedback_regression"}

    def run(out_dir: str, *extra: str) -> None:
        inputs = ["--pairs", str(tmp_path / "pairs.jsonl"), "--feedback-dir", str(tmp_path / "feedback")]
        A.main([*inputs, "--pm-scores", str(tmp_path / "pm_scores.jsonl"), "--config-json", json.dumps(cfg), *extra,
                "--out-dir", str(tmp_path / out_dir)])  # fmt: skip

    run("analysis", "--tier", "ci")
    for name in A.FILES.values():
        doc = read_json(tmp_path / "analysis" / name)
        prov = doc["provenance"]
        assert prov["tier"] == "ci" and prov["seed"] == 0 and len(prov["inputs"]["pairs_sha256"]) == 64
        assert set(prov["inputs"]["feedback_sha256"]) == set(feedback)
    w = read_json(tmp_path / "analysis" / "weights.json")
    assert (
        w["mode"] == "feedback_regression" and w["weights"] == out["weights"]["modes"]["feedback_regression"]["weights"]
    )
    assert "B" not in A.FILES and not (tmp_path / "analysis" / FB.FILE).exists()  # figure B: its own step
    # deterministic: a second run writes the same numbers
    first = read_json(tmp_path / "analysis" / A.FILES["G"])
    run("again")
    second = read_json(tmp_path / "again" / A.FILES["G"])
    assert first["rows"] == second["rows"] and w["weights"] == read_json(tmp_path / "again" / "weights.json")["weights"]
    with pytest.raises(ValueError):
        A.merge_config({"weights": "ridge"})
    with pytest.raises(ValueError, match="scalarizers"):  # the rows are figure B's, never the weights' concern
        A.merge_config({"scalarizers": ["linear"]})

    # figure B's step reads weights.json and the rows it is given
    arms = [a.to_json() for a in figure_b_arms({"temperature": 0.5}).values()]
    fb_args = ["--pairs", str(tmp_path / "pairs.jsonl"), "--pm-scores", str(tmp_path / "pm_scores.jsonl"),
               "--weights", str(tmp_path / "analysis" / "weights.json"), "--arms-json", json.dumps(arms)]  # fmt: skip
    FB.main([*fb_args, "--tier", "ci", "--out", str(tmp_path / "analysis" / FB.FILE)])
    b = read_json(tmp_path / "analysis" / FB.FILE)
    assert set(b["objectives"]) == set(SCALARIZERS) and b["weights_mode"] == "feedback_regression"
    assert b["scalarizer_params"]["soft_max_min"] == {"temperature": 0.5} and b["labels"]["linear"] == "Linear"
    assert b["multi_pm_ceiling"]["accuracy"] == w["multi_pm_ceiling"]["accuracy"]
    assert len(b["provenance"]["inputs"]["weights_sha256"]) == 64 and b["provenance"]["tier"] == "ci"


def test_l2_penalty_bounds_weights_on_separable_pairs():
    """Few labelled pairs are separable: the un-penalised fit (the paper's) diverges, the L2 fit stays bounded."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 3))
    y = (x[:, 0] > 0).astype(int)  # perfectly separable by feature 0
    free, _ = A.fit_preference_weights(x, y)
    l2, info = A.fit_preference_weights(x, y, C=1.0)
    assert np.abs(free).max() > 10 * np.abs(l2).max()
    assert np.argmax(np.abs(l2)) == 0 and l2[0] > 0 and info["l2_C"] == 1.0
