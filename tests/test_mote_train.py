"""MoTE training: chain encoding (loss only on chain tokens, left-truncated query), the explicit datasets of Table 6,
one step changing only experts and new token rows, the CLI with resume after a kill, and Table 6's cost json."""

from __future__ import annotations

import json

import pytest
import torch

from alignrepro.io import read_json
from alignrepro.methods.mote import train as mote_train
from alignrepro.methods.mote.steps import (
    IGNORE_INDEX,
    STEP_TOKENS,
    ChainTooLong,
    add_step_tokens,
    encode_chain,
    encode_prompt,
    step_token_ids,
    step_token_parameters,
)
from alignrepro.models import load_model, load_tokenizer

MSG = [{"role": "user", "content": "how many apples"}]
CHAIN = {"id": "c", "analysis": "the answer", "guidance": "be short", "answer": "is 12"}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tok(ci_model):
    t = load_tokenizer(ci_model, padding_side="right")
    add_step_tokens(t, load_model(ci_model))
    return t


def _chains(tmp_path, n=8):
    rows = []
    for i in range(n):
        rows.append(
            {
                "id": f"c{i}",
                "kind": "harmful" if i % 2 else "helpful",
                "messages": [{"role": "user", "content": f"what is the capital of {i}"}],
                "analysis": "the answer should be short" if i % 3 else None,
                "guidance": "give the final number" if i % 3 == 2 else None,
                "answer": f"the answer is {i * 7}",
                "template_version": "alignCoT-v1",
                "self_check": None,
                "fallbacks": [],
            }
        )
    path = tmp_path / "chains.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_encode_chain_loss_only_on_chain_tokens(tok):
    enc = encode_chain(tok, MSG, CHAIN, max_length=256)
    ids_map = step_token_ids(tok)
    query = encode_prompt(tok, MSG)
    n = len(query)
    assert enc["input_ids"][:n] == query and enc["query_truncated"] == 0
    assert enc["labels"][:n] == [IGNORE_INDEX] * n and enc["step_ids"][:n] == [0] * n
    chain = enc["input_ids"][n:]
    assert enc["labels"][n:] == chain  # every chain token, step tokens included, carries the loss
    text_ids = {s: tok(CHAIN[s], add_special_tokens=False)["input_ids"] for s in ("analysis", "guidance", "answer")}
    expected, expected_steps = [], []
    for sid, s in ((1, "analysis"), (2, "guidance"), (3, "answer")):
        seg = [ids_map[s][0], *text_ids[s], ids_map[s][1]]
        expected += seg
        expected_steps += [sid] * len(seg)
    assert chain == expected and enc["step_ids"][n:] == expected_steps
    # each step token is one token (special: never split by the tokenizer)
    for start, end in STEP_TOKENS.values():
        assert len(tok(start + "x" + end, add_special_tokens=False)["input_ids"]) == 3
    # absent steps are left out; an answer is required
    short = encode_chain(tok, MSG, {**CHAIN, "analysis": None, "guidance": ""}, 256)
    assert set(short["step_ids"]) == {0, 3}
    with pytest.raises(ValueError):
        encode_chain(tok, MSG, {**CHAIN, "answer": " "}, 256)


def test_query_is_left_truncated_never_the_chain(tok):
    full = encode_chain(tok, MSG, CHAIN, 256)
    n_chain = sum(label != IGNORE_INDEX for label in full["labels"])
    cut = encode_chain(tok, MSG, CHAIN, n_chain + 3)
    assert len(cut["input_ids"]) == n_chain + 3 and cut["query_truncated"] == len(full["input_ids"]) - n_chain - 3
    assert cut["input_ids"][3:] == full["input_ids"][-n_chain:]  # chain intact, query kept from its end
    assert cut["input_ids"][:3] == full["input_ids"][-n_chain - 3 : -n_chain]
    with pytest.raises(ChainTooLong):
        encode_chain(tok, MSG, CHAIN, n_chain)


def test_explicit_datasets_expand_each_chain():
    variants = [v["_variant"] for v in mote_train.expand_explicit(CHAIN)]
    assert len(variants) == 7 and ("analysis", "guidance", "answer") in variants and ("answer",) in variants
    two = [v["_variant"] for v in mote_train.expand_explicit({**CHAIN, "guidance": None})]
    assert sorted(two) == [("analysis",), ("analysis", "answer"), ("answer",)]
    assert [v["_variant"] for v in mote_train.expand_explicit({**CHAIN, "analysis": None, "guidance": None})] == [
        ("answer",)
    ]
    reasoning_only = next(v for v in mote_train.expand_explicit(CHAIN) if v["_variant"] == ("analysis",))
    assert reasoning_only["answer"] is None and reasoning_only["id"] == "c#analysis"


@pytest.mark.parametrize("arch", ["mote", "lora"])
def test_one_step_changes_only_experts_and_new_token_rows(ci_model, tmp_path, arch):
    from datasets import Dataset
    from transformers import TrainingArguments

    cfg = mote_train.merged_config(
        {"train": {"max_length": 64, "learning_rate": 1e-2, "warmup_ratio": 0.0}, "lora": {"r": 4, "alpha": 8}}
    )
    model, tok, settings = mote_train.build_model(arch, ci_model, cfg)
    rows = [json.loads(line) for line in _chains(tmp_path, 4).read_text().splitlines()]
    examples, _ = mote_train.encode_rows(rows, tok, 64)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    args = TrainingArguments(
        output_dir=str(tmp_path / "ckpt"),
        per_device_train_batch_size=4,
        max_steps=1,
        learning_rate=1e-2,
        lr_scheduler_type="constant",
        use_cpu=True,
        report_to=[],
        save_strategy="no",
        remove_unused_columns=False,
        disable_tqdm=True,
    )
    trainer = mote_train.MoTETrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(examples),
        data_collator=mote_train.MoTECollator(tok.pad_token_id, mote_train.n_routed(settings), settings["skip_p"], 0),
    )
    trainer.train()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])}
    assert changed, "nothing trained"
    assert all("lora_" in n or n.endswith(".rows") for n in changed), sorted(changed)[:5]
    assert any(n.endswith(".rows") for n in changed)  # the step tokens' rows learn
    assert any("lora_B" in n for n in changed)


def test_step_token_rows_get_their_own_learning_rate(ci_model, tmp_path):
    from transformers import TrainingArguments

    cfg = mote_train.merged_config({"train": {"max_length": 64}, "lora": {"r": 4, "alpha": 8}})
    model, _, _ = mote_train.build_model("mote", ci_model, cfg)
    rows = {id(p) for p in step_token_parameters(model)}
    assert len(rows) == 1  # the ci model ties its embeddings: one set of rows, in and out
    args = TrainingArguments(output_dir=str(tmp_path), learning_rate=1e-4, use_cpu=True, report_to=[])
    opt = mote_train.MoTETrainer(model=model, args=args, step_token_lr=0.03).create_optimizer()
    groups = [(g["lr"], {id(p) for p in g["params"]}) for g in opt.param_groups]
    assert [lr for lr, ids in groups if ids & rows] == [0.03] and [ids for lr, ids in groups if lr == 0.03] == [rows]
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert set().union(*(ids for _, ids in groups)) == trainable  # nothing lost, nothing twice
    assert sum(len(ids) for _, ids in groups) == len(trainable)
    plain = mote_train.MoTETrainer(model=model, args=args).create_optimizer()
    assert all(g["lr"] == 1e-4 for g in plain.param_groups)


def _cli(ci_model, chains, out, arch="mote", extra=(), train=None):
    cfg = {
        "train": {"max_length": 96, "learning_rate": 1e-3, "epochs": 1, "per_device_batch_size": 2, "save_steps": 1}
        | (train or {}),
        "lora": {"r": 4, "alpha": 8},
        "dtype": "float32",
    }
    return [
        "--arch",
        arch,
        "--base",
        str(ci_model),
        "--chains",
        str(chains),
        "--config-json",
        json.dumps(cfg),
        "--tier",
        "ci",
        "--out",
        str(out),
        *extra,
    ]


def test_cli_resumes_after_a_kill_and_writes_model_json_last(ci_model, tmp_path, monkeypatch):
    chains = _chains(tmp_path)
    out = tmp_path / "mote" / "ci" / "models" / "mote"
    calls = {"n": 0}
    original = mote_train.MoTETrainer.training_step

    def crash_on_third_step(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("simulated kill")
        return original(self, *a, **k)

    monkeypatch.setattr(mote_train.MoTETrainer, "training_step", crash_on_third_step)
    with pytest.raises(KeyboardInterrupt):
        mote_train.main(_cli(ci_model, chains, out))
    assert not (out / "model.json").exists()
    ckpt = out / "checkpoints" / "checkpoint-2"
    assert (ckpt / "trainable.safetensors").is_file() and not (ckpt / "model.safetensors").exists()
    monkeypatch.setattr(mote_train.MoTETrainer, "training_step", original)
    mote_train.main(_cli(ci_model, chains, out))
    meta = read_json(out / "model.json")
    assert meta["resumed_from"].endswith("checkpoint-2") and meta["optimizer_steps"] == 4
    assert meta["kind"] == "mote" and meta["arch"] == "mote" and meta["adapter_format"] == "mote"
    assert meta["prompt_template"] == "chat" and meta["skip_p"] == 0.5 and meta["mote"]["shared_expert"]
    assert meta["config"]["train"]["warmup_ratio"] == 0.03 and meta["config"]["train"]["lr_scheduler"] == "cosine"
    assert meta["data"]["n_examples"] == 8 and "provenance" in meta
    assert (out / "adapter" / "mote_adapter.safetensors").is_file() and (out / "tokenizer").is_dir()


def _counted_training_flops(model_dir, chains) -> float:
    """FLOPs of training `model_dir`'s model on `chains`, counted directly: one forward+backward of chain_loss per
    real training sequence (batched by the trainer's collator), averaged over the query expert the collator draws
    uniformly, summed, times the epochs."""
    from pathlib import Path

    from torch.utils.flop_counter import FlopCounterMode

    meta = read_json(model_dir / "model.json")
    model, tok, settings = mote_train.build_model(
        meta["arch"], Path(meta["base"]), meta["config"], meta["explicit_datasets"]
    )
    model.train()
    rows = [json.loads(line) for line in chains.read_text().splitlines()]
    if meta["explicit_datasets"]:
        rows = [v for r in rows for v in mote_train.expand_explicit(r)]
    examples, _ = mote_train.encode_rows(rows, tok, meta["config"]["train"]["max_length"])
    n_experts = mote_train.n_routed(settings)
    collate = mote_train.MoTECollator(tok.pad_token_id, n_experts, meta["skip_p"], seed=0)
    total = 0
    for e in examples:
        batch = collate([e])
        for expert in range(n_experts):
            batch["query_expert"] = torch.tensor([expert])
            with FlopCounterMode(display=False) as counter:
                loss, _, aux = mote_train.chain_loss(model, batch)
                (loss + (aux if aux is not None else 0)).backward()
            model.zero_grad(set_to_none=True)
            total += counter.get_total_flops()
    return total / n_experts * meta["config"]["train"]["epochs"]


def test_explicit_datasets_cli_and_table6_cost(ci_model, tmp_path):
    from alignrepro.methods.mote import efficiency

    chains = _chains(tmp_path, n=4)
    mask_dir, expl_dir = tmp_path / "mask", tmp_path / "explicit"
    mote_train.main(_cli(ci_model, chains, mask_dir, train={"save_steps": 100}))
    mote_train.main(_cli(ci_model, chains, expl_dir, extra=["--explicit-datasets"], train={"save_steps": 100}))
    meta = read_json(expl_dir / "model.json")
    # chains c0 (Q→A), c1 (Q→Ana→A), c2 (full), c3 (Q→A): 1 + 3 + 7 + 1 sequences, no mask trick
    assert meta["explicit_datasets"] and meta["skip_p"] == 0.0 and meta["data"]["n_examples"] == 12
    out = tmp_path / "table6.json"
    efficiency.main(
        ["--mask-model", str(mask_dir), "--explicit-model", str(expl_dir), "--chains", str(chains), "--tier", "ci"]
        + ["--out", str(out)]
    )
    result = read_json(out)
    rows = result["rows"]
    # The cost json's FLOPs (a quadratic fit on synthetic sequences) against a direct count of every real training
    # batch (flops_rel of the reference row is 1 by definition, so the check is on the counts and their ratio). The
    # fit only under-counts, never over: its synthetic sequences hold no step tokens (~3 % fewer FLOPs) and pin the
    # query expert to the first step's expert (the trainer draws it uniformly: one more expert otherwise). On the
    # ratio the two mostly cancel (measured gap 1-3 %; on the counts 8-14 %).
    measured = {name: _counted_training_flops(d, chains) for name, d in
                (("explicit_extra_datasets", expl_dir), ("MoTE", mask_dir))}  # fmt: skip
    for name, flops in measured.items():
        assert 0.8 * flops < rows[name]["flops"] <= flops, (name, rows[name]["flops"], flops)
    ratio = measured["MoTE"] / measured["explicit_extra_datasets"]
    assert rows["MoTE"]["flops_rel"] == pytest.approx(ratio, rel=0.05), (rows["MoTE"]["flops_rel"], ratio)
    assert 0 < rows["MoTE"]["flops_rel"] < 0.7  # one pass instead of the expanded datasets
    assert rows["MoTE"]["fit_max_rel_error"] < 1e-6  # FLOPs are exactly quadratic in the length
    assert rows["MoTE"]["n_sequences"] == 4 and rows["explicit_extra_datasets"]["n_sequences"] == 12
    assert result["problems"] == [] and "provenance" in result
