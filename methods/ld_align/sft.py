"""SFT of the base on disjoint real samples: the start policy of the iterations at tiny/ci. zephyr-7b-sft-full was
SFT'd on UltraChat before SPIN; SmolLM2 never saw InstructLab's answers, so without this step iteration 0 would
teach the data itself rather than self-play (README: deviations). TRL's SFTTrainer, prompt/completion loss, LoRA.

`python -m alignrepro.methods.ld_align.sft --help`
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from datasets import Dataset
from transformers import set_seed

from alignrepro.data.records import load_records
from alignrepro.errors import UserError
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

log = logging.getLogger("ld_align.sft")


def sft_rows(path: Path) -> list[dict]:
    """TRL's conversational prompt/completion rows (the loss is on the answer only)."""
    rows = [
        {
            "prompt": [{"role": "user", "content": r.instruction}],
            "completion": [{"role": "assistant", "content": r.reference}],
        }
        for r in load_records(path)
        if r.reference
    ]
    if not rows:
        raise UserError(f"{path}: no SFT samples (records need 'instruction' and a real answer in 'reference')")
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m alignrepro.methods.ld_align.sft",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--base-model", type=Path, required=True, help="model folder with model.json")
    p.add_argument("--samples", type=Path, required=True, help="sft.jsonl of the data step")
    p.add_argument("--config-json", required=True, help='{"train": {...}, "lora": {...}, "dtype": ...}')
    p.add_argument("--wandb-json", default='{"mode": "disabled", "project": "alignrepro"}')
    p.add_argument("--name", required=True)
    p.add_argument("--tier", required=True)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    cfg = json.loads(args.config_json)
    if not cfg.get("lora"):
        raise UserError("ld_align.sft: the SFT step trains a LoRA adapter; set ld_align.train.lora")
    rows = sft_rows(args.samples)
    settings = TrainSettings.from_dict(cfg["train"], run=args.name)
    dtype = choose_dtype(cfg.get("dtype", "float32"))
    tok = load_tokenizer(args.base_model, padding_side="right")
    set_seed(settings.seed)  # TRL builds the adapter before Trainer seeds
    model = load_model(args.base_model, dtype=dtype)
    wandb_cfg = json.loads(args.wandb_json)
    use_wandb = setup_wandb(wandb_cfg, args.out.parents[1] / "wandb", group="ld_align", run_name=args.name)
    from trl import SFTConfig, SFTTrainer

    sft_args = SFTConfig(
        **trainer_kwargs(settings, args.out, len(rows), dtype, run_name=args.name, use_wandb=use_wandb),
        max_length=settings.max_length,
        completion_only_loss=True,
        packing=False,
        dataset_num_proc=None,
    )
    trainer = SFTTrainer(
        model=model,
        args=sft_args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tok,
        peft_config=lora_config(cfg["lora"]),
    )
    trainer.add_callback(DivergenceGuard(args.name))
    identity = {"step": "ld_align.sft", "config": cfg, "base": input_identity(args.base_model),
                "samples": input_identity(args.samples)}  # fmt: skip
    resume = resume_checkpoint(args.out, identity)
    start = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=resume)
    if use_wandb:
        import wandb

        if wandb.run is not None:
            wandb.finish()
    save_adapter(
        trainer.model,
        args.base_model,
        args.out,
        args.name,
        {
            "method": "sft",
            "prompt_template": "chat",
            "train_metrics": result.metrics,
            "log_history": [h for h in trainer.state.log_history if "loss" in h or "train_loss" in h],
            "n_examples": len(rows),
            "dtype": str(dtype).removeprefix("torch."),
            "train_seconds": round(time.perf_counter() - start, 1),
            "resumed_from": resume,
            "provenance": provenance(tier=args.tier, config=cfg, seed=settings.seed),
        },
    )


if __name__ == "__main__":
    main()
