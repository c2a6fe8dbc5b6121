"""The step-skip attention mask (paper §3.2 / App. B, note §1.2 and §7.5): one pass over the full chain teaches the
model to write guidance and answers without the earlier reasoning, replacing the explicit extra datasets.

Per sample, each earlier reasoning block (analysis, guidance) present in the chain is independently hidden with
probability p (ours: 0.5; the paper gives no value) from the tokens of all LATER steps. The query is never hidden;
positions are unchanged; a block still sees itself. Combined with the causal and the key-padding mask, the result is
a 4D mask [B, 1, T, T] that transformers passes to the attention as it is (masking_utils returns a 4D mask
unchanged). It is an additive float mask (0 / dtype min): the eager attention adds the mask to the scores, so a
bool mask would be silently wrong there; SDPA accepts both. No CLI.
"""

from __future__ import annotations

import torch

from alignrepro.methods.mote.steps import STEP_IDS

REASONING = (STEP_IDS["analysis"], STEP_IDS["guidance"])  # the blocks that can be hidden


def sample_hidden_blocks(step_ids: torch.Tensor, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """[B, 2] bool: whether each reasoning block (analysis, guidance) of each sample is hidden from later steps.
    A block absent from the sample is never marked. Draws 2 uniforms per sample (CPU generator: deterministic)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"step-skip probability must lie in [0, 1], got {p}")
    b = step_ids.shape[0]
    draws = torch.rand((b, len(REASONING)), generator=generator) < p
    present = torch.stack([(step_ids == s).any(dim=1).cpu() for s in REASONING], dim=1)
    return (draws & present).to(step_ids.device)


def step_skip_keep(
    step_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    p: float = 0.5,
    generator: torch.Generator | None = None,
    hidden: torch.Tensor | None = None,
) -> torch.Tensor:
    """[B, 1, T, T] bool, True = query position i may attend to key position j.

    keep = causal & key-not-padding & not (j in a hidden block b and step(i) > b), plus the diagonal (so that no row
    is empty, e.g. a left-padding row; such rows carry no loss). `hidden` [B, 2] overrides the random draw."""
    b, t = step_ids.shape
    dev = step_ids.device
    if hidden is None:
        hidden = sample_hidden_blocks(step_ids, p, generator)
    keep = torch.ones(t, t, dtype=torch.bool, device=dev).tril()[None].expand(b, t, t)
    if attention_mask is not None:
        keep = keep & attention_mask.bool()[:, None, :]
    q_step, k_step = step_ids[:, :, None], step_ids[:, None, :]
    for i, block in enumerate(REASONING):
        blocked = hidden[:, i, None, None] & (k_step == block) & (q_step > block)
        keep = keep & ~blocked
    keep = keep | torch.eye(t, dtype=torch.bool, device=dev)[None]
    return keep[:, None]


def additive_mask(keep: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Bool keep-mask → the additive float mask the attention implementations take (0 kept, dtype min hidden)."""
    out = torch.zeros(keep.shape, dtype=dtype, device=keep.device)
    return out.masked_fill(~keep, torch.finfo(dtype).min)


def causal_keep(attention_mask: torch.Tensor) -> torch.Tensor:
    """The plain causal + padding mask in the same 4D form (p = 0)."""
    step_ids = torch.zeros_like(attention_mask, dtype=torch.long)
    return step_skip_keep(step_ids, attention_mask, p=0.0)
