"""`CUTTrainer`: a `transformers.Trainer` whose loss is CUT (see `loss.py`), for plain or PEFT-wrapped causal LMs.

Replaces the official code's custom `LlamaForCausalLM` + `PeftModelForCausalLM` pair (LLaMA-only) with a generic
`compute_loss`, so any causal LM works.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from transformers import Trainer

from alignrepro.methods.cut.examples import IGNORE_INDEX, CUTDataCollator
from alignrepro.methods.cut.loss import cut_loss


def _pad_right(t: torch.Tensor, length: int, value: int) -> torch.Tensor:
    return F.pad(t, (0, length - t.size(1)), value=value)


class CUTTrainer(Trainer):
    """Trainer for batches from `CUTDataCollator`.

    `args.remove_unused_columns` must be False: the Trainer would otherwise drop the collator's extra keys
    (input_ids_neg, attention_mask_neg, labels_neg, has_neg), which the model's forward signature does not name.

    Each step runs the model once on [positive half; Misalign rows], as the official PEFT wrapper concatenates
    `input_ids` and `input_ids_neg` into one batch. Misalign rows of Align-P examples are all padding in the
    official batch and contribute nothing to the loss, so they are left out of the forward here (same loss, less
    compute, and no fully masked attention rows). Logged with the loss: mle, ul and detected_ratio = |U|/N.

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
        ids, mask, labels = inputs["input_ids"], inputs["attention_mask"], inputs["labels"]
        ids_n, mask_n, labels_n = (inputs[k][has_neg] for k in ("input_ids_neg", "attention_mask_neg", "labels_neg"))
        length = max(ids.size(1), ids_n.size(1))  # right padding: pad values are masked and never labelled
        labels = _pad_right(labels, length, IGNORE_INDEX)
        batch_ids = torch.cat([_pad_right(ids, length, 0), _pad_right(ids_n, length, 0)])
        batch_mask = torch.cat([_pad_right(mask, length, 0), _pad_right(mask_n, length, 0)])
        logits = model(input_ids=batch_ids, attention_mask=batch_mask, use_cache=False).logits
        n_pos = ids.size(0)
        out = cut_loss(
            logits[:n_pos],
            labels,
            logits[n_pos:],
            _pad_right(labels_n, length, IGNORE_INDEX),
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
            return out.loss, {"loss": out.loss, "logits": logits[:n_pos]}
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
