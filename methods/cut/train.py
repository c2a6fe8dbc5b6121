"""Train one CUT-paper model (CUT or a baseline) with LoRA on judged triplets. Read top to bottom:

  1. select the triplets (same selection for every method)  2. build the method's dataset
  3. load the base model (fp32/bf16 by machine; 8-bit at the full tier)  4. train with the method's trainer
     (CUTTrainer, or TRL SFTTrainer / DPOTrainer), resuming a killed run of the same settings
  5. save the adapter + model.json (provenance)

`python -m alignrepro.methods.cut.train --help`
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

from datasets import Dataset
from transformers import set_seed

from alignrepro.data.records import load_records
from alignrepro.errors import UserError
from alignrepro.io import read_jsonl, stable_hash
from alignrepro.methods.cut import baseline_data as bd
from alignrepro.models import choose_dtype, load_model, load_tokenizer
from alignrepro.provenance import provenance
from alignrepro.rows import load_ref, paper_rows
from alignrepro.training import (
    DivergenceGuard,
    TrainSettings,
    input_identity,
    lora_config,
    resume_checkpoint,
    save_adapter,
    setup_wandb,
    trainer_kwargs,
)

log = logging.getLogger("cut.train")


def _trl_trainer(trainer_cls, args, rows: list[dict], model, tok, lora: dict[str, Any]):
    """A TRL trainer on a LoRA adapter (for DPO the adapter-disabled base is the reference: no second copy)."""
    trainer = trainer_cls(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tok,
        peft_config=lora_config(lora),
    )
    return trainer, {"n_examples": len(rows)}


def build_trainer(row: dict[str, Any], model, tok, triplets, refinements, cfg: dict[str, Any], kwargs: dict[str, Any]):
    """The row's trainer on the row's data: CUT's own, or TRL's SFT / DPO on what the row's builder returns."""
    train = cfg["train"]
    if row["trainer"] == "cut":
        from peft import get_peft_model
        from transformers import TrainingArguments

        from alignrepro.methods.cut.examples import CUTDataCollator, build_cut_examples
        from alignrepro.methods.cut.trainer import CUTTrainer

        c = cfg["cut"]
        examples, stats = build_cut_examples(
            triplets,
            tok,
            max_length=train["max_length"],
            align_p_ratio=None,
            seed=train["seed"],
            keep_error_judgments=c["keep_error_judgments"],
        )
        args = TrainingArguments(**kwargs, remove_unused_columns=False)
        trainer = CUTTrainer(
            model=get_peft_model(model, lora_config(train["lora"])),
            args=args,
            train_dataset=Dataset.from_list(examples),
            data_collator=CUTDataCollator(tok.pad_token_id),
            threshold=c["threshold"],
            weight_unlike=c["weight_unlike"],
            gamma=c["gamma"],
        )
        return trainer, {**stats, "n_examples": len(examples)}
    rows = load_ref(row["data"], row.get("folder"))(triplets, refinements)
    if not rows:
        raise UserError(f"row {row['name']!r}: its builder {row['data']} made no training rows from the triplets")
    extra = dict(row.get("config") or {})
    if row["trainer"] == "trl:DPOTrainer":
        from trl import DPOConfig, DPOTrainer

        args = DPOConfig(
            **kwargs,
            beta=extra.pop("beta", cfg["dpo"]["beta"]),
            max_length=train["max_length"],
            truncation_mode="keep_end",
            precompute_ref_log_probs=False,
            **extra,
        )
        return _trl_trainer(DPOTrainer, args, rows, model, tok, train["lora"])
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(
        **kwargs,
        max_length=train["max_length"],
        completion_only_loss=True,
        packing=False,
        dataset_num_proc=None,
        **extra,
    )
    return _trl_trainer(SFTTrainer, args, rows, model, tok, train["lora"])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m alignrepro.methods.cut.train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--method", required=True, help="a CUT row (methods/cut/paper.yaml rows, or a row folder)")
    p.add_argument("--row-json", help="the row's entry as the workflow resolved it (default: looked up by --method)")
    p.add_argument("--base-model", type=Path, required=True, help="model folder with model.json to start from")
    p.add_argument("--triplets", type=Path, required=True, help="JSONL of judged records (output + judgment)")
    p.add_argument("--refinements", type=Path, help="JSONL {id, output} of ILF refinements (ilf_mle, ilf_dpo)")
    p.add_argument("--config-json", required=True, help="the paper config subtree (train, cut, dpo, wandb) as JSON")
    p.add_argument(
        "--wandb-json",
        default='{"mode": "disabled", "project": "alignrepro"}',
        help="W&B settings (kept out of --config-json so that they never trigger a retrain)",
    )
    p.add_argument("--name", required=True, help="model name, e.g. cut-tiny-hindsight")
    p.add_argument("--tier", required=True)
    p.add_argument("--out", type=Path, required=True, help="output folder (adapter/, model.json, checkpoints/)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    cfg = json.loads(args.config_json)
    train = cfg["train"]
    row = json.loads(args.row_json) if args.row_json else paper_rows("cut")[args.method].public()

    records = load_records(args.triplets)
    triplets, selection = bd.select_triplets(
        records, cfg["cut"]["align_p_ratio"], train["seed"], cfg["cut"]["keep_error_judgments"]
    )
    refinements = {r["id"]: r["output"] for r in read_jsonl(args.refinements)} if args.refinements else {}
    dtype = choose_dtype(cfg.get("dtype", "float32"))
    tok = load_tokenizer(args.base_model, padding_side="right")
    # torch seeds each process at random and TRL builds the LoRA adapter before Trainer seeds: seed it here
    set_seed(train["seed"])
    model = load_model(args.base_model, dtype=dtype, load_in_8bit=train.get("load_in_8bit", False))
    wandb_cfg = json.loads(args.wandb_json)
    use_wandb = setup_wandb(wandb_cfg, args.out.parents[2] / "wandb", group="cut", run_name=args.name)
    n_for_budget = len(triplets) * row.get("budget_factor", 1)
    settings = TrainSettings.from_dict(train, run=args.name)
    kwargs = trainer_kwargs(settings, args.out, n_for_budget, dtype, run_name=args.name, use_wandb=use_wandb)
    trainer, data_stats = build_trainer(row, model, tok, triplets, refinements, cfg, kwargs)

    trainer.add_callback(DivergenceGuard(args.name))
    # a killed run of these very settings resumes; anything else (a changed hyper-parameter) trains afresh
    identity = {
        "step": "cut.train",
        "method": args.method,
        "row": row,
        "config": cfg,
        "base": input_identity(args.base_model),
        "triplets": input_identity(args.triplets),
        "refinements": input_identity(args.refinements),
    }
    resume = resume_checkpoint(args.out, identity)
    start = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=resume)
    history = [h for h in trainer.state.log_history if "loss" in h or "train_loss" in h]
    if use_wandb:
        import wandb

        if wandb.run is not None:
            wandb.run.summary.update({"selection": selection, "data": data_stats})
            wandb.finish()
    save_adapter(
        trainer.model,
        args.base_model,
        args.out,
        args.name,
        {
            "method": args.method,
            "row": row,
            "prompt_template": "alpaca",  # CUT trains (and evaluates) every model in the Alpaca format
            "train_metrics": result.metrics,
            "log_history": history,
            "selection": selection,
            "data": data_stats,
            "dtype": str(dtype).removeprefix("torch."),
            "train_seconds": round(time.perf_counter() - start, 1),
            "resumed_from": resume,
            "triplets_sha256": stable_hash([r.to_dict() for r in records], 64),
            "provenance": provenance(tier=args.tier, config=cfg, seed=train["seed"]),
        },
    )


if __name__ == "__main__":
    main()
