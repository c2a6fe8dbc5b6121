"""Train one of MoTE's Table 1 self-alignment baselines as a plain LoRA adapter on the base model.

- sft, critique_revise, mistake_analysis: TRL SFTTrainer on the data helper's prompt/completion rows
  {"id", "messages", "completion"} (conversational prompt/completion format: the loss is on the completion only,
  the base's chat template wraps both).
- rlcd: TRL DPOTrainer on the contrast pairs {"id", "messages", "chosen", "rejected"} (RLCD's PM + PPO replaced by
  DPO, the project's stand-in; the adapter-disabled base is the reference).
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

from alignrepro.io import read_jsonl, sha256_file
from alignrepro.methods.mote.moe_lora import ALL_LINEAR
from alignrepro.models import choose_dtype, load_model, load_tokenizer
from alignrepro.provenance import provenance
from alignrepro.training import (
    DivergenceGuard,
    input_identity,
    lora_config,
    resume_checkpoint,
    save_adapter,
    setup_wandb,
    trainer_kwargs,
)

log = logging.getLogger("mote.train_baselines")
SFT_METHODS = ("sft", "critique_revise", "mistake_analysis")
METHODS = (*SFT_METHODS, "rlcd")


def _assistant(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def to_trl_rows(method: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The data helper's rows in TRL's conversational prompt/completion (SFT) or preference (DPO) format."""
    if method == "rlcd":
        return [{"prompt": r["messages"], "chosen": _assistant(r["chosen"]), "rejected": _assistant(r["rejected"])}
                for r in rows]  # fmt: skip
    return [{"prompt": r["messages"], "completion": _assistant(r["completion"])} for r in rows]


def build_trainer(method: str, model, tok, rows: list[dict], cfg: dict[str, Any], kwargs: dict[str, Any]):
    train = cfg["train"]
    lora = {**cfg["lora"], "target_modules": cfg["lora"].get("target_modules", list(ALL_LINEAR))}
    if train.get("max_steps", -1) and train["max_steps"] > 0:
        kwargs = {**kwargs, "max_steps": train["max_steps"]}
    if method == "rlcd":
        from trl import DPOConfig, DPOTrainer

        args = DPOConfig(
            **kwargs,
            beta=cfg["dpo"]["beta"],
            max_length=train["max_length"],
            truncation_mode="keep_end",
            precompute_ref_log_probs=False,
        )
        cls = DPOTrainer
    else:
        from trl import SFTConfig, SFTTrainer

        args = SFTConfig(
            **kwargs, max_length=train["max_length"], completion_only_loss=True, packing=False, dataset_num_proc=None
        )
        cls = SFTTrainer
    return cls(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(to_trl_rows(method, rows)),
        processing_class=tok,
        peft_config=lora_config(lora),
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m alignrepro.methods.mote.train_baselines",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--method", choices=METHODS, required=True)
    p.add_argument("--base", type=Path, required=True, help="base model folder (with model.json)")
    p.add_argument("--data", type=Path, required=True, help="baseline JSONL of mote.baselines")
    p.add_argument("--config-json", required=True, help='{"train": {...}, "lora": {...}, "dpo": {...}, "dtype": ...}')
    p.add_argument("--wandb-json", default='{"mode": "disabled", "project": "alignrepro"}')
    p.add_argument("--name", required=True)
    p.add_argument("--tier", required=True)
    p.add_argument("--out", type=Path, required=True, help="model folder (adapter/, model.json, checkpoints/)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    cfg = json.loads(args.config_json)
    train = cfg["train"]
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
    use_wandb = setup_wandb(json.loads(args.wandb_json), args.out.parent / "wandb", group=f"mote-{args.tier}")
    kwargs = trainer_kwargs(train, args.out, len(rows), dtype, run_name=args.name, use_wandb=use_wandb)
    start, resume, metrics, history = time.perf_counter(), None, {}, []
    if rows:
        trainer = build_trainer(args.method, model, tok, rows, cfg, kwargs)
        trainer.add_callback(DivergenceGuard(args.name))
        identity = {"step": "mote.train_baselines", "method": args.method, "config": cfg}
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
