"""MORLAIF figure B: the combined accuracy of every scalarizer row vs the human labels, beside the single-PM baselines
and the multi-PM ceiling (paper note §4).

Its own step, after the analysis: the principle weights (analysis/weights.json, which every PPO arm reads) do not
depend on the rows, so a new scalarizer row reruns this step and its own PPO arm, never the other arms.

Inputs: data/pairs.jsonl, pm_scores.jsonl, analysis/weights.json; the rows as --arms-json (methods/morlaif/arms.py
`Arm.to_json()`, in figure order). Output (json, with provenance), read by the tables step:

  fig_b_objective_accuracy.json   objectives: each row's scalarizer on the z-scored, weighted PM scores of a and b
                                  (the same z-score stats and weights as its PPO reward; prefer the larger, a tie is
                                  B) vs the human labels of the labelled test pairs; baselines: the single-PM
                                  baselines (cai PM, hhh PM, raw scores); multi_pm_ceiling: from weights.json.
                                  Each objective and baseline keeps `per_item` {pair id: 1 right / 0 wrong}, so
                                  two of them compare paired on the same pairs (McNemar: the tables step)

`python -m alignrepro.methods.morlaif.figure_b --help`
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import torch

from alignrepro.io import atomic_write_json, content_sha256, read_json, read_jsonl
from alignrepro.methods.morlaif.analysis import BASELINE_NAMES, Data, accuracy, default_config, zscored
from alignrepro.methods.morlaif.arms import Arm
from alignrepro.methods.morlaif.scalarizers import scalarize

log = logging.getLogger("morlaif.figure_b")
FILE = "fig_b_objective_accuracy.json"


def _scored(data: Data, ids: Any, pred: Any, truth: Any) -> dict[str, Any]:
    """accuracy() plus the per-pair outcomes by pair id (1 = agrees with the human label)."""
    right = (pred == truth).astype(int).tolist() if len(ids) else []
    return {**accuracy(pred, truth), "per_item": {data.ids_[i]: r for i, r in zip(ids, right, strict=True)}}


def figure_b(data: Data, weights_doc: dict[str, Any], arms: list[Arm], baselines: list[str]) -> dict[str, Any]:
    principles = weights_doc["principles"]
    test = data.with_scores(data.ids("test", labelled=True), principles)
    truth = data.human(test)
    stats = weights_doc["zscore"]
    za = torch.tensor(zscored(data, test, principles, stats, "a"))
    zb = torch.tensor(zscored(data, test, principles, stats, "b"))
    w = torch.tensor([weights_doc["weights"][p] for p in principles], dtype=torch.float64)
    objectives = {}
    for arm in arms:
        if not arm.weighted:
            raise ValueError(f"row {arm.name!r} scores one PM ({arm.pms}): a figure B baseline, not an objective")
        if not len(test):
            objectives[arm.name] = accuracy(truth, truth)  # n = 0: accuracy None
            continue
        fn = arm.function()
        ra = scalarize(fn, za, w, **arm.params)
        rb = scalarize(fn, zb, w, **arm.params)
        objectives[arm.name] = _scored(data, test, (ra > rb).int().numpy(), truth)
    single = {}
    for b in baselines:
        ids = data.with_scores(data.ids("test", labelled=True), [b])
        if not len(ids):
            continue
        pred = (data.pm(ids, [b], "a")[:, 0] > data.pm(ids, [b], "b")[:, 0]).astype(int)
        single[BASELINE_NAMES.get(b, b)] = {**_scored(data, ids, pred, data.human(ids)), "pm": b}
    ceiling = weights_doc["multi_pm_ceiling"]
    return {
        "split": "test",
        "reference": "human label (labelled pairs)",
        "weights_mode": weights_doc["mode"],
        "labels": {a.name: a.label for a in arms},
        "scalarizer_params": {a.name: a.params for a in arms},
        "objectives": objectives,
        "baselines": single,
        "multi_pm_ceiling": {k: ceiling[k] for k in ("accuracy", "n", "correct", "ci95")},
    }


def run_figure_b(
    pairs: list[dict], pm_rows: list[dict], weights_doc: dict[str, Any], arms: list[Arm], baselines: list[str]
) -> dict[str, Any]:
    """Figure B without provenance (no feedback needed: the ceiling was fitted by the analysis step)."""
    return figure_b(Data(pairs, {}, pm_rows), weights_doc, arms, baselines)


def main(argv: list[str] | None = None) -> None:
    from alignrepro.provenance import provenance

    p = argparse.ArgumentParser(
        prog="python -m alignrepro.methods.morlaif.figure_b",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--pairs", type=Path, required=True, help="data/pairs.jsonl")
    p.add_argument("--pm-scores", type=Path, required=True, help="pm_scores.jsonl")
    p.add_argument("--weights", type=Path, required=True, help="analysis/weights.json")
    p.add_argument("--arms-json", required=True, help="[Arm.to_json(), ...]: the scalarizer rows, in figure order")
    p.add_argument("--baselines", nargs="*", default=list(default_config()["baselines"]), help="single-PM baselines")
    p.add_argument("--seed", type=int, default=0, help="recorded only (figure B samples nothing)")
    p.add_argument("--tier", default="unknown")
    p.add_argument("--out", type=Path, required=True, help="analysis/fig_b_objective_accuracy.json")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    arms = [Arm.from_json(a) for a in json.loads(args.arms_json)]
    weights_doc = read_json(args.weights)
    out = run_figure_b(read_jsonl(args.pairs), read_jsonl(args.pm_scores), weights_doc, arms, args.baselines)
    prov = provenance(
        tier=args.tier,
        config={"arms": [a.to_json() for a in arms], "baselines": args.baselines},
        seed=args.seed,
        inputs={
            "pairs_sha256": content_sha256(args.pairs),  # what the files say, not when they were written
            "pm_scores_sha256": content_sha256(args.pm_scores),
            "weights_sha256": content_sha256(args.weights),
        },
    )
    atomic_write_json(args.out, {**out, "provenance": prov})
    log.info("%s", {k: v["accuracy"] for k, v in out["objectives"].items()})


if __name__ == "__main__":
    main()
