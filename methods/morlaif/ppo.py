"""MORLAIF step 6: PPO on the policy with the scalarized multi-PM reward (TRL's `trl.experimental.ppo`, trl 1.12).

Read top to bottom:
  1. the reward: `ScalarizedPMReward`, a module TRL's `get_reward` accepts. Its "backbone" recovers, for each
     query+response row, the conversation (by looking the query tokens up) and the response text (cut at the first
     eos), renders them with the PMs' own rendering (`pm.render_pm_text`) and scores the text with
     `PMBank.score_texts`: the reward is *exactly* what a standalone PM gives that text, whatever the PM's tokenizer,
     padding or "last token" rule. The per-principle scores [B, P] are returned as "hidden states" broadcast over the
     T positions, so whichever position `get_reward` picks (the last response token) reads the same row; `score`
     then applies the z-score (analysis/weights.json), the weights and the scalarizer, and trlx's "running" reward
     scaling and clipping (the paper's `scale_reward: running`, `cliprange_reward: 10`) → [B, T, 1].
     The arm is a row (methods/morlaif/arms.py, `--row-json`): its scalarizer function, its params and its PMs.
     The single-PM arm: scalarizer "identity", one PM (cai), raw score (no z-score, no weights).
  2. adaptive KL (Ziegler et al. / trlx): TRL 1.12 reads a fixed `args.kl_coef` every step, so a callback updates
     `args.kl_coef` from the logged `objective/kl` after each step (`adaptive_kl_update`).
  3. `run_ppo`: policy = instruct model + LoRA (the reference is the adapter-disabled policy), value model =
     AutoModelForSequenceClassification (num_labels=1) from the same base, prompts rendered with the chat template and
     left-truncated; every PPOConfig field that matters is set from the config (YAML defaults.ppo = the paper values);
     per-step metrics go to train_log.jsonl (and W&B offline); the adapter is saved with `save_adapter` (model.json
     last, "prompt_template": "chat").

weights.json shape read here (written by the analysis step):
  {"zscore": {principle: {"mean": float, "std": float}}, "weights": {principle: float}, ...}

Budget: `steps` × `batch_size` rollouts (TRL's total_episodes), identical for every arm.
Differences from the paper's trlx setup (also for the README's deviation list):
  - TRL's PPO sets every dropout to 0 (policy, value, reward), so the paper's policy LoRA dropout 0.1 has no effect;
  - the value function is TRL's separate sequence-classification model, not trlx's value head on the policy trunk
    (`value_trainable_layers` can freeze its lower layers for speed); TRL's PPO does not clip gradient norms;
  - responses stop at the chat template's end-of-turn token (eos) instead of trlx's "Human:"/"Assistant:" strings;
  - the policy tokenizer pads with a token other than eos (TRL finds padding by id; see `ppo_tokenizer`);
  - "running" reward scaling updates once per rollout chunk (`rollout_forward_batch_size`, default the whole batch).
Resume: TRL's PPO trainer cannot resume mid-run; a run whose model.json exists is skipped, a killed run (no
model.json) starts again from scratch after removing its partial files.

`python -m alignrepro.methods.morlaif.ppo --help`
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import TrainerCallback

from alignrepro.io import content_sha256, read_json, read_jsonl, stable_hash
from alignrepro.methods.morlaif.arms import Arm
from alignrepro.methods.morlaif.settings import PPOSettings
from alignrepro.models import choose_dtype, load_model, load_tokenizer, model_identity
from alignrepro.settings import LoraSettings
from alignrepro.training import merge_settings, yaml_defaults

log = logging.getLogger("morlaif.ppo")
IDENTITY = "identity"  # the single-PM arm: one PM's raw score

# The paper's settings (note §1.6) mapped onto TRL's PPO live in methods/morlaif/config.yaml `defaults.ppo` (the one
# source; `steps` and `batch_size` are the budget, the same for every arm). What the rules or the arm add is below,
# with its value for a direct call.
RUN_SUPPLIED: dict[str, Any] = {
    "scalarizer_params": {},  # passed to scalarize(**params): temperature, lam, quantile, nash variant ...
    "dtype": "float32",
}


def defaults() -> dict[str, Any]:
    """The YAML defaults of `morlaif.ppo` plus the run-supplied scalarizer_params and dtype."""
    return yaml_defaults("morlaif", "ppo", RUN_SUPPLIED)


def resolve_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """The YAML defaults overridden by `cfg` (nested dicts merged); an unknown key fails naming the closest valid
    one. Checks the budget and the batch split."""
    for key in ("steps", "batch_size"):  # the YAML has the paper's; a direct call must still choose its budget
        if key not in cfg:
            raise ValueError(f"ppo config: {key!r} must be given (the budget, the same for every arm)")
    out = merge_settings(defaults(), cfg, "ppo config", free=("scalarizer_params",))
    for key in ("steps", "batch_size"):
        if not isinstance(out[key], int) or out[key] < 1:
            raise ValueError(f"ppo config: {key!r} must be a positive integer (the budget), got {out[key]!r}")
    if out["batch_size"] % out["mini_batch_size"]:
        raise ValueError(f"ppo config: batch_size {out['batch_size']} is not a multiple of mini_batch_size")
    if out["reward"]["scale"] not in ("running", "none"):
        raise ValueError(f"ppo config: reward.scale must be 'running' or 'none', got {out['reward']['scale']!r}")
    return out


def ppo_settings(cfg: PPOSettings | dict[str, Any], where: str = "morlaif.ppo") -> PPOSettings:
    """The step's settings, typed once: `cfg` over the YAML defaults (resolve_config), parsed as PPOSettings."""
    if isinstance(cfg, PPOSettings):
        return cfg
    return PPOSettings.from_dict(resolve_config(cfg), where)


# ------------------------------------------------------------------------------------------------------- reward
def load_weights_file(path: str | Path, principles: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mean[P], std[P], weights[P]) in the bank's principle order, from analysis/weights.json."""
    data = read_json(path)
    try:
        mean = [float(data["zscore"][p]["mean"]) for p in principles]
        std = [float(data["zscore"][p]["std"]) for p in principles]
        weights = [float(data["weights"][p]) for p in principles]
    except KeyError as e:
        raise KeyError(f"{path}: no z-score stats or weight for principle {e} (bank: {principles})") from None
    if min(std) <= 0:
        raise ValueError(f"{path}: z-score std must be > 0, got {dict(zip(principles, std, strict=True))}")
    return torch.tensor(mean), torch.tensor(std), torch.tensor(weights)


class RunningMoments:
    """trlx's running mean/std of the rewards (scale_reward: "running" divides the scores by the running std)."""

    def __init__(self) -> None:
        self.mean, self.var, self.std, self.count = 0.0, 1.0, 1.0, 1e-24

    def update(self, xs: torch.Tensor) -> None:
        xs = xs.detach().double().flatten()
        n = xs.numel()
        if n == 0:
            return
        var, mean = torch.var_mean(xs, unbiased=False)
        var, mean = float(var), float(mean)
        delta = mean - self.mean
        total = self.count + n
        m2 = self.var * self.count + delta**2 * self.count * n / total + var * n
        self.mean += delta * n / total
        self.var = m2 / total
        self.std = math.sqrt(self.var * total / (total - 1)) if total > 1 else 1.0
        self.count = total


@dataclass
class _BackboneOutput:
    hidden_states: tuple[torch.Tensor, ...]


class ScalarizedPMReward(nn.Module):
    """A reward model for TRL's PPO built on a PM bank (see the module docstring).

    bank: .principles, .score_texts(texts, batch_size) -> Tensor[N, P] (a PMBank or a test fake);
    prompts: {query token ids with pads dropped: messages}; the policy tokenizer decodes responses;
    render(messages, response) -> the PM text (default: pm.render_pm_text with the bank's tokenizer);
    zscore: (mean[P], std[P]) or None; weights[P] or None; scalarizer: a name of scalarizers.SCALARIZERS,
    "identity", or a function f(r, **params) (an arm row's).
    """

    base_model_prefix = "pm_backbone"  # get_reward calls getattr(model, base_model_prefix)(...)

    def __init__(
        self,
        bank: Any,
        tokenizer: Any,
        prompts: dict[tuple[int, ...], list[dict[str, str]]],
        scalarizer: str | Callable[..., torch.Tensor],
        weights: torch.Tensor | None = None,
        zscore: tuple[torch.Tensor, torch.Tensor] | None = None,
        scalarizer_params: dict[str, Any] | None = None,
        reward_scale: str = "none",
        reward_clip: float | None = None,
        render: Callable[[list[dict[str, str]], str], str] | None = None,
        pm_batch_size: int = 8,
    ) -> None:
        super().__init__()
        self.principles = list(bank.principles)
        if scalarizer == IDENTITY and len(self.principles) != 1:
            raise ValueError(f"scalarizer 'identity' takes exactly one PM, got {self.principles}")
        if isinstance(scalarizer, str) and scalarizer != IDENTITY:
            from alignrepro.methods.morlaif.scalarizers import SCALARIZERS

            if scalarizer not in SCALARIZERS:
                raise ValueError(f"unknown scalarizer {scalarizer!r} (expected one of {sorted(SCALARIZERS)})")
        if isinstance(bank, nn.Module):
            self.bank = bank  # registered: TRL's .to(device) and dropout removal reach it
        else:
            self._bank = bank
            if isinstance(getattr(bank, "model", None), nn.Module):
                self.pm_model = bank.model
        if render is None:
            from alignrepro.methods.morlaif.pm import render_pm_text

            def render(messages: list[dict[str, str]], response: str) -> str:
                return render_pm_text(bank.tokenizer, messages, response)

        self.render = render
        self.tokenizer = tokenizer
        self.prompts = prompts
        self._lengths = sorted({len(k) for k in prompts}, reverse=True)
        self.scalarizer = scalarizer
        # JSON lists (e.g. uncertainty_weighted's per-principle `variances`) become tensors
        self.scalarizer_params = {
            k: torch.tensor(v, dtype=torch.float32) if isinstance(v, list) else v
            for k, v in (scalarizer_params or {}).items()
        }
        self.register_buffer("weights", None if weights is None else weights.float().clone())
        self.register_buffer("z_mean", None if zscore is None else zscore[0].float().clone())
        self.register_buffer("z_std", None if zscore is None else zscore[1].float().clone())
        self.reward_scale, self.reward_clip = reward_scale, reward_clip
        self.moments = RunningMoments()
        self.pm_batch_size = pm_batch_size
        self.last_texts: list[str] = []
        self._records: list[dict[str, Any]] = []

    @property
    def pm_bank(self) -> Any:
        return self.bank if "bank" in self._modules else self._bank

    # -------------------------------------------------------------- what get_reward calls
    def pm_backbone(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: Any = None, **_: Any
    ) -> _BackboneOutput:
        """Per-principle PM scores of each row's (conversation, response), broadcast over T: [B, T, P]."""
        texts, lengths, has_eos = self.parse(input_ids, attention_mask)
        raw = self.pm_bank.score_texts(texts, batch_size=self.pm_batch_size)
        raw = torch.as_tensor(raw, dtype=torch.float32).to(input_ids.device)
        combined = self.combine(raw)
        if self.reward_scale == "running":
            self.moments.update(combined)  # trlx: update with this batch, then divide by the running std
        self.last_texts = texts
        self._records.append({"raw": raw.cpu(), "combined": combined.cpu(), "lengths": lengths, "eos": has_eos})
        hidden = raw[:, None, :].expand(raw.shape[0], input_ids.shape[1], raw.shape[1])
        return _BackboneOutput(hidden_states=(hidden,))

    def score(self, hidden: torch.Tensor) -> torch.Tensor:
        """[..., P] per-principle PM scores → [..., 1] reward (z-score, weights, scalarizer, scaling, clipping)."""
        reward = self.combine(hidden)
        if self.reward_scale == "running":
            reward = reward / max(self.moments.std, 1e-8)
        if self.reward_clip:
            reward = reward.clamp(-self.reward_clip, self.reward_clip)
        return reward.unsqueeze(-1)

    def combine(self, scores: torch.Tensor) -> torch.Tensor:
        """[..., P] → [...]: the arm's reward before scaling (identity: the one PM's raw score)."""
        if self.scalarizer == IDENTITY:
            return scores[..., 0]
        from alignrepro.methods.morlaif.scalarizers import scalarize

        z = scores if self.z_mean is None else (scores - self.z_mean) / self.z_std
        params = {k: v.to(z.device) if torch.is_tensor(v) else v for k, v in self.scalarizer_params.items()}
        return scalarize(self.scalarizer, z, self.weights, **params)

    # -------------------------------------------------------------- rows → texts
    def parse(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[list[str], list[int], list[bool]]:
        """PM texts of the rows, response lengths (tokens before eos) and whether each response reached eos.

        A row is [left pads][query][response][right pads]; get_reward masks pads (ids 0, mask False). The query is
        the longest known prompt that prefixes the row's unmasked tokens; the response runs from there to the first
        masked position (TRL's own end of response) and is cut at the first eos, decoded as the evaluation backend
        decodes (skip special tokens, strip).
        """
        eos = self.tokenizer.eos_token_id
        texts, lengths, has_eos = [], [], []
        for ids, mask in zip(input_ids.tolist(), attention_mask.bool().tolist(), strict=True):
            kept = [i for i, (t, m) in enumerate(zip(ids, mask, strict=True)) if m]
            tokens = [ids[i] for i in kept]
            n_query = next((n for n in self._lengths if n <= len(tokens) and tuple(tokens[:n]) in self.prompts), None)
            if n_query is None:
                raise KeyError("a PPO query is not among the training prompts (tokenizer or truncation mismatch)")
            messages = self.prompts[tuple(tokens[:n_query])]
            response: list[int] = []
            pos = kept[n_query] if n_query < len(kept) else len(ids)
            reached_eos = False
            while pos < len(ids) and mask[pos]:
                if ids[pos] == eos:
                    reached_eos = True
                    break
                response.append(ids[pos])
                pos += 1
            text = self.tokenizer.decode(response, skip_special_tokens=True).strip()
            texts.append(self.render(messages, text))
            lengths.append(len(response))
            has_eos.append(reached_eos)
        return texts, lengths, has_eos

    def pop_stats(self) -> dict[str, float]:
        """Mean per-principle PM score, arm reward and response length over the rows scored since the last call."""
        if not self._records:
            return {}
        raw = torch.cat([r["raw"] for r in self._records])
        combined = torch.cat([r["combined"] for r in self._records])
        lengths = [n for r in self._records for n in r["lengths"]]
        eos = [e for r in self._records for e in r["eos"]]
        self._records = []
        stats = {f"reward/pm/{p}": float(raw[:, i].mean()) for i, p in enumerate(self.principles)}
        stats["reward/scalarized"] = float(combined.mean())
        stats["reward/scalarized_std"] = float(combined.std()) if len(combined) > 1 else 0.0
        stats["reward/running_std"] = float(self.moments.std)
        stats["response/length"] = sum(lengths) / len(lengths)
        stats["response/eos_frac"] = sum(eos) / len(eos)
        return stats


# ----------------------------------------------------------------------------------------------- adaptive KL
def adaptive_kl_update(coef: float, kl: float, target: float, horizon: float, n_steps: int) -> float:
    """Ziegler et al. / trlx AdaptiveKLController: coef·(1 + clip(KL/target − 1, ±0.2)·n_steps/horizon)."""
    error = min(max(kl / target - 1.0, -0.2), 0.2)
    return coef * (1.0 + error * n_steps / horizon)


class AdaptiveKLCallback(TrainerCallback):
    """Updates args.kl_coef (read by TRL's PPO loop at every step) from each step's logged objective/kl.

    PPOTrainer.train() calls self.log(metrics) once per step, after the update; Trainer.log hands the same dict to
    on_log, and the next step's rewards read args.kl_coef. n_steps = rollouts since the last update (trlx: batch size).
    """

    def __init__(self, target: float, horizon: float) -> None:
        self.target, self.horizon = target, horizon
        self.last_episode = 0

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or "objective/kl" not in logs:
            return
        episode = getattr(state, "episode", self.last_episode + args.per_device_train_batch_size)
        n_steps, self.last_episode = episode - self.last_episode, episode
        args.kl_coef = adaptive_kl_update(args.kl_coef, logs["objective/kl"], self.target, self.horizon, n_steps)


class JsonlLogCallback(TrainerCallback):
    """One train_log.jsonl row per PPO step (appended and flushed: a killed run keeps its log so far)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or "objective/kl" not in logs:
            return
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"step": state.global_step, **logs}, sort_keys=True) + "\n")


def _trainer_class():
    from trl.experimental.ppo import PPOTrainer

    class MORLAIFPPOTrainer(PPOTrainer):
        """TRL's PPOTrainer whose per-step logs also carry the reward breakdown, kl_coef and the step time."""

        def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
            if "objective/kl" in logs:
                logs.update(self.reward_model.pop_stats())
                logs["kl_coef"] = float(self.args.kl_coef)  # the coefficient this step's rewards used
                now, cpu = time.perf_counter(), time.process_time()
                logs["time/step_s"] = now - getattr(self, "_last_log_time", self._train_start[0])
                logs["time/step_cpu_s"] = cpu - getattr(self, "_last_log_cpu", self._train_start[1])
                self._last_log_time, self._last_log_cpu = now, cpu
            super().log(logs, start_time)

        def train(self):
            self._train_start = (time.perf_counter(), time.process_time())
            return super().train()

    return MORLAIFPPOTrainer


# ------------------------------------------------------------------------------------------------ data, models
def ppo_tokenizer(policy_dir: str | Path):
    """The policy tokenizer, left-padded, with a pad token distinct from eos.

    TRL's PPO finds padding by `ids == pad_token_id`: with pad == eos (SmolLM2), the <|im_end|> tokens inside the chat
    prompt would be masked out, the reward would sit before the eos and every response would count as "has eos".
    """
    tok = load_tokenizer(policy_dir, padding_side="left")
    if tok.pad_token_id is None or tok.pad_token_id == tok.eos_token_id:
        spare = [t for t in (tok.unk_token, "<|endoftext|>") if t is not None and t in tok.get_vocab()]
        spare = [t for t in spare if tok.convert_tokens_to_ids(t) not in (tok.eos_token_id, tok.bos_token_id)]
        if not spare:
            raise ValueError(f"{policy_dir}: no spare special token to pad with (pad == eos); add one to the model")
        tok.pad_token = spare[0]
    return tok


def build_prompts(
    rows: list[dict[str, Any]], tokenizer: Any, max_prompt_length: int
) -> tuple[list[list[int]], dict[tuple[int, ...], list[dict[str, str]]]]:
    """Chat-rendered, left-truncated prompt ids, and the lookup {ids without pad tokens: messages} for the reward."""
    from alignrepro.generation import format_conversation

    ids_list, lookup, n_truncated = [], {}, 0
    for row in rows:
        ids = tokenizer(format_conversation("chat", row["messages"], tokenizer))["input_ids"]
        if len(ids) > max_prompt_length:
            ids, n_truncated = ids[-max_prompt_length:], n_truncated + 1
        ids_list.append(ids)
        lookup.setdefault(tuple(t for t in ids if t != tokenizer.pad_token_id), row["messages"])
    if n_truncated:
        log.info("left-truncated %d of %d prompts to %d tokens", n_truncated, len(rows), max_prompt_length)
    if len(lookup) < len(rows):
        log.warning("%d prompts share their tokens with another one after truncation", len(rows) - len(lookup))
    return ids_list, lookup


def base_weights(ref_dir: str | Path) -> tuple[str, str | None]:
    """(from_pretrained path, revision) of the base weights under a model reference (following LoRA chains)."""
    ref_dir = Path(ref_dir)
    meta = read_json(ref_dir / "model.json")
    if meta["kind"] == "lora":
        return base_weights(meta["base"])
    return (str(ref_dir) if meta["weights"] == "." else meta["weights"]), meta.get("revision")


def policy_lora_config(lora: LoraSettings | dict[str, Any]):
    """The policy's LoRA (training.lora_config), also for peft's "all-linear" shorthand given as a string."""
    from alignrepro.training import lora_config

    lora = lora.to_dict() if isinstance(lora, LoraSettings) else lora
    config = lora_config(lora)
    if isinstance(lora["target_modules"], str):
        config.target_modules = lora["target_modules"]  # peft expands "all-linear" itself; a list would not match
    return config


def freeze_value_model(value: nn.Module, trainable_layers: int | str) -> None:
    """Keep only the score head, the final norm and the top `trainable_layers` decoder layers trainable."""
    if trainable_layers == "all":
        return
    backbone = getattr(value, value.base_model_prefix)
    layers = getattr(backbone, "layers", None) or getattr(backbone, "h", None)
    if layers is None or not isinstance(trainable_layers, int) or trainable_layers < 0:
        raise ValueError(
            f"value_trainable_layers must be 'all' or an int >= 0 with a layered backbone, got {trainable_layers!r}"
        )
    value.requires_grad_(False)
    value.score.requires_grad_(True)
    for module in [
        *(list(layers)[len(layers) - trainable_layers :] if trainable_layers else []),
        getattr(backbone, "norm", None),
    ]:
        if module is not None:
            module.requires_grad_(True)


def ppo_config(
    cfg: PPOSettings | dict[str, Any], out_dir: Path, seed: int, dtype: torch.dtype, use_wandb: bool, run_name: str
):
    """Every PPOConfig field that matters, explicitly (TRL defaults: bf16, gradient checkpointing, lr 3e-6, vf 0.1).
    A dict is typed first (ppo_settings).

    TRL syncs gradients every `gradient_accumulation_steps` micro-batches *across* minibatches, so GA stays 1: the
    micro-batch is the whole rollout batch and each of its `num_mini_batches` minibatches is one optimizer step.
    """
    from trl.experimental.ppo import PPOConfig

    cfg = ppo_settings(cfg)
    cuda = torch.cuda.is_available()
    batch = cfg.batch_size
    return PPOConfig(
        output_dir=str(out_dir / "checkpoints"),
        run_name=run_name,
        seed=seed,
        data_seed=seed,
        per_device_train_batch_size=batch,
        gradient_accumulation_steps=1,
        num_mini_batches=batch // cfg.mini_batch_size,
        total_episodes=cfg.steps * batch,
        local_rollout_forward_batch_size=cfg.rollout_forward_batch_size or batch,
        num_ppo_epochs=cfg.ppo_epochs,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_steps,
        optim="adamw_torch",
        adam_beta1=cfg.adam_betas[0],
        adam_beta2=cfg.adam_betas[1],
        adam_epsilon=cfg.adam_eps,
        weight_decay=cfg.weight_decay,
        cliprange=cfg.cliprange,
        cliprange_value=cfg.cliprange_value,
        vf_coef=cfg.vf_coef,
        gamma=cfg.gamma,
        lam=cfg.lam,
        whiten_rewards=cfg.whiten_rewards,
        kl_coef=cfg.kl.init_coef,
        kl_estimator=cfg.kl.estimator,
        response_length=cfg.response_length,
        temperature=cfg.temperature,
        stop_token="eos",
        missing_eos_penalty=cfg.reward.missing_eos_penalty,
        num_sample_generations=0,  # its debug generations would also feed the running reward statistics
        bf16=cuda and dtype == torch.bfloat16,
        fp16=cuda and dtype == torch.float16,
        use_cpu=not cuda,
        gradient_checkpointing=False,
        logging_steps=1,
        save_strategy="no",  # TRL's PPO cannot resume from its checkpoints
        report_to=["wandb"] if use_wandb else [],
        disable_tqdm=False,
        dataloader_num_workers=0,
        push_to_hub=False,
    )


def run_ppo(
    *,
    policy_dir: str | Path,
    bank: Any,
    prompt_rows: list[dict[str, Any]],
    cfg: PPOSettings | dict[str, Any],
    out: str | Path,
    scalarizer: str | Arm,
    weights_path: str | Path | None,
    tier: str,
    seed: int,
    arm: str | None = None,
    wandb_cfg: dict[str, Any] | None = None,
    render: Callable[[list[dict[str, str]], str], str] | None = None,
    provenance_extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train one arm and save it to `out` (adapter/, train_log.jsonl, model.json last). Returns model.json's dict.

    `scalarizer`: the arm's row (its function, params and PMs), or a SCALARIZERS name / "identity" with the config's
    `scalarizer_params`."""
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, set_seed

    from alignrepro.provenance import provenance
    from alignrepro.training import DivergenceGuard, save_adapter, setup_wandb

    out = Path(out)
    arm = arm or out.name
    if (out / "model.json").exists():
        log.info("%s exists: skipping", out / "model.json")
        return read_json(out / "model.json")
    for stale in ("adapter", "checkpoints", "train_log.jsonl"):  # a killed run starts again cleanly
        path = out / stale
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    cfg = ppo_settings(cfg)
    if len(prompt_rows) < cfg.batch_size:
        raise ValueError(f"{len(prompt_rows)} prompts < batch_size {cfg.batch_size} (TRL drops incomplete batches)")
    set_seed(seed)  # LoRA and value-head init, sampling; PPOTrainer never calls Trainer.__init__'s seeding
    dtype = choose_dtype(cfg.dtype)
    log.info("torch threads: %d, dtype %s", torch.get_num_threads(), dtype)

    tok = ppo_tokenizer(policy_dir)
    ids_list, lookup = build_prompts(prompt_rows, tok, cfg.max_prompt_length)
    principles = list(bank.principles)
    weights = zscore = None
    row = scalarizer if isinstance(scalarizer, Arm) else None
    if row is not None:
        fn, params, weighted = row.function(), row.params, row.weighted
        if not weighted and principles != [row.pms]:
            raise ValueError(f"arm {row.name!r} scores PM {row.pms!r} alone, but the bank has {principles}")
    else:
        fn, params, weighted = scalarizer, cfg.scalarizer_params, scalarizer != IDENTITY
    if weighted:
        if weights_path is None:
            raise ValueError(f"arm {arm!r} needs --weights (z-score stats and principle weights)")
        mean, std, weights = load_weights_file(weights_path, principles)
        zscore = (mean, std)
    reward = ScalarizedPMReward(
        bank,
        tok,
        lookup,
        fn,
        weights=weights,
        zscore=zscore,
        scalarizer_params=params,
        reward_scale=cfg.reward.scale,
        reward_clip=cfg.reward.clip,
        render=render,
        pm_batch_size=cfg.reward.pm_batch_size,
    )

    policy = load_model(policy_dir, dtype=dtype)
    path, revision = base_weights(policy_dir)
    value = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=dtype, revision=revision)
    value.config.pad_token_id = tok.pad_token_id
    freeze_value_model(value, cfg.value_trainable_layers)

    wandb_row = f"morlaif-{tier}-ppo-{out.parent.parent.name}-{arm}"  # the base's folder: one run per base and arm
    use_wandb = bool(wandb_cfg) and setup_wandb(wandb_cfg, out.parent.parent / "wandb", "morlaif", run_name=wandb_row)
    args = ppo_config(cfg, out, seed, dtype, use_wandb, run_name=f"morlaif-{tier}-ppo-{arm}")
    callbacks: list[TrainerCallback] = [JsonlLogCallback(out / "train_log.jsonl"), DivergenceGuard(f"ppo-{arm}")]
    if cfg.kl.adaptive:
        callbacks.append(AdaptiveKLCallback(cfg.kl.target, cfg.kl.horizon))
    trainer = _trainer_class()(
        args=args,
        processing_class=tok,
        model=policy,
        ref_model=None,  # with peft_config: the adapter-disabled policy is the reference (no second copy)
        reward_model=reward,
        train_dataset=Dataset.from_dict({"input_ids": ids_list}),
        value_model=value,
        callbacks=callbacks,
        peft_config=policy_lora_config(cfg.lora),
    )
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    history = [h for h in trainer.state.log_history if "objective/kl" in h]
    if use_wandb:
        import wandb

        if wandb.run is not None:
            wandb.finish()
    policy_model = trainer.accelerator.unwrap_model(trainer.model).policy
    shutil.rmtree(out / "checkpoints", ignore_errors=True)
    return save_adapter(
        policy_model,
        Path(policy_dir),
        out,
        f"morlaif-{tier}-{arm}",
        {
            "method": "morlaif_ppo",
            "prompt_template": "chat",
            "arm": arm,
            "scalarizer": row.scalarizer if row else scalarizer,
            "scalarizer_params": params,
            "row": row.to_json() if row else None,
            "principles": principles,
            "weights": None if weights is None else dict(zip(principles, weights.tolist(), strict=True)),
            "config": cfg.to_dict(),
            "final_kl_coef": float(trainer.args.kl_coef),
            "steps": len(history),
            "episodes": int(trainer.state.episode),
            "train_seconds": round(seconds, 1),
            "seconds_per_step": round(seconds / max(len(history), 1), 2),
            "dtype": str(dtype).removeprefix("torch."),
            "torch_threads": torch.get_num_threads(),
            "pad_token": tok.pad_token,
            "provenance": provenance(
                tier=tier,
                config=cfg.to_dict(),
                seed=seed,
                policy=model_identity(policy_dir),
                weights_sha256=None if weights_path is None else content_sha256(weights_path),
                prompts_sha256=stable_hash(prompt_rows, 64),
                **(provenance_extra or {}),
            ),
        },
    )


# ----------------------------------------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m alignrepro.methods.morlaif.ppo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--policy", type=Path, required=True, help="policy model folder (model.json), e.g. the instruct model"
    )
    p.add_argument("--pms-json", required=True, help='{"principle": "pms/<principle>", ...} (PM folders, bank order)')
    p.add_argument("--weights", type=Path, help="analysis/weights.json (z-score stats + weights); not for identity")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--row-json", help="the arm's row as the workflow resolved it (methods/morlaif/arms.py Arm)")
    how.add_argument("--scalarizer", help="a scalarizers.SCALARIZERS name, or 'identity' (single PM), with the "
                     "config's scalarizer_params")  # fmt: skip
    p.add_argument("--prompts", type=Path, required=True, help="prompts_train.jsonl ({id, messages})")
    p.add_argument("--config-json", required=True, help="the morlaif.ppo subtree as JSON (over the YAML defaults)")
    p.add_argument("--wandb-json", default='{"mode": "disabled", "project": "alignrepro"}', help="W&B settings")
    p.add_argument("--tier", required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--arm", help="arm name (default: the --out folder's name)")
    p.add_argument("--threads", type=int, help="torch threads (default: OMP_NUM_THREADS, which Snakemake sets)")
    p.add_argument("--out", type=Path, required=True, help="output folder ppo/<arm>")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    threads = args.threads or int(os.environ.get("OMP_NUM_THREADS", "0") or 0)
    if threads > 0:
        torch.set_num_threads(threads)
    if (args.out / "model.json").exists():
        log.info("%s exists: skipping", args.out / "model.json")
        return
    from alignrepro.methods.morlaif.pm import PMBank

    pm_dirs = {k: Path(v) for k, v in json.loads(args.pms_json).items()}
    cfg = ppo_settings(json.loads(args.config_json), "--config-json")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    bank = PMBank.from_dirs(pm_dirs, dtype=choose_dtype(cfg.dtype), device=device)
    pms = {
        p: {"dir": str(d), "adapter_sha256": read_json(d / "model.json").get("adapter_sha256")}
        for p, d in pm_dirs.items()
    }
    run_ppo(
        policy_dir=args.policy,
        bank=bank,
        prompt_rows=read_jsonl(args.prompts),
        cfg=cfg,
        out=args.out,
        scalarizer=Arm.from_json(json.loads(args.row_json)) if args.row_json else args.scalarizer,
        weights_path=args.weights,
        tier=args.tier,
        seed=args.seed,
        arm=args.arm,
        wandb_cfg=json.loads(args.wandb_json),
        provenance_extra={"pms": pms},
    )


if __name__ == "__main__":
    main()
