"""Table 6: training cost of the step-skip mask trick (one pass over D_train) vs the explicit datasets
(D_train ∪ D_extra_1 ∪ D_extra_2, plain causal), both trained by train.py for the same epochs.

Time: each model's measured wall time of Trainer.train (model.json `train_seconds`; a resumed run is flagged as not
comparable). FLOPs: measured, not 6·N·D — torch.utils.flop_counter.FlopCounterMode counts one forward+backward of
the real model (frozen base, LoRA experts, step tokens, the arch's routing) at three sequence lengths; a sequence's
cost is exactly quadratic in its length (linear layers ∝ T, attention ∝ T²), so the fit gives every training
sequence's FLOPs (checked on a fourth length, `fit_max_rel_error`). The total is Σ over the training sequences ×
epochs, without padding (padding depends on the random batching; its waste is not counted for either side).
Dense-masked experts compute every expert present in a sequence on all its tokens, so the fit is kept per number
of present experts. 6·N·D (N = all parameters, D = training tokens) is reported beside it for reference.

`python -m alignrepro.methods.mote.efficiency --mask-model DIR --explicit-model DIR --chains chains.jsonl --tier T
 --out results/mote/<tier>/table6_cost.json`
"""

from __future__ import annotations

import argparse
import json
import logging
from fractions import Fraction
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from alignrepro.io import atomic_write_json, read_json, read_jsonl
from alignrepro.methods.mote.steps import IGNORE_INDEX, STEP_IDS
from alignrepro.methods.mote.train import build_model, chain_loss, encode_rows, expand_explicit
from alignrepro.provenance import provenance

log = logging.getLogger("mote.efficiency")
REPORTED = {  # paper App. B, Table 6 (relative to the explicit datasets)
    "explicit_extra_datasets": {"flops_rel": 1.0, "time_rel": 1.0},
    "MoTE": {"flops_rel": 0.35, "time_rel": 0.67},
}


def _synthetic(length: int, n_steps: int, vocab: int) -> dict[str, torch.Tensor]:
    """One sequence of `length` tokens: a query quarter, then n_steps chain steps (FLOPs ignore token values)."""
    q = max(1, length // 4)
    steps = [STEP_IDS["query"]] * q
    chain = length - q
    for k in range(n_steps):
        steps += [k + 1] * (chain // n_steps + (1 if k < chain % n_steps else 0))
    ids = torch.randint(10, vocab - 10, (1, length))
    labels = ids.clone()
    labels[:, :q] = IGNORE_INDEX
    return {
        "input_ids": ids,
        "attention_mask": torch.ones(1, length, dtype=torch.long),
        "labels": labels,
        "step_ids": torch.tensor([steps]),
        "query_expert": torch.zeros(1, dtype=torch.long),
    }


def count_flops(model, batch: dict[str, torch.Tensor]) -> int:
    """FLOPs of one training forward+backward (the loss the trainer uses)."""
    model.zero_grad(set_to_none=True)
    with FlopCounterMode(display=False) as counter:
        loss, _, aux = chain_loss(model, batch)
        (loss + (aux if aux is not None else 0)).backward()
    model.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())


def quadratic_fit(points: list[tuple[int, int]]) -> tuple[Fraction, Fraction, Fraction]:
    """Exact (rational) a + b·T + c·T² through three points."""
    (x1, y1), (x2, y2), (x3, y3) = [(Fraction(x), Fraction(y)) for x, y in points]
    c = ((y3 - y1) / (x3 - x1) - (y2 - y1) / (x2 - x1)) / (x3 - x2)
    b = (y2 - y1) / (x2 - x1) - c * (x1 + x2)
    a = y1 - b * x1 - c * x1 * x1
    return a, b, c


class FlopModel:
    """FLOPs(T, number of chain steps present) of one training sequence, from measured counts."""

    def __init__(self, model, vocab: int, lengths: tuple[int, int, int, int] = (32, 64, 128, 96)):
        self.model, self.vocab, self.lengths = model, vocab, lengths
        self.fits: dict[int, tuple[Fraction, Fraction, Fraction]] = {}
        self.fit_errors: dict[int, float] = {}

    def _fit(self, n_steps: int) -> tuple[Fraction, Fraction, Fraction]:
        if n_steps not in self.fits:
            torch.manual_seed(0)
            pts = [(t, count_flops(self.model, _synthetic(t, n_steps, self.vocab))) for t in self.lengths]
            fit = quadratic_fit(pts[:3])
            t4, y4 = pts[3]
            pred = fit[0] + fit[1] * t4 + fit[2] * t4 * t4
            self.fits[n_steps] = fit
            self.fit_errors[n_steps] = float(abs(pred - y4) / y4)
        return self.fits[n_steps]

    def __call__(self, length: int, n_steps: int) -> float:
        a, b, c = self._fit(n_steps)
        return float(a + b * length + c * length * length)


def sequences(meta: dict[str, Any], chains: Path, tok) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    rows = read_jsonl(chains)
    if meta["explicit_datasets"]:
        rows = [v for r in rows for v in expand_explicit(r)]
    return encode_rows(rows, tok, meta["config"]["train"]["max_length"])


def cost_of(model_dir: Path, chains: Path) -> dict[str, Any]:
    meta = read_json(model_dir / "model.json")
    model, tok, _ = build_model(meta["arch"], Path(meta["base"]), meta["config"], meta["explicit_datasets"])
    model.train()
    examples, stats = sequences(meta, chains, tok)
    flop_model = FlopModel(model, len(tok))
    epochs = meta["config"]["train"]["epochs"]
    per_epoch = 0.0
    for e in examples:
        n_steps = len({s for s in e["step_ids"] if s != STEP_IDS["query"]})
        per_epoch += flop_model(len(e["input_ids"]), n_steps)
    n_params = sum(p.numel() for p in model.parameters())
    tokens = stats["n_tokens"] * epochs
    return {
        "model": str(model_dir),
        "arch": meta["arch"],
        "explicit_datasets": meta["explicit_datasets"],
        "skip_p": meta.get("skip_p"),
        "epochs": epochs,
        "n_sequences": stats["n_examples"],
        "n_tokens_per_epoch": stats["n_tokens"],
        "flops": per_epoch * epochs,
        "flops_6ND": 6.0 * n_params * tokens,
        "fit_max_rel_error": max(flop_model.fit_errors.values(), default=0.0),
        "time_s": meta["train_seconds"],
        "optimizer_steps": meta["optimizer_steps"],
        "seconds_per_step_median": meta.get("seconds_per_step_median"),
        "time_comparable": meta.get("resumed_from") is None,
        "adapter_sha256": meta["adapter_sha256"],
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m alignrepro.methods.mote.efficiency",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--mask-model", type=Path, required=True, help="train.py folder trained with the mask trick")
    p.add_argument("--explicit-model", type=Path, required=True, help="train.py folder, --explicit-datasets")
    p.add_argument("--chains", type=Path, required=True, help="the chains both were trained on")
    p.add_argument("--tier", required=True)
    p.add_argument("--out", type=Path, required=True, help="output json")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    mask, explicit = cost_of(args.mask_model, args.chains), cost_of(args.explicit_model, args.chains)
    problems = []
    if mask["explicit_datasets"] or not explicit["explicit_datasets"]:
        problems.append("--mask-model must be trained without and --explicit-model with --explicit-datasets")
    if mask["epochs"] != explicit["epochs"] or mask["arch"] != explicit["arch"]:
        problems.append("the two models differ in arch or epochs")
    if not (mask["time_comparable"] and explicit["time_comparable"]):
        problems.append("a run was resumed: its train_seconds is not one uninterrupted run")
    for p_ in problems:
        log.warning(p_)
    rows = {"explicit_extra_datasets": explicit, "MoTE": mask}
    for r in rows.values():
        r["flops_rel"] = r["flops"] / explicit["flops"]
        r["flops_6ND_rel"] = r["flops_6ND"] / explicit["flops_6ND"]
        r["time_rel"] = r["time_s"] / explicit["time_s"]
    result = {
        "table": "table6",
        "rows": rows,
        "reported": REPORTED,
        "flop_method": "FlopCounterMode on forward+backward, quadratic fit in sequence length per number of "
        "present steps, summed over the unpadded training sequences × epochs",
        "time_method": "wall seconds of Trainer.train of each model (model.json train_seconds)",
        "problems": problems,
        "provenance": provenance(
            tier=args.tier,
            config={"mask": mask["adapter_sha256"], "explicit": explicit["adapter_sha256"]},
            chains=str(args.chains),
        ),
    }
    atomic_write_json(args.out, result)
    print(json.dumps({k: {m: v[m] for m in ("flops_rel", "time_rel", "n_sequences")} for k, v in rows.items()}))


if __name__ == "__main__":
    main()
