"""MORLAIF preference models on the ci model: rendering and truncation, the score position, the margin reaching the
Bradley-Terry loss, a short training run, and the bank (hot-swapped adapters over a shared trunk) matching a plain
PeftModel forward of each PM alone, for every principle, with and without trunk sharing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from alignrepro.io import atomic_write_json, read_json, read_jsonl, sha256_dir, write_jsonl
from alignrepro.methods.morlaif import pm as P
from alignrepro.models import model_identity

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
CONV = [{"role": "user", "content": "how many apples should be the answer"}]
TEXTS_RESP = [
    "the answer is 12 apples",
    "not perfect",
    "explain the final number of apples in a short list of words 7 14",
    "write a letter",
]


def make_random_pm(base: Path, out: Path, name: str, layers: int | None, seed: int) -> Path:
    """A PM folder whose adapter and head are random (LoRA B is 0 at init, which would hide any cross-talk)."""
    from peft import get_peft_model

    tok = P.load_pm_tokenizer(base)
    torch.manual_seed(seed)
    model = P.load_seqcls_base(base, torch.float32, tok.pad_token_id)
    lora = {**P.default_config()["lora"], "target_modules": TARGETS, "layers": layers}
    peft_model = get_peft_model(model, P.pm_lora_config(lora, model))
    g = torch.Generator().manual_seed(100 + seed)
    with torch.no_grad():
        for n, p in peft_model.named_parameters():
            if "lora_B" in n or "modules_to_save" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    peft_model.save_pretrained(out / "adapter")
    atomic_write_json(
        out / "model.json",
        {
            "kind": "pm_lora",
            "principle": name,
            "base": str(base),
            "base_identity": model_identity(base),
            "adapter": "adapter",
            "adapter_sha256": sha256_dir(out / "adapter"),
            "pad_token": tok.pad_token,
            "max_length": 48,
        },
    )
    return out


def reference_scores(base: Path, pm_dir: Path, seqs: list[list[int]], pad_id: int) -> list[float]:
    """Each PM alone, the plain way: a fresh base + PeftModel, full forward, RIGHT padding as RewardTrainer's collator
    pads, transformers' own pooling (rightmost non-pad token)."""
    from peft import PeftModel

    model = P.load_seqcls_base(base, torch.float32, pad_id)
    model = PeftModel.from_pretrained(model, pm_dir / "adapter").eval()
    width = max(map(len, seqs))
    ids = torch.full((len(seqs), width), pad_id)
    mask = torch.zeros_like(ids)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = 1
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask).logits[:, 0].tolist()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The ci model's matrices are tiny: one thread avoids the sync cost of two on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def banks(ci_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("pms")
    out = {}
    for layers in (1, None):  # top 1 of the ci model's 2 layers (shared trunk of 1), and all layers (no trunk)
        tag = "all" if layers is None else str(layers)
        out[tag] = {
            name: make_random_pm(ci_model, root / tag / name, name, layers, seed)
            for seed, name in enumerate(["helpfulness", "toxicity", "sycophancy"])
        }
    return out


def test_pad_render_and_left_truncation(ci_model):
    tok = P.load_pm_tokenizer(ci_model)
    assert tok.pad_token != tok.eos_token and tok.pad_token_id is not None
    text = P.render_pm_text(tok, CONV, "the answer is 12")
    assert text.endswith(tok.eos_token)
    # the PPO form: the prompt with the generation prompt, the sampled response, then eos
    prompt = tok.apply_chat_template(CONV, tokenize=False, add_generation_prompt=True)
    assert text == prompt + "the answer is 12" + tok.eos_token
    full = tok(text, add_special_tokens=False)["input_ids"]
    cut = P.encode_pm_text(tok, text, 10)
    assert len(full) > 10 and cut == full[-10:] and cut[-1] == tok.eos_token_id  # the response's end is kept
    with pytest.raises(ValueError):
        P.render_pm_text(tok, [{"role": "assistant", "content": "x"}], "y")


def test_all_linear_targets(ci_model):
    tok = P.load_pm_tokenizer(ci_model)
    model = P.load_seqcls_base(ci_model, torch.float32, tok.pad_token_id)
    cfg = P.pm_lora_config({**P.default_config()["lora"], "target_modules": "all-linear", "layers": 1}, model)
    assert sorted(cfg.target_modules) == sorted(TARGETS)  # every linear layer of the blocks, not the score head
    assert cfg.layers_to_transform == [1]


def test_score_positions_rule():
    pad = 0
    ids = torch.tensor([[0, 0, 5, 6, 2], [5, 6, 7, 2, 0], [5, 6, 7, 8, 2]])
    mask = (ids != pad).long()
    assert P.score_positions(ids, mask, pad).tolist() == [4, 3, 4]


@pytest.mark.parametrize("tag,trunk", [("1", 1), ("all", 0)])
def test_bank_matches_each_pm_alone(ci_model, banks, tag, trunk):
    dirs = banks[tag]
    bank = P.PMBank.from_dirs(dirs)
    assert bank.principles == list(dirs) and bank.trunk_layers == trunk
    texts = [P.render_pm_text(bank.tokenizer, CONV, r) for r in TEXTS_RESP]
    seqs = bank.encode(texts)
    assert len({len(s) for s in seqs}) > 1  # the batch really is padded
    scores = bank.score_texts(texts, batch_size=4)  # one left-padded batch
    assert scores.shape == (len(texts), len(dirs))
    for j, name in enumerate(bank.principles):
        ref = reference_scores(ci_model, dirs[name], seqs, bank.pad_token_id)
        assert scores[:, j].tolist() == pytest.approx(ref, abs=1e-5), name
    # the adapters really differ, so equality above rules out cross-talk
    assert (scores[:, 0] - scores[:, 1]).abs().max() > 1e-2 and (scores[:, 1] - scores[:, 2]).abs().max() > 1e-2
    # left padding scores the same as no padding, and batch-mates do not matter
    for i, s in enumerate(seqs):
        alone = bank.score_ids([s], batch_size=1)[0]
        assert torch.allclose(alone, scores[i], atol=1e-5)
    # the generic path (whole model per principle, used for non-llama architectures) agrees too
    bank.trunk_layers = None
    assert torch.allclose(bank.score_texts(texts, batch_size=4), scores, atol=1e-5)
    # a bank with another order / a subset gives each principle the same scores
    sub = P.PMBank.from_dirs({"sycophancy": dirs["sycophancy"], "helpfulness": dirs["helpfulness"]})
    sub_scores = sub.score_texts(texts)
    assert torch.allclose(sub_scores[:, 0], scores[:, 2], atol=1e-5)
    assert torch.allclose(sub_scores[:, 1], scores[:, 0], atol=1e-5)


def test_score_tokens_every_position(ci_model, banks):
    """score_tokens[b, t] is the PM score of the prefix ending at t (causal), 0 at padding."""
    dirs = banks["1"]
    bank = P.PMBank.from_dirs(dirs)
    seqs = bank.encode([P.render_pm_text(bank.tokenizer, CONV, r) for r in TEXTS_RESP[:2]])
    ids, mask = P.pad_left(seqs, bank.pad_token_id)
    per_pos = bank.score_tokens(ids, mask)
    assert per_pos.shape == (*ids.shape, 3)
    assert (per_pos[mask == 0] == 0).all()
    row = 1 if len(seqs[1]) < len(seqs[0]) else 0
    s = seqs[row]
    offset = ids.shape[1] - len(s)
    for t in (0, len(s) // 2, len(s) - 1):
        prefix = bank.score_ids([s[: t + 1]])[0]
        assert torch.allclose(per_pos[row, offset + t], prefix, atol=1e-5)


def _toy_pairs(n: int) -> tuple[list[dict], list[dict]]:
    pairs, fb = [], []
    for i in range(n):
        a = " ".join(["the answer is"] + ["apples"] * (i % 3 + 1))
        b = "not " * (i % 2 + 1) + "perfect"
        pairs.append(
            {
                "id": f"q{i}",
                "split": "train" if i < n - 2 else "test",
                "messages": CONV,
                "response_a": a,
                "response_b": b,
                "human_label": None,
            }
        )
        margin = (-1) ** i * (0.5 + i / 10)
        fb.append({"id": f"q{i}", "split": pairs[-1]["split"], "label": int(margin > 0), "margin": margin})
    return pairs, fb


def test_margin_column_reaches_the_loss(ci_model, tmp_path):
    pairs, fb = _toy_pairs(6)
    tok = P.load_pm_tokenizer(ci_model)
    cfg = P.merge_config({"lora": {"target_modules": TARGETS, "layers": 1}, "train": {"max_length": 48}})
    rows, stats = P.build_pm_rows(pairs, fb, tok, cfg)
    assert stats["examples"] == 4 and stats["chosen_is_a"] == 2
    first = rows[0]  # q0: margin +0.5 -> response_a chosen
    assert first["margin"] == pytest.approx(0.5)
    assert first["chosen_ids"] == P.encode_pm_text(tok, P.render_pm_text(tok, CONV, pairs[0]["response_a"]), 48)
    assert rows[1]["chosen_ids"] == P.encode_pm_text(tok, P.render_pm_text(tok, CONV, pairs[1]["response_b"]), 48)

    torch.manual_seed(0)
    model = P.load_seqcls_base(ci_model, torch.float32, tok.pad_token_id)
    kwargs = {
        "output_dir": str(tmp_path / "unused"),
        "per_device_train_batch_size": 4,
        "report_to": [],
        "use_cpu": True,
        "bf16": False,
        "gradient_checkpointing": False,
        "seed": 0,
    }
    trainer = P.build_reward_trainer(model, tok, rows, cfg, kwargs)
    batch = next(iter(trainer.get_train_dataloader()))
    assert "margin" in batch  # survived remove_unused_columns and the collator
    assert sorted(batch["margin"].tolist()) == pytest.approx(sorted(r["margin"] for r in rows))
    trainer.model.eval()
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, dict(batch)).item()
        logits = trainer.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, 0]
    rc, rr = logits.chunk(2)
    by_hand = -torch.nn.functional.logsigmoid(rc - rr - batch["margin"]).mean().item()
    no_margin = -torch.nn.functional.logsigmoid(rc - rr).mean().item()
    assert loss == pytest.approx(by_hand, abs=1e-6)
    assert abs(by_hand - no_margin) > 1e-3

    rows_nm, _ = P.build_pm_rows(pairs, fb, tok, {**cfg, "margin": False})
    assert "margin" not in rows_nm[0]


def test_train_pm_changes_adapter_and_writes_model_json(ci_model, tmp_path):
    from safetensors.torch import load_file

    pairs, fb = _toy_pairs(10)
    write_jsonl(tmp_path / "pairs.jsonl", pairs)
    write_jsonl(tmp_path / "fb.jsonl", fb)
    out = tmp_path / "pms" / "helpfulness"
    cfg = {
        "lora": {"target_modules": TARGETS, "layers": 1},
        "train": {"per_device_batch_size": 4, "grad_accum": 1, "warmup_steps": 0, "learning_rate": 1e-2},
        "margin": True,
    }
    P.main(
        [
            "train",
            "--base",
            str(ci_model),
            "--pairs",
            str(tmp_path / "pairs.jsonl"),
            "--feedback",
            str(tmp_path / "fb.jsonl"),
            "--principle",
            "helpfulness",
            "--config-json",
            json.dumps(cfg),
            "--tier",
            "ci",
            "--out",
            str(out),
        ]
    )
    meta = read_json(out / "model.json")
    assert meta["kind"] == "pm_lora" and meta["principle"] == "helpfulness"
    assert meta["name"] == "PM_ci-random-llama_helpfulness_LoRA"
    assert meta["adapter_sha256"] == sha256_dir(out / "adapter")
    assert meta["data"]["examples"] == 8 and meta["config"]["lora"]["r"] == 8
    assert len(meta["log_history"]) >= 2 and meta["provenance"]["tier"] == "ci"
    assert not (out / "checkpoints").exists()
    weights = load_file(out / "adapter" / "adapter_model.safetensors")
    lora_b = {k: v for k, v in weights.items() if "lora_B" in k}
    assert lora_b and all(".layers.1." in k for k in weights if "lora" in k)  # only the top layer is adapted
    assert max(v.abs().max().item() for v in lora_b.values()) > 0  # B starts at 0: training moved it
    assert any("score" in k for k in weights)  # the principle's own head is saved with the adapter
    # the trained PM loads into a bank and scores
    bank = P.PMBank.from_dirs({"helpfulness": out})
    assert bank.trunk_layers == 1 and torch.isfinite(bank.score_texts(["x"])).all()


def test_score_cli(ci_model, banks, tmp_path):
    pairs, _ = _toy_pairs(3)
    write_jsonl(tmp_path / "pairs.jsonl", pairs)
    dirs = {k: str(v) for k, v in banks["1"].items()}
    out = tmp_path / "pm_scores.jsonl"
    P.main(["score", "--pms-json", json.dumps(dirs), "--pairs", str(tmp_path / "pairs.jsonl"), "--out", str(out)])
    rows = read_jsonl(out)
    assert [r["id"] for r in rows] == ["q0", "q1", "q2"]
    assert set(rows[0]["scores_a"]) == set(dirs) == set(rows[0]["scores_b"])
    bank = P.PMBank.from_dirs(banks["1"])
    direct = bank.score_texts([P.render_pm_text(bank.tokenizer, CONV, pairs[1]["response_b"])])[0]
    assert [rows[1]["scores_b"][p] for p in bank.principles] == pytest.approx(direct.tolist(), abs=1e-5)
    prov = read_json(out.with_suffix(".provenance.json"))
    assert prov["trunk_layers"] == 1 and "pairs_sha256" in prov
