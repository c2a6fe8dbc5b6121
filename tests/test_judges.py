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
    # min_answer_mass 0: score whatever the random model's mass on m/M (its default threshold makes them unparsable)
    spec = {"backend": "local", "model_dir": str(tiny_judge_dir), "batch_size": 2, "dtype": "float32"}
    judge = make_judge(spec | {"min_answer_mass": 0.0})
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

    judge = LocalLogprobJudge(tiny_judge_dir, max_length=1024, min_answer_mass=0.0)
    fixed = len(judge.encode(PairItem("Name a colour.", "", "")))
    judge.max_length = fixed + 40
    long_item = PairItem("Name a colour.", "blue " * 300, "red " * 300)
    ids = judge.encode(long_item)
    assert fixed < len(ids) <= judge.max_length
    assert all(1.0 <= p <= 2.0 for p in judge.preferences([long_item, PAIRS[0]]))
    assert [j.truncated for j in judge.last_judgments] == [True, False]  # reported per judgment, the cut one only


def test_low_answer_mass_is_unparsable_counted_and_not_cached(tiny_judge_dir, tmp_path):
    """A random model puts little next-token mass on "m"/"M": with the default threshold (0.5) its verdicts are NaN,
    flagged unparsable with the measured mass, and never cached; a threshold below that mass scores them."""
    from alignrepro.judges.cache import JudgmentCache, cached_judgments
    from alignrepro.judges.local import LocalLogprobJudge

    judge = LocalLogprobJudge(tiny_judge_dir)
    assert judge.min_answer_mass == 0.5 and judge.settings["min_answer_mass"] == 0.5
    single = judge.single_order(PAIRS)
    masses = [j.answer_mass for j in judge.last_judgments]
    assert all(0.0 < m < 0.5 for m in masses) and all(p != p for p in single)
    assert all(j.unparsable for j in judge.last_judgments)
    renormalised = [j.renormalised for j in judge.last_judgments]  # kept for the card's bias numbers only
    cache = JudgmentCache(tmp_path / "c.sqlite")
    got = cached_judgments(judge, PAIRS, cache)
    assert [j.unparsable for j in got] == [True, True] and all(j.value != j.value for j in got)
    assert cache.get_judgments([]) == {} and cache.path.exists()
    assert cache._conn_or_open().execute("SELECT COUNT(*) FROM judgments").fetchone()[0] == 0  # never cached
    # rating and verdict grading record their mass the same way
    msgs = [[{"role": "user", "content": "Rate this answer: Blue."}]]
    judge.rate(msgs)
    assert judge.last_judgments[0].answer_mass is not None
    judge.choose(msgs)
    assert judge.last_judgments[0].answer_mass is not None
    # just below the smallest measured mass: every verdict stands, the same values as with no threshold at all
    low = LocalLogprobJudge(tiny_judge_dir, min_answer_mass=min(masses) * 0.99)
    free = LocalLogprobJudge(tiny_judge_dir, min_answer_mass=0.0)
    assert low.single_order(PAIRS) == pytest.approx(free.single_order(PAIRS)) == renormalised
    assert not any(j.unparsable for j in low.last_judgments)


def test_label_swap_names_output_1_with_the_second_label(tiny_judge_dir):
    from alignrepro.judges.local import LocalLogprobJudge

    judge = LocalLogprobJudge(tiny_judge_dir, min_answer_mass=0.0)
    item = PairItem("Pick one.", "FIRST-ANSWER", "SECOND-ANSWER")
    plain, swapped_labels = judge.render(item), judge.render(item, swap_labels=True)
    assert plain.index('"m"') < plain.index("FIRST-ANSWER") < plain.index('"M"') < plain.index("SECOND-ANSWER")
    assert swapped_labels.index('"M"') < swapped_labels.index("FIRST-ANSWER") < swapped_labels.index('"m"')
    # with swapped labels output_2's label is "m": the preference reads P("m") instead of P("M")
    a, b = judge.single_order([item])[0], judge.single_order([item], swap_labels=True)[0]
    assert 1.0 <= a <= 2.0 and 1.0 <= b <= 2.0 and a != b


def _copy_judge(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_cache_misses_when_only_the_chat_template_or_labels_change(tiny_judge_dir, tmp_path, monkeypatch):
    """The key holds the weights, the tokenizer files, the chat template, the prompt, the label tokens and the
    scoring settings: the same weights under another chat template must not return the old judgments."""
    import json

    from alignrepro.judges import local
    from alignrepro.judges.cache import JudgmentCache, cached_preferences

    d = _copy_judge(tiny_judge_dir, tmp_path / "judge")
    cache = JudgmentCache(tmp_path / "c.sqlite")
    spec = {"min_answer_mass": 0.0}

    def run() -> tuple[int, int]:
        h0, m0 = cache.hits, cache.misses
        cached_preferences(local.LocalLogprobJudge(d, **spec), PAIRS, cache)
        return cache.hits - h0, cache.misses - m0

    assert run() == (0, 2)
    assert run() == (2, 0)  # nothing changed: hits
    cfg_path = d / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    template_file = d / "chat_template.jinja"
    if template_file.is_file():  # transformers 5 writes the template beside the config
        template_file.write_text(CHATML.replace("<|im_start|>assistant", "<|im_start|>assistant (judge)"))
    else:
        cfg["chat_template"] = CHATML.replace("<|im_start|>assistant", "<|im_start|>assistant (judge)")
        cfg_path.write_text(json.dumps(cfg))
    assert run() == (0, 2)  # same weights, same prompt, another chat template: misses
    assert run() == (2, 0)
    monkeypatch.setattr(local, "LABELS", ("M", "m"))  # the same prompt read with the label tokens the other way
    assert run() == (0, 2)
    monkeypatch.undo()
    spec = {"min_answer_mass": 0.25}  # another unparsable threshold: a judgment scored under one may not be under it
    assert run() == (0, 2)
