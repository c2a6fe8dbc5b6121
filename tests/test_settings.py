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
from alignrepro.methods.morlaif import analysis, data, pm, ppo
from alignrepro.methods.morlaif.principles import PRINCIPLES
from alignrepro.methods.mote import chains, queries
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
FORMER_ANALYSIS = {  # methods/morlaif/analysis.py DEFAULT_CONFIG
    "principles": list(PRINCIPLES),
    "baselines": ["cai", "hhh"],
    "weights": "pm_regression",
    "agreement_split": "all",
    "max_iter": 10000,
    "l2_C": None,
    "seed": 0,
}
FORMER_QUERIES = {  # methods/mote/queries.py DEFAULTS
    "source": "pool",
    "n_train": 64,
    "n_test": 32,
    "harmful_frac": 0.5,
    "hh_path": "Anthropic/hh-rlhf",
    "hh_revision": None,
    "hh_harmful": "harmless-base",
    "hh_helpful": "helpful-base",
    "hh_file": "{subset}/{split}.jsonl.gz",
    "max_query_chars": None,
    "open_split": None,
    "safety_prompts_dir": None,
    "exclude_shared_eval_from_train": False,
}
FORMER_CHAINS_GEN = {  # methods/mote/chains.py GEN_DEFAULTS ("hf": the deprecated name of "local")
    "backend": "local",
    "dtype": "float32",
    "batch_size": 8,
    "temperature": 0.0,
    "seed": 0,
    "min_new_tokens": 0,
    "max_new_tokens": 64,
    "self_check_tokens": 4,
    "self_check_threshold": 0.5,
    "safety_check": "self",
    "filter_unsafe": False,
    "copy_threshold": 0.5,
    "copy_fallback": True,
}
FORMER_SAMPLE_GEN = {  # methods/morlaif/data.py GEN_DEFAULTS ("hf": the deprecated name of "local")
    "backend": "local",
    "max_new_tokens": 64,
    "temperature": 0.7,
    "batch_size": 8,
    "dtype": "float32",
    "stop": ["\nHuman:"],
}
YAML_WON = {
    "mote": set(),
    "pm": {("lora", "target_modules")},
    "ppo": {("batch_size",), ("steps",), ("lora", "target_modules")},
    "analysis": set(),
    # required by the schema, so the workflow always gave the YAML's (paper) values: now a direct call's too
    "queries": {("source",), ("n_train",), ("n_test",)},
    "chains": {("batch_size",), ("max_new_tokens",)},  # required too (chains.generation's, baseline_generation's)
    "sample": set(),
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
        ("analysis", FORMER_ANALYSIS, analysis.default_config),
        ("queries", FORMER_QUERIES, queries.defaults),
        ("chains", FORMER_CHAINS_GEN, chains.gen_defaults),
        ("sample", FORMER_SAMPLE_GEN, data.sample_defaults),
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
        (cfg["morlaif"]["analysis"], analysis.merge_config),
        (cfg["mote"]["data"], queries.merged_config),
        (cfg["mote"]["chains"]["generation"], chains.merged_spec),
        (cfg["mote"]["baseline_generation"], chains.merged_spec),
        ({**cfg["morlaif"]["sample"], "max_new_tokens": 8, "batch_size": 2}, data.sample_spec),
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
        (lambda: analysis.merge_config({"max_iters": 5}), "did you mean 'max_iter'"),
        (lambda: queries.build_queries({"n_trian": 4}, seed=0), "did you mean 'n_train'"),
        (lambda: chains.merged_spec({"temprature": 0.5}), "did you mean 'temperature'"),
        (lambda: data.sample_spec({"max_new_token": 5}), "did you mean 'max_new_tokens'"),
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
