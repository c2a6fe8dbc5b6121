"""`CUTTrainer`: a `transformers.Trainer` whose loss is CUT (see `loss.py`), for plain or PEFT-wrapped causal LMs.

Replaces the official code's custom `LlamaForCausalLM` + `PeftModelForCausalLM` pair (LLaMA-only) with a generic
`compute_loss`, so any causal LM works.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import Trainer

from alignrepro.methods.cut.examples import IGNORE_INDEX, CUTDataCollator
from alignrepro.methods.cut.loss import cut_loss


def _forward_half(
    model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor, full: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, labels) of one half of a batch, aligned for `cut_loss`'s shift (logits[t] predicts labels[t + 1]).

    The collator right-pads both halves to one length: columns past this half's longest row are dropped. Unless
    `full`, only positions from the first one that predicts a label get logits (`logits_to_keep`), and the labels
    start there too; the positions before it are computed (they feed attention) but never reach the LM head. The
    kept logits are the same numbers the full forward gives at those positions."""
    width = max(int(mask.sum(-1).max()), 1)
    ids, mask, labels = ids[:, :width], mask[:, :width], labels[:, :width]
    labelled = labels[:, 1:] != IGNORE_INDEX
    first = 0
    if not full and bool(labelled.any()):
        first = int(labelled.int().argmax(-1)[labelled.any(-1)].min())
    # logits_to_keep=0 keeps every position (transformers' convention)
    logits = model(input_ids=ids, attention_mask=mask, use_cache=False, logits_to_keep=width - first if first else 0)
    return logits.logits, labels[:, first:]


class CUTTrainer(Trainer):
    """Trainer for batches from `CUTDataCollator`.

    `args.remove_unused_columns` must be False: the Trainer would otherwise drop the collator's extra keys
    (input_ids_neg, attention_mask_neg, labels_neg, has_neg), which the model's forward signature does not name.

    The official PEFT wrapper concatenates `input_ids` and `input_ids_neg` into one forward batch, every row padded
    to the batch's longest sequence. The loss is the same per row, so each step here runs the positive half and the
    Misalign rows as two forwards, each cut to its own longest row (the Misalign rows lack the judgment and are
    shorter), and asks the model for logits only from the first position that predicts a label (`logits_to_keep`:
    the prompts before it feed attention only; the 49k-vocab head over them was ~1/5 of the step). Misalign rows of
    Align-P examples are all padding in the official batch and contribute nothing, so they are left out. Measured
    with `python -m benchmarks.run --parts training`. Logged with the loss: mle, ul and detected_ratio = |U|/N.

    The loss is a per-micro-batch mean (official code under HF Trainer), so the Trainer divides it by the gradient
    accumulation steps (`loss_is_scaled_for_ga = False`); `num_items_in_batch` is ignored.
    """

    loss_is_scaled_for_ga = False

    def __init__(
        self,
        model: Any = None,
        args: Any = None,
        *trainer_args: Any,
        threshold: float = 1.1,
        weight_unlike: float = 1.0,
        gamma: float = 0.0,
        **kwargs: Any,
    ) -> None:
        if args is None or args.remove_unused_columns:
            raise ValueError("CUTTrainer needs TrainingArguments(remove_unused_columns=False) for the *_neg columns")
        if not trainer_args and kwargs.get("data_collator") is None:
            tok = kwargs.get("processing_class")
            if tok is None or tok.pad_token_id is None:
                raise ValueError("pass data_collator=CUTDataCollator(pad_token_id) or a processing_class with a pad")
            kwargs["data_collator"] = CUTDataCollator(tok.pad_token_id)
        super().__init__(model, args, *trainer_args, **kwargs)
        self.threshold, self.weight_unlike, self.gamma = threshold, weight_unlike, gamma
        self._cut_sums: dict[str, dict[str, float]] = {"train": self._zero_sums(), "eval": self._zero_sums()}

    @staticmethod
    def _zero_sums() -> dict[str, float]:
        return {"mle": 0.0, "n_mle": 0.0, "ul": 0.0, "n_ul": 0.0, "detected": 0.0, "neg_tokens": 0.0}

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, torch.Tensor],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        has_neg = inputs["has_neg"].bool()
        full = return_outputs  # a caller that wants the logits gets every position's
        logits, labels = _forward_half(model, inputs["input_ids"], inputs["attention_mask"], inputs["labels"], full)
        if has_neg.any():
            neg = (inputs[k][has_neg] for k in ("input_ids_neg", "attention_mask_neg", "labels_neg"))
            logits_n, labels_n = _forward_half(model, *neg, full)
        else:  # an all-Align-P batch: plain MLE, no second forward
            logits_n, labels_n = logits[:0], labels[:0]
        out = cut_loss(
            logits,
            labels,
            logits_n,
            labels_n,
            has_neg,
            threshold=self.threshold,
            weight_unlike=self.weight_unlike,
            gamma=self.gamma,
        )
        sums = self._cut_sums["train" if model.training else "eval"]
        sums["mle"] += out.mle.item()
        sums["n_mle"] += 1
        if out.ul is not None:
            sums["ul"] += out.ul.item()
            sums["n_ul"] += 1
            sums["detected"] += out.n_detected
            sums["neg_tokens"] += out.n_neg_tokens
        if return_outputs:
            return out.loss, {"loss": out.loss, "logits": logits}
        return out.loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        # Like TRL trainers: add the running means since the last log, then reset them.
        mode = "train" if self.model.training else "eval"
        sums = self._cut_sums[mode]
        if self.accelerator.num_processes > 1:
            keys = list(sums)
            t = torch.tensor([sums[k] for k in keys], device=self.accelerator.device, dtype=torch.float64)
            sums = dict(zip(keys, self.accelerator.reduce(t, reduction="sum").tolist(), strict=True))
        metrics: dict[str, float] = {}
        if sums["n_mle"]:
            metrics["mle"] = sums["mle"] / sums["n_mle"]
        if sums["n_ul"]:
            metrics["ul"] = sums["ul"] / sums["n_ul"]
            metrics["detected_ratio"] = sums["detected"] / max(sums["neg_tokens"], 1.0)
        if mode == "eval":
            metrics = {f"eval_{k}": v for k, v in metrics.items()}
        self._cut_sums[mode] = self._zero_sums()
        super().log({**logs, **metrics}, start_time)
