"""MORLAIF preference models (paper note §1.3): one LoRA adapter per principle over one shared sequence-classification
base, trained with TRL's RewardTrainer (Bradley-Terry loss with the AI-feedback margin), and a bank that scores with
every adapter, hot-swapped over a frozen trunk computed once.

  train  one PM: pairs.jsonl (split "train") + feedback/<principle>.jsonl -> pms/<principle>/ (adapter/, model.json)
         chosen = the feedback-preferred response, rejected = the other, margin = |feedback margin| (config `margin`)
  score  every PM of the bank on every pair -> pm_scores.jsonl {"id", "split", "scores_a": {P: s}, "scores_b": {...}}

What a PM sees (the same in training, in `score` and in PPO, note §7.9-7.11): `render_pm_text` = the base model's chat
template with the response as the assistant turn, cut right after that turn's end-of-turn token (so the score sits on
the eos a policy's sample ends with); token ids = that text tokenized without extra special tokens, LEFT-truncated to
`train.max_length` so the response is always kept (the official RewardTrainer truncated on the right, note §7.10).
An explicit pad token different from eos (the tokenizer's unk, `<|endoftext|>` for SmolLM2) makes the score position,
transformers' "rightmost non-pad token", the last real token, in training (right padding) and scoring (left padding).

Compute (2 CPU cores at the tiny tier): `lora.layers = k` puts LoRA (the classification head sits on top anyway) on
the top k decoder layers only (peft `layers_to_transform`); the bank then runs the layers below them once per batch
and only the top k layers + final norm + head per principle. `layers: null` = every layer (the paper).

Config (`--config-json` over methods/morlaif/config.yaml `defaults.pm`, deep-merged; an unknown key fails): lora {r,
alpha, dropout, target_modules, layers}, train {per_device_batch_size, grad_accum, epochs, learning_rate,
lr_scheduler, warmup_steps | warmup_ratio, seed, save_steps, max_length} (alignrepro.training.TrainSettings),
margin (bool), min_abs_margin (drop feedback with |margin| below it), max_pairs, dtype; parsed once at the step's
entry (`pm_settings`: methods/morlaif/settings.py PMSettings), `to_dict()` the merged dict model.json records.

`python -m alignrepro.methods.morlaif.pm {train,score} --help`
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from alignrepro.io import atomic_write_json, read_json, read_jsonl, sha256_file, stable_hash, write_jsonl
from alignrepro.methods.morlaif.settings import PMLoraSettings, PMSettings
from alignrepro.models import choose_dtype, load_tokenizer, model_identity, read_model_meta
from alignrepro.training import merge_settings, yaml_defaults

log = logging.getLogger("morlaif.pm")

# What the rules add from the run's top level (the seed, the dtype), with its value for a direct call; every other
# default is methods/morlaif/config.yaml `defaults.pm` (the one source).
RUN_SUPPLIED: dict[str, Any] = {"train": {"seed": 0}, "dtype": "float32"}
PAD_CANDIDATES = ("<|endoftext|>", "<pad>", "<|pad|>", "[PAD]")


def default_config() -> dict[str, Any]:
    """The YAML defaults of `morlaif.pm` (lora, train, margin, …) plus the run-supplied seed and dtype."""
    return yaml_defaults("morlaif", "pm", RUN_SUPPLIED)


def merge_config(cfg: dict[str, Any] | None) -> dict[str, Any]:
    """The YAML defaults deep-merged with `cfg` (the effective config is what model.json records); an unknown key
    fails naming the closest valid one."""
    return merge_settings(default_config(), cfg, "morlaif.pm")


def pm_settings(cfg: PMSettings | dict[str, Any] | None, where: str = "morlaif.pm") -> PMSettings:
    """The step's settings, typed once: `cfg` over the YAML defaults (merge_config), parsed as PMSettings."""
    return cfg if isinstance(cfg, PMSettings) else PMSettings.from_dict(merge_config(cfg), where)


# ---------------------------------------------------------------------------------------------------- text
def set_pm_pad_token(tok) -> str:
    """Give the tokenizer a pad token that is not eos (SmolLM2: pad = eos = <|im_end|>, note §7.11). With pad == eos
    transformers' pooling would skip a trailing eos; a distinct pad keeps the score on the last real token. Falls
    back to eos only when the vocabulary has nothing else (GPT-2); training and scoring still share one rule."""
    vocab = tok.get_vocab()
    if tok.pad_token is not None and tok.pad_token != tok.eos_token:
        return tok.pad_token
    for cand in (tok.unk_token, *PAD_CANDIDATES):
        if cand and cand in vocab and cand not in (tok.eos_token, tok.bos_token):
            tok.pad_token = cand
            return cand
    log.warning("no pad token distinct from eos in the vocabulary: pad = eos (%s)", tok.eos_token)
    tok.pad_token = tok.eos_token
    return tok.pad_token


def load_pm_tokenizer(base_dir: str | Path):
    tok = load_tokenizer(base_dir, padding_side="left")
    set_pm_pad_token(tok)
    return tok


def render_pm_text(tokenizer, messages: list[dict[str, str]], response: str) -> str:
    """The conversation with `response` as the assistant's turn, in the model's chat template, ending with the
    turn's end-of-turn token (what follows it, e.g. ChatML's newline, is dropped). A tokenizer without a chat
    template (GPT-2, full tier) gets HH-RLHF's raw form "\\n\\nHuman: ...\\n\\nAssistant: <response>" + eos."""
    if not messages or messages[-1]["role"] != "user":
        raise ValueError("the conversation before a response must end with a user message")
    eos = tokenizer.eos_token or ""
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template([*messages, {"role": "assistant", "content": response}], tokenize=False)
        cut = text.rfind(eos) if eos else -1
        return text[: cut + len(eos)] if cut >= 0 else text.rstrip()
    names = {"user": "Human", "assistant": "Assistant", "system": "System"}
    turns = "".join(f"\n\n{names[m['role']]}: {m['content']}" for m in messages)
    return f"{turns}\n\nAssistant: {response}{eos}"


def token_ids(tokenizer, text: str) -> list[int]:
    """All token ids of a rendered text: a chat-template rendering already holds its special tokens."""
    return list(tokenizer(text, add_special_tokens=not getattr(tokenizer, "chat_template", None))["input_ids"])


def encode_pm_text(tokenizer, text: str, max_length: int) -> list[int]:
    """Token ids of a rendered text, left-truncated to max_length so the response (and its eos) is always kept."""
    return token_ids(tokenizer, text)[-max_length:]


def pad_left(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        if s:
            ids[i, width - len(s) :] = torch.tensor(s, dtype=torch.long)
            mask[i, width - len(s) :] = 1
    return ids, mask


def score_positions(input_ids: torch.Tensor, attention_mask: torch.Tensor, pad_token_id: int) -> torch.Tensor:
    """transformers' sequence-classification pooling ("rightmost token that is not pad"), restricted to attended
    tokens: the position whose score is a sequence's score, for left, right or no padding."""
    real = (attention_mask.bool() & (input_ids != pad_token_id)).to(torch.int64)
    idx = torch.arange(input_ids.shape[-1], device=input_ids.device)
    return (idx * real).argmax(-1)


# ---------------------------------------------------------------------------------------------------- model
def base_weights(base_dir: str | Path) -> tuple[str, str | None]:
    meta = read_json(Path(base_dir) / "model.json")
    if meta["kind"] != "base":
        raise ValueError(
            f"{base_dir}: a PM base must be a base model folder (model.json kind 'base'), not {meta['kind']}"
        )
    return (str(base_dir) if meta["weights"] == "." else meta["weights"]), meta.get("revision")


def load_seqcls_base(base_dir: str | Path, dtype: torch.dtype, pad_token_id: int):
    """AutoModelForSequenceClassification(num_labels=1) on a base model folder; its fresh head is seeded by the
    caller (set_seed) and replaced by each adapter's own head (peft modules_to_save)."""
    from transformers import AutoModelForSequenceClassification
    from trl.trainer.reward_trainer import suppress_seqcls_warning

    path, revision = base_weights(base_dir)
    with suppress_seqcls_warning():
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=dtype, revision=revision)
    model.config.pad_token_id = pad_token_id
    return model


def decoder_layers(model) -> tuple[str, torch.nn.ModuleList]:
    """The transformer's list of decoder blocks (its attribute name is peft's `layers_pattern`)."""
    inner = getattr(model, model.base_model_prefix)
    for name in ("layers", "h", "blocks"):
        layers = getattr(inner, name, None)
        if isinstance(layers, torch.nn.ModuleList):
            return name, layers
    raise ValueError(f"cannot find the decoder layers of {type(model).__name__}")


def resolve_targets(target_modules: str | list[str], layers: torch.nn.ModuleList) -> list[str]:
    """LoRA target names. "all-linear" (the config's model-agnostic choice) becomes the names of every linear layer
    inside the decoder blocks (peft refuses the string together with `layers_to_transform`); the head is never one."""
    if not isinstance(target_modules, str):
        return list(target_modules)
    if target_modules.lower() != "all-linear":
        raise ValueError(f"target_modules must be a list of module names or 'all-linear', not {target_modules!r}")
    from transformers.pytorch_utils import Conv1D

    return sorted({n.rsplit(".", 1)[-1] for n, m in layers.named_modules() if isinstance(m, torch.nn.Linear | Conv1D)})


def pm_lora_config(lora: PMLoraSettings | dict[str, Any], model):
    from peft import LoraConfig, TaskType

    lora = lora if isinstance(lora, PMLoraSettings) else PMLoraSettings.from_dict(lora)
    pattern, layers = decoder_layers(model)
    n = len(layers)
    k = lora.layers
    top = None
    if k is not None and k != "all":
        if not 1 <= int(k) <= n:
            raise ValueError(f"lora.layers = {k}: must be between 1 and the model's {n} layers (or null = all)")
        top = list(range(n - int(k), n)) if int(k) < n else None
    return LoraConfig(
        task_type=TaskType.SEQ_CLS,  # adds the "score" head to modules_to_save: one trained head per principle
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=resolve_targets(lora.target_modules, layers),
        bias="none",
        layers_to_transform=top,
        layers_pattern=pattern if top is not None else None,
    )


# ---------------------------------------------------------------------------------------------------- data
def build_pm_rows(
    pairs: list[dict[str, Any]],
    feedback: list[dict[str, Any]],
    tokenizer,
    cfg: PMSettings | dict[str, Any],
    split: str = "train",
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """RewardTrainer rows {chosen_ids, rejected_ids[, margin]} from the pairs of `split` that have a feedback label."""
    cfg = pm_settings(cfg)
    max_length = cfg.train.max_length
    labels = {r["id"]: r for r in feedback}
    stats = {"split": split, "pairs": 0, "no_feedback": 0, "below_min_margin": 0, "same_text": 0, "truncated": 0}
    rows = []
    chosen_a = 0
    selected = [p for p in pairs if p["split"] == split]
    if cfg.max_pairs:
        selected = sorted(selected, key=lambda p: stable_hash([cfg.train.seed, p["id"]]))[: cfg.max_pairs]
    for pair in selected:
        fb = labels.get(pair["id"])
        stats["pairs"] += 1
        if fb is None or fb.get("label") is None or fb.get("margin") is None:
            stats["no_feedback"] += 1
            continue
        if abs(fb["margin"]) < cfg.min_abs_margin:
            stats["below_min_margin"] += 1
            continue
        good, bad = (
            (pair["response_a"], pair["response_b"]) if fb["label"] == 1 else (pair["response_b"], pair["response_a"])
        )
        if good == bad:
            stats["same_text"] += 1
            continue
        texts = [render_pm_text(tokenizer, pair["messages"], r) for r in (good, bad)]
        full = [token_ids(tokenizer, t) for t in texts]
        stats["truncated"] += sum(len(f) > max_length for f in full)
        row = {"id": pair["id"], "chosen_ids": full[0][-max_length:], "rejected_ids": full[1][-max_length:]}
        if cfg.margin:
            row["margin"] = float(abs(fb["margin"]))
        chosen_a += fb["label"] == 1
        rows.append(row)
    stats["examples"] = len(rows)
    stats["chosen_is_a"] = chosen_a
    if rows and cfg.margin:
        stats["mean_margin"] = sum(r["margin"] for r in rows) / len(rows)
    return rows, stats


# ---------------------------------------------------------------------------------------------------- training
def build_reward_trainer(model, tok, rows: list[dict[str, Any]], cfg: PMSettings | dict[str, Any], kwargs: dict):
    """TRL RewardTrainer on a fresh LoRA adapter; every TRL default that matters is set explicitly."""
    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer

    cfg = pm_settings(cfg)
    keep = ("chosen_ids", "rejected_ids", "margin") if cfg.margin else ("chosen_ids", "rejected_ids")
    data = Dataset.from_list([{k: r[k] for k in keep} for r in rows])
    args = RewardConfig(
        **kwargs,
        max_length=cfg.train.max_length,  # rows are already left-truncated to it, so TRL filters none
        disable_dropout=False,  # keep the configured LoRA dropout (the paper's 0.1); TRL defaults to disabling it
        center_rewards_coefficient=None,
        dataset_num_proc=None,
        pad_to_multiple_of=None,
        activation_offloading=False,
        eval_strategy="no",
    )
    return RewardTrainer(
        model=model, args=args, train_dataset=data, processing_class=tok, peft_config=pm_lora_config(cfg.lora, model)
    )


def train_pm(
    base_dir: Path,
    pairs_path: Path,
    feedback_path: Path,
    principle: str,
    cfg: PMSettings | dict[str, Any],
    wandb_cfg: dict[str, Any],
    tier: str,
    out: Path,
) -> dict[str, Any]:
    from transformers import set_seed

    from alignrepro.provenance import provenance
    from alignrepro.training import (
        DivergenceGuard,
        TrainSettings,
        check_finite,
        finish_model_dir,
        resume_checkpoint,
        setup_wandb,
        trainer_kwargs,
    )

    settings = pm_settings(cfg)  # typed once; a typo or a bad value fails here, before a model is loaded
    cfg, train = settings.to_dict(), settings.train  # cfg: the merged dict, as model.json always recorded it
    tok = load_pm_tokenizer(base_dir)
    rows, stats = build_pm_rows(read_jsonl(pairs_path), read_jsonl(feedback_path), tok, settings)
    if not rows:
        raise ValueError(f"{principle}: no training pair has a feedback label ({stats})")
    dtype = choose_dtype(settings.dtype)
    set_seed(train.seed)  # the fresh head's init
    model = load_seqcls_base(base_dir, dtype, tok.pad_token_id)
    base_name = model_identity(base_dir)["name"]
    run_name = f"PM_{base_name}_{principle}_LoRA"  # the official W&B naming
    use_wandb = setup_wandb(wandb_cfg, out.parent.parent / "wandb", group="morlaif", run_name=run_name)
    train_settings = TrainSettings.from_dict(train.to_dict(), run=run_name)
    kwargs = trainer_kwargs(train_settings, out, len(rows), dtype, run_name=run_name, use_wandb=use_wandb)
    trainer = build_reward_trainer(model, tok, rows, settings, kwargs)

    trainer.add_callback(DivergenceGuard(run_name))
    identity = {"step": "morlaif.pm", "principle": principle, "cfg": cfg, "rows": stable_hash(rows, 64)}
    resume = resume_checkpoint(out, identity | {"base": model_identity(base_dir)})
    start = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=resume)
    seconds = round(time.perf_counter() - start, 1)
    history = [h for h in trainer.state.log_history if "loss" in h or "train_loss" in h]
    if use_wandb:
        import wandb

        if wandb.run is not None:
            wandb.run.summary.update({"data": stats, "principle": principle})
            wandb.finish()

    check_finite(trainer.model, run_name)
    adapter = out / "adapter"
    shutil.rmtree(adapter, ignore_errors=True)
    trainer.model.save_pretrained(adapter)
    _, layers = decoder_layers(trainer.model.base_model.model)
    meta = {
        "kind": "pm_lora",
        "principle": principle,
        "name": run_name,
        "base": str(base_dir),
        "base_identity": model_identity(base_dir),
        "adapter": "adapter",
        "pad_token": tok.pad_token,
        "max_length": train.max_length,
        "num_layers": len(layers),
        "lora": cfg["lora"],
        "margin": settings.margin,
        "train_metrics": result.metrics,
        "log_history": history,
        "data": stats,
        "dtype": str(dtype).removeprefix("torch."),
        "train_seconds": seconds,
        "resumed_from": resume,
        "pairs_sha256": sha256_file(pairs_path),
        "feedback_sha256": sha256_file(feedback_path),
        "config": cfg,
        "provenance": provenance(tier=tier, config=cfg, seed=train.seed, principle=principle),
    }
    return finish_model_dir(out, ("adapter",), meta)  # model.json last: its presence means the PM is complete


# ---------------------------------------------------------------------------------------------------- bank
class PMBank:
    """One sequence-classification base with every principle's LoRA adapter; scores with each adapter in turn.

    For a llama-style decoder (embed_tokens, layers, norm, rotary_emb) the layers below the first adapted one are
    run once per batch (`trunk_layers` of them) and shared by all principles; other architectures (GPT-2) run the
    whole model per principle. Positions come from the attention mask (cumsum - 1), so left padding scores the same
    as no padding.
    """

    def __init__(self, model, tokenizer, principles: list[str], max_length: int, metas: dict[str, dict[str, Any]]):
        self.model = model
        self.tokenizer = tokenizer
        self.principles = list(principles)
        self.max_length = max_length
        self.metas = metas
        self.pad_token_id = tokenizer.pad_token_id
        self.seqcls = model.base_model.model  # the transformers *ForSequenceClassification (LoRA layers inside)
        self.inner = getattr(self.seqcls, self.seqcls.base_model_prefix)
        self.head = self.seqcls.score
        self.trunk_layers = self._shared_trunk()

    @classmethod
    def from_dirs(
        cls, dirs: dict[str, Path], dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"
    ) -> PMBank:
        from peft import PeftModel

        if not dirs:
            raise ValueError("PMBank needs at least one PM folder")
        metas = {p: read_model_meta(d) for p, d in dirs.items()}  # verified against their manifests
        for p, m in metas.items():
            if m.get("kind") != "pm_lora":
                raise ValueError(f"{dirs[p]}: model.json kind is {m.get('kind')!r}, expected 'pm_lora'")
        bases = {json.dumps(m["base_identity"], sort_keys=True) for m in metas.values()}
        if len(bases) > 1:
            raise ValueError(f"PMs of one bank must share one base model, got {sorted(bases)}")
        first = next(iter(metas.values()))
        tok = load_pm_tokenizer(first["base"])
        pads = {m.get("pad_token") for m in metas.values()} - {None}
        if pads and pads != {tok.pad_token}:
            raise ValueError(
                f"PMs were trained with pad token(s) {pads}, the bank's tokenizer pads with {tok.pad_token}"
            )
        base = load_seqcls_base(first["base"], dtype, tok.pad_token_id)
        names = list(dirs)
        model = PeftModel.from_pretrained(
            base, Path(dirs[names[0]]) / metas[names[0]]["adapter"], adapter_name=names[0]
        )
        for p in names[1:]:
            model.load_adapter(Path(dirs[p]) / metas[p]["adapter"], adapter_name=p)
        model.to(device).eval()
        max_length = min(int(m.get("max_length", 512)) for m in metas.values())
        return cls(model, tok, names, max_length, metas)

    # ------------------------------------------------------------------------------------------------
    def _shared_trunk(self) -> int | None:
        """How many bottom layers no adapter touches (the shared trunk), or None if the architecture is not one
        whose layers this class knows how to run one by one (then every principle runs the whole model)."""
        from peft.tuners.tuners_utils import BaseTunerLayer
        from peft.utils import ModulesToSaveWrapper

        needed = ("embed_tokens", "layers", "norm", "rotary_emb")
        if not all(hasattr(self.inner, a) for a in needed):
            return None
        if "position_embeddings" not in inspect.signature(self.inner.layers[0].forward).parameters:
            return None
        adapted = (BaseTunerLayer, ModulesToSaveWrapper)
        for mod in (self.inner.embed_tokens, self.inner.rotary_emb):
            if any(isinstance(m, adapted) for m in mod.modules()):
                return None
        for i, layer in enumerate(self.inner.layers):
            if any(isinstance(m, adapted) for m in layer.modules()):
                return i
        return len(self.inner.layers)

    @staticmethod
    def positions(attention_mask: torch.Tensor) -> torch.Tensor:
        return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)

    def _run_layers(self, layers, hidden, causal_mask, position_ids, position_embeddings):
        for layer in layers:
            hidden = layer(
                hidden,
                attention_mask=causal_mask,
                position_ids=position_ids,
                position_embeddings=position_embeddings,
                use_cache=False,
            )
        return hidden

    def _head(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.head(hidden).squeeze(-1).float()

    @torch.inference_mode()
    def score_tokens(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Scores [B, T, P]: each principle's PM score at every position (0 at padding). A sequence's score is the
        one at `score_positions` (its last real token; for a policy sample ending in eos, the eos)."""
        device = next(self.model.parameters()).device
        input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
        out = torch.zeros((*input_ids.shape, len(self.principles)), dtype=torch.float32, device=device)
        position_ids = self.positions(attention_mask)
        if self.trunk_layers is None:
            for j, p in enumerate(self.principles):
                self.model.set_adapter(p, inference_mode=True)
                hidden = self.inner(
                    input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
                ).last_hidden_state
                out[..., j] = self._head(hidden)
        else:
            from transformers.masking_utils import create_causal_mask

            embeds = self.inner.embed_tokens(input_ids)
            causal_mask = create_causal_mask(
                config=self.inner.config,
                inputs_embeds=embeds,
                attention_mask=attention_mask,
                past_key_values=None,
                position_ids=position_ids,
            )
            pos_emb = self.inner.rotary_emb(embeds, position_ids=position_ids)
            layers = self.inner.layers[: self.inner.config.num_hidden_layers]
            trunk = self._run_layers(layers[: self.trunk_layers], embeds, causal_mask, position_ids, pos_emb)
            for j, p in enumerate(self.principles):
                self.model.set_adapter(p, inference_mode=True)
                hidden = self._run_layers(layers[self.trunk_layers :], trunk, causal_mask, position_ids, pos_emb)
                out[..., j] = self._head(self.inner.norm(hidden))
        return out * attention_mask.unsqueeze(-1).to(out.dtype)

    def score_positions(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return score_positions(input_ids, attention_mask, self.pad_token_id)

    def encode(self, texts: list[str]) -> list[list[int]]:
        return [encode_pm_text(self.tokenizer, t, self.max_length) for t in texts]

    def score_ids(self, seqs: list[list[int]], batch_size: int = 8) -> torch.Tensor:
        """[N, P] sequence scores of token-id lists (batched by length to waste little on padding)."""
        order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))
        out = torch.zeros((len(seqs), len(self.principles)), dtype=torch.float32)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            ids, mask = pad_left([seqs[i] for i in idx], self.pad_token_id)
            scores = self.score_tokens(ids, mask).cpu()
            pos = self.score_positions(ids, mask)
            out[idx] = scores[torch.arange(len(idx)), pos]
        return out

    def score_texts(self, texts: list[str], batch_size: int = 8) -> torch.Tensor:
        """[N, P]: each rendered text's score under every principle's PM."""
        return self.score_ids(self.encode(texts), batch_size)

    def score_pairs(self, pairs: list[dict[str, Any]], batch_size: int = 8, progress: bool = True) -> list[dict]:
        """pm_scores.jsonl rows: every pair's two responses scored by every PM."""
        from tqdm import tqdm

        rows = []
        chunk = max(batch_size * 8, 1)
        bar = tqdm(total=len(pairs), desc="pm score", disable=not progress)
        for s in range(0, len(pairs), chunk):
            part = pairs[s : s + chunk]
            texts = [
                render_pm_text(self.tokenizer, p["messages"], p[k]) for p in part for k in ("response_a", "response_b")
            ]
            scores = self.score_texts(texts, batch_size)
            for i, p in enumerate(part):
                a, b = scores[2 * i].tolist(), scores[2 * i + 1].tolist()
                rows.append(
                    {
                        "id": p["id"],
                        "split": p["split"],
                        "scores_a": dict(zip(self.principles, a, strict=True)),
                        "scores_b": dict(zip(self.principles, b, strict=True)),
                    }
                )
            bar.update(len(part))
        bar.close()
        return rows


# ---------------------------------------------------------------------------------------------------- CLI
def _score_cli(args: argparse.Namespace) -> None:
    from alignrepro.provenance import provenance

    dirs = {p: Path(d) for p, d in json.loads(args.pms_json).items()}
    dtype = choose_dtype(args.dtype)
    bank = PMBank.from_dirs(dirs, dtype=dtype)
    pairs = read_jsonl(args.pairs)
    start = time.perf_counter()
    rows = bank.score_pairs(pairs, batch_size=args.batch_size)
    seconds = round(time.perf_counter() - start, 1)
    write_jsonl(args.out, rows)
    atomic_write_json(
        args.out.with_suffix(".provenance.json"),
        provenance(
            tier=args.tier,
            config={"pms": {p: str(d) for p, d in dirs.items()}, "batch_size": args.batch_size, "dtype": args.dtype},
            seed=None,
            pairs_sha256=sha256_file(args.pairs),
            pms={
                p: {"adapter_sha256": m["adapter_sha256"], "base_identity": m["base_identity"]}
                for p, m in bank.metas.items()
            },
            principles=bank.principles,
            trunk_layers=bank.trunk_layers,
            max_length=bank.max_length,
            n_pairs=len(rows),
            seconds=seconds,
        ),
    )
    log.info("scored %d pairs with %d PMs in %.1f s", len(rows), len(bank.principles), seconds)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m alignrepro.methods.morlaif.pm",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train one principle's PM (LoRA adapter + model.json)")
    t.add_argument("--base", type=Path, required=True, help="base model folder (model.json kind 'base')")
    t.add_argument("--pairs", type=Path, required=True, help="data/pairs.jsonl")
    t.add_argument("--feedback", type=Path, required=True, help="feedback/<principle>.jsonl")
    t.add_argument("--principle", required=True)
    t.add_argument(
        "--config-json",
        default="{}",
        help="PM config (lora, train, margin, ...) as JSON over the YAML defaults (morlaif.pm)",
    )
    t.add_argument(
        "--wandb-json",
        default='{"mode": "disabled", "project": "alignrepro"}',
        help="W&B settings (kept out of --config-json so that they never trigger a retrain)",
    )
    t.add_argument("--tier", required=True)
    t.add_argument("--out", type=Path, required=True, help="output folder pms/<principle> (adapter/, model.json)")
    s = sub.add_parser("score", help="score every pair with every PM of a bank")
    s.add_argument("--pms-json", required=True, help='{"principle": "pms/<principle>", ...}')
    s.add_argument("--pairs", type=Path, required=True)
    s.add_argument("--out", type=Path, required=True, help="pm_scores.jsonl (+ .provenance.json beside it)")
    s.add_argument("--batch-size", type=int, default=8)
    s.add_argument("--dtype", default="float32", help="float32 | bfloat16")
    s.add_argument("--tier", default="unknown")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.command == "train":
        meta = train_pm(
            args.base,
            args.pairs,
            args.feedback,
            args.principle,
            json.loads(args.config_json),
            json.loads(args.wandb_json),
            args.tier,
            args.out,
        )
        print(json.dumps({k: meta[k] for k in ("principle", "name", "adapter_sha256", "train_seconds", "data")}))
    else:
        _score_cli(args)


if __name__ == "__main__":
    main()
