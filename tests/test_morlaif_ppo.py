"""MORLAIF PPO (methods/morlaif/ppo.py): the reward wrapper TRL's get_reward reads, the adaptive KL controller, one
PPO step on the ci model with a fake 3-principle bank, and the saved policy loading and generating."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from alignrepro.io import read_json, read_jsonl
from alignrepro.methods.morlaif import ppo
from alignrepro.methods.morlaif.arms import arm_of
from alignrepro.rows import paper_rows

PRINCIPLES = ["a", "b", "c"]
# q2's conversation extends q1's: q1's rendered prompt is a prefix of q2's (the query lookup must take the longest).
CONV1 = [{"role": "user", "content": "what is the capital"}]
CONV2 = [*CONV1, {"role": "assistant", "content": "the answer"}, {"role": "user", "content": "explain a short list"}]
CONV3 = [{"role": "user", "content": "how many apples"}]


def render(messages, response):  # stands in for pm.render_pm_text: the last user turn | the response
    return messages[-1]["content"] + "|" + response


class TableBank:
    """A fake PM bank: fixed scores for known texts, KeyError for any other text (checks what is scored)."""

    principles = PRINCIPLES

    def __init__(self, table: dict[str, list[float]]):
        self.table = table
        self.seen: list[str] = []

    def score_texts(self, texts, batch_size=8):
        self.seen += texts
        return torch.tensor([self.table[t] for t in texts])


class FeatureBank:
    """A cheap deterministic fake bank for PPO runs: text length, count of "e", distinct characters."""

    principles = PRINCIPLES

    def score_texts(self, texts, batch_size=8):
        return torch.tensor([[len(t) / 100, t.count("e") / 10, -len(set(t)) / 50] for t in texts])


WEIGHTS = {
    "zscore": {"a": {"mean": 0.0, "std": 1.0}, "b": {"mean": 1.0, "std": 2.0}, "c": {"mean": 0.0, "std": 2.0}},
    "weights": {"a": 1.0, "b": 0.5, "c": 2.0},
}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The ci model's tiny matmuls: 2 OpenMP threads on 2 shared cores run ~5x slower than one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tok(ci_model):
    return ppo.ppo_tokenizer(ci_model)


def _rows(tok, query_ids: list[list[int]], responses: list[list[int]]) -> tuple[torch.Tensor, int]:
    """TRL's query_responses: left-padded queries, then right-padded (post-eos) responses."""
    ctx = max(len(q) for q in query_ids)
    width = max(len(r) for r in responses)
    pad = tok.pad_token_id
    rows = [
        [pad] * (ctx - len(q)) + q + r + [pad] * (width - len(r)) for q, r in zip(query_ids, responses, strict=True)
    ]
    return torch.tensor(rows), ctx


def _wrapper(tok, bank, scalarizer="linear", **kw):
    ids, lookup = ppo.build_prompts(
        [{"messages": CONV1}, {"messages": CONV2}, {"messages": CONV3}], tok, max_prompt_length=256
    )
    if scalarizer == ppo.IDENTITY:
        weights = zscore = None
    else:
        mean, std, weights = ppo.load_weights_file(kw.pop("weights_path"), PRINCIPLES)
        zscore = (mean, std)
    return ids, ppo.ScalarizedPMReward(
        bank, tok, lookup, scalarizer, weights=weights, zscore=zscore, render=render, **kw
    )


def test_pad_token_is_not_eos(tok):
    # The ci (and SmolLM2) tokenizers have pad == eos; TRL would then mask the chat prompt's <|im_end|> tokens.
    assert tok.pad_token_id != tok.eos_token_id
    assert tok.padding_side == "left"


def test_reward_scores_the_right_text_with_zscore_weights_scalarizer(tok, tmp_path):
    from trl.experimental.utils import get_reward

    (tmp_path / "w.json").write_text(json.dumps(WEIGHTS))
    answer = tok(" the answer", add_special_tokens=False)["input_ids"]
    other = tok(" sort list reverse word", add_special_tokens=False)["input_ids"]
    bank = TableBank(
        {
            "what is the capital|the answer": [1.0, 3.0, -2.0],  # z = [1, 1, -1] → w·z = [1, 0.5, -2]
            "explain a short list|sort list reverse word": [0.5, -1.0, 4.0],  # z = [.5, -1, 2] → [.5, -.5, 4]
            "how many apples|": [0.0, 1.0, 0.0],  # an immediate eos: empty response, z = 0
        }
    )
    ids, wrapper = _wrapper(tok, bank, weights_path=tmp_path / "w.json")
    eos = tok.eos_token_id
    # Row 1 stops at eos (then pads); row 2 fills the response length (no eos); row 3 is eos at once.
    qr, ctx = _rows(tok, ids, [answer + [eos], other, [eos]])
    logits, reward, seq_len = get_reward(wrapper, qr, tok.pad_token_id, ctx)
    assert bank.seen == list(bank.table)  # exactly these texts, in row order
    assert reward.tolist() == pytest.approx([-0.5, 4.0, 0.0])  # linear = Σ w·z
    assert logits.shape == (3, qr.shape[1], 1)
    # get_reward reads the last response token: the eos of row 1, the last token of row 2.
    assert seq_len.tolist() == [ctx + len(answer), ctx + len(other) - 1, ctx]
    stats = wrapper.pop_stats()
    assert stats["reward/pm/c"] == pytest.approx((-2.0 + 4.0 + 0.0) / 3)
    assert stats["response/length"] == pytest.approx((len(answer) + len(other)) / 3)
    assert stats["response/eos_frac"] == pytest.approx(2 / 3)
    assert wrapper.pop_stats() == {}  # drained per step

    bank.seen.clear()
    _, worst = _wrapper(tok, bank, scalarizer="max_min", weights_path=tmp_path / "w.json", reward_clip=1.0)
    _, reward, _ = get_reward(worst, qr, tok.pad_token_id, ctx)
    assert reward.tolist() == pytest.approx([-1.0, -0.5, 0.0])  # min(w·z) = [-2, -.5, 0], clipped at ±1


def test_reward_running_scale_and_identity(tok, tmp_path):
    from trl.experimental.utils import get_reward

    answer = tok(" the answer", add_special_tokens=False)["input_ids"]
    table = {
        "what is the capital|the answer": [2.0],
        "explain a short list|the answer": [-4.0],
        "how many apples|": [1.0],
    }

    class One(TableBank):
        principles = ["cai"]

    ids, single = _wrapper(tok, One(table), scalarizer=ppo.IDENTITY, reward_scale="running")
    eos = tok.eos_token_id
    qr, ctx = _rows(tok, ids, [answer + [eos], answer + [eos], [eos]])
    _, reward, _ = get_reward(single, qr, tok.pad_token_id, ctx)
    # identity = the raw PM score; trlx "running": divided by the running std, after one batch = its sample std
    std = torch.tensor([2.0, -4.0, 1.0]).std().item()
    assert reward.tolist() == pytest.approx([2.0 / std, -4.0 / std, 1.0 / std], rel=1e-5)
    with pytest.raises(ValueError, match="exactly one PM"):
        _wrapper(tok, TableBank({}), scalarizer=ppo.IDENTITY)


def test_adaptive_kl_controller():
    # coef·(1 + clip(KL/target − 1, ±0.2)·n/horizon), target 6, horizon 10000, 4 rollouts per step
    assert ppo.adaptive_kl_update(0.05, 12.0, 6.0, 10000, 4) == pytest.approx(0.05 * 1.00008)  # clipped at +0.2
    assert ppo.adaptive_kl_update(0.05, 6.6, 6.0, 10000, 4) == pytest.approx(0.05 * 1.00004)  # +0.1
    assert ppo.adaptive_kl_update(0.05, 3.0, 6.0, 10000, 4) == pytest.approx(0.05 * 0.99992)  # clipped at −0.2
    assert ppo.adaptive_kl_update(0.05, 6.0, 6.0, 10000, 4) == 0.05

    class Args:
        kl_coef = 0.1
        per_device_train_batch_size = 8

    class State:
        episode = 8

    args, cb = Args(), ppo.AdaptiveKLCallback(target=1.0, horizon=10)
    cb.on_log(args, State(), None, logs={"objective/kl": 2.0})  # error +0.2, n = 8 rollouts since the start
    assert args.kl_coef == pytest.approx(0.1 * (1 + 0.2 * 8 / 10))
    cb.on_log(args, State(), None, logs={"loss": 1.0})  # not a PPO step log: unchanged
    assert args.kl_coef == pytest.approx(0.116)


def test_ppo_config_maps_the_paper_settings(tmp_path):
    lora = {"target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]}  # the YAML default is all-linear
    cfg = ppo.resolve_config(
        {"steps": 3, "batch_size": 8, "mini_batch_size": 2, "kl": {"init_coef": 0.1}, "lora": lora}
    )
    assert cfg["kl"]["target"] == 6.0 and cfg["lora"]["r"] == 16  # nested defaults kept
    args = ppo.ppo_config(cfg, tmp_path, seed=3, dtype=torch.float32, use_wandb=True, run_name="x")
    assert (args.total_episodes, args.num_mini_batches, args.gradient_accumulation_steps) == (24, 4, 1)
    assert (args.num_ppo_epochs, args.cliprange, args.cliprange_value, args.vf_coef) == (4, 0.2, 0.2, 1.0)
    assert (args.gamma, args.lam, args.kl_coef, args.temperature, args.response_length) == (1.0, 0.95, 0.1, 1.0, 128)
    assert (args.learning_rate, args.adam_beta2, args.stop_token, args.seed) == (4e-6, 0.95, "eos", 3)
    assert not args.bf16 and not args.gradient_checkpointing and args.logging_steps == 1
    assert args.report_to == ["wandb"] and args.num_sample_generations == 0
    with pytest.raises(ValueError, match="budget"):
        ppo.resolve_config({"batch_size": 4})
    assert ppo.policy_lora_config({**cfg["lora"], "target_modules": "all-linear"}).target_modules == "all-linear"
    assert set(ppo.policy_lora_config(cfg["lora"]).target_modules) == {"q_proj", "k_proj", "v_proj", "o_proj"}
    with pytest.raises(ValueError, match=r"unknown keys \['kl_target'\] \(did you mean 'kl'\?\)"):
        ppo.resolve_config({"steps": 1, "batch_size": 4, "kl_target": 6})
    with pytest.raises(ValueError, match=r"ppo config.kl: unknown keys \['targt'\] \(did you mean 'target'\?\)"):
        ppo.resolve_config({"steps": 1, "batch_size": 4, "kl": {"targt": 6}})  # nested keys are checked too


def test_value_model_freezing(ci_model):
    from transformers import AutoModelForSequenceClassification

    value = AutoModelForSequenceClassification.from_pretrained(ci_model, num_labels=1)
    ppo.freeze_value_model(value, 1)
    trainable = {n.split(".")[0] + "." + n.split(".")[1] for n, p in value.named_parameters() if p.requires_grad}
    assert trainable == {"score.weight", "model.layers", "model.norm"}
    assert not any(p.requires_grad for p in value.model.layers[0].parameters())
    assert all(p.requires_grad for p in value.model.layers[-1].parameters())


CFG = {
    "steps": 1,
    "batch_size": 4,
    "mini_batch_size": 2,
    "response_length": 8,
    "learning_rate": 1e-2,
    "max_prompt_length": 64,
    "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]},
}


@pytest.fixture(scope="module")
def trained(ci_model, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ppo")
    (tmp / "weights.json").write_text(json.dumps(WEIGHTS))
    out = tmp / "ppo" / "linear"
    (out / "adapter").mkdir(parents=True)  # leftovers of a killed run: must not survive
    (out / "train_log.jsonl").write_text('{"step": 99}\n')
    rows = [{"id": str(i), "messages": [{"role": "user", "content": f"what is {i} apples count"}]} for i in range(6)]
    meta = ppo.run_ppo(
        policy_dir=ci_model,
        bank=FeatureBank(),
        prompt_rows=rows,
        cfg=CFG,
        out=out,
        scalarizer=arm_of(paper_rows("morlaif")["linear"], {}),  # the arm as the workflow passes it: its row
        weights_path=tmp / "weights.json",
        tier="ci",
        seed=0,
        render=render,
    )
    return out, meta


def test_one_ppo_step_logs_and_changes_the_policy(trained, ci_model):
    from alignrepro.models import load_model, load_tokenizer

    out, meta = trained
    log = read_jsonl(out / "train_log.jsonl")
    assert [r["step"] for r in log] == [1]  # the stale row is gone
    row = log[0]
    for key in ("objective/kl", "reward/scalarized", "objective/scores", "kl_coef", "response/length"):
        assert math.isfinite(row[key]), key
    assert {f"reward/pm/{p}" for p in PRINCIPLES} <= set(row)
    assert row["kl_coef"] == 0.05 and meta["final_kl_coef"] < 0.05  # KL ≈ 0 < target 6: the coefficient shrinks
    assert meta["prompt_template"] == "chat" and meta["arm"] == "linear" and meta["steps"] == 1
    assert meta["scalarizer"] == "alignrepro.methods.morlaif.scalarizers:linear" and meta["row"]["pms"] == "principles"
    assert read_json(out / "model.json")["provenance"]["tier"] == "ci"

    from safetensors.torch import load_file

    lora_b = [v for k, v in load_file(out / "adapter" / "adapter_model.safetensors").items() if "lora_B" in k]
    assert lora_b and any(v.abs().sum() > 0 for v in lora_b)  # B starts at zero: PPO moved it

    tok = load_tokenizer(out)
    policy, base = load_model(out).eval(), load_model(ci_model).eval()
    enc = tok(["<|im_start|>user\nwhat is 3 apples count<|im_end|>\n<|im_start|>assistant\n"], return_tensors="pt")
    with torch.no_grad():
        assert not torch.allclose(policy(**enc).logits, base(**enc).logits)
        gen = policy.generate(**enc, max_new_tokens=4, do_sample=False, pad_token_id=tok.pad_token_id)
    assert gen.shape[1] == enc["input_ids"].shape[1] + 4 or tok.eos_token_id in gen[0].tolist()


def test_finished_run_is_skipped(trained, ci_model):
    out, meta = trained
    again = ppo.run_ppo(
        policy_dir=ci_model,
        bank=None,  # never touched: model.json exists
        prompt_rows=[],
        cfg=CFG,
        out=out,
        scalarizer="linear",
        weights_path=None,
        tier="ci",
        seed=0,
    )
    assert again == meta


def test_cli_help():
    with pytest.raises(SystemExit) as e:
        ppo.main(["--help"])
    assert e.value.code == 0


def _random_pm_dirs(ci_model: Path, root: Path, principles: list[str]) -> dict[str, Path]:
    """Real PM folders (pm_lora model.json + SEQ_CLS LoRA adapter) with random non-zero adapters and heads."""
    from peft import get_peft_model

    from alignrepro.io import atomic_write_json
    from alignrepro.models import model_identity

    pm = pytest.importorskip("alignrepro.methods.morlaif.pm")
    tok = pm.load_pm_tokenizer(ci_model)
    dirs = {}
    for seed, p in enumerate(principles):
        torch.manual_seed(seed)
        base = pm.load_seqcls_base(ci_model, torch.float32, tok.pad_token_id)
        cfg = pm.pm_lora_config({"r": 2, "alpha": 4, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}, base)
        cfg.init_lora_weights = False  # random A and B: each principle scores differently
        get_peft_model(base, cfg).save_pretrained(root / p / "adapter")
        meta = {"kind": "pm_lora", "principle": p, "base": str(ci_model), "adapter": "adapter"}
        atomic_write_json(
            root / p / "model.json", {**meta, "base_identity": model_identity(ci_model), "max_length": 512}
        )
        dirs[p] = root / p
    return dirs


def test_real_pm_bank_reward_equals_standalone_score(tok, ci_model, tmp_path):
    """The PPO reward with the real PMBank = each PM's own sequence-classification score of the rendered
    conversation + response (no padding, transformers' pooling), z-scored, weighted and scalarized."""
    from trl.experimental.utils import get_reward

    pm = pytest.importorskip("alignrepro.methods.morlaif.pm")
    bank = pm.PMBank.from_dirs(_random_pm_dirs(ci_model, tmp_path, PRINCIPLES))
    (tmp_path / "w.json").write_text(json.dumps(WEIGHTS))
    mean, std, weights = ppo.load_weights_file(tmp_path / "w.json", PRINCIPLES)
    ids, lookup = ppo.build_prompts([{"messages": CONV1}, {"messages": CONV2}], tok, max_prompt_length=256)
    wrapper = ppo.ScalarizedPMReward(bank, tok, lookup, "linear", weights=weights, zscore=(mean, std))
    answer = tok(" the answer", add_special_tokens=False)["input_ids"]
    other = tok(" sort list", add_special_tokens=False)["input_ids"]
    qr, ctx = _rows(tok, ids, [answer + [tok.eos_token_id], other])
    _, reward, _ = get_reward(wrapper, qr, tok.pad_token_id, ctx)

    expected = []
    for messages, response in ((CONV1, "the answer"), (CONV2, "sort list")):
        text = pm.render_pm_text(bank.tokenizer, messages, response)
        assert text.endswith(response + bank.tokenizer.eos_token)
        enc = bank.tokenizer(text, add_special_tokens=False, return_tensors="pt")
        raw = []
        for p in PRINCIPLES:
            bank.model.set_adapter(p)
            with torch.no_grad():
                raw.append(bank.model(**enc).logits[0, 0].item())
        expected.append(float((((torch.tensor(raw) - mean) / std) * weights).sum()))
    assert len(set(expected)) == 2 and reward.tolist() == pytest.approx(expected, abs=1e-4)
