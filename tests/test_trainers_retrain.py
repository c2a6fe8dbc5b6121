"""Every trainer, not only CUT's, gives a trained model for the settings it was asked for: MoTE's own trainer, MoTE's
LoRA baselines and MORLAIF's PMs retrain on a changed setting instead of "resuming" the old run's last checkpoint,
keep no checkpoint once finished, record their files in model.json, stop on divergence, and repeat their adapter
hash (and adapter_config.json bytes) for the same settings in another folder and another process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from test_morlaif_pm import TARGETS, _toy_pairs
from test_mote_train import _chains, _cli

from alignrepro.config import resolve_config
from alignrepro.errors import IntegrityError, TrainingDiverged
from alignrepro.io import sha256_dir, write_jsonl
from alignrepro.methods.morlaif import pm as P
from alignrepro.methods.mote import train as mote_train
from alignrepro.methods.mote import train_baselines
from alignrepro.models import read_model_meta
from alignrepro.training import DivergenceGuard

pytestmark = pytest.mark.usefixtures("one_torch_thread")
LR = 1e-3


def _tensors(adapter: Path) -> dict[str, torch.Tensor]:
    """Every tensor of every safetensors file in adapter/ (MoTE's format or PEFT's + step_tokens.safetensors)."""
    from safetensors.torch import load_file

    out = {f"{f.name}:{k}": v for f in sorted(adapter.glob("*.safetensors")) for k, v in load_file(f).items()}
    assert out, f"no weights in {adapter}"
    return out


def _kill_after_the_last_step(monkeypatch, run: Callable[[], None]) -> None:
    """Run up to just after the last step (its checkpoint saved), then kill it before model.json: the folder a finished
    run left before finished runs dropped their checkpoints."""

    def kill(self, args, state, control, **kwargs):
        raise KeyboardInterrupt("simulated kill after the last step")

    with monkeypatch.context() as m:
        m.setattr(DivergenceGuard, "on_train_end", kill)
        with pytest.raises(KeyboardInterrupt):
            run()


def _retrains_on_a_changed_setting(monkeypatch, out: Path, run: Callable[[float], None], steps: int) -> dict:
    """`run(lr)` trains into `out`. Train, then (as Snakemake does before a rerun: model.json goes, the folder stays)
    train again with another learning rate over the last checkpoint of the old settings: the rerun must start afresh
    and train every step, not "resume" the old run, train 0 steps and save the old weights under the new config."""
    run(LR)
    first_meta = read_model_meta(out)  # also verifies the files manifest
    first = _tensors(out / "adapter")
    assert first_meta["resumed_from"] is None and not (out / "checkpoints").exists()
    (out / "model.json").unlink()
    _kill_after_the_last_step(monkeypatch, lambda: run(LR))
    assert not (out / "model.json").exists()
    assert [p.name for p in (out / "checkpoints").glob("checkpoint-*")] == [f"checkpoint-{steps}"]
    run(LR * 3)
    meta = read_model_meta(out)
    assert meta["resumed_from"] is None and meta["train_metrics"]["train_loss"] > 0  # 0 for a 0-step "resume"
    assert [h["step"] for h in meta["log_history"] if "loss" in h] == list(range(1, steps + 1))
    assert meta["adapter_sha256"] != first_meta["adapter_sha256"]
    second = _tensors(out / "adapter")
    assert second.keys() == first.keys()
    assert any(not torch.equal(first[k], second[k]) for k in first)
    assert not (out / "checkpoints").exists()
    return first_meta


# ------------------------------------------------------------------------------------------------ MoTE's own trainer
def test_mote_retrains_on_a_changed_setting_and_records_its_files(ci_model, tmp_path, monkeypatch):
    chains = _chains(tmp_path, n=4)  # batch 2: 2 steps
    out = tmp_path / "mote" / "ci" / "models" / "mote"
    meta = _retrains_on_a_changed_setting(
        monkeypatch, out, lambda lr: mote_train.main(_cli(ci_model, chains, out, train={"learning_rate": lr})), 2
    )
    # the manifest of the first (finished) run covers every file of adapter/ and tokenizer/, and nothing else
    files = set(meta["files"])
    assert {f.split("/")[0] for f in files} == {"adapter", "tokenizer"}
    assert "adapter/mote_adapter.safetensors" in files and any(f.startswith("tokenizer/tokenizer") for f in files)
    on_disk = {p.relative_to(out).as_posix() for d in ("adapter", "tokenizer") for p in (out / d).rglob("*")}
    assert files == {f for f in on_disk if (out / f).is_file()}
    assert read_model_meta(out)["adapter_sha256"] == sha256_dir(out / "adapter")
    # the tokenizer is verified on load too: a changed tokenizer file fails naming it
    tok_file = out / next(f for f in sorted(files) if f.startswith("tokenizer/"))
    tok_file.write_bytes(tok_file.read_bytes() + b" ")
    with pytest.raises(IntegrityError, match=f"{tok_file.name}: .* bytes, model.json records"):
        read_model_meta(out)


# ------------------------------------------------------------------------------------------------ MoTE's baselines
def _baseline_data(tmp_path: Path, n: int = 4) -> Path:
    rows = [
        {"id": f"b{i}", "messages": [{"role": "user", "content": f"what is {i} times 7"}], "completion": f"{7 * i}."}
        for i in range(n)
    ]
    path = tmp_path / "sft.jsonl"
    write_jsonl(path, rows)
    return path


def _baseline_args(ci_model: Path, data: Path, out: Path, lr: float, method: str = "sft") -> list[str]:
    """The ci tier's MoTE budget (as rules.smk passes it), 2 examples a step, a checkpoint every step, no step cap."""
    mote = resolve_config({"tier": "ci"})["mote"]
    train = {**mote["train"]["train"], "per_device_batch_size": 2, "save_steps": 1, "max_steps": -1}
    payload = {"train": {**train, "learning_rate": lr}, "lora": mote["train"]["lora"], "dpo": mote["dpo"]}
    return [
        *("--method", method, "--base", str(ci_model), "--data", str(data)),
        *("--config-json", json.dumps({**payload, "dtype": "float32"}), "--name", f"test-baseline-{method}"),
        *("--tier", "ci", "--out", str(out)),
    ]


def test_mote_baseline_retrains_on_a_changed_setting(ci_model, tmp_path, monkeypatch):
    data = _baseline_data(tmp_path)
    out = tmp_path / "mote" / "ci" / "models" / "baseline_sft"
    meta = _retrains_on_a_changed_setting(
        monkeypatch, out, lambda lr: train_baselines.main(_baseline_args(ci_model, data, out, lr)), 2
    )
    assert meta["kind"] == "lora" and meta["method"] == "sft" and "adapter/adapter_model.safetensors" in meta["files"]


# ------------------------------------------------------------------------------------------------ MORLAIF's PMs
def _pm_data(tmp_path: Path, n: int = 6) -> tuple[Path, Path]:
    """n toy pairs, n - 2 of them in the train split, each with a feedback label and margin."""
    pairs, fb = _toy_pairs(n)
    write_jsonl(tmp_path / "pairs.jsonl", pairs)
    write_jsonl(tmp_path / "fb.jsonl", fb)
    return tmp_path / "pairs.jsonl", tmp_path / "fb.jsonl"


def _pm_args(ci_model: Path, data: tuple[Path, Path], out: Path, lr: float) -> list[str]:
    cfg = {
        "lora": {"target_modules": TARGETS, "layers": 1, "r": 4, "alpha": 8},
        "train": {"per_device_batch_size": 2, "grad_accum": 1, "warmup_steps": 0, "learning_rate": lr}
        | {"save_steps": 1, "max_length": 64},
        "margin": True,
    }
    return [
        *("train", "--base", str(ci_model), "--pairs", str(data[0]), "--feedback", str(data[1])),
        *("--principle", "helpfulness", "--config-json", json.dumps(cfg), "--tier", "ci", "--out", str(out)),
    ]


def test_pm_retrains_on_a_changed_setting(ci_model, tmp_path, monkeypatch):
    data = _pm_data(tmp_path)  # 4 training pairs, batch 2: 2 steps
    out = tmp_path / "pms" / "helpfulness"
    meta = _retrains_on_a_changed_setting(monkeypatch, out, lambda lr: P.main(_pm_args(ci_model, data, out, lr)), 2)
    assert meta["kind"] == "pm_lora" and "adapter/adapter_model.safetensors" in meta["files"]


def test_pm_divergence_stops_the_run_naming_it(ci_model, tmp_path):
    data = _pm_data(tmp_path)
    out = tmp_path / "pms" / "helpfulness"
    run = "PM_ci-random-llama_helpfulness_LoRA"
    with pytest.raises(TrainingDiverged, match=rf"'{run}' .*(diverged at step \d|is not finite)"):
        P.main(_pm_args(ci_model, data, out, 1e12))
    assert not (out / "model.json").exists()
    assert not (out / "adapter").exists()  # nothing of the diverged weights was written either


# ------------------------------------------------------------------------------------------------ repeatability
def _hash_seed_with_another_set_order(items: list[str]) -> str:
    """A PYTHONHASHSEED under which set(items) iterates in another order than in this process: PEFT writes
    target_modules (a set) in that order, so without canonicalisation the two adapter_config.json would differ."""
    here = repr(list(set(items)))
    for seed in range(1, 100):
        env = {**os.environ, "PYTHONHASHSEED": str(seed)}
        code = f"print(repr(list(set({items!r}))))"
        if subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True).stdout.strip() != here:
            return str(seed)
    raise AssertionError("no hash seed changes the set order")


def test_same_settings_give_the_same_adapter_in_another_folder_and_process(ci_model, tmp_path):
    data = _pm_data(tmp_path)
    a, b = tmp_path / "a" / "pms" / "helpfulness", tmp_path / "b" / "pms" / "helpfulness"
    P.main(_pm_args(ci_model, data, a, LR))
    # the same settings in another process, under another hash seed, one torch thread as here
    env = {**os.environ, "PYTHONHASHSEED": _hash_seed_with_another_set_order(TARGETS), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "alignrepro.methods.morlaif.pm", *_pm_args(ci_model, data, b, LR)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    meta_a, meta_b = read_model_meta(a), read_model_meta(b)
    assert meta_a["adapter_sha256"] == meta_b["adapter_sha256"] == sha256_dir(b / "adapter")
    assert meta_a["files"] == meta_b["files"]
    config = "adapter/adapter_config.json"
    assert (a / config).read_bytes() == (b / config).read_bytes()
    assert json.loads((a / config).read_text())["target_modules"] == sorted(TARGETS)
