"""SPIN / LD-Align loss with a per-pair weight, as a small subclass of TRL's DPOTrainer.

The loss (the author's fork of SPIN, StarDewXXX/mySPIN spin/alignment/trainer.py `MySPINTrainer.spin_loss`):

    Δᵢ = [log πθ(realᵢ|xᵢ) − log π_ref(realᵢ|xᵢ)] − [log πθ(genᵢ|xᵢ) − log π_ref(genᵢ|xᵢ)]   (summed token log-probs)
    sigmoid: L = (1/B) Σᵢ wᵢ · −log σ(β Δᵢ)        hinge: L = (1/B) Σᵢ wᵢ · relu(1 − β Δᵢ)

"real" (the SFT answer) is TRL's chosen, "generated" (the model's own answer) its rejected. With every wᵢ = 1 this
is TRL's own sigmoid / hinge DPO loss, i.e. SPIN.

TRL 1.12 has no per-example weight: its collator drops extra columns and `_compute_loss` returns a plain mean. The
subclass (1) keeps the `weight` column through column removal and the collator, (2) computes the reference
log-probs first and hands them to DPOTrainer's own loss through its precomputed-reference branch, so the parent
still runs once per batch and logs all its metrics, then (3) replaces the parent's loss with the weighted one,
recomputing the policy log-probs from the parent's logits as the parent does. Both log-probs are summed in float32
as in SPIN (identical to TRL's for a float32 model). Steps (2) and (3) depend on TRL's internals: hence the pin.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
import trl
from trl import DPOTrainer
from trl.trainer.utils import selective_log_softmax

TRL_VERSION = "1.12.0"
if trl.__version__ != TRL_VERSION:
    raise ImportError(
        f"alignrepro.methods.ld_align.spin_trainer overrides TRL {TRL_VERSION}'s DPOTrainer internals "
        f"(_compute_loss, compute_ref_log_probs, the preference collator); trl {trl.__version__} is installed. "
        f"Install trl=={TRL_VERSION} or re-check the override against the new DPOTrainer."
    )

LOSS_TYPES = ("sigmoid", "hinge")


def weighted_spin_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    weights: torch.Tensor,
    beta: float,
    loss_type: str = "sigmoid",
) -> torch.Tensor:
    """Batch mean of wᵢ·ℓ(βΔᵢ) (divided by the batch size, not by Σw: mySPIN's `losses.mean()`)."""
    delta = (policy_chosen_logps - ref_chosen_logps) - (policy_rejected_logps - ref_rejected_logps)
    if loss_type == "sigmoid":
        per_pair = -F.logsigmoid(beta * delta)
    elif loss_type == "hinge":
        per_pair = torch.relu(1 - beta * delta)
    else:
        raise ValueError(f"loss_type {loss_type!r}: expected one of {list(LOSS_TYPES)}")
    return (weights.to(per_pair.device) * per_pair).mean()


class WeightCollator:
    """Wraps DPOTrainer's collator and adds the rows' `weight` as a float tensor (TRL's collator drops it)."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        missing = [i for i, e in enumerate(examples) if "weight" not in e]
        if missing:
            raise ValueError(f"WeightedSPINTrainer: batch examples {missing} have no 'weight' column")
        batch = self.inner(examples)
        batch["weight"] = torch.tensor([float(e["weight"]) for e in examples], dtype=torch.float32)
        return batch


class _Float32Logits:
    """Calls a model and upcasts its logits: SPIN sums float32 log-probs, TRL would sum bf16 ones in bf16 (a sum of
    ~-300 in bf16 is rounded to a step of 2, which is noise in βΔ). A no-op for float32 models."""

    def __init__(self, model) -> None:
        self.model = model

    def __call__(self, **kwargs):
        out = self.model(**kwargs)
        out.logits = out.logits.float()
        return out


class WeightedSPINTrainer(DPOTrainer):
    """DPOTrainer whose sigmoid/hinge loss weights each pair by the dataset's `weight` column (LD-Align; SPIN with
    all weights 1). Everything else (tokenisation, PEFT reference, metrics, logging) is DPOTrainer's."""

    def __init__(self, *args, **kwargs) -> None:
        cfg = kwargs.get("args")
        if cfg is None:
            raise ValueError("WeightedSPINTrainer needs args=DPOConfig(...)")
        unsupported = {
            "loss_type": cfg.loss_type if len(cfg.loss_type) != 1 or cfg.loss_type[0] not in LOSS_TYPES else None,
            "loss_weights": cfg.loss_weights if cfg.loss_weights not in (None, [1.0]) else None,
            "f_divergence_type": cfg.f_divergence_type if cfg.f_divergence_type != "reverse_kl" else None,
            "ld_alpha": cfg.ld_alpha,
            "use_weighting": cfg.use_weighting or None,
            "use_liger_kernel": cfg.use_liger_kernel or None,
        }
        unsupported = {k: v for k, v in unsupported.items() if v is not None}
        if unsupported:
            raise ValueError(
                f"WeightedSPINTrainer supports one loss_type of {list(LOSS_TYPES)} with TRL's plain log-probs; "
                f"unsupported DPOConfig settings: {unsupported}"
            )
        train = kwargs.get("train_dataset")
        if train is None or "weight" not in next(iter(train)):
            raise ValueError("WeightedSPINTrainer: train_dataset needs a float 'weight' column")
        super().__init__(*args, **kwargs)
        if self.aux_loss_enabled:
            raise ValueError("WeightedSPINTrainer: the MoE auxiliary loss is not supported (router_aux_loss_coef=0)")
        self.data_collator = WeightCollator(self.data_collator)

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        if "weight" not in self._signature_columns:
            self._signature_columns = [*self._signature_columns, "weight"]

    def _compute_loss(self, model, inputs, return_outputs):
        inputs = dict(inputs)
        weights = inputs.pop("weight")  # the model's forward must not see it
        if "ref_chosen_logps" not in inputs:
            # one reference forward, reused by the parent through its precomputed-reference branch
            ref_model = self.ref_model if self.ref_model is not None else model
            ref_logps = self.compute_ref_log_probs(_Float32Logits(ref_model), inputs)
            inputs["ref_chosen_logps"], inputs["ref_rejected_logps"] = ref_logps
        precompute = self.precompute_ref_logps
        self.precompute_ref_logps = True
        try:
            unweighted, outputs = super()._compute_loss(model, inputs, return_outputs=True)
        finally:
            self.precompute_ref_logps = precompute

        # the policy log-probs as DPOTrainer._compute_loss computes them (ld_alpha is None), in float32
        shift_mask = inputs["completion_mask"][..., 1:]
        per_token = selective_log_softmax(outputs.logits[..., :-1, :].float(), inputs["input_ids"][..., 1:])
        logps = per_token.masked_fill(shift_mask == 0, 0.0).sum(dim=1)
        chosen_logps, rejected_logps = logps.chunk(2, dim=0)
        loss = weighted_spin_loss(
            chosen_logps,
            rejected_logps,
            inputs["ref_chosen_logps"],
            inputs["ref_rejected_logps"],
            weights,
            self.beta,
            self.loss_types[0],
        )
        mode = "train" if self.model.training else "eval"
        gather = self.accelerator.gather_for_metrics
        self._metrics[mode]["unweighted_loss"].append(gather(unweighted.detach()).mean().item())
        self._metrics[mode]["weight_mean"].append(gather(weights).float().mean().item())
        return (loss, outputs) if return_outputs else loss
