"""The power mean of sigmoid rewards: a scalarizer as a row folder's own function.

A scalarizer takes r [..., P] (the principles' z-scored PM scores already multiplied by their weights, principles on
the last axis; any leading shape) and returns one reward per sample [...]; its keyword parameters come from the
row's `params` (and from `morlaif.scalarizer_params`, for the names it shares with them).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where it is called: the workflow imports every row's function at start, to check it
    import torch


def power_mean(r: torch.Tensor, p: float = -1.0) -> torch.Tensor:
    """(mean_i sigmoid(r_i)^p)^(1/p), computed in log space (p = 0: the geometric mean)."""
    import torch

    log_s = torch.nn.functional.logsigmoid(r)
    if p == 0:
        return log_s.mean(dim=-1).exp()
    # log mean_i s_i^p = logsumexp(p log s_i) - log n, stable for any sign of p and for tiny sigmoids
    log_mean = torch.logsumexp(p * log_s, dim=-1) - math.log(r.shape[-1])
    return (log_mean / p).exp()
