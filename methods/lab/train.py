"""Train one LAB phase (KT/1, KT/2, ST, or the stacked ablation) with TRL's SFTTrainer, one model folder per epoch.

  1. read the phase's records (phases.py) as conversational prompt/completion rows: loss on the answer only
  2. load the start model: the base for KT/1 and stacked, the previous phase's selected checkpoint otherwise
  3. train LoRA (train.lora) or the whole model (train.lora null); the learning rate warms up linearly over
     warmup_ratio of the phase's steps and then stays constant (constant_with_warmup: no decay between phases,
     paper §3.3); a killed run of the same settings resumes from its last checkpoint
  4. at the end of each epoch write <out>/epoch<k>/ (a model folder: model.json with its file manifest; LoRA: an
     adapter over the start model), then <out>/phase.json (last: the phase is complete) listing the epochs

Why prompt/completion rows and not TRL's assistant_only_loss: that needs a chat template with {% generation %}
markers, and TRL 1.12 patches in one only for the templates it knows; SmolLM2's and the ci model's ChatML templates
are not among them (TRL raises). Prompt/completion rows (completion_only_loss) mask everything before the answer with
the model's own template, whatever it is; a multi-turn record gives one row per assistant turn.

`python -m alignrepro.methods.lab.train --help`
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shutil
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback, set_seed

from alignrepro.errors import UserError
from alignrepro.io import atomic_write_json, read_json, read_jsonl
from alignrepro.methods.lab.phases import completion_rows
from alignrepro.models import choose_dtype, load_model, load_tokenizer, model_identity
from alignrepro.provenance import provenance
from alignrepro.training import (
    CHECKPOINTS,
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

log = logging.getLogger("lab.train")
SCHEDULER = "constant_with_warmup"  # the paper's schedule; anything else is recorded as a deviation


def phase_rows(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """(prompt/completion rows, record ids) of a phase file; an empty file is an error naming it."""
    rows, ids = [], []
    for r in read_jsonl(path):
        rows += completion_rows(r)
        ids.append(r.get("id"))
    if not rows:
        raise UserError(f"{path}: no training records")
    return rows, ids


def epoch_dir(out: Path, k: int) -> Path:
    return out / f"epoch{k}"


class EpochSaver(TrainerCallback):
    """Writes epoch<k>/ when epoch k ends, before any checkpoint of that step: a checkpoint at or after the end of
    epoch k therefore implies a complete epoch<k>/ (resume relies on it), and a checkpoint is forced at each epoch's
    end so that a resumed run never retrains a finished epoch."""

    def __init__(self, out: Path, start: Path, name: str, tok, lora: bool, extra: dict[str, Any]) -> None:
        self.out, self.start, self.name, self.tok, self.lora, self.extra = out, start, name, tok, lora, extra
        self.last_saved = -1

    def _write(self, state, model) -> None:
        k = round(state.epoch)
        final = epoch_dir(self.out, k)
        if (final / "model.json").is_file() and read_json(final / "model.json").get("global_step") == state.global_step:
            return
        tmp = final.with_name(final.name + ".partial")  # .partial: never taken for an orphaned model folder
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        extra = {
            **self.extra,
            "epoch": k,
            "global_step": state.global_step,
            "log_history": [h for h in state.log_history if "loss" in h],
        }
        if self.lora:
            save_adapter(model, self.start, tmp, f"{self.name}-epoch{k}", extra)
        else:
            save_full_model(model, self.tok, self.start, tmp, f"{self.name}-epoch{k}", extra)
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        log.info("epoch %d: wrote %s", k, final)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.epoch is not None and abs(state.epoch - round(state.epoch)) < 1e-9 and round(state.epoch) >= 1:
            self._write(state, model)
        return control

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        self._write(state, model)  # no-op unless on_step_end missed the boundary
        if self.last_saved != state.global_step:
            control.should_save = True
        return control

    def on_save(self, args, state, control, **kwargs):
        self.last_saved = state.global_step
        return control


def prune_epochs(out: Path, resume: str | None, n_epochs: int) -> str | None:
    """Drop epoch folders the checkpoint to resume from does not cover (written after it, or stale from another
    run); resume afresh (None) if one it covers is missing."""
    done = 0
    if resume:
        done = math.floor(read_json(Path(resume) / "trainer_state.json")["epoch"] + 1e-9)
        if any(not (epoch_dir(out, k) / "model.json").is_file() for k in range(1, done + 1)):
            log.warning("epoch folders before %s are missing: training the phase afresh", resume)
            shutil.rmtree(Path(resume).parent, ignore_errors=True)
            resume, done = None, 0
    for d in list(out.glob("epoch*")):
        k = d.name.removeprefix("epoch").removesuffix(".partial")
        if d.is_dir() and (not k.isdigit() or int(k) > done or d.name.endswith(".partial") or int(k) > n_epochs):
            shutil.rmtree(d)
    return resume


def build_trainer(model, tok, rows: list[dict[str, Any]], settings: TrainSettings, kwargs: dict[str, Any]):
    """TRL's SFTTrainer on prompt/completion rows, loss on the completion; LoRA unless settings.lora is None."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(
        **kwargs, max_length=settings.max_length, completion_only_loss=True, packing=False, dataset_num_proc=None
    )
    peft = {"peft_config": lora_config(settings.lora)} if settings.lora else {}
    return SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok, **peft)


def run_phase(
    start: Path,
    data: Path,
    cfg: dict[str, Any],
    out: Path,
    *,
    name: str,
    tier: str,
    phase: str,
    wandb_cfg: dict[str, Any] | None = None,
    callbacks: tuple = (),
) -> dict[str, Any]:
    """Train one phase into `out` (epoch<k>/ model folders + phase.json); returns phase.json's content."""
    if "train" not in cfg:
        raise UserError(f"run {name!r}: the config lacks 'train'")
    settings = TrainSettings.from_dict(cfg["train"], run=name)
    if not float(settings.epochs).is_integer() or (settings.max_steps or -1) > 0:
        raise UserError(f"run {name!r}: train.epochs must be whole and max_steps unset (one checkpoint per epoch)")
    if settings.lr_scheduler != SCHEDULER:
        log.warning("run %s: lr_scheduler %s, not the paper's %s", name, settings.lr_scheduler, SCHEDULER)
    n_epochs = int(settings.epochs)
    rows, ids = phase_rows(data)
    dtype = choose_dtype(cfg.get("dtype", "float32"))
    tok = load_tokenizer(start, padding_side="right")
    set_seed(settings.seed)  # TRL builds the LoRA adapter before Trainer seeds
    model = load_model(start, dtype=dtype, load_in_8bit=settings.load_in_8bit)
    wandb_cfg = wandb_cfg or {"mode": "disabled", "project": "alignrepro"}
    use_wandb = setup_wandb(wandb_cfg, out.parent / "wandb", group="lab", run_name=name)
    kwargs = trainer_kwargs(settings, out, len(rows), dtype, run_name=name, use_wandb=use_wandb)
    trainer = build_trainer(model, tok, rows, settings, kwargs)
    kept = len(trainer.train_dataset)  # TRL drops rows whose answer max_length cuts off entirely, silently
    if kept == 0:
        raise UserError(f"{data}: every row's answer is cut off at train.max_length {settings.max_length} tokens "
                        f"(TRL drops fully masked rows): raise lab.train.max_length")  # fmt: skip
    if kept < len(rows):
        log.warning("%s: %d of %d rows dropped (answer cut off at max_length %d)", data, len(rows) - kept, len(rows),
                    settings.max_length)  # fmt: skip
    identity = {
        "step": "lab.train",
        "phase": phase,
        "config": cfg,
        "start": input_identity(start),
        "data": input_identity(data),
    }
    resume = prune_epochs(out, resume_checkpoint(out, identity), n_epochs)
    extra = {
        "phase": phase,
        "prompt_template": "chat",  # the start model's chat template (TRL conversational rows)
        "loss": "completion_only (prompt/completion rows, one per assistant turn)",
        "dtype": str(dtype).removeprefix("torch."),
        "data_sha256": input_identity(data),
        "provenance": provenance(tier=tier, config=cfg, seed=settings.seed),
    }
    trainer.add_callback(DivergenceGuard(name))
    trainer.add_callback(EpochSaver(out, start, name, tok, bool(settings.lora), extra))
    for cb in callbacks:
        trainer.add_callback(cb)
    (out / "phase.json").unlink(missing_ok=True)  # written last: present only for a finished phase
    t0 = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=resume)
    missing = [k for k in range(1, n_epochs + 1) if not (epoch_dir(out, k) / "model.json").is_file()]
    if missing:
        raise RuntimeError(f"run {name!r}: training ended without epoch folder(s) {missing} in {out}")
    if use_wandb:
        import wandb

        if wandb.run is not None:
            wandb.finish()
    epochs = []
    for k in range(1, n_epochs + 1):
        meta = read_json(epoch_dir(out, k) / "model.json")
        epochs.append(
            {
                "epoch": k,
                "dir": epoch_dir(out, k).name,
                "global_step": meta["global_step"],
                "identity": model_identity(epoch_dir(out, k)),
            }
        )
    history = trainer.state.log_history
    doc = {
        "phase": phase,
        "name": name,
        "start_model": str(start),
        "start_identity": input_identity(start),
        "data": str(data),
        "data_sha256": input_identity(data),
        "n_records": len(ids),
        "n_rows": len(rows),
        "kind": "lora" if settings.lora else "full",
        "lr_scheduler": settings.lr_scheduler,
        "warmup_steps": kwargs["warmup_steps"],
        "total_steps": trainer.state.max_steps,
        "learning_rates": [h["learning_rate"] for h in history if "learning_rate" in h and "loss" in h],
        "log_history": [h for h in history if "loss" in h or "train_loss" in h],
        "train_metrics": result.metrics,
        "train_seconds": round(time.perf_counter() - t0, 1),
        "resumed_from": resume,
        "epochs": epochs,
        "provenance": extra["provenance"],
    }
    atomic_write_json(out / "phase.json", doc)
    shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)  # only there to resume a killed run
    return doc


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(
        prog="python -m alignrepro.methods.lab.train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--start-model",
        type=Path,
        required=True,
        help="model folder to start from: the base (KT/1, stacked) or the previous phase's selected/",
    )
    p.add_argument("--data", type=Path, required=True, help="the phase's JSONL (phases.py: kt1/kt2/st/stacked.jsonl)")
    p.add_argument(
        "--config-json",
        required=True,
        help='{"train": TrainSettings incl. lora (null: full fine-tuning), seed, warmup_ratio; "dtype"}',
    )
    p.add_argument(
        "--wandb-json",
        default='{"mode": "disabled", "project": "alignrepro"}',
        help="W&B settings (kept out of --config-json so that they never trigger a retrain)",
    )
    p.add_argument("--phase", required=True, help="kt1, kt2, st or stacked (recorded)")
    p.add_argument("--name", required=True, help="model name, e.g. lab-tiny-kt1 (epoch folders add -epoch<k>)")
    p.add_argument("--tier", required=True)
    p.add_argument("--out", type=Path, required=True, help="phase folder: epoch<k>/, phase.json, checkpoints/")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    return run_phase(
        args.start_model,
        args.data,
        json.loads(args.config_json),
        args.out,
        name=args.name,
        tier=args.tier,
        phase=args.phase,
        wandb_cfg=json.loads(args.wandb_json),
    )


if __name__ == "__main__":
    main()
