"""Training never returns a stale or broken model: a changed setting retrains, a half-written checkpoint is skipped,
divergence stops the run, identical runs give identical hashes, and a model whose files changed fails to load."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from test_cut_resume import _args, _triplets

from alignrepro.errors import IntegrityError, TrainingDiverged, UserError
from alignrepro.integrity import forced_by, startup_check
from alignrepro.io import read_json
from alignrepro.methods.cut import train as cut_train
from alignrepro.methods.cut.trainer import CUTTrainer
from alignrepro.models import load_model
from alignrepro.run_lock import _held, claim
from alignrepro.training import resume_checkpoint


def _adapter(out):
    from safetensors.torch import load_file

    return load_file(out / "adapter" / "adapter_model.safetensors")


def _rerun(args, out):
    (out / "model.json").unlink()  # what Snakemake does before it reruns a job: the output goes, the folder stays
    cut_train.main(args)


def test_resume_picks_the_last_complete_checkpoint_of_the_same_run(tmp_path):
    def ckpt(step: int, complete: bool) -> None:
        d = tmp_path / "checkpoints" / f"checkpoint-{step}"
        d.mkdir(parents=True)
        if complete:
            (d / "trainer_state.json").write_text("{}")

    ckpt(3, True)
    assert resume_checkpoint(tmp_path, {"cfg": 1}) is None  # no identity stamp: another run's leftovers
    assert not (tmp_path / "checkpoints" / "checkpoint-3").exists()
    ckpt(2, True)
    ckpt(4, True)
    ckpt(6, False)  # killed while saving: trainer_state.json (HF's last write) is missing
    assert resume_checkpoint(tmp_path, {"cfg": 1}).endswith("checkpoint-4")  # same run: resume
    assert not (tmp_path / "checkpoints" / "checkpoint-6").exists()
    assert resume_checkpoint(tmp_path, {"cfg": 1}, required=("trainable.safetensors",)) is None  # MoTE's rule
    ckpt(5, True)
    assert resume_checkpoint(tmp_path, {"cfg": 2}) is None  # a setting changed: start over
    assert not (tmp_path / "checkpoints" / "checkpoint-5").exists()


def test_a_changed_setting_retrains_instead_of_resuming_the_finished_run(ci_model, tmp_path):
    # Measured before: the rerun "resumed" the finished run's last checkpoint, trained 0 steps, and saved the old
    # weights under the new config.
    triplets, _ = _triplets(tmp_path, n=4)
    out = tmp_path / "models" / "base" / "cut"
    cut_train.main(_args(ci_model, triplets, out))
    first = _adapter(out)
    assert not (out / "checkpoints").exists()  # a finished model keeps no checkpoint to "resume"
    cfg = json.loads(_args(ci_model, triplets, out)[7])
    cfg["train"]["learning_rate"] *= 3
    _rerun(_args(ci_model, triplets, out, cfg_update={"train": cfg["train"]}), out)
    meta = read_json(out / "model.json")
    assert meta["resumed_from"] is None and meta["train_metrics"]["train_loss"] > 0
    assert [h["step"] for h in meta["log_history"] if "loss" in h] == [1, 2, 3, 4]
    second = _adapter(out)
    assert any(not torch.equal(first[k], second[k]) for k in first)


def test_a_half_written_checkpoint_is_skipped(ci_model, tmp_path, monkeypatch):
    triplets, _ = _triplets(tmp_path, n=4)
    out = tmp_path / "models" / "base" / "cut"
    original, calls = CUTTrainer.training_step, {"n": 0}

    def crash_on_fourth_step(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt("simulated kill")
        return original(self, *a, **k)

    monkeypatch.setattr(CUTTrainer, "training_step", crash_on_fourth_step)
    with pytest.raises(KeyboardInterrupt):
        cut_train.main(_args(ci_model, triplets, out))
    (out / "checkpoints" / "checkpoint-3" / "trainer_state.json").unlink()  # e.g. disk full while saving
    monkeypatch.setattr(CUTTrainer, "training_step", original)
    cut_train.main(_args(ci_model, triplets, out))  # was: FileNotFoundError …/trainer_state.json, for good
    meta = read_json(out / "model.json")
    assert meta["resumed_from"] is None  # checkpoint-3 is half-written; save_total_limit=1 left no older one
    assert [h["step"] for h in meta["log_history"] if "loss" in h][-1] == 4


@pytest.mark.parametrize("lr", [float("inf"), float("nan"), 1e12])
def test_divergence_stops_the_run_naming_it(ci_model, tmp_path, lr):
    # measured before: lr .inf trained "fine" (loss logged 0.0, NaN gradient norm) and saved an all-NaN adapter
    triplets, _ = _triplets(tmp_path, n=4)
    out = tmp_path / "models" / "base" / "cut"
    cfg = json.loads(_args(ci_model, triplets, out)[7])
    cfg["train"]["learning_rate"] = lr
    expected = r"'test-cut' .*(diverged at step \d|is not finite)" if lr == 1e12 else "train.learning_rate .*finite"
    with pytest.raises(TrainingDiverged if lr == 1e12 else UserError, match=expected):
        cut_train.main(_args(ci_model, triplets, out, cfg_update={"train": cfg["train"]}))
    assert not (out / "model.json").exists()


def test_model_files_are_recorded_shared_and_verified_on_load(ci_model, tmp_path):
    triplets, _ = _triplets(tmp_path, n=4)
    out = tmp_path / "models" / "base" / "cut"
    cut_train.main(_args(ci_model, triplets, out))
    meta = read_json(out / "model.json")
    assert set(meta["files"]) == {
        "adapter/adapter_config.json",
        "adapter/adapter_model.safetensors",
        "adapter/README.md",
    }
    for rel in meta["files"]:
        assert (out / rel).stat().st_mode & 0o777 == 0o644, rel  # were 0600
    assert load_model(out) is not None
    weights = out / "adapter" / "adapter_model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(IntegrityError, match="adapter_model.safetensors: .* bytes, model.json records"):
        load_model(out)
    weights.write_bytes(data[:-8] + b"\0" * 8)  # same size, other content
    with pytest.raises(IntegrityError, match="adapter_model.safetensors: sha256 differs"):
        load_model(out)
    weights.unlink()
    with pytest.raises(IntegrityError, match="adapter_model.safetensors: missing"):
        load_model(out)
    # the workflow's start-up check finds it too, and lets a forced rebuild through
    error, _ = startup_check([tmp_path / "models"], ["snakemake", "--cores", "2"])
    assert error and str(out / "model.json") in error and "--forcerun" in error
    error, _ = startup_check([tmp_path / "models"], ["snakemake", "-R", str(out / "model.json"), "--cores", "2"])
    assert error is None


def test_weights_without_model_json_are_reported(ci_model, tmp_path):
    import shutil

    base = tmp_path / "models" / "base"
    shutil.copytree(ci_model, base)
    assert startup_check([tmp_path / "models"], []) == (None, None)
    (base / "model.json").unlink()
    error, warning = startup_check([tmp_path / "models"], [])
    assert error is None and f"{base}/model.json" in warning


def test_forced_by_reads_snakemake_force_flags():
    assert forced_by(["-n", "--forcerun", "a/model.json", "b/model.json", "--cores", "2"]) == (
        False,
        {"a/model.json", "b/model.json"},
    )
    assert forced_by(["--forceall"])[0] and forced_by(["--forcerun=x"])[1] == {"x"}


# One process per hash seed writes the config twice: as PEFT saves it (raw/) and canonicalized (canonical/); one
# process for both halves the peft imports (seconds each) and changes nothing: both files come from that seed.
_ADAPTER_CONFIG = """
import json, sys
from peft import LoraConfig
from alignrepro.integrity import canonicalize_adapter_config
cfg = LoraConfig(target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
out = {}
for name in ("raw", "canonical"):
    cfg.save_pretrained(sys.argv[1] + "/" + name)
    if name == "canonical":
        canonicalize_adapter_config(sys.argv[1] + "/" + name)
    out[name] = open(sys.argv[1] + "/" + name + "/adapter_config.json").read()
print(json.dumps(out))
"""


def test_adapter_config_is_the_same_bytes_under_any_hash_seed(tmp_path):
    # PEFT keeps target_modules in a set, written in hash-seed order: the same weights got another adapter hash
    def run(seed: str) -> dict[str, str]:
        env = {**os.environ, "PYTHONHASHSEED": seed}
        cmd = [sys.executable, "-c", _ADAPTER_CONFIG, str(tmp_path / seed)]
        return json.loads(subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout)

    written = [run(s) for s in ("1", "2", "3", "4")]
    assert len({w["raw"] for w in written}) > 1  # the defect this guards against is real on this stack
    assert len({w["canonical"] for w in written}) == 1


def test_a_stale_snakemake_lock_is_removed_only_when_no_run_is_alive(tmp_path):
    locks = tmp_path / ".snakemake" / "locks"
    assert claim(tmp_path) == []  # this "run" now holds the run lock
    locks.mkdir(parents=True)
    (locks / "0.input.lock").write_text("x")
    assert claim(tmp_path) == [] and (locks / "0.input.lock").exists()  # a live run: its lock stays
    os.close(_held.pop())  # the run dies (the kernel drops its flock)
    assert claim(tmp_path) == [str(locks / "0.input.lock")] and not (locks / "0.input.lock").exists()
    os.close(_held.pop())
