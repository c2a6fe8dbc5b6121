"""Training resumes from the last checkpoint after a crash, and the baselines train through TRL."""

from __future__ import annotations

import json

import pytest
import torch

from alignrepro.config import resolve_config
from alignrepro.data.records import Record, save_records
from alignrepro.io import read_json
from alignrepro.methods.cut import train as cut_train
from alignrepro.methods.cut.trainer import CUTTrainer


def _triplets(tmp_path, n=8):
    recs = [
        Record(
            id=f"t{i}",
            instruction=f"What is {i} plus {i + 2}?",
            output=f"The answer is {2 * i + 3}.",
            judgment=f"The response is incorrect. The final answer should be {2 * i + 2}, not {2 * i + 3}.",
            task="arithmetic",
            reference=str(2 * i + 2),
        )
        for i in range(n)
    ]
    path = tmp_path / "triplets.jsonl"
    save_records(path, recs)
    return path, recs


def _args(ci_model, triplets, out, method="cut", cfg_update=None, extra=()):
    cfg = resolve_config({"tier": "ci"})["cut"]
    train = {**cfg["train"], "per_device_batch_size": 1, "grad_accum": 1, "save_steps": 1}
    payload = {"train": train, "cut": {**cfg["cut"], "threshold": 1.0}, "dpo": cfg["dpo"], "dtype": "float32"}
    payload.update(cfg_update or {})
    return [
        "--method",
        method,
        "--base-model",
        str(ci_model),
        "--triplets",
        str(triplets),
        "--config-json",
        json.dumps(payload),
        "--name",
        f"test-{method}",
        "--tier",
        "ci",
        "--out",
        str(out),
        *extra,
    ]


def test_resume_after_crash(ci_model, tmp_path, monkeypatch):
    triplets, _ = _triplets(tmp_path, n=4)
    out = tmp_path / "models" / "base" / "cut"
    calls = {"n": 0}
    original = CUTTrainer.training_step

    def crash_on_third_step(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("simulated kill")
        return original(self, *a, **k)

    monkeypatch.setattr(CUTTrainer, "training_step", crash_on_third_step)
    with pytest.raises(KeyboardInterrupt):
        cut_train.main(_args(ci_model, triplets, out))
    assert not (out / "model.json").exists()  # an interrupted run never looks finished
    assert (out / "checkpoints" / "checkpoint-2").is_dir()
    monkeypatch.setattr(CUTTrainer, "training_step", original)
    cut_train.main(_args(ci_model, triplets, out))
    meta = read_json(out / "model.json")
    assert meta["resumed_from"].endswith("checkpoint-2")
    assert [h["step"] for h in meta["log_history"] if "loss" in h][-1] == 4


@pytest.mark.parametrize("method", ["hindsight", "ilf_dpo"])
def test_baselines_train_through_trl(ci_model, tmp_path, method):
    triplets, recs = _triplets(tmp_path)
    refinements = tmp_path / "refinements.jsonl"
    refinements.write_text("".join(json.dumps({"id": r.id, "output": f"It is {r.reference}."}) + "\n" for r in recs))
    out = tmp_path / "models" / "base" / method
    cut_train.main(_args(ci_model, triplets, out, method=method, extra=["--refinements", str(refinements)]))
    meta = read_json(out / "model.json")
    assert meta["kind"] == "lora" and meta["method"] == method
    assert meta["data"]["n_examples"] == 8 and meta["selection"]["n_negative"] == 8
    assert (out / "adapter" / "adapter_config.json").exists()


def test_trl_baseline_adapters_repeat_with_the_seed(ci_model, tmp_path):
    # torch seeds each process at random and TRL builds the LoRA adapter before Trainer seeds: without an explicit
    # set_seed two runs (or two calls in one process) start from different LoRA weights
    from safetensors.torch import load_file

    triplets, recs = _triplets(tmp_path, n=4)
    refinements = tmp_path / "refinements.jsonl"
    refinements.write_text("".join(json.dumps({"id": r.id, "output": f"It is {r.reference}."}) + "\n" for r in recs))
    weights = []
    for run in ("a", "b"):
        out = tmp_path / run / "models" / "base" / "ilf_mle"
        cut_train.main(_args(ci_model, triplets, out, method="ilf_mle", extra=["--refinements", str(refinements)]))
        weights.append(load_file(out / "adapter" / "adapter_model.safetensors"))
    assert weights[0].keys() == weights[1].keys() and weights[0]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
