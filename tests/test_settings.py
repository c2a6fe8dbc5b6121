"""Defaults live in YAML only (methods/<paper>/config.yaml `defaults:`), and training settings parse into one typed
object (alignrepro.training.TrainSettings) that every trainer's TrainingArguments come from."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from alignrepro.config import resolve_config
from alignrepro.errors import UserError
from alignrepro.methods.morlaif import pm, ppo
from alignrepro.methods.mote import train as mote_train
from alignrepro.training import SettingsError, TrainSettings, trainer_kwargs

ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# The in-code dicts as they were before the move to YAML (what a direct call got): every key and value must come
# back from the YAML defaults (+ the run-supplied seed/dtype/scalarizer_params), except where the workflow already
# gave the YAML's value (YAML_WON), which is now the value of a direct call too.
FORMER_MOTE = {
    "train": {
        "learning_rate": 2e-5,
        "epochs": 3,
        "per_device_batch_size": 16,
        "grad_accum": 1,
        "lr_scheduler": "cosine",
        "warmup_ratio": 0.03,
        "max_grad_norm": 1.0,
        "max_length": 1024,
        "seed": 0,
        "save_steps": 50,
        "max_steps": -1,
        "step_token_lr": None,
    },
    "lora": {"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": ALL_LINEAR},
    "mote": {
        "mix_alpha": 0.5,
        "skip_p": 0.5,
        "n_gate_experts": 4,
        "top_k": 2,
        "contrastive_weight": 0.1,
        "contrastive_tau": 0.1,
        "contrastive_tokens": 64,
        "query_expert_infer": "analysis",
    },
    "dtype": "float32",
}
FORMER_PM = {
    "lora": {"r": 8, "alpha": 32, "dropout": 0.1, "target_modules": ALL_LINEAR, "layers": None},
    "train": {
        "per_device_batch_size": 4,
        "grad_accum": 8,
        "epochs": 1,
        "learning_rate": 5.0e-5,
        "lr_scheduler": "cosine",
        "warmup_steps": 250,
        "seed": 0,
        "save_steps": 50,
        "max_length": 512,
    },
    "margin": True,
    "min_abs_margin": 0.0,
    "max_pairs": None,
    "dtype": "float32",
}
FORMER_PPO = {
    "batch_size": None,
    "steps": None,
    "mini_batch_size": 4,
    "rollout_forward_batch_size": None,
    "ppo_epochs": 4,
    "learning_rate": 4e-6,
    "lr_scheduler": "constant",
    "warmup_steps": 0,
    "adam_betas": [0.9, 0.95],
    "adam_eps": 1e-8,
    "weight_decay": 1e-6,
    "cliprange": 0.2,
    "cliprange_value": 0.2,
    "vf_coef": 1.0,
    "gamma": 1.0,
    "lam": 0.95,
    "whiten_rewards": False,
    "kl": {"init_coef": 0.05, "adaptive": True, "target": 6.0, "horizon": 10000, "estimator": "k1"},
    "reward": {"scale": "running", "clip": 10.0, "missing_eos_penalty": None, "pm_batch_size": 8},
    "scalarizer_params": {},
    "response_length": 128,
    "temperature": 1.0,
    "max_prompt_length": 384,
    "lora": {"r": 16, "alpha": 32, "dropout": 0.1, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]},
    "value_trainable_layers": "all",
    "dtype": "float32",
}
YAML_WON = {
    "mote": set(),
    "pm": {("lora", "target_modules")},
    "ppo": {("batch_size",), ("steps",), ("lora", "target_modules")},
}


def _flat(d, prefix=()):
    for k, v in d.items():
        if isinstance(v, dict) and v:
            yield from _flat(v, (*prefix, k))
        else:
            yield (*prefix, k), v


@pytest.mark.parametrize(
    ("name", "former", "now"),
    [
        ("mote", FORMER_MOTE, mote_train.defaults),
        ("pm", FORMER_PM, pm.default_config),
        ("ppo", FORMER_PPO, ppo.defaults),
    ],
)
def test_every_key_the_code_reads_has_its_former_value_in_the_yaml_defaults(name, former, now):
    old, new = dict(_flat(former)), dict(_flat(now()))
    assert set(new) == set(old), f"{name}: keys differ: {set(new) ^ set(old)}"
    differ = {k for k in old if new[k] != old[k]}
    assert differ == YAML_WON[name], f"{name}: values changed: {[(k, old[k], new[k]) for k in differ]}"


@pytest.mark.parametrize("tier", ["ci", "tiny", "full"])
def test_the_resolved_sections_pass_through_the_merge_functions_unchanged(tier):
    cfg = resolve_config({"tier": tier})
    for section, merge in (
        (cfg["mote"]["train"], mote_train.merged_config),
        (cfg["morlaif"]["pm"], pm.merge_config),
        (cfg["morlaif"]["ppo"], ppo.resolve_config),
    ):
        merged = dict(_flat(merge(section)))
        for key, value in _flat(section):  # the workflow's values win; the rest is the YAML's
            assert merged[key] == value


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: mote_train.merged_config({"train": {"lerning_rate": 1e-3}}), "did you mean 'learning_rate'"),
        (lambda: mote_train.merged_config({"mote": {"skip": 0.1}}), "did you mean 'skip_p'"),
        (lambda: pm.merge_config({"margn": False}), "did you mean 'margin'"),
        (
            lambda: ppo.resolve_config({"steps": 1, "batch_size": 4, "lerning_rate": 1.0}),
            "did you mean 'learning_rate'",
        ),
    ],
)
def test_an_unknown_key_fails_naming_it_and_the_closest(call, message):
    with pytest.raises(SettingsError, match=message):
        call()


def _train(**over):
    base = {"learning_rate": 1e-3, "lr_scheduler": "cosine", "epochs": 1, "per_device_batch_size": 2, "grad_accum": 2}
    return {**base, "max_length": 64, "save_steps": 5, "seed": 3, "warmup_ratio": 0.1, **over}


def test_train_settings_are_typed_and_described():
    assert all(f.metadata.get("help") for f in dataclasses.fields(TrainSettings))
    s = TrainSettings.from_dict(_train(), run="r")
    assert (s.learning_rate, s.per_device_batch_size, s.warmup_steps, s.max_steps) == (1e-3, 2, None, None)
    assert s.warmup(9) == math.ceil(0.1 * 3)  # ceil(9 / 4) = 3 steps
    assert TrainSettings.from_dict(_train(warmup_steps=7)).warmup(9) == 7


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"lerning_rate": 1.0}, r"train.lerning_rate of run 'r': unknown .*did you mean 'learning_rate'"),
        ({"learning_rate": float("inf")}, r"train.learning_rate of run 'r': inf \(expected a finite number > 0\)"),
        ({"grad_accum": 0}, r"train.grad_accum of run 'r': 0"),
        ({"epochs": True}, r"train.epochs of run 'r': True"),
        ({"warmup_ratio": None}, "warmup_steps or warmup_ratio"),
    ],
)
def test_train_settings_reject_bad_values(over, message):
    with pytest.raises(UserError, match=message):
        TrainSettings.from_dict(_train(**over), run="r")
    with pytest.raises(UserError, match="missing training setting.*'seed'"):
        TrainSettings.from_dict({k: v for k, v in _train().items() if k != "seed"}, run="r")


@pytest.mark.parametrize("tier", ["ci", "tiny", "full"])
def test_trainer_kwargs_are_the_same_from_the_dict_or_the_settings(tier):
    cfg = resolve_config({"tier": tier})
    sections = {
        "cut": cfg["cut"]["train"],
        "mote": mote_train.merged_config(cfg["mote"]["train"])["train"],
        "pm": pm.merge_config(cfg["morlaif"]["pm"])["train"],
    }
    for name, train in sections.items():
        settings = TrainSettings.from_dict(train, run=name)
        for n in (1, 7, 100):
            from_dict = trainer_kwargs(train, Path("o"), n, torch.float32, run_name=name, use_wandb=False)
            typed = trainer_kwargs(settings, Path("o"), n, torch.float32, run_name=name, use_wandb=False)
            assert from_dict == typed
            batch = train["per_device_batch_size"] * train["grad_accum"]
            expected_warmup = train.get("warmup_steps")
            if expected_warmup is None:
                expected_warmup = math.ceil(train["warmup_ratio"] * max(1, math.ceil(n / batch) * train["epochs"]))
            assert typed["warmup_steps"] == expected_warmup and typed["learning_rate"] == train["learning_rate"]
