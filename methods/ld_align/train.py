"""Train one SPIN / LD-Align iteration: a LoRA adapter over the previous iteration (or, with train.lora null, the
whole model: the paper's full fine-tuning against a frozen copy), on weighted (real, generated) pairs.

  1. read the pairs ({"id", "prompt", "real", "generated", "weight"}; weight 1 everywhere is SPIN)
  2. load the previous iteration merged: it is both the starting policy and, with the new adapter disabled, the
     frozen reference (SPIN's opponent)
  3. train with WeightedSPINTrainer (TRL's DPOTrainer with mySPIN's per-pair weight), resuming a killed run of the
     same settings
  4. save the adapter + model.json whose `base` is the previous iteration (a LoRA chain)

`python -m alignrepro.methods.ld_align.train --help`
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

from datasets import Dataset
from transformers import set_seed

from alignrepro.errors import UserError
from alignrepro.io import read_jsonl
from alignrepro.models import choose_dtype, load_model, load_tokenizer
from alignrepro.provenance import provenance
from alignrepro.training import (
    DivergenceGuard,
    TrainSettings,
    input_identity,
    lora_config,
    resume_checkpoint,
    save_adapter,
    save_full_model,
    setup_wandb,
    trainer_kwargs,
)

log = logging.getLogger("ld_align.train")
OPTIMIZERS = ("rmsprop", "adamw_torch")  # SPIN trains with RMSprop (uclaml/SPIN configs/config*.yaml `optim`)
LOSS_TYPES = ("sigmoid", "hinge")


def load_pairs(path: Path) -> list[dict[str, Any]]:
    """The pairs file as TRL conversational preference rows (+ `weight`); a bad row fails naming the file and id."""
    rows = []
    for n, r in enumerate(read_jsonl(path), 1):
        rid = r.get("id", f"line {n}") if isinstance(r, dict) else f"line {n}"
        if not isinstance(r, dict) or any(k not in r for k in ("id", "prompt", "real", "generated", "weight")):
            raise UserError(f"{path}: row {rid!r}: expected keys id, prompt, real, generated, weight")
        for key in ("prompt", "real", "generated"):
            if not isinstance(r[key], str) or not r[key].strip():
                raise UserError(f"{path}: row {rid!r}: empty {key!r} (empty generations must be dropped upstream)")
        w = r["weight"]
        if isinstance(w, bool) or not isinstance(w, int | float) or not math.isfinite(w) or w < 0:
            raise UserError(f"{path}: row {rid!r}: weight {w!r} (expected a finite number >= 0)")
        rows.append(
            {
                "prompt": [{"role": "user", "content": r["prompt"]}],
                "chosen": [{"role": "assistant", "content": r["real"]}],
                "rejected": [{"role": "assistant", "content": r["generated"]}],
                "weight": float(w),
            }
        )
    if not rows:
        raise UserError(f"{path}: no pairs")
    return rows


def weight_stats(rows: list[dict[str, Any]]) -> dict[str, float]:
    w = [r["weight"] for r in rows]
    return {"mean": sum(w) / len(w), "min": min(w), "max": max(w), "n": len(w)}


def build_trainer(model, tok, rows: list[dict[str, Any]], cfg: dict[str, Any], kwargs: dict[str, Any]):
    """WeightedSPINTrainer on a new LoRA adapter: the adapter-disabled model (the policy folder) is the reference."""
    from trl import DPOConfig

    from alignrepro.methods.ld_align.spin_trainer import WeightedSPINTrainer

    if cfg["loss_type"] not in LOSS_TYPES:
        raise UserError(f"loss_type {cfg['loss_type']!r}: expected one of {list(LOSS_TYPES)}")
    if cfg["optimizer"] not in OPTIMIZERS:
        raise UserError(f"optimizer {cfg['optimizer']!r}: expected one of {list(OPTIMIZERS)}")
    args = DPOConfig(
        **{**kwargs, "optim": cfg["optimizer"]},
        beta=cfg["beta"],
        max_length=cfg["train"]["max_length"],
        truncation_mode="keep_end",
        precompute_ref_log_probs=False,
        loss_type=[cfg["loss_type"]],
    )
    lora = cfg["train"].get("lora")
    # LoRA: the adapter-disabled model is the reference; full fine-tuning (the paper's): a frozen copy of the policy
    reference = {"peft_config": lora_config(lora)} if lora else {"ref_model": copy.deepcopy(model).eval()}
    return WeightedSPINTrainer(
        model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok, **reference
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(
        prog="python -m alignrepro.methods.ld_align.train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--policy", type=Path, required=True, help="previous iteration's model folder (policy + reference)")
    p.add_argument("--pairs", type=Path, required=True, help="JSONL {id, prompt, real, generated, weight}")
    p.add_argument(
        "--config-json",
        required=True,
        help='{"train": TrainSettings incl. lora and seed, "beta", "loss_type", "optimizer", "dtype"} as JSON',
    )
    p.add_argument(
        "--wandb-json",
        default='{"mode": "disabled", "project": "alignrepro"}',
        help="W&B settings (kept out of --config-json so that they never trigger a retrain)",
    )
    p.add_argument("--wandb-dir", type=Path, help="W&B folder when --wandb-json names no dir")
    p.add_argument("--name", required=True, help="model name, e.g. ld_align-ci-iter1")
    p.add_argument("--tier", required=True)
    p.add_argument("--arm", required=True, help="spin, ld_align or an ablation's name (recorded)")
    p.add_argument("--iteration", type=int, required=True, help="SPIN iteration t (recorded)")
    p.add_argument("--out", type=Path, required=True, help="output folder (adapter/, model.json, checkpoints/)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    cfg = json.loads(args.config_json)
    missing = [k for k in ("train", "beta", "loss_type", "optimizer") if k not in cfg]
    if missing:
        raise UserError(f"run {args.name!r}: --config-json lacks {missing}")
    train = cfg["train"]
    settings = TrainSettings.from_dict(train, run=args.name)

    rows = load_pairs(args.pairs)
    dtype = choose_dtype(cfg.get("dtype", "float32"))
    tok = load_tokenizer(args.policy, padding_side="right")
    # torch seeds each process at random and TRL builds the LoRA adapter before Trainer seeds: seed it here
    set_seed(settings.seed)
    model = load_model(args.policy, dtype=dtype, load_in_8bit=settings.load_in_8bit)
    # out = results/ld_align/<tier>/models/<arm>/iter<t>: one W&B folder per paper and tier, as the other steps use
    wandb_dir = args.wandb_dir or args.out.parents[2] / "wandb"
    use_wandb = setup_wandb(json.loads(args.wandb_json), wandb_dir, group="ld_align", run_name=args.name)
    kwargs = trainer_kwargs(settings, args.out, len(rows), dtype, run_name=args.name, use_wandb=use_wandb)
    trainer = build_trainer(model, tok, rows, cfg, kwargs)
    trainer.add_callback(DivergenceGuard(args.name))
    # a killed run of these very settings resumes; anything else (a changed hyper-parameter) trains afresh
    identity = {
        "step": "ld_align.train",
        "arm": args.arm,
        "iteration": args.iteration,
        "config": cfg,
        "policy": input_identity(args.policy),
        "pairs": input_identity(args.pairs),
    }
    resume = resume_checkpoint(args.out, identity)
    start = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=resume)
    history = [h for h in trainer.state.log_history if "loss" in h or "train_loss" in h]
    weights = weight_stats(rows)
    if use_wandb:
        import wandb

        if wandb.run is not None:
            wandb.run.summary.update({"arm": args.arm, "iteration": args.iteration, "weights": weights})
            wandb.finish()
    extra = {
        "arm": args.arm,
        "iteration": args.iteration,
        "prompt_template": "chat",  # trained on the policy's chat template (TRL conversational rows)
        "beta": cfg["beta"],
        "loss_type": cfg["loss_type"],
        "optimizer": cfg["optimizer"],
        "pair_weights": weights,
        "train_metrics": result.metrics,
        "log_history": history,
        "dtype": str(dtype).removeprefix("torch."),
        "train_seconds": round(time.perf_counter() - start, 1),
        "resumed_from": resume,
        "pairs_sha256": input_identity(args.pairs),
        "provenance": provenance(tier=args.tier, config=cfg, seed=settings.seed),
    }
    if settings.lora:  # an adapter over the previous iteration (a LoRA chain)
        return save_adapter(trainer.model, args.policy, args.out, args.name, extra)
    return save_full_model(trainer.model, tok, args.policy, args.out, args.name, extra)  # the whole model, weights/


if __name__ == "__main__":
    main()
