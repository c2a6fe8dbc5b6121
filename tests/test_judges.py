"""Judge backends: position-bias removal, oracle, heuristic, the local log-prob judge on a tiny model, make_judge."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

import alignrepro.data
from alignrepro.data.records import Record
from alignrepro.judges import make_judge
from alignrepro.judges.base import PairItem, both_orders, fill, load_annotator, template_to_messages

CHATML = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def fake_verifiable(monkeypatch, tmp_path: Path, right: set[str]) -> None:
    """A stand-in for alignrepro.data.verifiable whose verdicts the test controls: correct iff response in `right`."""
    src = tmp_path / "fake_verifiable.py"
    src.write_text("# fake checker\n")
    mod = types.ModuleType("alignrepro.data.verifiable")
    mod.__file__ = str(src)
    mod.is_correct = lambda record, response: response.strip() in right
    monkeypatch.setitem(sys.modules, "alignrepro.data.verifiable", mod)
    monkeypatch.setattr(alignrepro.data, "verifiable", mod, raising=False)


def items_with_quality(qualities: list[tuple[float, float]]) -> list[PairItem]:
    return [PairItem(f"q{i}", f"{a}", f"{b}") for i, (a, b) in enumerate(qualities)]


def test_both_orders_cancels_constant_position_bias():
    always_first = lambda items: [1.0] * len(items)  # noqa: E731 - the classic small-judge failure
    assert both_orders(always_first, items_with_quality([(0, 1), (1, 0), (2, 2)])) == [1.5, 1.5, 1.5]

    def biased(items):  # strong pull to position 1 plus a weak true signal (quality is the output text)
        return [1.5 - 0.3 + 0.1 * (float(it.output_2) - float(it.output_1)) for it in items]

    items = items_with_quality([(0, 2), (2, 0), (1, 1.5), (1.5, 1)])
    one_order = biased(items)
    assert all(p < 1.5 for p in one_order)  # a single order says "output_1 wins" every time
    prefs = both_orders(biased, items)
    assert prefs == pytest.approx([1.7, 1.3, 1.55, 1.45])  # bias gone, signal (and its ordering) kept
    assert both_orders(biased, []) == []


def test_both_orders_propagates_nan_and_checks_range():
    prefs = both_orders(
        lambda items: [float("nan") if it.output_1 == "x" else 2.0 for it in items], [PairItem("i", "x", "y")]
    )
    assert prefs[0] != prefs[0]
    with pytest.raises(ValueError, match="outside"):
        both_orders(lambda items: [3.0] * len(items), [PairItem("i", "a", "b")])


def test_oracle_judge(monkeypatch, tmp_path):
    fake_verifiable(monkeypatch, tmp_path, right={"42"})
    judge = make_judge({"backend": "oracle"})
    rec = Record(id="a", instruction="6*7?", reference="42", task="arithmetic")
    items = [
        PairItem("6*7?", "42", "40", rec),
        PairItem("6*7?", "41", "42", rec),
        PairItem("6*7?", "42", "42", rec),
        PairItem("6*7?", "1", "2", rec),
    ]
    assert judge.preferences(items) == [1.0, 2.0, 1.5, 1.5]
    assert judge.id == "oracle-v1" and not judge.heuristic and judge.prompt_hash.startswith("checker:")
    with pytest.raises(ValueError, match="no record"):
        judge.preferences([PairItem("x", "a", "b")])


def test_length_heuristic_judge():
    judge = make_judge({"backend": "heuristic"})
    assert judge.heuristic and judge.id.startswith("HEURISTIC-")
    items = [
        PairItem("i", "short", "much longer"),
        PairItem("i", "long one", ""),
        PairItem("i", "ab", "cd"),
        PairItem("i", "  ", ""),
    ]
    assert judge.preferences(items) == [2.0, 1.0, 1.5, 1.5]


@pytest.mark.parametrize("backend", ["gpt4", "", None])
def test_make_judge_rejects_unknown_backend(backend):
    with pytest.raises(ValueError, match="backend") as e:
        make_judge({"backend": backend})
    assert "oracle" in str(e.value) and "openai" in str(e.value)  # the allowed values are named


def test_make_judge_rejects_missing_backend_and_unknown_keys():
    with pytest.raises(ValueError, match="'backend'"):
        make_judge({"model": "gpt-4"})
    with pytest.raises(ValueError, match="api_key"):
        make_judge({"backend": "openai", "model": "gpt-4", "api_key": "nope"})


def test_alpaca_eval_prompts_split_into_chat_messages():
    for name in ("alpaca_eval_gpt4", "alpaca_eval_clf_gpt4_turbo"):
        messages = template_to_messages(load_annotator(name)[0])
        assert [m["role"] for m in messages] == ["system", "user"]
        assert all(f"{{{k}}}" in messages[1]["content"] for k in ("instruction", "output_1", "output_2"))
    # a placeholder inside the instruction is not substituted again
    assert fill("{instruction}|{output_1}|{output_2}", PairItem("say {output_1}", "A", "B")) == "say {output_1}|A|B"


@pytest.fixture(scope="module")
def tiny_judge_dir(tmp_path_factory) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    d = tmp_path_factory.mktemp("tiny-judge")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=500,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator([load_annotator("alpaca_eval_clf_gpt4_turbo")[0]] * 3 + ["assistant user system"], trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    fast.chat_template = CHATML
    fast.save_pretrained(d)
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        initializer_range=0.5,
        pad_token_id=fast.pad_token_id,
        tie_word_embeddings=False,
    )
    LlamaForCausalLM(cfg).save_pretrained(d)
    return d


PAIRS = [
    PairItem("Name a colour.", "Blue.", "I like trains."),
    PairItem("What is 2+2? Answer briefly, please.", "4", "The answer is five, I think."),
]


def test_local_logprob_judge_on_tiny_model(tiny_judge_dir):
    judge = make_judge({"backend": "local", "model_dir": str(tiny_judge_dir), "batch_size": 2, "dtype": "float32"})
    assert judge.id.startswith(f"local:{tiny_judge_dir.name}:") and len(judge.id.rsplit(":", 1)[1]) == 12
    assert len(judge.prompt_hash) == 64 and not judge.heuristic
    text = judge.render(PAIRS[0])
    assert text.startswith("<|im_start|>system\n") and text.endswith("<|im_start|>assistant\n")
    prefs = judge.preferences(PAIRS)
    assert len(prefs) == 2 and all(1.0 <= p <= 2.0 for p in prefs)
    # left padding + explicit positions: a batch of 2 scores exactly like one item at a time
    judge.batch_size = 1
    assert judge.preferences(PAIRS) == pytest.approx(prefs, abs=1e-5)


def test_local_judge_truncates_outputs_to_max_length(tiny_judge_dir):
    from alignrepro.judges.local import LocalLogprobJudge

    judge = LocalLogprobJudge(tiny_judge_dir, max_length=1024)
    fixed = len(judge.encode(PairItem("Name a colour.", "", "")))
    judge.max_length = fixed + 40
    long_item = PairItem("Name a colour.", "blue " * 300, "red " * 300)
    ids = judge.encode(long_item)
    assert fixed < len(ids) <= judge.max_length
    assert all(1.0 <= p <= 2.0 for p in judge.preferences([long_item]))
