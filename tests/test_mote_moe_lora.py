"""MoTE's mixture of LoRA experts: equivalence with PEFT LoRA, per-token step routing, shared-expert mixing, gated
baselines, KV-cache routing, save/load and merge/PEFT export (on the ci model)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from alignrepro.methods.mote.moe_lora import (
    ALL_LINEAR,
    MoTEConfig,
    apply_mote,
    expert_as_peft,
    load_mote,
    merge_expert,
    mote_layers,
    pop_aux_loss,
    routing,
    save_expert_as_peft,
    save_mote,
)
from alignrepro.methods.mote.steps import add_step_tokens, step_token_ids
from alignrepro.models import load_model, load_tokenizer

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _randomize_experts(model, std: float = 0.2, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, layer in mote_layers(model):
            for p in list(layer.lora_A.values()) + list(layer.lora_B.values()):
                p.copy_(torch.randn(p.shape, generator=g) * std)


def _ids(batch: int = 2, length: int = 12, vocab: int = 384, seed: int = 1) -> torch.Tensor:
    return torch.randint(3, vocab, (batch, length), generator=torch.Generator().manual_seed(seed))


def test_one_expert_without_shared_equals_peft_lora(ci_model):
    from peft import LoraConfig, get_peft_model

    peft_model = get_peft_model(
        load_model(ci_model), LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=list(ALL_LINEAR))
    )
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for n, p in peft_model.named_parameters():
            if "lora_" in n:  # B is zero at init: randomise both so the test sees the adapter
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    cfg = MoTEConfig(r=4, lora_alpha=8, dropout=0.0, experts=("answer",), shared_expert=False, mix_alpha=1.0)
    mote = apply_mote(load_model(ci_model), cfg)
    peft_params = {n: p for n, p in peft_model.named_parameters() if "lora_" in n}
    layers = list(mote_layers(mote))
    assert len(layers) == 2 * 7  # every linear layer of both blocks
    with torch.no_grad():
        for path, layer in layers:
            layer.lora_A["answer"].copy_(peft_params[f"base_model.model.{path}.lora_A.default.weight"])
            layer.lora_B["answer"].copy_(peft_params[f"base_model.model.{path}.lora_B.default.weight"])
    ids = _ids()
    step_ids = torch.tensor([[0] * 4 + [1] * 3 + [2] * 2 + [3] * 3] * 2)
    ref = peft_model(input_ids=ids).logits
    with routing(mote, step_ids):
        got = mote(input_ids=ids).logits
    base = load_model(ci_model)(input_ids=ids).logits
    assert (ref - base).abs().max() > 1e-3  # the adapter matters
    torch.testing.assert_close(got, ref, atol=1e-6, rtol=0)
    ref.square().sum().backward()
    got.square().sum().backward()
    for path, layer in layers:
        for x in "AB":
            g_ref = peft_params[f"base_model.model.{path}.lora_{x}.default.weight"].grad
            g_got = getattr(layer, f"lora_{x}")["answer"].grad
            torch.testing.assert_close(g_got, g_ref, atol=1e-6, rtol=1e-5)
    # Only the experts are trainable: the base is frozen.
    assert all(("lora_" in n) == p.requires_grad for n, p in mote.named_parameters())


def _toy(cfg: MoTEConfig) -> nn.Module:
    torch.manual_seed(0)
    toy = nn.Module()
    toy.q_proj = nn.Linear(8, 6)
    return apply_mote(toy, cfg)


def test_step_routing_sends_each_token_through_exactly_its_expert():
    cfg = MoTEConfig(r=2, lora_alpha=2, dropout=0.0, target_modules=("q_proj",), shared_expert=False)
    toy = _toy(cfg)
    layer = toy.q_proj
    x = torch.randn(2, 7, 8)
    step_ids = torch.tensor([[0, 0, 1, 1, 2, 3, 3], [0, 3, 3, 2, 2, 1, 0]])
    base = layer.base_layer(x)
    for name, sid in (("analysis", 1), ("guidance", 2), ("answer", 3)):
        with torch.no_grad():  # zero every expert but one
            for n in cfg.expert_names:
                layer.lora_B[n].zero_()
            layer.lora_B[name].normal_()
        with routing(toy, step_ids, query_expert="guidance"):
            out = layer(x)
        changed = (out - base).abs().amax(-1) > 1e-6
        expected = (step_ids == sid) | ((step_ids == 0) & (name == "guidance"))
        assert torch.equal(changed, expected), name
        # and the change is exactly that expert's LoRA
        delta = (x @ layer.lora_A[name].T) @ layer.lora_B[name].T * (cfg.lora_alpha / cfg.r)
        torch.testing.assert_close(out[expected], (base + delta)[expected])


def test_shared_expert_mix_uses_alpha_and_each_experts_own_scale():
    cfg = MoTEConfig(r=2, lora_alpha=6, dropout=0.0, target_modules=("q_proj",), shared_expert=True, mix_alpha=0.25)
    toy = _toy(cfg)
    _randomize_experts(toy)
    layer = toy.q_proj
    x = torch.randn(1, 4, 8)
    step_ids = torch.tensor([[1, 2, 3, 3]])
    with routing(toy, step_ids):
        out = layer(x)

    def e(name):
        return (x @ layer.lora_A[name].T) @ layer.lora_B[name].T * 3.0  # lora_alpha / r = 6 / 2

    names = ["analysis", "guidance", "answer", "answer"]
    for t, name in enumerate(names):
        want = layer.base_layer(x)[0, t] + 0.25 * e(name)[0, t] + 0.75 * e("shared")[0, t]
        torch.testing.assert_close(out[0, t], want)


def test_query_tokens_go_to_one_expert_per_sample():
    cfg = MoTEConfig(r=2, lora_alpha=2, dropout=0.0, target_modules=("q_proj",), shared_expert=False)
    toy = _toy(cfg)
    _randomize_experts(toy)
    layer = toy.q_proj
    x = torch.randn(3, 5, 8)
    step_ids = torch.tensor([[0, 0, 0, 3, 3]] * 3)

    def outputs_for(query_expert):
        with routing(toy, step_ids, query_expert=query_expert):
            return layer(x)

    chosen = torch.tensor([2, 0, 1])
    out = outputs_for(chosen)
    for b, e in enumerate(chosen.tolist()):
        name = cfg.experts[e]  # scale lora_alpha / r = 1
        want = layer.base_layer(x[b, :3]) + (x[b, :3] @ layer.lora_A[name].T) @ layer.lora_B[name].T
        torch.testing.assert_close(out[b, :3], want)
    # inference (eval): E_analysis (note §7.3); training with no choice given: random, seeded
    toy.eval()
    torch.testing.assert_close(outputs_for(None), outputs_for(torch.zeros(3, dtype=torch.long)))
    toy.train()
    toy._mote_state.generator.manual_seed(5)
    first = outputs_for(None)
    toy._mote_state.generator.manual_seed(5)
    torch.testing.assert_close(outputs_for(None), first)


def test_missing_routing_is_an_error_and_routing_is_restored():
    cfg = MoTEConfig(r=2, lora_alpha=2, target_modules=("q_proj",))
    toy = _toy(cfg)
    with pytest.raises(RuntimeError, match="routing"):
        toy.q_proj(torch.randn(1, 3, 8))
    with routing(toy, torch.tensor([[1, 2, 3]])):
        toy.q_proj(torch.randn(1, 3, 8))
    assert toy._mote_state.route is None
    with routing(toy, torch.tensor([[1, 2]])), pytest.raises(RuntimeError, match="do not match"):
        toy.q_proj(torch.randn(1, 3, 8))


def test_kv_cache_decoding_routes_only_the_new_tokens(ci_model):
    model = apply_mote(load_model(ci_model).eval(), MoTEConfig(r=4, lora_alpha=8, dropout=0.0))
    _randomize_experts(model, std=0.3)
    ids = _ids(batch=1, length=10)
    step_ids = torch.tensor([[0, 0, 0, 1, 1, 1, 2, 2, 3, 3]])
    with torch.no_grad(), routing(model, step_ids):
        full = model(input_ids=ids).logits
    with torch.no_grad():
        with routing(model, step_ids[:, :4]):
            out = model(input_ids=ids[:, :4], use_cache=True)
        cache, pieces = out.past_key_values, [out.logits]
        for t in range(4, 10):
            with routing(model, step_ids[:, t : t + 1]):
                out = model(input_ids=ids[:, t : t + 1], past_key_values=cache, use_cache=True)
            cache = out.past_key_values
            pieces.append(out.logits)
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=1e-5)


def _mote_with_tokens(ci_model, cfg: MoTEConfig):
    tok = load_tokenizer(ci_model)
    model = load_model(ci_model)
    add_step_tokens(tok, model)
    apply_mote(model, cfg)
    return model.eval(), tok


def test_save_load_round_trip_gives_identical_logits(ci_model, tmp_path):
    model, tok = _mote_with_tokens(ci_model, MoTEConfig(r=4, lora_alpha=8))
    _randomize_experts(model, std=0.3)
    with torch.no_grad():
        model.get_input_embeddings().rows.add_(torch.randn_like(model.get_input_embeddings().rows))
    save_mote(model, tmp_path / "adapter")
    fresh = load_model(ci_model)
    add_step_tokens(load_tokenizer(ci_model), fresh, seed=123)  # other random rows: the saved ones must win
    load_mote(fresh, tmp_path / "adapter")
    fresh.eval()
    starts = [a for a, _ in step_token_ids(tok).values()]
    ids = torch.cat([_ids(1, 6), torch.tensor([starts])], dim=1)
    step_ids = torch.tensor([[0] * 6 + [1, 2, 3]])
    with torch.no_grad(), routing(model, step_ids):
        a = model(input_ids=ids).logits
    with torch.no_grad(), routing(fresh, step_ids):
        b = fresh(input_ids=ids).logits
    assert torch.equal(a, b)


def test_merge_and_peft_export_equal_routing_every_token_to_the_step(ci_model, tmp_path):
    from peft import PeftModel
    from safetensors.torch import load_file

    from alignrepro.methods.mote.steps import load_step_token_state

    model, tok = _mote_with_tokens(ci_model, MoTEConfig(r=4, lora_alpha=8, mix_alpha=0.5))
    _randomize_experts(model, std=0.3)
    starts = [a for a, _ in step_token_ids(tok).values()]
    ids = torch.cat([_ids(1, 6), torch.tensor([starts])], dim=1)
    with torch.no_grad(), routing(model, torch.full(ids.shape, 2)):
        routed = model(input_ids=ids).logits
    with torch.no_grad(), routing(model, torch.full(ids.shape, 3)):
        other = model(input_ids=ids).logits
    assert (routed - other).abs().max() > 1e-3  # the steps' experts differ
    merged = merge_expert(model, "guidance")
    assert not list(mote_layers(merged)) and isinstance(merged.get_input_embeddings(), nn.Embedding)
    with torch.no_grad():
        torch.testing.assert_close(merged(input_ids=ids).logits, routed, atol=1e-5, rtol=1e-5)
    assert list(mote_layers(model))  # the original is untouched
    config, sd = expert_as_peft(model, "guidance")
    assert config.r == 8 and math.isclose(config.lora_alpha / config.r, 8 / 4)  # step + shared stacked, same scale
    save_expert_as_peft(model, "guidance", tmp_path / "peft")
    base = load_model(ci_model)
    add_step_tokens(load_tokenizer(ci_model), base)
    load_step_token_state(base, load_file(str(tmp_path / "peft" / "step_tokens.safetensors")))
    peft_model = PeftModel.from_pretrained(base, str(tmp_path / "peft")).eval()
    with torch.no_grad():
        torch.testing.assert_close(peft_model(input_ids=ids).logits, routed, atol=1e-5, rtol=1e-5)


def test_gated_moe_topk_and_contrastive_loss(ci_model):
    cfg = MoTEConfig(r=4, lora_alpha=8, dropout=0.0, routing="gate", shared_expert=False, n_gate_experts=4, top_k=2)
    toy = _toy(MoTEConfig(**{**cfg.to_dict(), "target_modules": ["q_proj"]}))
    _randomize_experts(toy)
    layer = toy.q_proj
    x = torch.randn(1, 5, 8)
    out = layer(x)  # no routing context needed
    logits = layer.gate(x)
    top = logits.topk(2, dim=-1)
    w = top.values.softmax(-1)
    want = layer.base_layer(x).clone()
    for t in range(5):
        for k in range(2):
            name = f"e{int(top.indices[0, t, k])}"
            want[0, t] += w[0, t, k] * ((x[0, t] @ layer.lora_A[name].T) @ layer.lora_B[name].T * 2.0)
    torch.testing.assert_close(out, want)
    # Vanilla MoE: no auxiliary loss; with a contrastive weight: a positive loss with gradients to the A matrices.
    model = apply_mote(load_model(ci_model), cfg)
    model.train()
    model(input_ids=_ids())
    assert pop_aux_loss(model) is None
    model = apply_mote(load_model(ci_model), MoTEConfig(**{**cfg.to_dict(), "contrastive_weight": 0.5}))
    model.train()
    model(input_ids=_ids())
    aux = pop_aux_loss(model)
    assert aux is not None and aux.item() > 0
    aux.backward()
    _, first = next(iter(mote_layers(model)))
    assert first.lora_A["e0"].grad.abs().sum() > 0
    assert pop_aux_loss(model) is None  # popped: the next step starts empty
