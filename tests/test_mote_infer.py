"""MoTE inference: parsing of malformed chains (counted fallbacks, never a crash), adaptive and forced-mode decoding
on the ci model (MoTE and plain PEFT LoRA folders), KV-cache decoding equal to a full forward, batching."""

from __future__ import annotations

import json

import pytest
import torch

from alignrepro.io import read_json, read_jsonl
from alignrepro.methods.mote import infer
from alignrepro.methods.mote.moe_lora import mote_layers
from alignrepro.methods.mote.steps import STEP_IDS, parse_generated, step_token_ids

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---------------------------------------------------------------------------------------------------- parsing
@pytest.mark.parametrize(
    "text, steps, fallbacks",
    [
        (
            "<|analysis|> risky <|/analysis|><|guidance|>refuse<|/guidance|><|response|>No.<|/response|>",
            {"analysis": "risky", "guidance": "refuse", "answer": "No."},
            [],
        ),
        ("Just an answer.", {"answer": "Just an answer."}, ["no_step_tokens"]),
        ("", {"answer": ""}, ["no_step_tokens", "no_answer"]),
        ("<|analysis|>a<|response|>b", {"analysis": "a", "answer": "b"}, ["unclosed_analysis", "unclosed_answer"]),
        (
            "<|response|>x<|/response|><|response|>y<|/response|>",
            {"answer": "x"},
            ["duplicate_answer"],
        ),
        ("a<|/analysis|><|response|>b<|/response|>", {"answer": "b"}, ["stray_text", "orphan_end_analysis"]),
        (
            "<|analysis|>a<|/guidance|><|response|>b<|/response|>",
            {"analysis": "a", "answer": "b"},
            ["mismatched_end_guidance"],
        ),
        (
            "<|response|>b<|/response|><|analysis|>a<|/analysis|>",
            {"analysis": "a", "answer": "b"},
            ["out_of_order"],
        ),
        (
            "<|analysis|>a<|/analysis|> Sure.",
            {"analysis": "a", "answer": "Sure."},
            ["stray_text", "answer_outside_step"],
        ),
        ("<|analysis|>only thinking", {"analysis": "only thinking", "answer": ""}, ["unclosed_analysis", "no_answer"]),
    ],
)
def test_parse_generated_fallbacks(text, steps, fallbacks):
    got_steps, got_fallbacks = parse_generated(text)
    assert got_steps == steps
    assert sorted(got_fallbacks) == sorted(fallbacks)


# ---------------------------------------------------------------------------------------------------- decoding
def _prompts(tmp_path, n=3):
    path = tmp_path / "prompts.jsonl"
    rows = [
        {"id": f"p{i}", "kind": "harmful", "messages": [{"role": "user", "content": "how many apples " * (i + 1)}]}
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("arch, temperature", [("mote", 0.0), ("lora", 1.0)])
def test_adaptive_inference_writes_rows_and_counts_fallbacks(mote_model_dirs, tmp_path, arch, temperature):
    out = tmp_path / "gen.jsonl"
    summary = infer.run(
        mote_model_dirs[arch], _prompts(tmp_path), "adaptive", 12, out, batch_size=2, temperature=temperature
    )
    rows = read_jsonl(out)
    again = tmp_path / "again.jsonl"
    infer.run(mote_model_dirs[arch], _prompts(tmp_path), "adaptive", 12, again, batch_size=2, temperature=temperature)
    assert [r["raw"] for r in read_jsonl(again)] == [r["raw"] for r in rows]  # seeded, also when sampling
    assert [r["id"] for r in rows] == ["p0", "p1", "p2"]
    for r in rows:
        assert {"output", "steps", "n_tokens", "fallbacks", "mode", "messages"} <= set(r)
        assert 0 < r["n_tokens"] <= 12 and r["output"] == r["steps"]["answer"]
    counts = {}
    for r in rows:
        for f in r["fallbacks"]:
            counts[f] = counts.get(f, 0) + 1
    assert summary["fallback_counts"] == counts and read_json(infer.summary_path(out))["n_rows"] == 3
    assert summary["tokens_per_s"] > 0 and "provenance" in summary
    if arch == "lora":
        model, _, _ = infer.load_trained(mote_model_dirs[arch])
        assert not list(mote_layers(model))  # plain merged LoRA: routing is a no-op


def test_adaptive_mode_keeps_the_step_grammar(mote_model_dirs):
    """Inside an open step no other step token (no nested or repeated start), only its own end; between steps the
    model chooses freely (adaptive)."""
    model, tok, _ = infer.load_trained(mote_model_dirs["mote"])
    d = infer.StepDecoder(model, tok)
    logits = torch.zeros(1, len(tok))
    logits[0, d.start_of["analysis"]] = 10.0  # the model "wants" to open analysis again
    logits[0, d.start_of["guidance"]] = 9.0
    inside = {"done": False, "step": "analysis", "open": True, "in_step": 1, "step_max": None}
    assert d._choose(logits, [inside], None, None)[0] not in set(d.all_step_ids) - {d.end_of["analysis"]}
    logits[0, d.end_of["analysis"]] = 8.0
    assert d._choose(logits, [inside], None, None) == [d.end_of["analysis"]]
    between = {**inside, "open": False}
    assert d._choose(logits, [between], None, None) == [d.start_of["analysis"]]


def test_forced_modes_emit_the_planned_step_tokens(mote_model_dirs, tmp_path):
    prompts = _prompts(tmp_path, 2)
    out = tmp_path / "qa.jsonl"
    infer.run(mote_model_dirs["mote"], prompts, "q_a", 8, out)
    for r in read_jsonl(out):
        assert r["raw"].startswith("<|response|>") and "analysis" not in r["steps"]
    out = tmp_path / "full.jsonl"
    infer.run(mote_model_dirs["mote"], prompts, "q_ana_guid_a", 14, out, step_max_tokens=2)
    for r in read_jsonl(out):
        raw = r["raw"]
        marks = ["<|analysis|>", "<|/analysis|>", "<|guidance|>", "<|/guidance|>", "<|response|>"]
        pos = [raw.find(m) for m in marks]
        assert all(p >= 0 for p in pos) and pos == sorted(pos), raw
        assert raw.count("<|analysis|>") == 1 and raw.count("<|guidance|>") == 1
        assert set(r["steps"]) == {"analysis", "guidance", "answer"}
        assert r["n_tokens"] <= 14


def test_kv_cache_decoding_equals_a_full_forward_with_the_same_routing(mote_model_dirs):
    model, tok, _ = infer.load_trained(mote_model_dirs["mote"])
    decoder = infer.StepDecoder(model, tok)
    seen = []
    original = decoder._choose

    def record(logits, *a):
        seen.append(logits[0].clone())
        return original(logits, *a)

    decoder._choose = record
    conv = [{"role": "user", "content": "what is the capital"}]
    result = decoder.generate([conv], "q_ana_a", max_new_tokens=10, step_max_tokens=3)[0]
    gen = result["token_ids"]
    prompt = infer.encode_prompt(tok, conv)
    # step ids exactly as the decoder feeds them: start/end tokens carry their step; text carries the open step
    of = {i: s for s, pair in step_token_ids(tok).items() for i in pair}
    steps, cur = [], 0
    for t in gen:
        cur = STEP_IDS[of[t]] if t in of else cur
        steps.append(cur)
    ids = torch.tensor([prompt + gen])
    step_ids = torch.tensor([[0] * len(prompt) + steps])
    from alignrepro.methods.mote.moe_lora import routing

    with torch.no_grad(), routing(model, step_ids):
        full = model(input_ids=ids).logits[0]
    # the decoder's k-th choice was made from the logits after prompt + 1 prefilled token + (k) generated tokens
    for k, logits in enumerate(seen):
        torch.testing.assert_close(logits, full[len(prompt) + k], atol=1e-4, rtol=1e-4)
    assert len(seen) == len(gen) - 1


def test_batching_with_left_padding_matches_single_prompts(mote_model_dirs):
    model, tok, _ = infer.load_trained(mote_model_dirs["mote"])
    decoder = infer.StepDecoder(model, tok)
    convs = [[{"role": "user", "content": "sort list"}], [{"role": "user", "content": "how many apples " * 4}]]
    batched = decoder.generate(convs, "q_ana_a", max_new_tokens=8, step_max_tokens=2)
    single = [decoder.generate([c], "q_ana_a", max_new_tokens=8, step_max_tokens=2)[0] for c in convs]
    assert [b["raw"] for b in batched] == [s["raw"] for s in single]
