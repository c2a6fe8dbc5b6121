"""Tokenized CUT training examples (Align-P, Align-N + Misalign) from judged records, and their collator.

Mirrors `finetune_unlikelihood.py` of the official code (wwxu21/CUT), with two deliberate differences:
- prompt and response are tokenized separately and concatenated, so Align-N and Misalign share identical response
  token ids (joint tokenization can merge BPE pieces across the prompt/response boundary differently);
- `$ERROR$` judgments (failed GPT-4 calls in the released data) are dropped unless `keep_error_judgments=True`.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from alignrepro.data.records import Record
from alignrepro.methods.cut.templates import judge_prompt, plain_prompt

if TYPE_CHECKING:
    import torch

IGNORE_INDEX = -100
ERROR_JUDGMENT = "$ERROR$"


def is_error_judgment(judgment: str | None) -> bool:
    return judgment is not None and judgment.strip() == ERROR_JUDGMENT


def is_cut_positive(record: Record) -> bool:
    """Align-P when the judgment begins with "Perfect" (paper's rule) or is absent (the official loader's rule:
    a null judgment marks a positive in `data/iter/*.json` and the converted summarization data)."""
    return record.judgment is None or not record.judgment.strip() or record.is_positive


def _sequence(prompt_ids: list[int], response_ids: list[int], max_length: int) -> tuple[list[int], list[int], bool]:
    """Concatenate prompt + response, left-truncating the prompt so the response stays whole (official: cutoff from
    the left "to keep the response complete"); labels are -100 on the prompt."""
    budget = max_length - len(response_ids)
    truncated = len(prompt_ids) > budget
    if truncated:
        prompt_ids = prompt_ids[len(prompt_ids) - budget :]
    return prompt_ids + response_ids, [IGNORE_INDEX] * len(prompt_ids) + response_ids, truncated


def build_cut_examples(
    records: Sequence[Record],
    tokenizer: Any,
    max_length: int,
    align_p_ratio: float | None = 0.25,
    seed: int = 42,
    keep_error_judgments: bool = False,
) -> tuple[list[dict[str, list[int]]], dict[str, int]]:
    """Build CUT examples in record order.

    Each example is {"input_ids", "labels", "input_ids_neg", "labels_neg"}: the first pair is Align-P (plain prompt)
    or Align-N (judge prompt); the *_neg pair is the Misalign sequence (plain prompt, same response token ids), empty
    for Align-P. The response gets `eos_token_id` appended and is labelled in full.

    Align-P downsampling follows the official code: keep `int(n_negatives * align_p_ratio)` positives drawn with
    `random.Random(seed).sample` (only when that is fewer than the positives); `None` keeps all. With
    `keep_error_judgments=True` this draws the same positives as the official script (global `random.seed(42)`).

    Stats: n_positive / n_negative (after `$ERROR$` handling), n_positive_kept, n_error_dropped,
    n_response_truncated (examples whose response was cut from the right) and n_prompt_truncated (sequences, Align-N
    and Misalign counted separately, whose prompt was cut from the left).
    """
    if max_length < 2:
        raise ValueError("max_length must be >= 2")
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no eos_token_id")

    positives: list[int] = []
    kept: list[Record] = []
    n_error_dropped = 0
    for rec in records:
        if rec.output is None:
            raise ValueError(f"record {rec.id}: no output (response) to train on")
        if is_error_judgment(rec.judgment) and not keep_error_judgments:
            n_error_dropped += 1
            continue
        if is_cut_positive(rec):
            positives.append(len(kept))
        kept.append(rec)
    n_positive, n_negative = len(positives), len(kept) - len(positives)

    positive_set = set(positives)
    drop: set[int] = set()
    if align_p_ratio is not None:
        n_keep = int(n_negative * align_p_ratio)
        if n_keep < n_positive:
            drop = positive_set - set(random.Random(seed).sample(positives, n_keep))

    stats = {
        "n_positive": n_positive,
        "n_negative": n_negative,
        "n_positive_kept": n_positive - len(drop),
        "n_error_dropped": n_error_dropped,
        "n_response_truncated": 0,
        "n_prompt_truncated": 0,
    }
    examples: list[dict[str, list[int]]] = []
    for i, rec in enumerate(kept):
        if i in drop:
            continue
        response_ids = list(tokenizer(rec.output, add_special_tokens=False)["input_ids"]) + [eos]
        # Keep >= 1 prompt token: the label at position 0 is never predicted after the causal shift.
        if len(response_ids) > max_length - 1:
            response_ids = response_ids[: max_length - 1]
            stats["n_response_truncated"] += 1
        plain_ids = list(tokenizer(plain_prompt(rec.prompt_text))["input_ids"])
        if i in positive_set:
            ids, labels, cut = _sequence(plain_ids, response_ids, max_length)
            stats["n_prompt_truncated"] += cut
            examples.append({"input_ids": ids, "labels": labels, "input_ids_neg": [], "labels_neg": []})
            continue
        judge_ids = list(tokenizer(judge_prompt(rec.prompt_text, rec.judgment))["input_ids"])
        ids, labels, cut = _sequence(judge_ids, response_ids, max_length)
        ids_neg, labels_neg, cut_neg = _sequence(plain_ids, response_ids, max_length)
        stats["n_prompt_truncated"] += cut + cut_neg
        examples.append({"input_ids": ids, "labels": labels, "input_ids_neg": ids_neg, "labels_neg": labels_neg})
    return examples, stats


@dataclass
class CUTDataCollator:
    """Right-pads the positive half and the Misalign half of a batch to one common length (as the official
    `MyDataCollator` does, so the two halves can be concatenated into one forward batch).

    Returns input_ids, attention_mask, labels, input_ids_neg, attention_mask_neg, labels_neg and a bool `has_neg`
    per row; a row without a Misalign sequence gets an all-pad neg row with attention 0 and labels -100.
    """

    pad_token_id: int
    label_pad_token_id: int = IGNORE_INDEX
    pad_to_multiple_of: int | None = None

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        import torch  # here, not at the top: the workflow imports this module (row check) and needs no torch

        length = max(max(len(f["input_ids"]), len(f["input_ids_neg"])) for f in features)
        if self.pad_to_multiple_of:
            length = -(-length // self.pad_to_multiple_of) * self.pad_to_multiple_of
        out: dict[str, list[list[int]]] = {k: [] for k in ("input_ids", "attention_mask", "labels")}
        out.update({f"{k}_neg": [] for k in ("input_ids", "attention_mask", "labels")})
        for f in features:
            for suffix in ("", "_neg"):
                ids, labels = list(f[f"input_ids{suffix}"]), list(f[f"labels{suffix}"])
                if len(ids) != len(labels):
                    raise ValueError("input_ids and labels differ in length")
                pad = length - len(ids)
                out[f"input_ids{suffix}"].append(ids + [self.pad_token_id] * pad)
                out[f"attention_mask{suffix}"].append([1] * len(ids) + [0] * pad)
                out[f"labels{suffix}"].append(labels + [self.label_pad_token_id] * pad)
        batch = {k: torch.tensor(v, dtype=torch.long) for k, v in out.items()}
        batch["has_neg"] = torch.tensor([len(f["input_ids_neg"]) > 0 for f in features], dtype=torch.bool)
        return batch
