"""LD-Align's weighted SPIN loss: by hand, against TRL's own DPO loss, through the collator, and one training run."""

from __future__ import annotations

import json
import math

import pytest
import torch
from datasets import Dataset
from trl import DPOConfig, DPOTrainer

from alignrepro.errors import UserError
from alignrepro.io import write_jsonl
from alignrepro.methods.ld_align import train as T
from alignrepro.methods.ld_align.spin_trainer import WeightedSPINTrainer, weighted_spin_loss
from alignrepro.models import load_model, load_tokenizer, read_model_meta
from alignrepro.training import lora_config, trainer_kwargs

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TRAIN = {
    "learning_rate": 1e-3,
    "lr_scheduler": "linear",
    "epochs": 1,
    "per_device_batch_size": 4,
    "grad_accum": 1,
    "max_length": 96,
    "save_steps": 100,
    "warmup_ratio": 0.1,
    "seed": 0,
    "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj", "gate_proj", "up_proj"]},
}
CFG = {"train": TRAIN, "beta": 0.1, "loss_type": "sigmoid", "optimizer": "rmsprop", "dtype": "float32"}


def _pairs(weights: list[float]) -> list[dict]:
    return [
        {
            "id": f"p{i}",
            "prompt": f"what is {i} plus {i + 2}",
            "real": f"the answer is {2 * i + 2}",
            "generated": f"the answer should be {i * 7} not {i + 13}" if i % 2 else "apples",
            "weight": w,
        }
        for i, w in enumerate(weights)
    ]


# ------------------------------------------------------------------------------------------------- (a) by hand
@pytest.mark.parametrize("loss_type, expected", [("sigmoid", None), ("hinge", 0.5)])
def test_weighted_spin_loss_by_hand(loss_type, expected):
    # pair 1: Δ = (-10 - -11) - (-12 - -11) = 1 - (-1) = 2;   pair 2: Δ = (-20 - -19) - (-15 - -16) = -1 - 1 = -2
    # β = 0.5: βΔ = (1, -1).  sigmoid: -log σ(1) = log(1 + e⁻¹), -log σ(-1) = log(1 + e)
    # hinge: relu(1 - 1) = 0, relu(1 + 1) = 2.  w = (2, 0.5), mean over B = 2 (not over Σw)
    if expected is None:
        expected = (2.0 * math.log1p(math.exp(-1)) + 0.5 * math.log1p(math.e)) / 2  # = 0.641577...
    t = torch.tensor
    loss = weighted_spin_loss(
        t([-10.0, -20.0]), t([-12.0, -15.0]), t([-11.0, -19.0]), t([-11.0, -16.0]), t([2.0, 0.5]), 0.5, loss_type
    )
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    with pytest.raises(ValueError, match="loss_type"):
        weighted_spin_loss(t([0.0]), t([0.0]), t([0.0]), t([0.0]), t([1.0]), 0.5, "ipo")


# ------------------------------------------------------------------------------ (b, c, d) on a real batch
def _kwargs(tmp_path, name):
    return trainer_kwargs(TRAIN, tmp_path / name, 4, torch.float32, run_name=name, use_wandb=False)


@pytest.fixture(scope="module")
def trainers(ci_model, tmp_path_factory):
    """A WeightedSPINTrainer (built by train.py) and a plain DPOTrainer on identical LoRA weights, randomised so
    that the policy differs from the reference."""
    tmp = tmp_path_factory.mktemp("ld_align_trainers")
    rows = T.load_pairs(_write(tmp / "pairs.jsonl", _pairs([1.0, 1.0, 1.0, 1.0])))
    tok = load_tokenizer(ci_model, padding_side="right")
    weighted = T.build_trainer(load_model(ci_model), tok, rows, CFG, _kwargs(tmp, "w"))
    args = DPOConfig(
        **_kwargs(tmp, "p"), beta=0.1, max_length=96, truncation_mode="keep_end", precompute_ref_log_probs=False
    )
    plain = DPOTrainer(
        model=load_model(ci_model),
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=load_tokenizer(ci_model, padding_side="right"),
        peft_config=lora_config(TRAIN["lora"]),
    )
    g = torch.Generator().manual_seed(0)
    plain_params = dict(plain.model.named_parameters())
    with torch.no_grad():
        for n, p in weighted.model.named_parameters():
            if "lora_" in n:
                if "lora_B" in n:
                    p.copy_(torch.randn(p.shape, generator=g) * 0.3)
                plain_params[n].copy_(p)
    return weighted, plain


def _batch(trainer, weights):
    ds = trainer._remove_unused_columns(trainer.train_dataset)
    return trainer.data_collator([{**ds[i], "weight": w} for i, w in enumerate(weights)])


def test_unit_weights_equal_trl_dpo_loss(trainers):
    weighted, plain = trainers
    batch = _batch(weighted, [1.0] * 4)
    with torch.no_grad():
        ours = weighted.compute_loss(weighted.model, batch)
        theirs = plain.compute_loss(plain.model, {k: v for k, v in batch.items() if k != "weight"})
    assert abs(ours.item() - math.log(2)) > 1e-3  # the policy differs from the reference: not a trivial log 2
    assert ours.item() == pytest.approx(theirs.item(), abs=1e-6)


def test_weights_give_the_weighted_mean_of_per_pair_losses(trainers):
    weighted, plain = trainers
    w = [0.5, 2.0, 0.0, 1.5]
    batch = _batch(weighted, w)
    with torch.no_grad():  # each pair's own TRL DPO loss, one pair per batch
        ds = plain._remove_unused_columns(plain.train_dataset)
        per_pair = [plain.compute_loss(plain.model, plain.data_collator([ds[i]])).item() for i in range(4)]
    loss = weighted.compute_loss(weighted.model, batch)
    expected = sum(wi * li for wi, li in zip(w, per_pair, strict=True)) / 4
    assert loss.item() == pytest.approx(expected, abs=1e-5)
    assert abs(loss.item() - sum(per_pair) / 4) > 1e-3
    loss.backward()  # the weighted loss is the one that trains the adapter
    grads = [p.grad for n, p in weighted.model.named_parameters() if "lora_" in n]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)
    weighted.model.zero_grad()


def test_weight_column_survives_the_collator(trainers):
    weighted, plain = trainers
    batch = _batch(weighted, [0.25, 4.0, 1.0, 0.5])
    assert batch["weight"].tolist() == [0.25, 4.0, 1.0, 0.5] and batch["weight"].dtype == torch.float32
    # through the Trainer's own column removal and dataloader: every row's weight arrives
    seen = [w for b in weighted.get_train_dataloader() for w in b["weight"].tolist()]
    assert sorted(seen) == [1.0] * 4
    # TRL alone drops it (why the subclass exists)
    assert all("weight" not in b for b in plain.get_train_dataloader())


def test_bf16_model_sums_log_probs_in_float32(ci_model, tmp_path):
    rows = T.load_pairs(_write(tmp_path / "pairs.jsonl", _pairs([1.0] * 4)))
    tok = load_tokenizer(ci_model, padding_side="right")
    trainer = T.build_trainer(load_model(ci_model, dtype=torch.bfloat16), tok, rows, CFG, _kwargs(tmp_path, "b"))
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, _batch(trainer, [1.0, 2.0, 0.5, 1.0]))
    # a fresh adapter (lora_B = 0) is the reference exactly: every Δ = 0, so the loss is mean(w) · log 2
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(4.5 / 4 * math.log(2), abs=1e-6)


def test_unsupported_dpo_settings_fail(tmp_path):
    rows = [{"prompt": "a", "chosen": "b", "rejected": "c", "weight": 1.0}]
    args = DPOConfig(**_kwargs(tmp_path, "x"), loss_type=["ipo"])
    with pytest.raises(ValueError, match=r"unsupported DPOConfig settings: \{'loss_type': \['ipo'\]\}"):
        WeightedSPINTrainer(model=None, args=args, train_dataset=Dataset.from_list(rows))
    args = DPOConfig(**_kwargs(tmp_path, "y"))
    with pytest.raises(ValueError, match="'weight' column"):
        WeightedSPINTrainer(model=None, args=args, train_dataset=Dataset.from_list([{"prompt": "a", "chosen": "b"}]))


# --------------------------------------------------------------------------------------- (e) end to end
def _write(path, rows):
    write_jsonl(path, rows)
    return path


def _cli(policy, pairs, out, arm, iteration):
    return [
        "--policy",
        str(policy),
        "--pairs",
        str(pairs),
        "--config-json",
        json.dumps(CFG),
        "--name",
        f"test-{arm}-{iteration}",
        "--tier",
        "ci",
        "--arm",
        arm,
        "--iteration",
        str(iteration),
        "--out",
        str(out),
    ]


def test_two_iterations_chain_and_the_reference_is_the_policy(ci_model, tmp_path, monkeypatch):
    pairs0 = _write(tmp_path / "pairs0.jsonl", _pairs([1.0] * 8))
    out0 = tmp_path / "models" / "spin-0"
    meta0 = T.main(_cli(ci_model, pairs0, out0, "spin", 0))
    assert meta0["base"] == str(ci_model) and meta0["pair_weights"] == {"mean": 1.0, "min": 1.0, "max": 1.0, "n": 8}

    built = []
    real_build = T.build_trainer
    monkeypatch.setattr(T, "build_trainer", lambda *a, **k: built.append(real_build(*a, **k)) or built[-1])
    pairs1 = _write(tmp_path / "pairs1.jsonl", _pairs([0.5, 1.5] * 4))
    out1 = tmp_path / "models" / "ld_align-1"
    T.main(_cli(out0, pairs1, out1, "ld_align", 1))
    meta = read_model_meta(out1)
    assert meta["kind"] == "lora" and meta["base"] == str(out0) and meta["base_identity"]["base"]["name"]
    assert (meta["arm"], meta["iteration"], meta["prompt_template"], meta["loss_type"]) == (
        "ld_align",
        1,
        "chat",
        "sigmoid",
    )
    assert meta["pair_weights"] == {"mean": 1.0, "min": 0.5, "max": 1.5, "n": 8}
    assert [h["step"] for h in meta["log_history"] if "loss" in h] == [1, 2]
    assert all("unweighted_loss" in h and "rewards/margins" in h for h in meta["log_history"] if "loss" in h)
    assert not (out1 / "checkpoints").exists()

    ids = torch.tensor([[1, 20, 30, 40, 50, 60]])
    policy = load_model(out0).eval()
    trained = built[0].model.eval()
    with torch.no_grad():
        ref_logits = policy(ids).logits
        with trained.disable_adapter():  # the reference used in training: the adapter-disabled model
            assert torch.allclose(trained(ids).logits, ref_logits, atol=1e-5)
        chained = load_model(out1)(ids).logits  # the LoRA chain ci -> spin-0 -> ld_align-1 merges recursively
        assert torch.allclose(chained, trained(ids).logits, atol=1e-4)
        assert not torch.allclose(chained, ref_logits, atol=1e-4)  # iteration 1 trained something


def test_empty_generation_fails_naming_file_and_row(tmp_path):
    rows = _pairs([1.0, 1.0])
    rows[1]["generated"] = "  "
    path = _write(tmp_path / "pairs.jsonl", rows)
    with pytest.raises(UserError, match=r"pairs\.jsonl: row 'p1': empty 'generated'"):
        T.load_pairs(path)


def test_full_fine_tuning_against_a_frozen_copy(ci_model, tmp_path, monkeypatch):
    """train.lora null (the paper's full fine-tuning): a frozen copy of the policy is the reference, and the whole
    model is saved as a verified weights/ folder that loads as a plain model."""
    monkeypatch.setitem(CFG, "train", {**CFG["train"], "lora": None})
    built = []
    real_build = T.build_trainer
    monkeypatch.setattr(T, "build_trainer", lambda *a, **k: built.append(real_build(*a, **k)) or built[-1])
    out = tmp_path / "models" / "full-0"
    meta = T.main(_cli(ci_model, _write(tmp_path / "pairs.jsonl", _pairs([1.0] * 8)), out, "spin", 0))
    assert meta["kind"] == "base" and meta["weights"] == "weights" and meta["trained_from"]["name"]
    assert any(f.startswith("weights/") and f.endswith(".safetensors") for f in meta["files"])
    ids = torch.tensor([[1, 20, 30, 40, 50, 60]])
    with torch.no_grad():
        ref = built[0].ref_model(ids).logits
        assert torch.allclose(ref, load_model(ci_model)(ids).logits, atol=1e-6)  # the reference stayed the policy
        trained = load_model(out)(ids).logits
        assert torch.allclose(trained, built[0].model(ids).logits, atol=1e-5)
        assert not torch.allclose(trained, ref, atol=1e-4)
    (out / meta["weights"] / "config.json").write_text("{}")
    with pytest.raises(UserError, match="config.json"):
        read_model_meta(out)
