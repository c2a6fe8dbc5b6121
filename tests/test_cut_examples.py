"""CUT example construction, collator and a 2-step CUTTrainer run on a tiny random Llama with LoRA (all offline)."""

from __future__ import annotations

import random

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from alignrepro.data.records import Record
from alignrepro.methods.cut.examples import CUTDataCollator, build_cut_examples
from alignrepro.methods.cut.templates import judge_prompt, plain_prompt

X = -100
RESPONSE = "Sure! 2 plus 3 is 5."


@pytest.fixture(scope="module")
def tok() -> PreTrainedTokenizerFast:
    """Byte-level BPE without pre-tokenization, so merges can cross the prompt/response boundary; adds BOS."""
    corpus = [
        plain_prompt("Add 2 and 3.") + "Sure! The answer is 5.",
        judge_prompt("Add 2 and 3.", "Wrong.") + RESPONSE,
    ]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1000,
        special_tokens=["<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(corpus * 20, trainer)
    bpe.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", pad_token="<pad>")


def neg(i: int, output: str = RESPONSE, judgment: str = "The response is wrong: 2 plus 3 is 5.") -> Record:
    return Record(id=f"n{i}", instruction="Add 2 and 3.", output=output, judgment=judgment)


def pos(i: int, judgment: str | None = "Perfect.") -> Record:
    return Record(id=f"p{i}", instruction=f"Say {i}.", output=f"{i}", judgment=judgment)


def response_labels(labels: list[int]) -> list[int]:
    return [y for y in labels if y != X]


def test_alignn_and_misalign_share_response_ids(tok) -> None:
    rec = Record(id="a", instruction="Add 2 and 3.", input="Be brief.", output=RESPONSE, judgment="Wrong sum.")
    (ex,), stats = build_cut_examples([rec], tok, max_length=512)
    resp = tok(RESPONSE, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    judge_ids = tok(judge_prompt("Add 2 and 3.\nBe brief.", "Wrong sum."))["input_ids"]
    plain_ids = tok(plain_prompt("Add 2 and 3.\nBe brief."))["input_ids"]
    assert ex["input_ids"] == judge_ids + resp and ex["input_ids_neg"] == plain_ids + resp
    assert response_labels(ex["labels"]) == response_labels(ex["labels_neg"]) == resp
    assert ex["labels"] == [X] * len(judge_ids) + resp and ex["labels"][-1] == tok.eos_token_id
    assert judge_ids[0] == tok.bos_token_id and resp[0] != tok.bos_token_id
    # The fixture is boundary-sensitive: joint tokenization would give different response ids.
    assert tok(plain_prompt("Add 2 and 3.\nBe brief.") + RESPONSE)["input_ids"] != plain_ids + resp[:-1]
    assert stats["n_negative"] == 1 and stats["n_prompt_truncated"] == 0


def test_prompt_left_truncated_response_whole(tok) -> None:
    resp = tok(RESPONSE, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    max_length = len(resp) + 5
    (ex,), stats = build_cut_examples([neg(0)], tok, max_length=max_length)
    judge_ids = tok(judge_prompt("Add 2 and 3.", neg(0).judgment))["input_ids"]
    plain_ids = tok(plain_prompt("Add 2 and 3."))["input_ids"]
    assert ex["input_ids"] == judge_ids[-5:] + resp and ex["input_ids_neg"] == plain_ids[-5:] + resp
    assert ex["labels"] == [X] * 5 + resp and ex["labels_neg"] == [X] * 5 + resp
    assert stats["n_prompt_truncated"] == 2 and stats["n_response_truncated"] == 0


def test_overlong_response_truncated_from_the_right(tok) -> None:
    resp = tok(RESPONSE, add_special_tokens=False)["input_ids"]
    (ex,), stats = build_cut_examples([neg(0)], tok, max_length=4)
    assert len(ex["input_ids"]) == len(ex["input_ids_neg"]) == 4
    assert ex["labels"] == [X] + resp[:3] and ex["labels_neg"] == [X] + resp[:3]
    assert stats["n_response_truncated"] == 1


def test_align_p_downsampling(tok) -> None:
    records = [neg(i) for i in range(10)] + [pos(i) for i in range(20)] + [pos(99, judgment=None)]
    random.Random(0).shuffle(records)
    examples, stats = build_cut_examples(records, tok, max_length=256, align_p_ratio=0.25, seed=42)
    assert stats["n_positive"] == 21 and stats["n_negative"] == 10 and stats["n_positive_kept"] == int(0.25 * 10)
    assert len(examples) == 12 and sum(not e["input_ids_neg"] for e in examples) == 2
    again, _ = build_cut_examples(records, tok, max_length=256, align_p_ratio=0.25, seed=42)
    assert again == examples
    # Same draw as the official `random.seed(42); random.sample(pos_ids, n_keep)`, record order preserved.
    pos_records = [r for r in records if r.judgment != neg(0).judgment]
    chosen = set(random.Random(42).sample(range(len(pos_records)), 2))
    want = [tok(plain_prompt(r.prompt_text))["input_ids"] for i, r in enumerate(pos_records) if i in chosen]
    got = [e["input_ids"][: len(w)] for e, w in zip([e for e in examples if not e["input_ids_neg"]], want, strict=True)]
    assert got == want
    everything, stats_all = build_cut_examples(records, tok, max_length=256, align_p_ratio=None)
    assert len(everything) == 31 and stats_all["n_positive_kept"] == 21


def test_error_judgments_dropped_by_default(tok) -> None:
    records = [neg(0), neg(1, judgment="$ERROR$"), pos(0)]
    examples, stats = build_cut_examples(records, tok, max_length=256, align_p_ratio=None)
    assert stats["n_error_dropped"] == 1 and stats["n_negative"] == 1 and len(examples) == 2
    examples, stats = build_cut_examples(records, tok, max_length=256, align_p_ratio=None, keep_error_judgments=True)
    assert stats["n_error_dropped"] == 0 and stats["n_negative"] == 2 and len(examples) == 3
    judge_ids = tok(judge_prompt("Add 2 and 3.", "$ERROR$"))["input_ids"]
    assert examples[1]["input_ids"][: len(judge_ids)] == judge_ids and examples[1]["input_ids_neg"]


def test_collator_shapes_and_padding(tok) -> None:
    examples, _ = build_cut_examples([pos(7), neg(0)], tok, max_length=256, align_p_ratio=None)
    batch = CUTDataCollator(pad_token_id=tok.pad_token_id)(examples)
    length = max(len(examples[1]["input_ids"]), len(examples[1]["input_ids_neg"]))
    for key in ("input_ids", "attention_mask", "labels", "input_ids_neg", "attention_mask_neg", "labels_neg"):
        assert batch[key].shape == (2, length) and batch[key].dtype == torch.long
    assert batch["has_neg"].tolist() == [False, True]
    n0 = len(examples[0]["input_ids"])
    assert batch["input_ids"][0, :n0].tolist() == examples[0]["input_ids"]
    assert (batch["input_ids"][0, n0:] == tok.pad_token_id).all() and (batch["labels"][0, n0:] == X).all()
    assert batch["attention_mask"][0].tolist() == [1] * n0 + [0] * (length - n0)
    assert (batch["input_ids_neg"][0] == tok.pad_token_id).all() and (batch["labels_neg"][0] == X).all()
    assert batch["attention_mask_neg"][0].sum() == 0 and batch["attention_mask_neg"][1].sum() > 0


def test_cut_trainer_two_steps_with_lora(tok, tmp_path) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM, TrainingArguments

    from alignrepro.methods.cut.trainer import CUTTrainer

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        pad_token_id=tok.pad_token_id,
    )
    model = get_peft_model(
        LlamaForCausalLM(config),
        LoraConfig(r=4, lora_alpha=8, target_modules=["gate_proj", "up_proj", "down_proj"], task_type="CAUSAL_LM"),
    )
    before = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}
    examples, _ = build_cut_examples(
        [neg(0), neg(1, output="Sure! It is 6."), neg(2, output="5"), pos(3)], tok, max_length=128, align_p_ratio=None
    )
    args = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=2,
        max_steps=2,
        use_cpu=True,
        report_to=[],
        remove_unused_columns=False,
        logging_steps=1,
        save_strategy="no",
        bf16=False,
        learning_rate=1e-2,
    )
    collator = CUTDataCollator(tok.pad_token_id)
    trainer = CUTTrainer(model=model, args=args, train_dataset=examples, data_collator=collator, threshold=1.0)
    result = trainer.train()
    assert torch.isfinite(torch.tensor(result.training_loss))
    after = dict(model.named_parameters())
    assert any(not torch.equal(before[n], after[n].detach()) for n in before)
    logged = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logged) == 2
    for h in logged:
        assert {"mle", "ul", "detected_ratio"} <= set(h) and 0.0 <= h["detected_ratio"] <= 1.0
    # lambda = 1 on a random model: some tokens take the unlikelihood branch, so both branches ran.
    assert any(h["detected_ratio"] > 0 for h in logged)

    # An all-Align-P batch runs the positive half alone and gives plain MLE.
    all_pos = collator(build_cut_examples([pos(1), pos(2)], tok, max_length=64, align_p_ratio=None)[0])
    assert torch.isfinite(trainer.compute_loss(model, all_pos))

    bad = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[], remove_unused_columns=True)
    with pytest.raises(ValueError, match="remove_unused_columns"):
        CUTTrainer(model=model, args=bad, train_dataset=examples, data_collator=collator)


def test_trainer_loss_and_gradients_equal_one_full_forward(tok, tmp_path) -> None:
    """The trainer's two trimmed forwards with logits only where labels are predicted give the loss and gradients of
    the official layout: one forward over [positive half; Misalign rows] padded to one length, full logits."""
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM, TrainingArguments

    from alignrepro.methods.cut.loss import cut_loss
    from alignrepro.methods.cut.trainer import CUTTrainer

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, pad_token_id=tok.pad_token_id)  # fmt: skip
    lora = LoraConfig(
        r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["gate_proj", "down_proj"], task_type="CAUSAL_LM"
    )
    model = get_peft_model(LlamaForCausalLM(config), lora)
    for n, p in model.named_parameters():  # LoRA B starts at zero: give it values so its gradient path is exercised
        if "lora_B" in n:
            p.data.normal_(0, 0.5)
    records = [pos(12345), neg(0), neg(1, output="Sure! It is 6, or maybe 7."), pos(3), neg(2, output="5")]
    examples, _ = build_cut_examples(records, tok, max_length=128, align_p_ratio=None)
    batch = CUTDataCollator(tok.pad_token_id)(examples)
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[], remove_unused_columns=False)
    trainer = CUTTrainer(model=model, args=args, train_dataset=examples, threshold=1.0, processing_class=tok)
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]

    loss = trainer.compute_loss(model, batch)
    grads = torch.autograd.grad(loss, trainable)

    has = batch["has_neg"]
    ids = torch.cat([batch["input_ids"], batch["input_ids_neg"][has]])
    mask = torch.cat([batch["attention_mask"], batch["attention_mask_neg"][has]])
    logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
    n = batch["input_ids"].size(0)
    ref = cut_loss(logits[:n], batch["labels"], logits[n:], batch["labels_neg"][has], has, threshold=1.0).loss
    ref_grads = torch.autograd.grad(ref, trainable)
    assert torch.isfinite(loss) and loss.item() == pytest.approx(ref.item(), rel=1e-5, abs=1e-6)
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-6)
