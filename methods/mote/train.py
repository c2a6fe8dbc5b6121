"""Train one MoTE-paper architecture (Table 4 row) on AlignCoT chains. Read top to bottom:

  1. encode the chains (query → step 0, no loss; chain tokens incl. step tokens → loss; left-truncated query);
     `--explicit-datasets` first expands every chain into D_train ∪ D_extra_1 ∪ D_extra_2 (Table 6, no mask trick)
  2. load the base, add the step tokens (trainable rows), wrap it: MoTE / gated LoRA-MoE (moe_lora.apply_mote) or
     PEFT LoRA (lora, lora_x2)
  3. a transformers Trainer whose collator draws per sample the query expert and the step-skip mask, and whose
     compute_loss routes by step ids and takes the NLL on chain tokens (+ the contrastive expert loss for mixlora);
     checkpoints keep only the trainable tensors; resume from the last complete checkpoint after a kill
  4. save adapter/ (+ tokenizer/) and model.json last: {"kind": "mote", "arch", "adapter_format": "mote"|"peft",
     "base", …, "prompt_template": "chat"}; generate with `python -m alignrepro.methods.mote.infer`.

Archs are rows (methods/mote/paper.yaml `rows:` with `table: table4`, or a row folder): mote (step experts + shared,
α=0.5, step-skip mask) · mote_no_skip · mote_no_shared · mote_no_both · lora (PEFT, rank r) · lora_x2 (rank 2r,
alpha 2·alpha: same scale) · vanilla_moe (token-level softmax gate over 4 LoRA experts, top-2) · mixlora
("token-gated LoRA-MoE + contrastive expert loss", note §7.12); `arch_settings` reads the row. Every default is in
methods/mote/config.yaml `defaults.train` (read by `defaults()`) and recorded in model.json; --config-json
overrides it (nested keys; an unknown key fails).

`python -m alignrepro.methods.mote.train --help`
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from transformers import Trainer, TrainerCallback

from alignrepro.errors import UserError
from alignrepro.io import read_jsonl, stable_hash
from alignrepro.methods.mote.masks import additive_mask, sample_hidden_blocks, step_skip_keep
from alignrepro.methods.mote.moe_lora import MoTEConfig, apply_mote, pop_aux_loss, save_mote, set_routing
from alignrepro.methods.mote.steps import (
    IGNORE_INDEX,
    STEPS,
    ChainTooLong,
    add_step_tokens,
    encode_chain,
    step_token_parameters,
    step_token_state,
)
from alignrepro.models import choose_dtype, load_model, load_tokenizer, model_identity
from alignrepro.provenance import provenance
from alignrepro.training import (
    DivergenceGuard,
    TrainSettings,
    check_finite,
    finish_model_dir,
    input_identity,
    merge_settings,
    resume_checkpoint,
    setup_wandb,
    trainer_kwargs,
    yaml_defaults,
)

log = logging.getLogger("mote.train")
ARCH_TABLE = "table4"  # the paper's rows that are train.py architectures (the others are Table 1 baselines)
# What the rules add from the run's top level (alignrepro/config.py: the seed; rules.smk: the dtype), with its value
# for a direct call; every other default is methods/mote/config.yaml `defaults.train` (the one source).
RUN_SUPPLIED: dict[str, Any] = {"train": {"seed": 0}, "dtype": "float32"}


def defaults() -> dict[str, Any]:
    """The YAML defaults of `mote.train` (train, lora, mote) plus the run-supplied seed and dtype."""
    return yaml_defaults("mote", "train", RUN_SUPPLIED)


def merged_config(overrides: dict[str, Any]) -> dict[str, Any]:
    """The YAML defaults deep-merged with `overrides`; an unknown key fails naming the closest valid one."""
    return merge_settings(defaults(), overrides, "mote.train")


def arch_rows(row_dirs: list[str | Path] = ()) -> dict[str, dict[str, Any]]:
    """Table 4's architectures, name -> the row's fields (paper.yaml's, then row folders', enabled or not)."""
    from alignrepro.rows import paper_rows

    return {n: r.public() for n, r in paper_rows("mote", row_dirs).items() if r.table == ARCH_TABLE}


def arch_settings(
    arch: str, cfg: dict[str, Any], explicit: bool = False, row: dict[str, Any] | None = None
) -> dict[str, Any]:
    """What an arch is, read from its row (`row`, else the paper's row of that name): adapter format, MoTE config
    (or PEFT rank) and the step-skip probability."""
    if row is None:
        rows = arch_rows()
        if arch not in rows:
            raise UserError(f"unknown arch {arch!r}. Available: {', '.join(rows)}")
        row = rows[arch]
    lora, m = cfg["lora"], cfg["mote"]
    k = row.get("rank_scale", 1)
    if row["adapter"] == "peft":
        return {"format": "peft", "r": lora["r"] * k, "alpha": lora["alpha"] * k, "skip_p": 0.0}
    common = {
        "r": lora["r"] * k,
        "lora_alpha": lora["alpha"] * k,
        "dropout": lora["dropout"],
        "target_modules": tuple(lora["target_modules"]),
        "seed": cfg["train"]["seed"],
        "query_expert_infer": m["query_expert_infer"],
    }
    if row["routing"] == "gate":
        mote = MoTEConfig(
            **common,
            routing="gate",
            shared_expert=False,
            n_gate_experts=m["n_gate_experts"],
            top_k=m["top_k"],
            contrastive_weight=m["contrastive_weight"] if row["contrastive"] else 0.0,
            contrastive_tau=m["contrastive_tau"],
            contrastive_tokens=m["contrastive_tokens"],
        )
        return {"format": "mote", "mote": mote, "skip_p": 0.0}
    mote = MoTEConfig(**common, routing="step", shared_expert=row["shared_expert"], mix_alpha=m["mix_alpha"])
    return {"format": "mote", "mote": mote, "skip_p": m["skip_p"] if row["step_skip"] and not explicit else 0.0}


# ---------------------------------------------------------------------------------------------------- data
EXPLICIT_VARIANTS = (  # App. B: D_train plus D_extra_1 (each expert alone) and D_extra_2 (skipping)
    ("analysis", "guidance", "answer"),
    ("analysis",),
    ("analysis", "guidance"),
    ("guidance",),
    ("guidance", "answer"),
    ("analysis", "answer"),
    ("answer",),
)


def expand_explicit(chain: dict[str, Any]) -> list[dict[str, Any]]:
    """The chain and its explicit sub-chains: every variant whose steps the chain has (the chain itself included).

    Note §1.2 lists D_extra_2 = {(x,x_g),(x,x_g,x_ans),(x,x_ans),(x,x_ans)}; the repeated (x,x_ans) is read as
    (x,x_a,x_ans) — the answer without guidance, the fourth context the mask trick trains."""
    have = {s for s in STEPS if (chain.get(s) or "").strip()}
    out = []
    for variant in EXPLICIT_VARIANTS:
        if set(variant) <= have:
            row = {**chain, **{s: (chain.get(s) if s in variant else None) for s in STEPS}}
            row["id"] = f"{chain['id']}#{'+'.join(variant)}"
            row["_variant"] = variant
            out.append(row)
    return out


def encode_rows(rows: list[dict[str, Any]], tok, max_length: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Encoded training examples and counts (skipped: chain too long / no answer)."""
    examples, skipped = [], Counter()
    truncated = 0
    for row in rows:
        try:
            reasoning_only = "answer" not in row.get("_variant", ("answer",))
            enc = encode_chain(tok, row["messages"], row, max_length, require_answer=not reasoning_only)
        except ChainTooLong as e:
            skipped["chain_too_long"] += 1
            log.warning("skipped: %s", e)
            continue
        except ValueError as e:
            skipped["no_answer"] += 1
            log.warning("skipped: %s", e)
            continue
        truncated += enc["query_truncated"] > 0
        examples.append({k: enc[k] for k in ("input_ids", "step_ids", "labels")})
    n_tokens = sum(len(e["input_ids"]) for e in examples)
    stats = {
        "n_rows": len(rows),
        "n_examples": len(examples),
        "skipped": dict(skipped),
        "query_truncated": truncated,
        "n_tokens": n_tokens,
        "n_loss_tokens": sum(sum(x != IGNORE_INDEX for x in e["labels"]) for e in examples),
    }
    if skipped:
        log.warning("skipped %s of %d chains", dict(skipped), len(rows))
    return examples, stats


class MoTECollator:
    """Right padding; per sample the query expert (uniform over the routed experts) and, when skip_p > 0, the
    step-skip keep-mask [B, 1, T, T]. One seeded CPU generator: a run is reproducible (a resumed run draws anew)."""

    def __init__(self, pad_id: int, n_routed: int, skip_p: float, seed: int):
        self.pad_id, self.n_routed, self.skip_p = pad_id, n_routed, skip_p
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        t = max(len(f["input_ids"]) for f in features)

        def pad(key: str, value: int) -> torch.Tensor:
            return torch.tensor([f[key] + [value] * (t - len(f[key])) for f in features], dtype=torch.long)

        ids, steps, labels = pad("input_ids", self.pad_id), pad("step_ids", 0), pad("labels", IGNORE_INDEX)
        mask = torch.tensor([[1] * len(f["input_ids"]) + [0] * (t - len(f["input_ids"])) for f in features])
        batch = {"input_ids": ids, "attention_mask": mask, "labels": labels, "step_ids": steps}
        batch["query_expert"] = torch.randint(self.n_routed, (len(features),), generator=self.generator)
        if self.skip_p > 0:
            hidden = sample_hidden_blocks(steps, self.skip_p, self.generator)
            batch["step_keep"] = step_skip_keep(steps, mask, hidden=hidden)
        return batch


# ---------------------------------------------------------------------------------------------------- model
def build_model(arch: str, base: Path, cfg: dict[str, Any], explicit: bool = False, row: dict[str, Any] | None = None):
    """(model, tokenizer, arch settings): base + step tokens (trainable rows) + the arch's adapters."""
    settings = arch_settings(arch, cfg, explicit, row)
    dtype = choose_dtype(cfg.get("dtype", "float32"))
    tok = load_tokenizer(base, padding_side="right")
    tok.model_max_length = cfg["train"]["max_length"]
    model = load_model(base, dtype=dtype, load_in_8bit=cfg["train"].get("load_in_8bit", False))
    model.config.use_cache = False
    add_step_tokens(tok, model, seed=cfg["train"]["seed"])
    if settings["format"] == "mote":
        apply_mote(model, settings["mote"])
    else:
        from peft import LoraConfig, get_peft_model

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg["train"]["seed"])
            model = get_peft_model(
                model,
                LoraConfig(
                    r=settings["r"],
                    lora_alpha=settings["alpha"],
                    lora_dropout=cfg["lora"]["dropout"],
                    target_modules=list(cfg["lora"]["target_modules"]),
                    bias="none",
                    task_type="CAUSAL_LM",
                ),
            )
        for p in model.parameters():  # PEFT froze the step-token rows
            if getattr(p, "_mote_keep_trainable", False):
                p.requires_grad_(True)
    return model, tok, settings


def n_routed(settings: dict[str, Any]) -> int:
    return len(settings["mote"].routed_names) if settings["format"] == "mote" else 1


def chain_loss(
    model, batch: dict[str, torch.Tensor], num_items: Any = None
) -> tuple[torch.Tensor, dict[str, float], torch.Tensor | None]:
    """(NLL of the chain tokens — sum / num_items when given, else the token mean —, logged parts, the weighted
    aux (contrastive) loss or None). Routing stays set after the call, so that a recomputing backward (gradient
    checkpointing) routes the same."""
    set_routing(model, batch["step_ids"], batch.get("query_expert"))
    dtype = next(p.dtype for p in model.parameters() if p.is_floating_point() and not p.requires_grad)
    keep = batch.get("step_keep")
    attn = additive_mask(keep, dtype) if keep is not None else batch["attention_mask"]
    logits = model(input_ids=batch["input_ids"], attention_mask=attn, use_cache=False).logits
    target = batch["labels"][:, 1:]
    nll = F.cross_entropy(
        logits[:, :-1].float().reshape(-1, logits.shape[-1]),
        target.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="sum",
    )
    denom = num_items if num_items is not None else (target != IGNORE_INDEX).sum().clamp(min=1)
    loss = nll / denom
    aux = pop_aux_loss(model)
    parts = {"nll_sum": float(nll.detach()), "n_tokens": float((target != IGNORE_INDEX).sum())}
    if aux is not None:
        parts["aux"] = float(aux.detach())
    return loss, parts, aux


class MoTETrainer(Trainer):
    """compute_loss = chain_loss; checkpoints hold only the trainable tensors (experts, gates, LoRA, token rows)."""

    def __init__(self, *args: Any, step_token_lr: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sums = Counter()
        self.step_token_lr = step_token_lr

    def create_optimizer(self):
        """The step-token rows in a param group of their own when `step_token_lr` is set: from mean-resized rows a
        few hundred steps teach the model to emit them, a handful (the tiny tier) do not at the LoRA rate. The
        scheduler, built after this, scales the group like every other."""
        opt = super().create_optimizer()
        if self.step_token_lr is None:
            return opt
        rows = {id(p): p for p in step_token_parameters(self.model)}
        for group in opt.param_groups:
            group["params"] = [p for p in group["params"] if id(p) not in rows]
        opt.add_param_group({"params": list(rows.values()), "lr": self.step_token_lr, "weight_decay": 0.0})
        return opt

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss, parts, aux = chain_loss(model, inputs, num_items_in_batch)
        # Token-normalised over the whole accumulated batch when the Trainer counted the tokens; else per micro-batch
        # mean, which the Trainer divides by the accumulation steps.
        self.loss_is_scaled_for_ga = num_items_in_batch is not None
        if aux is not None:
            loss = loss + (aux / self.current_gradient_accumulation_steps if self.loss_is_scaled_for_ga else aux)
        if self.loss_is_scaled_for_ga and self.args.average_tokens_across_devices and self.args.world_size > 1:
            loss = loss * self.args.world_size
        self._sums.update({k: v for k, v in parts.items()} | {"n_aux": 1.0 if "aux" in parts else 0.0})
        return (loss, None) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._sums["n_tokens"]:
            logs["nll"] = round(self._sums["nll_sum"] / self._sums["n_tokens"], 4)
            if self._sums["n_aux"]:
                logs["aux_loss"] = round(self._sums["aux"] / self._sums["n_aux"], 4)
            self._sums.clear()
        super().log(logs, start_time)

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        from safetensors.torch import save_file

        out = Path(output_dir or self.args.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        tensors = {n: p.detach().cpu().contiguous() for n, p in self.model.named_parameters() if p.requires_grad}
        save_file(tensors, str(out / "trainable.safetensors"), metadata={"format": "pt"})
        torch.save(self.args, out / "training_args.bin")

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        from safetensors.torch import load_file

        model = model or self.model
        tensors = load_file(str(Path(resume_from_checkpoint) / "trainable.safetensors"))
        params = dict(model.named_parameters())
        with torch.no_grad():
            for n, v in tensors.items():
                params[n].copy_(v)
        log.info("loaded %d trainable tensors from %s", len(tensors), resume_from_checkpoint)


class StepTimer(TrainerCallback):
    """Wall seconds of each optimizer step (for seconds/step; the first steps include warm-up costs)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._t = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        self._t = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(time.perf_counter() - self._t)


def save_trained(model, tok, settings: dict[str, Any], out: Path) -> str:
    """adapter/ (+ tokenizer/): MoTE format or a PEFT adapter + step_tokens.safetensors. Returns the format."""
    from safetensors.torch import save_file

    adapter = out / "adapter"
    shutil.rmtree(adapter, ignore_errors=True)
    if settings["format"] == "mote":
        save_mote(model, adapter)
    else:
        model.save_pretrained(str(adapter), save_embedding_layers=False)  # our rows go to step_tokens.safetensors
        save_file(step_token_state(model), str(adapter / "step_tokens.safetensors"), metadata={"format": "pt"})
    shutil.rmtree(out / "tokenizer", ignore_errors=True)  # no stale file of an earlier save joins the manifest
    tok.save_pretrained(str(out / "tokenizer"))
    return settings["format"]


def _trained(row: dict[str, Any] | None) -> dict[str, Any] | None:
    """The row's fields that change training (not its label, note or folder)."""
    return row and {k: v for k, v in row.items() if k not in ("label", "note", "folder")}


def train(
    arch: str,
    base: Path,
    chains: Path,
    cfg_over: dict[str, Any],
    wandb_cfg: dict[str, Any],
    tier: str,
    out: Path,
    explicit: bool = False,
    name: str | None = None,
    wandb_dir: Path | None = None,
    row: dict[str, Any] | None = None,
) -> dict[str, Any]:
    from datasets import Dataset
    from transformers import TrainingArguments

    cfg = merged_config(cfg_over)
    tr = cfg["train"]
    name = name or f"mote-{tier}-{arch}{'-explicit' if explicit else ''}"
    rows = read_jsonl(chains)
    train_rows = [v for r in rows for v in expand_explicit(r)] if explicit else rows
    row = row or arch_rows().get(arch)  # None (unknown): arch_settings' error names the rows
    model, tok, settings = build_model(arch, base, cfg, explicit, row)
    examples, data_stats = encode_rows(train_rows, tok, tr["max_length"])
    if not examples:
        raise SystemExit(f"no trainable chains in {chains} ({data_stats})")
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info("%s: %d examples, %d trainable parameters, skip_p=%s", arch, len(examples), n_train, settings["skip_p"])
    dtype = choose_dtype(cfg.get("dtype", "float32"))
    use_wandb = setup_wandb(wandb_cfg, wandb_dir or out.parent / "wandb", group="mote", run_name=name)
    settings_tr = TrainSettings.from_dict(tr, run=name)
    kwargs = trainer_kwargs(settings_tr, out, len(examples), dtype, run_name=name, use_wandb=use_wandb)
    kwargs["max_grad_norm"] = settings_tr.max_grad_norm
    kwargs["max_steps"] = settings_tr.max_steps
    args = TrainingArguments(**kwargs, remove_unused_columns=False)
    timer = StepTimer()
    trainer = MoTETrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(examples),
        data_collator=MoTECollator(tok.pad_token_id, n_routed(settings), settings["skip_p"], tr["seed"]),
        callbacks=[timer],
        step_token_lr=tr["step_token_lr"],
    )
    trainer.add_callback(DivergenceGuard(name))
    identity = {"step": "mote.train", "arch": arch, "explicit": explicit, "config": cfg, "arch_row": _trained(row)}
    identity |= {"base": input_identity(base), "chains": input_identity(chains)}
    resume = resume_checkpoint(out, identity, required=("trainable.safetensors",))
    start = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=resume)
    seconds = time.perf_counter() - start
    history = [h for h in trainer.state.log_history if "loss" in h or "train_loss" in h]
    if use_wandb:
        import wandb

        if wandb.run is not None:
            wandb.run.summary.update({"data": data_stats, "arch": arch, "explicit_datasets": explicit})
            wandb.finish()
    model.eval()
    check_finite(model, name)
    fmt = save_trained(model, tok, settings, out)
    meta = {
        "kind": "mote",
        "name": name,
        "arch": arch,
        "arch_row": _trained(row),
        "adapter_format": fmt,
        "base": str(base),
        "adapter": "adapter",
        "tokenizer": "tokenizer",
        "base_identity": model_identity(base),
        "prompt_template": "chat",
        "explicit_datasets": explicit,
        "skip_p": settings["skip_p"],
        "mote": settings["mote"].to_dict() if fmt == "mote" else None,
        "peft_rank": settings.get("r") if fmt == "peft" else None,
        "config": cfg,
        "trainable_parameters": n_train,
        "dtype": str(dtype).removeprefix("torch."),
        "train_metrics": result.metrics,
        "log_history": history,
        "data": data_stats,
        "train_seconds": round(seconds, 2),
        "optimizer_steps": trainer.state.global_step,
        "seconds_per_step_median": round(statistics.median(timer.times), 4) if timer.times else None,
        "resumed_from": resume,
        "chains_sha256": stable_hash(rows, 64),
        "provenance": provenance(tier=tier, config=cfg, seed=tr["seed"], arch=arch, chains=str(chains)),
    }
    return finish_model_dir(out, ("adapter", "tokenizer"), meta)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m alignrepro.methods.mote.train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--arch", required=True, help="a Table 4 row (paper.yaml rows with table: table4, row folders)")
    p.add_argument("--arch-json", help="the arch row's fields (the rules pass them; default: the paper's row --arch)")
    p.add_argument("--base", type=Path, required=True, help="base model folder (with model.json)")
    p.add_argument("--chains", type=Path, required=True, help="chains JSONL (contract: id, messages, analysis, …)")
    p.add_argument("--config-json", default="{}", help="overrides of the YAML defaults (train, lora, mote, dtype)")
    p.add_argument(
        "--wandb-json",
        default='{"mode": "disabled", "project": "alignrepro"}',
        help="W&B settings (kept out of --config-json so that they never trigger a retrain)",
    )
    p.add_argument("--tier", required=True)
    p.add_argument("--out", type=Path, required=True, help="model folder (adapter/, tokenizer/, model.json)")
    p.add_argument("--name", help="model name (default mote-<tier>-<arch>)")
    p.add_argument("--wandb-dir", type=Path, help="W&B folder when --wandb-json names no dir")
    p.add_argument(
        "--explicit-datasets",
        action="store_true",
        help="train on D_train ∪ D_extra_1 ∪ D_extra_2 (every chain expanded, no step-skip mask): Table 6",
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    meta = train(
        args.arch,
        args.base,
        args.chains,
        json.loads(args.config_json),
        json.loads(args.wandb_json),
        args.tier,
        args.out,
        explicit=args.explicit_datasets,
        name=args.name,
        wandb_dir=args.wandb_dir,
        row=json.loads(args.arch_json) if args.arch_json else None,
    )
    print(json.dumps({k: meta[k] for k in ("name", "arch", "train_seconds", "optimizer_steps", "data")}, indent=2))


if __name__ == "__main__":
    main()
