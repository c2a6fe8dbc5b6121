"""MORLAIF analysis (paper note §1.4, §4): principle weights, the multi-PM ceiling and the data of figures A, F, G.

Nothing here depends on the arms: every PPO arm reads weights.json, so a new scalarizer row must not rewrite it.
Figure B (one accuracy per scalarizer row) is its own step, figure_b.py, reading weights.json.

Inputs: data/pairs.jsonl, feedback/<principle>.jsonl, pm_scores.jsonl. Outputs in --out-dir (json, with provenance):

  weights.json                    principle weights by logistic regression (un-penalised, no intercept: a preference
                                  of a over b is antisymmetric) on the labelled TRAIN pairs (human_label not null),
                                  each pair also added mirrored (features negated, label flipped), as the official
                                  PM_regression.py. Modes (config `weights`):
                                    pm_regression (default, note §7.3): features = z-scored PM score differences a-b
                                      (z-score stats: each PM's mean/std over both responses of the train split);
                                    feedback_regression (the official): features = the feedback margins, standardized
                                      by their train std; the weights then multiply z-scored PM scores;
                                    uniform: every weight 1.
                                  All three are recorded; `weights` is the chosen one.
                                  `multi_pm_ceiling`: logistic regression on the feedback margins (fit on labelled
                                  train, accuracy on labelled test), figure B's ceiling
  fig_a_principle_accuracy.json   each PM (12 + cai + hhh) vs its own feedback labels, split "test"
  fig_f_principle_agreement.json  share of pairs on which two principles' feedback labels agree (+ the human label)
  fig_g_principle_ablation.json   refit after dropping the first k principles of ABLATION_ORDER (k = 0..n-1): the
                                  ceiling (feedback features) and the PMs (z-scored PM score differences)

Every accuracy has its n and a 95 % Wilson interval. A tie (equal scores) counts as preferring B, like the feedback
label rule. Deterministic: no sampling; Newton-Cholesky on fixed data.

`python -m alignrepro.methods.morlaif.analysis --help`
"""

from __future__ import annotations

import argparse
import json
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alignrepro.evals.verifiable.accuracy import wilson as wilson_pct
from alignrepro.io import atomic_write_json, read_jsonl, sha256_file
from alignrepro.methods.morlaif.principles import ABLATION_ORDER
from alignrepro.methods.morlaif.settings import AnalysisSettings
from alignrepro.training import merge_settings, yaml_defaults

log = logging.getLogger("morlaif.analysis")

# What the rules add from the run's top level (the seed), with its value for a direct call; every other default is
# methods/morlaif/config.yaml `defaults.analysis` (the one source).
RUN_SUPPLIED: dict[str, Any] = {"seed": 0}
BASELINE_NAMES = {"cai": "single_pm_rlaif_baseline", "hhh": "single_principle_morlaif_baseline"}
FILES = {
    "weights": "weights.json",
    "A": "fig_a_principle_accuracy.json",
    "F": "fig_f_principle_agreement.json",
    "G": "fig_g_principle_ablation.json",
}


# ---------------------------------------------------------------------------------------------------- statistics
def wilson(k: int, n: int) -> list[float] | None:
    """95 % Wilson interval of k/n as proportions (the suite's interval, evals.verifiable.accuracy, is in %)."""
    ci = wilson_pct(k, n)
    if ci is None:
        return None
    # at k = 0 or k = n the bound is exactly 0 or 1 (float error would put it just inside)
    return [0.0 if k == 0 else ci[0] / 100, 1.0 if k == n else ci[1] / 100]


def accuracy(pred: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    n = int(len(truth))
    k = int((np.asarray(pred) == np.asarray(truth)).sum()) if n else 0
    return {"accuracy": k / n if n else None, "n": n, "correct": k, "ci95": wilson(k, n)}


def fit_preference_weights(
    x: np.ndarray, y: np.ndarray, max_iter: int = 10000, C: float | None = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """Logistic regression without intercept on (x, y) plus the mirrored pairs (-x, 1 - y): un-penalised (the
    official fit) unless C is given (L2, sklearn's inverse strength: few, separable pairs give unbounded weights)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    if len(y) == 0:
        raise ValueError("no labelled pairs to fit the weights on")
    xx = np.concatenate([x, -x])
    yy = np.concatenate([y, 1 - y])
    model = LogisticRegression(
        C=np.inf if C is None else C, fit_intercept=False, solver="newton-cholesky", max_iter=max_iter
    )
    with warnings.catch_warnings(record=True) as caught:
        # recorded, not printed: separable data (no convergence) and collinear features (Newton falls back to lbfgs)
        warnings.simplefilter("always")
        model.fit(xx, yy)
    coef = model.coef_[0].copy()
    n_iter = int(np.max(model.n_iter_))
    rank = int(np.linalg.matrix_rank(x)) if x.size else 0
    info = {
        "n_pairs": int(len(y)),
        "l2_C": C,
        "n_rows_with_mirrors": int(len(yy)),
        "n_features": int(x.shape[1]),
        "feature_rank": rank,  # < n_features: the weights are not identified (collinear or too few pairs)
        "n_iter": n_iter,
        "converged": n_iter < max_iter and not any(issubclass(w.category, ConvergenceWarning) for w in caught),
        "solver_warnings": sorted({str(w.message).splitlines()[0][:160] for w in caught}),
        "train_accuracy": float(((x @ coef > 0).astype(int) == y).mean()),
    }
    return coef, info


# ---------------------------------------------------------------------------------------------------- tables
class Data:
    """The pairs joined with their feedback and PM scores: one row per pair, one column per principle (NaN / -1 where
    missing). Selections are arrays of row indices, in pairs.jsonl order."""

    def __init__(self, pairs: list[dict], feedback: dict[str, list[dict]], pm_rows: list[dict]):
        self.ids_ = [p["id"] for p in pairs]
        row = {pid: i for i, pid in enumerate(self.ids_)}
        n = len(pairs)
        self.split = np.array([p["split"] for p in pairs])
        self.human_ = np.array([-1 if p.get("human_label") is None else int(p["human_label"]) for p in pairs])
        self.fb_col = {q: j for j, q in enumerate(feedback)}
        self.margin = np.full((n, len(feedback)), np.nan)
        self.label = np.full((n, len(feedback)), -1, dtype=np.int64)
        for q, rows in feedback.items():
            for r in rows:
                i = row.get(r["id"])
                if i is None:
                    continue
                if r.get("margin") is not None:
                    self.margin[i, self.fb_col[q]] = float(r["margin"])
                if r.get("label") is not None:
                    self.label[i, self.fb_col[q]] = int(r["label"])
        names = sorted({q for r in pm_rows for q in r["scores_a"]})
        self.pm_col = {q: j for j, q in enumerate(names)}
        self.score = {"a": np.full((n, len(names)), np.nan), "b": np.full((n, len(names)), np.nan)}
        for r in pm_rows:
            i = row.get(r["id"])
            if i is None:
                continue
            for side in ("a", "b"):
                for q, v in r[f"scores_{side}"].items():
                    self.score[side][i, self.pm_col[q]] = float(v)

    def ids(self, split: str | None = None, labelled: bool = False) -> np.ndarray:
        keep = np.ones(len(self.ids_), dtype=bool)
        if split is not None:
            keep &= self.split == split
        if labelled:
            keep &= self.human_ >= 0
        return np.flatnonzero(keep)

    def human(self, idx: np.ndarray) -> np.ndarray:
        return self.human_[idx]

    def has_feedback(self, q: str) -> bool:
        return q in self.fb_col

    def margins(self, idx: np.ndarray, principles: list[str]) -> np.ndarray:
        return self.margin[np.ix_(idx, [self.fb_col[q] for q in principles])]

    def labels(self, idx: np.ndarray, q: str) -> np.ndarray:
        return self.label[idx, self.fb_col[q]]

    def pm(self, idx: np.ndarray, principles: list[str], side: str) -> np.ndarray:
        return self.score[side][np.ix_(idx, [self.pm_col[q] for q in principles])]

    def with_feedback(self, idx: np.ndarray, principles: list[str]) -> np.ndarray:
        if any(q not in self.fb_col for q in principles):
            return idx[:0]
        return idx[~np.isnan(self.margins(idx, principles)).any(axis=1)]

    def with_labels(self, idx: np.ndarray, q: str) -> np.ndarray:
        return idx[self.labels(idx, q) >= 0] if q in self.fb_col else idx[:0]

    def with_scores(self, idx: np.ndarray, principles: list[str]) -> np.ndarray:
        if any(q not in self.pm_col for q in principles):
            return idx[:0]
        ok = ~(np.isnan(self.pm(idx, principles, "a")) | np.isnan(self.pm(idx, principles, "b"))).any(axis=1)
        return idx[ok]


def zscore_stats(data: Data, principles: list[str]) -> dict[str, dict[str, float]]:
    """Each PM's mean and std over both responses of the train-split pairs (std 0 -> 1: a constant PM)."""
    ids = data.with_scores(data.ids("train"), principles)
    if not len(ids):
        raise ValueError("no train-split pair has PM scores for every principle: cannot z-score")
    both = np.concatenate([data.pm(ids, principles, "a"), data.pm(ids, principles, "b")])
    mean, std = both.mean(0), both.std(0)
    std[std == 0] = 1.0
    return {
        p: {"mean": float(mean[j]), "std": float(std[j]), "n_scores": int(len(both))} for j, p in enumerate(principles)
    }


def zscored(data: Data, ids: np.ndarray, principles: list[str], stats: dict, side: str) -> np.ndarray:
    mean = np.array([stats[p]["mean"] for p in principles])
    std = np.array([stats[p]["std"] for p in principles])
    return (data.pm(ids, principles, side) - mean) / std


def feedback_std(data: Data, ids: np.ndarray, principles: list[str]) -> np.ndarray:
    std = data.margins(ids, principles).std(0) if len(ids) else np.ones(len(principles))
    std[std == 0] = 1.0
    return std


def fit_ceiling(data: Data, principles: list[str], max_iter: int, C: float | None = None) -> dict[str, Any]:
    """Logistic regression on the feedback margins (a PM with 100 % principle accuracy): fit on labelled train pairs,
    accuracy on labelled test pairs."""
    train = data.with_feedback(data.ids("train", labelled=True), principles)
    test = data.with_feedback(data.ids("test", labelled=True), principles)
    std = feedback_std(data, train, principles)
    coef, info = fit_preference_weights(data.margins(train, principles) / std, data.human(train), max_iter, C)
    pred = (data.margins(test, principles) / std @ coef > 0).astype(int)
    return {
        **accuracy(pred, data.human(test)),
        "principles": principles,
        "weights": dict(zip(principles, coef.tolist(), strict=True)),
        "feature_std": dict(zip(principles, std.tolist(), strict=True)),
        "fit": info,
    }


def fit_pm_linear(
    data: Data, principles: list[str], stats: dict, max_iter: int, C: float | None = None
) -> tuple[np.ndarray, dict, dict]:
    """Weights on z-scored PM score differences (labelled train) and the linear combination's test accuracy."""
    train = data.with_scores(data.ids("train", labelled=True), principles)
    test = data.with_scores(data.ids("test", labelled=True), principles)
    diff = zscored(data, train, principles, stats, "a") - zscored(data, train, principles, stats, "b")
    coef, info = fit_preference_weights(diff, data.human(train), max_iter, C)
    tdiff = zscored(data, test, principles, stats, "a") - zscored(data, test, principles, stats, "b")
    return coef, info, accuracy((tdiff @ coef > 0).astype(int), data.human(test))


# ---------------------------------------------------------------------------------------------------- figures
def figure_a(data: Data, pm_principles: list[str]) -> dict[str, Any]:
    out = {}
    for p in pm_principles:
        ids = data.with_labels(data.with_scores(data.ids("test"), [p]), p)
        pred = (data.pm(ids, [p], "a")[:, 0] > data.pm(ids, [p], "b")[:, 0]).astype(int)
        out[p] = accuracy(pred, data.labels(ids, p))
    return {"split": "test", "reference": "feedback label of the same principle", "principles": out}


def compute_weights(data: Data, cfg: AnalysisSettings, stats: dict) -> dict[str, Any]:
    principles = cfg.principles
    coef_pm, info_pm, _ = fit_pm_linear(data, principles, stats, cfg.max_iter, cfg.l2_C)
    train_fb = data.with_feedback(data.ids("train", labelled=True), principles)
    std = feedback_std(data, train_fb, principles)
    coef_fb, info_fb = fit_preference_weights(
        data.margins(train_fb, principles) / std, data.human(train_fb), cfg.max_iter, cfg.l2_C
    )
    modes = {
        "pm_regression": {"weights": dict(zip(principles, coef_pm.tolist(), strict=True)), "fit": info_pm},
        "feedback_regression": {
            "weights": dict(zip(principles, coef_fb.tolist(), strict=True)),
            "fit": info_fb,
            "feature_std": dict(zip(principles, std.tolist(), strict=True)),
        },
        "uniform": {"weights": {p: 1.0 for p in principles}},
    }
    chosen = modes[cfg.weights]["weights"]
    return {
        "mode": cfg.weights,
        "principles": principles,
        "weights": chosen,
        "zscore": stats,
        "modes": modes,
        "negative": sorted(p for p, w in chosen.items() if w < 0),
        "sign": {p: int(np.sign(w)) for p, w in chosen.items()},
        "labelled_train_pairs": len(train_fb),
    }


def figure_f(data: Data, cfg: AnalysisSettings) -> dict[str, Any]:
    names = [p for p in [*cfg.principles, *cfg.baselines] if data.has_feedback(p)]
    ids = data.ids(None if cfg.agreement_split == "all" else cfg.agreement_split)
    cols = [*names, "human_label"]
    lab = np.stack([*(data.labels(ids, p) for p in names), data.human(ids)], axis=1)  # -1 = unknown
    matrix, counts = [], []
    for i in range(len(names)):
        row, nrow = [], []
        for j in range(len(cols)):
            both = (lab[:, i] >= 0) & (lab[:, j] >= 0)
            nrow.append(int(both.sum()))
            row.append(float((lab[both, i] == lab[both, j]).mean()) if both.any() else None)
        matrix.append(row)
        counts.append(nrow)
    known = lab >= 0
    balance = {c: (float(lab[known[:, j], j].mean()) if known[:, j].any() else None) for j, c in enumerate(cols)}
    return {
        "split": cfg.agreement_split,
        "rows": names,
        "columns": cols,
        "agreement": matrix,
        "n": counts,
        "label_balance": balance,
    }


def figure_g(data: Data, cfg: AnalysisSettings, stats: dict) -> dict[str, Any]:
    order = [p for p in ABLATION_ORDER if p in cfg.principles]
    rows = []
    for k in range(len(order)):
        kept = order[k:]
        ceiling = fit_ceiling(data, kept, cfg.max_iter, cfg.l2_C)
        coef, info, pm_acc = fit_pm_linear(data, kept, stats, cfg.max_iter, cfg.l2_C)
        rows.append(
            {
                "ablated": k,
                "dropped": order[:k],
                "kept": kept,
                "ceiling": {key: ceiling[key] for key in ("accuracy", "n", "ci95")},
                "pm": {**pm_acc, "weights": dict(zip(kept, coef.tolist(), strict=True)), "fit": info},
            }
        )
    return {
        "order": order,
        "k": [r["ablated"] for r in rows],
        "ceiling": [r["ceiling"]["accuracy"] for r in rows],
        "pm": [r["pm"]["accuracy"] for r in rows],
        "rows": rows,
    }


def reward_params(
    weights_doc: dict[str, Any], principles: list[str]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mean, std, weights), each Tensor[P] in `principles` order, from weights.json: the reward of PM scores s [..., P]
    is scalarize(fn, (s - mean) / std, weights), exactly as figure B (figure_b.py) scores the test pairs."""
    missing = [p for p in principles if p not in weights_doc["weights"]]
    if missing:
        raise KeyError(f"weights.json has no weight for {missing}")
    mean = torch.tensor([weights_doc["zscore"][p]["mean"] for p in principles], dtype=torch.float32)
    std = torch.tensor([weights_doc["zscore"][p]["std"] for p in principles], dtype=torch.float32)
    w = torch.tensor([weights_doc["weights"][p] for p in principles], dtype=torch.float32)
    return mean, std, w


# ---------------------------------------------------------------------------------------------------- driver
def default_config() -> dict[str, Any]:
    """The YAML defaults of `morlaif.analysis` (principles, baselines, weights, ...) plus the run-supplied seed."""
    return yaml_defaults("morlaif", "analysis", RUN_SUPPLIED)


def analysis_settings(cfg: AnalysisSettings | dict[str, Any] | None) -> AnalysisSettings:
    """The step's settings, typed once: the YAML defaults overridden by `cfg`; an unknown key (e.g. the former
    `scalarizers`: figure B's, never the weights') fails naming the closest valid one, a bad value naming its key."""
    if isinstance(cfg, AnalysisSettings):
        return cfg
    return AnalysisSettings.from_dict(merge_settings(default_config(), cfg, "analysis config"), "morlaif.analysis")


def merge_config(cfg: dict[str, Any] | None) -> dict[str, Any]:
    """The merged, checked section as a dict (what the provenance records)."""
    return analysis_settings(cfg).to_dict()


def run_analysis(
    pairs: list[dict], feedback: dict[str, list[dict]], pm_rows: list[dict], cfg: AnalysisSettings | dict | None = None
) -> dict[str, dict[str, Any]]:
    """Every output (without provenance), keyed like FILES."""
    cfg = analysis_settings(cfg)
    data = Data(pairs, feedback, pm_rows)
    principles = cfg.principles
    missing = [p for p in principles if not data.has_feedback(p)]
    if missing:
        raise ValueError(f"no feedback for principle(s) {missing}")
    stats = zscore_stats(data, principles)
    weights = compute_weights(data, cfg, stats)
    ceiling = fit_ceiling(data, principles, cfg.max_iter, cfg.l2_C)
    weights["multi_pm_ceiling"] = ceiling
    pm_principles = [p for p in [*principles, *cfg.baselines] if len(data.with_scores(data.ids("test"), [p]))]
    return {
        "weights": weights,
        "A": figure_a(data, pm_principles),
        "F": figure_f(data, cfg),
        "G": figure_g(data, cfg, stats),
    }


def main(argv: list[str] | None = None) -> None:
    from alignrepro.provenance import provenance

    p = argparse.ArgumentParser(
        prog="python -m alignrepro.methods.morlaif.analysis",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--pairs", type=Path, required=True, help="data/pairs.jsonl")
    p.add_argument("--feedback-dir", type=Path, required=True, help="folder of <principle>.jsonl feedback files")
    p.add_argument("--pm-scores", type=Path, required=True, help="pm_scores.jsonl")
    p.add_argument("--config-json", default="{}", help="analysis config as JSON over config.yaml defaults.analysis")
    p.add_argument("--tier", default="unknown")
    p.add_argument("--out-dir", type=Path, required=True)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    settings = analysis_settings(json.loads(args.config_json))  # typed once, at the entry
    cfg = settings.to_dict()  # the merged section, as the provenance recorded it
    names = [q for q in [*settings.principles, *settings.baselines] if (args.feedback_dir / f"{q}.jsonl").is_file()]
    feedback = {q: read_jsonl(args.feedback_dir / f"{q}.jsonl") for q in names}
    outputs = run_analysis(read_jsonl(args.pairs), feedback, read_jsonl(args.pm_scores), settings)
    prov = provenance(
        tier=args.tier,
        config=cfg,
        seed=settings.seed,
        inputs={
            "pairs_sha256": sha256_file(args.pairs),
            "pm_scores_sha256": sha256_file(args.pm_scores),
            "feedback_sha256": {q: sha256_file(args.feedback_dir / f"{q}.jsonl") for q in names},
        },
        analysis_config=cfg,
    )
    for key, name in FILES.items():
        atomic_write_json(args.out_dir / name, {**outputs[key], "provenance": prov})
    log.info(
        "ceiling %.3f; weights (%s): %s",
        outputs["weights"]["multi_pm_ceiling"]["accuracy"] or float("nan"),
        settings.weights,
        {k: round(v, 2) for k, v in outputs["weights"]["weights"].items()},
    )


if __name__ == "__main__":
    main()
