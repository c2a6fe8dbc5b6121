"""Shared training plumbing: LoRA config, trainer arguments from the config, resume, W&B, saving adapters.

Each method keeps its own trainer (TRL's SFT/DPO trainers, CUT's own); this module only removes the copy-paste
between them, so that every method of a table gets the same budget, seed and logging.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch

from alignrepro.io import atomic_write_json, sha256_dir
from alignrepro.models import model_identity


def lora_config(cfg: dict[str, Any]):
    from peft import LoraConfig

    return LoraConfig(
        r=cfg["r"],
        lora_alpha=cfg["alpha"],
        lora_dropout=cfg["dropout"],
        # "all-linear" (PEFT: every linear layer but the output head) stays a string: models name their own layers
        target_modules=cfg["target_modules"] if isinstance(cfg["target_modules"], str) else list(cfg["target_modules"]),
        bias="none",
        task_type="CAUSAL_LM",
    )


def trainer_kwargs(
    train: dict[str, Any], out_dir: Path, n_examples: int, dtype: torch.dtype, run_name: str, use_wandb: bool
) -> dict[str, Any]:
    """Arguments shared by TrainingArguments, SFTConfig and DPOConfig. Every TRL default that matters is set
    explicitly (TRL defaults to bf16, gradient checkpointing and its own learning rates)."""
    global_batch = train["per_device_batch_size"] * train["grad_accum"]
    total_steps = max(1, math.ceil(n_examples / global_batch) * train["epochs"])
    warmup = train.get("warmup_steps")
    if warmup is None:
        warmup = math.ceil(train["warmup_ratio"] * total_steps)
    return {
        "output_dir": str(out_dir / "checkpoints"),
        "per_device_train_batch_size": train["per_device_batch_size"],
        "gradient_accumulation_steps": train["grad_accum"],
        "num_train_epochs": train["epochs"],
        "learning_rate": train["learning_rate"],
        "lr_scheduler_type": train["lr_scheduler"],
        "warmup_steps": warmup,
        "weight_decay": 0.0,
        "optim": "adamw_torch",
        "seed": train["seed"],
        "data_seed": train["seed"],
        "bf16": dtype == torch.bfloat16,
        "fp16": dtype == torch.float16,
        "use_cpu": not torch.cuda.is_available(),
        "gradient_checkpointing": False,
        "logging_steps": 1,
        "save_strategy": "steps",
        "save_steps": train["save_steps"],
        "save_total_limit": 1,
        "report_to": ["wandb"] if use_wandb else [],
        "run_name": run_name,
        "disable_tqdm": False,
        "dataloader_num_workers": 0,
    }


def setup_wandb(wandb_cfg: dict[str, Any], wandb_dir: Path, group: str) -> bool:
    """Offline by default; a real key plus WANDB_MODE=online in the environment makes runs sync live."""
    if wandb_cfg["mode"] == "disabled":
        os.environ["WANDB_DISABLED"] = "true"
        return False
    os.environ.setdefault("WANDB_MODE", wandb_cfg["mode"])
    os.environ["WANDB_PROJECT"] = wandb_cfg["project"]
    os.environ["WANDB_RUN_GROUP"] = group
    os.environ["WANDB_DIR"] = str(wandb_dir)
    os.environ.setdefault("WANDB_SILENT", "true")
    wandb_dir.mkdir(parents=True, exist_ok=True)
    return True


def last_checkpoint(out_dir: Path) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    ckpt = out_dir / "checkpoints"
    return get_last_checkpoint(str(ckpt)) if ckpt.is_dir() else None


def save_adapter(model, base_ref: Path, out_dir: Path, name: str, extra: dict[str, Any]) -> dict[str, Any]:
    """Save the LoRA adapter and write model.json last: its presence means the model is complete."""
    adapter = out_dir / "adapter"
    model.save_pretrained(adapter)
    meta = {
        "kind": "lora",
        "name": name,
        "base": str(base_ref),
        "adapter": "adapter",
        "adapter_sha256": sha256_dir(adapter),
        "base_identity": model_identity(base_ref),
        **extra,
    }
    atomic_write_json(out_dir / "model.json", meta)
    return meta
