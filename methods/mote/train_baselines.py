"""Train one of MoTE's Table 1 self-alignment baselines as a plain LoRA adapter on the base model.

The row (methods/mote/paper.yaml `rows:` or a row folder; `--row-json` as the workflow resolved it) names the trainer:
- `trl:SFTTrainer` (sft, critique_revise, mistake_analysis): TRL SFTTrainer on the builder's prompt/completion rows
  {"id", "messages", "completion"} (conversational prompt/completion format: the loss is on the completion only,
  the base's chat template wraps both).
- `trl:DPOTrainer` (rlcd): TRL DPOTrainer on pairs {"id", "messages", "chosen", "rejected"} (for RLCD: its PM + PPO
  replaced by DPO, the project's stand-in; the adapter-disabled base is the reference). beta: the row's
  `config.beta`, else `mote.dpo.beta`; the row's `config` may also set TRL's `loss_type` and `label_smoothing`.
Budget: the same `train` block (epochs, learning rate, batch, max length, seed) and LoRA rank as MoTE (train.py), all
linear layers. Writes OUT/adapter/ and OUT/model.json (kind "lora", prompt_template "chat": the engine's generation
and the shared evaluation layer can load it).

CLI: `python -m alignrepro.methods.mote.train_baselines --method sft --base results/models/smollm2-135m-instruct
      --data results/mote/tiny/smollm2-135m-instruct/baselines/sft.jsonl --config-json '{"train": {...},
      "lora": {...}, "dpo": {"beta": 0.1}}' --tier tiny --out results/mote/tiny/.../models/baseline_sft`
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

from alignrepro.errors import UserError
from alignrepro.io import read_jsonl, sha256_file
from alignrepro.methods.mote.baselines import find_row
from alignrepro.methods.mote.moe_lora import ALL_LINEAR
from alignrepro.models import choose_dtype, load_model, load_tokenizer
from alignrepro.provenance import provenance
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

log = logging.getLogger("mote.train_baselines")
FIELDS = {"trl:SFTTrainer": ("messages", "completion"), "trl:DPOTrainer": ("messages", "chosen", "rejected")}


def _assistant(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def to_trl_rows(row: dict[str, Any], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The builder's rows in TRL's conversational prompt/completion (SFT) or preference (DPO) format."""
    need = FIELDS[row["trainer"]]
    bad = next((r for r in rows if any(k not in r for k in need)), None)
    if bad is not None:  # a user's builder made rows for the other trainer: say so, not a KeyError deep in TRL
        raise UserError(
            f"row {row['name']!r} ({row['trainer']}): its builder {row.get('data')} made a row without "
            f"{[k for k in need if k not in bad]} (a {row['trainer']} row has {list(need)}): {str(bad)[:200]}"
        )
    if row["trainer"] == "trl:DPOTrainer":
        return [{"prompt": r["messages"], "chosen": _assistant(r["chosen"]), "rejected": _assistant(r["rejected"])}
                for r in rows]  # fmt: skip
    return [{"prompt": r["messages"], "completion": _assistant(r["completion"])} for r in rows]


def build_trainer(row: dict[str, Any], model, tok, rows: list[dict], cfg: dict[str, Any], kwargs: dict[str, Any]):
    """The row's trainer on its rows, with the run's LoRA budget (the row's `config` adds trainer settings)."""
    train = cfg["train"]
    lora = {**cfg["lora"], "target_modules": cfg["lora"].get("target_modules", list(ALL_LINEAR))}
    if train.get("max_steps", -1) and train["max_steps"] > 0:
        kwargs = {**kwargs, "max_steps": train["max_steps"]}
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
        cls = DPOTrainer
    else:
        from trl import SFTConfig, SFTTrainer

        args = SFTConfig(
            **kwargs,
            max_length=train["max_length"],
            completion_only_loss=True,
            packing=False,
            dataset_num_proc=None,
            **extra,
        )
        cls = SFTTrainer
    return cls(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(to_trl_rows(row, rows)),
        processing_class=tok,
        peft_config=lora_config(lora),
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m alignrepro.methods.mote.train_baselines",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--method", required=True, help="a baseline row (methods/mote/paper.yaml rows, or a row folder)")
    p.add_argument("--row-json", help="the row's entry as the workflow resolved it (default: looked up by --method)")
    p.add_argument("--base", type=Path, required=True, help="base model folder (with model.json)")
    p.add_argument("--data", type=Path, required=True, help="baseline JSONL of mote.baselines")
    p.add_argument(
        "--config-json", required=True, help='{"train": {...}, "lora": {...}, "dtype": ..., DPO rows: "dpo": {...}}'
    )
    p.add_argument("--wandb-json", default='{"mode": "disabled", "project": "alignrepro"}')
    p.add_argument("--name", required=True)
    p.add_argument("--tier", required=True)
    p.add_argument("--out", type=Path, required=True, help="model folder (adapter/, model.json, checkpoints/)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    cfg = json.loads(args.config_json)
    train = cfg["train"]
    row = json.loads(args.row_json) if args.row_json else find_row(args.method)
    rows = read_jsonl(args.data)
    if not rows:
        # e.g. RLCD at ci: a random model's two answers coincide and every pair is dropped. Counted fallback, not a
        # crash: the adapter is saved untrained (LoRA B = 0, i.e. the base model) and model.json says so.
        log.warning(
            "%s: no training rows for %s: saving the UNTRAINED adapter (= the base model)", args.data, args.method
        )

    dtype = choose_dtype(cfg.get("dtype", "float32"))
    tok = load_tokenizer(args.base, padding_side="right")
    tok.model_max_length = train["max_length"]  # SmolLM2 says 1e30
    # torch seeds each process at random and TRL builds the LoRA adapter before Trainer seeds: seed it here
    set_seed(train["seed"])
    model = load_model(args.base, dtype=dtype)
    wandb_cfg = json.loads(args.wandb_json)
    use_wandb = setup_wandb(wandb_cfg, args.out.parent / "wandb", group="mote", run_name=args.name)
    settings = TrainSettings.from_dict(train, run=args.name)
    kwargs = trainer_kwargs(settings, args.out, len(rows), dtype, run_name=args.name, use_wandb=use_wandb)
    start, resume, metrics, history = time.perf_counter(), None, {}, []
    if rows:
        trainer = build_trainer(row, model, tok, rows, cfg, kwargs)
        trainer.add_callback(DivergenceGuard(args.name))
        identity = {"step": "mote.train_baselines", "method": args.method, "row": row, "config": cfg}
        identity |= {"base": input_identity(args.base), "data": input_identity(args.data)}
        resume = resume_checkpoint(args.out, identity)
        metrics = trainer.train(resume_from_checkpoint=resume).metrics
        history = [h for h in trainer.state.log_history if "loss" in h or "train_loss" in h]
        model = trainer.model
    else:
        from peft import get_peft_model

        model = get_peft_model(model, lora_config({**cfg["lora"], "target_modules": list(ALL_LINEAR)}))
    seconds = round(time.perf_counter() - start, 1)
    if use_wandb:
        import wandb

        if wandb.run is not None:
            wandb.run.summary.update({"method": args.method, "n_examples": len(rows)})
            wandb.finish()
    save_adapter(
        model,
        args.base,
        args.out,
        args.name,
        {
            "method": args.method,
            "row": row,
            "paper": "mote",
            "prompt_template": "chat",
            "train_metrics": metrics,
            "untrained_no_data": not rows,
            "log_history": history,
            "n_examples": len(rows),
            "dtype": str(dtype).removeprefix("torch."),
            "train_seconds": seconds,
            "resumed_from": resume,
            "data_sha256": sha256_file(args.data),
            "provenance": provenance(
                tier=args.tier, config=cfg, seed=train["seed"], data_sha256=sha256_file(args.data)
            ),
        },
    )
    log.info("%s trained in %.1f s -> %s", args.method, seconds, args.out)


if __name__ == "__main__":
    main()
