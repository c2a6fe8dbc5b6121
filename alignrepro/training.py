"""Shared training plumbing: LoRA config, trainer arguments from the config, resume, W&B, saving adapters.

Each method keeps its own trainer (TRL's SFT/DPO trainers, CUT's own); this module only removes the copy-paste
between them, so that every method of a table gets the same budget, seed and logging, and every trainer shares
the same safety rules:
- resume only a killed run of the *same* settings (`resume_checkpoint`: checkpoints are stamped with the hash of
  everything the run depends on; a changed setting starts afresh, half-written checkpoints are skipped, and a
  finished model's checkpoints are deleted, so a finished model is never "resumed");
- stop on divergence (`DivergenceGuard`: a non-finite loss or gradient norm fails the run, naming it and the step);
- write a model folder whose files are canonical and recorded (`finish_model_dir`: sorted adapter config, file
  modes, a size + sha256 manifest in model.json that every load verifies).
"""

from __future__ import annotations

import copy
import logging
import math
import os
import shutil
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from alignrepro.errors import TrainingDiverged, UserError
from alignrepro.integrity import canonicalize_adapter_config, file_manifest, manifest_hash
from alignrepro.io import atomic_write_json, content_sha256, read_json, stable_hash
from alignrepro.models import model_identity
from alignrepro.settings import SettingsError, closest_key  # the steps import them from here too

log = logging.getLogger(__name__)
CHECKPOINTS = "checkpoints"


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


def yaml_defaults(paper: str, section: str, supplied: dict[str, Any] | None = None) -> dict[str, Any]:
    """A step's defaults: the paper's YAML `defaults:` section (methods/<paper>/config.yaml, the one source), plus
    `supplied`: what the rules add from the run's top level (dtype, seed), with its value for a direct call."""
    from alignrepro.papers import paper as load_paper

    out = copy.deepcopy(load_paper(paper).defaults()[section])
    return merge_settings(out, supplied or {}, section, extend=True)


def merge_settings(
    defaults: dict[str, Any], overrides: dict[str, Any] | None, where: str, free: tuple[str, ...] = (), extend=False
) -> dict[str, Any]:
    """`defaults` deep-merged with `overrides`. A key that is not in `defaults` fails naming it and the closest valid
    key (unless `extend`); `free` names keys whose dict value replaces the default's instead of merging into it."""
    out = copy.deepcopy(defaults)
    for key, value in (overrides or {}).items():
        if key not in out and not extend:
            raise SettingsError(f"{where}: unknown keys [{key!r}]{closest_key(key, out)}; known: {sorted(out)}")
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key not in free:
            out[key] = merge_settings(out[key], value, f"{where}.{key}", extend=extend)
        else:
            out[key] = copy.deepcopy(value)
    return out


SAMPLERS = ("random", "group_by_length")  # transformers' train_sampling_strategy values that need no extra setup


@dataclass(frozen=True)
class TrainSettings:
    """A trainer's training settings, parsed once from the config (TRL's dataclass style). Fields without a default
    are required; the optional ones (None / -1 / False) are those only some trainers have. Values come from the
    YAML config (methods/<paper>/config.yaml `defaults:`): nothing here is a paper default."""

    learning_rate: float = field(metadata={"help": "peak learning rate (finite, > 0)"})
    lr_scheduler: str = field(metadata={"help": "transformers scheduler name (lr_scheduler_type)"})
    epochs: float = field(metadata={"help": "passes over the data (finite, > 0)"})
    per_device_batch_size: int = field(metadata={"help": "examples per device step (> 0)"})
    grad_accum: int = field(metadata={"help": "gradient accumulation steps (> 0)"})
    max_length: int = field(metadata={"help": "tokens per example"})
    save_steps: int = field(metadata={"help": "checkpoint every N optimizer steps (resume)"})
    seed: int = field(metadata={"help": "training and data seed (the rules give the run's seed)"})
    warmup_steps: int | None = field(default=None, metadata={"help": "warm-up steps; None: warmup_ratio"})
    warmup_ratio: float | None = field(default=None, metadata={"help": "warm-up share of the steps (no warmup_steps)"})
    max_steps: int | None = field(default=None, metadata={"help": "> 0 caps the run; -1: epochs (MoTE)"})
    max_grad_norm: float | None = field(default=None, metadata={"help": "gradient clipping (MoTE)"})
    step_token_lr: float | None = field(default=None, metadata={"help": "step-token rows' rate (MoTE; None: lr)"})
    load_in_8bit: bool = field(default=False, metadata={"help": "8-bit base weights (CUT, GPU)"})
    lora: dict[str, Any] | None = field(default=None, metadata={"help": "LoRA adapter settings (CUT)"})
    sampler: str = field(
        default="random",
        metadata={"help": "batch order: random, or group_by_length (similar lengths batched: less padding; LAB)"},
    )

    @classmethod
    def from_dict(cls, train: dict[str, Any], run: str = "") -> TrainSettings:
        """Parse a config `train` section: an unknown key fails naming it and the closest valid one, a missing
        required key fails naming it, and learning_rate, per_device_batch_size, grad_accum, epochs must be finite
        numbers > 0."""
        names = [f.name for f in fields(cls)]
        where = f" of run {run!r}" if run else ""
        for key in train:
            if key not in names:
                hint = closest_key(key, names)
                raise SettingsError(f"train.{key}{where}: unknown training setting{hint}; known: {sorted(names)}")
        required = [f.name for f in fields(cls) if f.default is MISSING]
        missing = [k for k in required if k not in train]
        if missing:
            raise UserError(f"train{where}: missing training setting(s) {missing}")
        for key in ("learning_rate", "per_device_batch_size", "grad_accum", "epochs"):
            value = train[key]
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
                raise UserError(f"train.{key}{where}: {value!r} (expected a finite number > 0)")
        if train.get("sampler", "random") not in SAMPLERS:
            raise UserError(f"train.sampler{where}: {train['sampler']!r} (expected one of {', '.join(SAMPLERS)})")
        if train.get("warmup_steps") is None and train.get("warmup_ratio") is None:
            raise UserError(f"train{where}: give warmup_steps or warmup_ratio")
        return cls(**train)

    def total_steps(self, n_examples: int) -> int:
        global_batch = self.per_device_batch_size * self.grad_accum
        return max(1, math.ceil(n_examples / global_batch) * self.epochs)

    def warmup(self, n_examples: int) -> int:
        if self.warmup_steps is not None:
            return self.warmup_steps
        return math.ceil(self.warmup_ratio * self.total_steps(n_examples))


def trainer_kwargs(
    train: TrainSettings | dict[str, Any],
    out_dir: Path,
    n_examples: int,
    dtype: torch.dtype,
    run_name: str,
    use_wandb: bool,
) -> dict[str, Any]:
    """Arguments shared by TrainingArguments, SFTConfig and DPOConfig. Every TRL default that matters is set
    explicitly (TRL defaults to bf16, gradient checkpointing and its own learning rates). A dict is parsed with
    TrainSettings.from_dict (its checks: unknown keys, finite positive numbers)."""
    if not isinstance(train, TrainSettings):
        train = TrainSettings.from_dict(train, run=run_name)
    warmup = train.warmup(n_examples)
    return {
        "output_dir": str(out_dir / "checkpoints"),
        "per_device_train_batch_size": train.per_device_batch_size,
        "gradient_accumulation_steps": train.grad_accum,
        "num_train_epochs": train.epochs,
        "learning_rate": train.learning_rate,
        "lr_scheduler_type": train.lr_scheduler,
        "train_sampling_strategy": train.sampler,
        "warmup_steps": warmup,
        "weight_decay": 0.0,
        "optim": "adamw_torch",
        "seed": train.seed,
        "data_seed": train.seed,
        "bf16": dtype == torch.bfloat16,
        "fp16": dtype == torch.float16,
        "use_cpu": not torch.cuda.is_available(),
        "gradient_checkpointing": False,
        "logging_steps": 1,
        "logging_nan_inf_filter": False,  # HF would log a NaN loss as the running mean: DivergenceGuard must see it
        "save_strategy": "steps",
        "save_steps": train.save_steps,
        "save_total_limit": 1,
        "report_to": ["wandb"] if use_wandb else [],
        "run_name": run_name,
        "disable_tqdm": False,
        "dataloader_num_workers": 0,
    }


def setup_wandb(wandb_cfg: dict[str, Any], wandb_dir: Path, group: str, run_name: str | None = None) -> bool:
    """Offline by default; a real key plus WANDB_MODE=online in the environment makes runs sync live. The trainer's
    run joins the suite's project and folder (config `wandb.dir`; `wandb_dir` only when a caller's settings name
    none) with group = the paper (`group`) and a deterministic id from `run_name` (alignrepro/wandb_runs.py)."""
    from alignrepro.wandb_runs import WandbSettings, trainer_env

    settings = WandbSettings.from_dict(wandb_cfg, default_dir=wandb_dir)
    if not settings.enabled:
        os.environ["WANDB_DISABLED"] = "true"
        return False
    trainer_env(settings, paper=group, row=run_name or group)
    return True


def input_identity(path: str | Path | None) -> Any:
    """What a training run depends on in an input: a model folder's identity, a file's sha256."""
    if path is None:
        return None
    path = Path(path)
    if (path / "model.json").is_file():
        return model_identity(path)
    return content_sha256(path) if path.is_file() else str(path)


def resume_checkpoint(out_dir: Path, identity: dict[str, Any], required: tuple[str, ...] = ()) -> str | None:
    """The newest complete checkpoint of a killed run with the same identity (settings, data, base), or None.

    `identity` must hold everything the weights depend on; it is stamped into checkpoints/run_identity.json. A
    stamp of another identity (a changed setting) drops every checkpoint, so the run starts afresh instead of
    "resuming" the old run's last step. HF writes trainer_state.json last: a checkpoint without it (or without a
    `required` file) is half-written, and it and anything after it are removed.
    """
    ckpts = Path(out_dir) / CHECKPOINTS
    stamp = ckpts / "run_identity.json"
    key = stable_hash(identity, 64)
    if stamp.is_file() and _stamp_key(stamp) == key:
        found = sorted(
            (d for d in ckpts.glob("checkpoint-*") if d.is_dir() and d.name.split("-")[-1].isdigit()),
            key=lambda d: int(d.name.split("-")[-1]),
        )
        complete = [d for d in found if all((d / f).is_file() for f in ("trainer_state.json", *required))]
        for d in found[found.index(complete[-1]) + 1 :] if complete else found:
            log.warning("removing incomplete checkpoint %s", d)
            shutil.rmtree(d)
        if not complete:
            return None
        log.info("resuming from %s (same settings and data)", complete[-1])
        return str(complete[-1])
    if ckpts.exists():
        log.info("removing checkpoints of another run (other settings or data) in %s", ckpts)
        shutil.rmtree(ckpts)
    ckpts.mkdir(parents=True)
    atomic_write_json(stamp, {"key": key, "identity": identity})
    return None


def _stamp_key(stamp: Path) -> str | None:
    try:
        return read_json(stamp).get("key")
    except (OSError, ValueError):
        return None


class DivergenceGuard(TrainerCallback):
    """Fail the run at the first non-finite loss or gradient norm (HF would train on and save NaN weights)."""

    def __init__(self, run: str) -> None:
        self.run = run

    def on_log(self, args, state, control, logs=None, **kwargs):
        bad = {k: v for k, v in (logs or {}).items() if _watched(k) and isinstance(v, int | float)}
        bad = {k: v for k, v in bad.items() if not math.isfinite(v)}
        if bad:
            raise TrainingDiverged(
                f"run {self.run!r} diverged at step {state.global_step}: {bad} (learning rate "
                f"{args.learning_rate}); no model was written. Lower the learning rate or check the data."
            )


def _watched(key: str) -> bool:
    return "loss" in key or key in ("grad_norm", "objective/kl")


def check_finite(model, run: str) -> None:
    """Refuse to save trainable weights that are not finite (a diverged last step logs nothing afterwards)."""
    for name, p in model.named_parameters():
        if p.requires_grad and not torch.isfinite(p.detach()).all():
            raise TrainingDiverged(f"run {run!r}: trainable weight {name} is not finite; no model was written")


def finish_model_dir(out_dir: Path, parts: tuple[str, ...], meta: dict[str, Any]) -> dict[str, Any]:
    """Canonicalise and record a trained model's files, then write model.json (last) and drop the checkpoints.

    `parts` are the folders/files of the model (e.g. ("adapter",)); model.json gets their size + sha256 manifest
    (`files`, verified on every load) and `adapter_sha256`, a hash of adapter/ that is the same for identical
    weights on every run."""
    out_dir = Path(out_dir)
    mask = os.umask(0o022)
    os.umask(mask)
    for part in parts:
        canonicalize_adapter_config(out_dir / part)
        for p in [out_dir / part, *(out_dir / part).rglob("*")]:
            if p.is_file():
                p.chmod(0o666 & ~mask)  # safetensors/HF write some files 0600; results are shared
    files = file_manifest(out_dir, parts)
    meta = {**meta, "files": files}
    if "adapter" in parts:
        meta["adapter_sha256"] = manifest_hash(files, "adapter/")
    atomic_write_json(out_dir / "model.json", meta)
    shutil.rmtree(out_dir / CHECKPOINTS, ignore_errors=True)  # only there to resume a killed run
    return meta


def save_adapter(model, base_ref: Path, out_dir: Path, name: str, extra: dict[str, Any]) -> dict[str, Any]:
    """Save the LoRA adapter and write model.json last: its presence means the model is complete."""
    check_finite(model, name)
    adapter = out_dir / "adapter"
    shutil.rmtree(adapter, ignore_errors=True)  # no stale file of an earlier run may join the manifest
    model.save_pretrained(adapter)
    meta = {
        "kind": "lora",
        "name": name,
        "base": str(base_ref),
        "adapter": "adapter",
        "base_identity": model_identity(base_ref),
        **extra,
    }
    return finish_model_dir(out_dir, ("adapter",), meta)


def save_full_model(model, tok, start: Path, out_dir: Path, name: str, extra: dict[str, Any]) -> dict[str, Any]:
    """A fully fine-tuned model (train.lora null, the papers' setting): out/weights/ (model + tokenizer) and
    model.json (kind base, weights "weights") last, with the file manifest; `start` is recorded as trained_from."""
    check_finite(model, name)
    weights = Path(out_dir) / "weights"
    shutil.rmtree(weights, ignore_errors=True)
    model.save_pretrained(weights)
    tok.save_pretrained(weights)
    meta = {"kind": "base", "name": name, "weights": "weights", "trained_from": model_identity(start), **extra}
    meta = finish_model_dir(out_dir, ("weights",), meta)
    meta["weights_sha256"] = manifest_hash(meta["files"], "weights/")
    atomic_write_json(Path(out_dir) / "model.json", meta)
    return meta
