"""The CUT loss as the official code computes it (`modeling_llama_unlikelihood.py`, `forward` + `unlikelihood`).

Per (micro-)batch, with the positive half = Align-P (plain prompt) and Align-N (judge prompt) rows and the negative
half = the Misalign rows (plain prompt, same response as the Align-N row):

    mle  = token-mean NLL over the labelled tokens of the positive half                      (paper Eq. 7, L2)
    U    = {t : p(y_t | x, j-) / p(y_t | x) > lambda}, ratio detached, both from the live model    (Eq. 5)
    ul   = token-mean over all Misalign response tokens of
           alpha * p(y_t|x,j-)^gamma * -log(1 - p(y_t|x))   if t in U   (unlikelihood)
           -log p(y_t|x)                                    otherwise (MLE)                  (Eq. 6, L1)
    loss = (mle + ul) / 2 if the batch holds a negative, else mle   (the code averages; the paper sums)

gamma = 0 is the official code (v1); gamma > 0 is v4's dynamic weighting, detached like the ratio.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


@dataclass
class CUTLossOutput:
    loss: torch.Tensor
    mle: torch.Tensor
    ul: torch.Tensor | None
    n_detected: int
    n_neg_tokens: int


def log1m_softmax_at(logits: torch.Tensor, target: torch.Tensor, lse: torch.Tensor | None = None) -> torch.Tensor:
    """log(1 - softmax(logits)[target]) for rows of `logits` (N, V), exact for p -> 1.

    Computed as logsumexp over the other tokens minus logsumexp over all tokens. This replaces the official
    code's `log(1 - p)` with `+1e-5` where `1 - p == 0` in float32 (which caps -log(1-p) at 11.5 and has a zero
    gradient there); `log1p(-exp(logp))` would not be enough either, since a float32 log-softmax rounds
    log(1 - 1e-9) to exactly 0.
    """
    others = logits.scatter(-1, target.unsqueeze(-1), float("-inf"))
    return torch.logsumexp(others, dim=-1) - (torch.logsumexp(logits, dim=-1) if lse is None else lse)


def _response_positions(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Float32 logits (N, V) and targets (N,) of the labelled positions, HF-style shift (logits[t] -> labels[t+1])."""
    shift_labels = labels[:, 1:]
    mask = shift_labels != IGNORE_INDEX
    return logits[:, :-1][mask].float(), shift_labels[mask]


def cut_loss(
    logits_pos: torch.Tensor,
    labels_pos: torch.Tensor,
    logits_neg: torch.Tensor,
    labels_neg: torch.Tensor,
    has_neg: torch.Tensor,
    threshold: float = 1.1,
    weight_unlike: float = 1.0,
    gamma: float = 0.0,
) -> CUTLossOutput:
    """CUT loss on logits (B, T, V) with unshifted HF-style labels (B, T); -100 marks unlabelled tokens.

    `has_neg` (B,) flags the rows whose positive-half sequence is Align-N with a Misalign partner. `logits_neg` /
    `labels_neg` hold either one row per example (rows without `has_neg` are ignored) or only the `has_neg` rows,
    in order. The response tokens of an Align-N row and its Misalign row are the same ids at different absolute
    positions (the prompts differ); they are aligned by taking the labelled positions of each row in order.
    """
    has_neg = has_neg.to(device=logits_pos.device, dtype=torch.bool)
    sel_pos, tgt_pos = _response_positions(logits_pos, labels_pos)
    mle = F.cross_entropy(sel_pos, tgt_pos)
    n_neg_rows = int(has_neg.sum())
    if n_neg_rows == 0:
        return CUTLossOutput(loss=mle, mle=mle, ul=None, n_detected=0, n_neg_tokens=0)

    if logits_neg.size(0) != n_neg_rows:  # one row per example: keep the Misalign rows
        if logits_neg.size(0) != has_neg.numel():
            raise ValueError(f"logits_neg has {logits_neg.size(0)} rows; expected {has_neg.numel()} or {n_neg_rows}")
        logits_neg, labels_neg = logits_neg[has_neg], labels_neg[has_neg]
    labels_n = labels_neg.to(logits_neg.device)
    count_a = (labels_pos[has_neg][:, 1:] != IGNORE_INDEX).sum(-1)
    count_m = (labels_n[:, 1:] != IGNORE_INDEX).sum(-1)
    # The Align-N rows' labelled positions, taken from the positive half's selection (row-major, as indexing the
    # rows first would give) instead of copying those rows' whole (T, V) logits again.
    labelled = labels_pos[:, 1:] != IGNORE_INDEX
    rows = torch.arange(labels_pos.size(0), device=labels_pos.device).unsqueeze(1).expand_as(labelled)[labelled]
    alignn = has_neg.to(rows.device)[rows].to(sel_pos.device)
    tgt_alignn = tgt_pos[alignn]
    sel_neg, tgt_neg = _response_positions(logits_neg, labels_n)
    if not torch.equal(count_a.cpu(), count_m.cpu()) or not torch.equal(tgt_alignn.cpu(), tgt_neg.cpu()):
        raise ValueError("Align-N and Misalign response label ids differ; build both from the same response ids")

    lse_neg = torch.logsumexp(sel_neg, dim=-1)
    logp_neg = sel_neg.gather(-1, tgt_neg.unsqueeze(-1)).squeeze(-1) - lse_neg
    with torch.no_grad():  # official: `scale = (p_alignN / p_neg).detach()`; compared in log space here
        sel_alignn = sel_pos[alignn]
        logp_alignn = sel_alignn.gather(-1, tgt_alignn.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(sel_alignn, -1)
        detected = (logp_alignn - logp_neg) > math.log(threshold)

    token_loss = -logp_neg  # non-detected tokens of the bad response: ordinary MLE under the plain prompt
    n_detected = int(detected.sum())
    if n_detected:
        idx = detected.nonzero(as_tuple=True)[0]
        log1m_p = log1m_softmax_at(sel_neg[idx], tgt_neg[idx], lse_neg[idx])
        weight = weight_unlike * logp_alignn[idx].exp() ** gamma  # detached (v4 dynamic weight; 1 when gamma = 0)
        token_loss = token_loss.index_put((idx,), -weight * log1m_p)
    ul = token_loss.mean()
    return CUTLossOutput(
        loss=(mle + ul) / 2, mle=mle, ul=ul, n_detected=n_detected, n_neg_tokens=int(token_loss.numel())
    )
