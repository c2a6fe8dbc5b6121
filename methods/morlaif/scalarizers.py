"""MORLAIF's scalarization functions (paper note §1.5): many principle scores -> one reward, per sample.

Every scalarizer first multiplies each principle's score by its weight (r_i = w_i * s_i, as the official code does),
then reduces over the LAST axis, so any leading shape works (a batch, a batch of token positions, ...). The official
code reduced over the flattened (principles x batch) array and returned one float, so its non-linear scalarizers only
worked at batch size 1 (note §7.7); here each sample is reduced on its own.

| name                 | formula over the n principles                         | parameters                      |
|----------------------|-------------------------------------------------------|---------------------------------|
| linear               | sum_i r_i                                             |                                 |
| max_median           | median of r; for even n the LOWER middle value, i.e.  | (as torch.median)               |
|                      |   the ((n - 1) // 2)-th smallest, 0-based             |                                 |
| max_min              | min_i r_i                                             |                                 |
| soft_max_min         | sum_i softmin(r / T)_i * r_i                          | temperature T = 1.0             |
| uncertainty_weighted | mean(r) - lam * Var(r) (population variance)          | lam = 0.5, uncertainty="variance"|
|                      | or sum_i (r_i / v_i) / sum_i (1 / v_i)                | uncertainty="inverse_variance",  |
|                      |   (the third-party paraphrase, note §1.5; v_i = each  | variances = Tensor[n] (required) |
|                      |    principle's score variance, e.g. on calibration)   |                                 |
| lower_quantile       | mean of the m smallest r_i, m = max(1, floor(n * q))  | quantile q = 1/3                |
| bernoulli_nash       | nash="sigmoid" (default): (prod_i sigmoid(r_i))^(1/n),| nash = "sigmoid" | "product"    |
|                      |   the geometric mean of sigmoid(r_i): defined for any |                                 |
|                      |   sign of r (note §7.6);                              |                                 |
|                      | nash="product": prod_i r_i, the official raw product  |                                 |
|                      |   (sign flips with an odd number of negative scores)  |                                 |

`scalarize(scalarizer, scores, weights=None, **params)` is the one entry point (`scalarizer`: a name here, or any
function `f(r, **own_params) -> Tensor[...]`, such as a row folder's); `params` may carry parameters of other
scalarizers too (one shared params dict for every arm), but a name neither the scalarizer nor `DEFAULT_PARAMS`
knows is an error. `identity` (the single-PM arm: one PM's score) is no scalarizer of figure B, so not in SCALARIZERS.

The arms of the workflow are rows (methods/morlaif/paper.yaml, methods/morlaif/arms.py): each names its function
as "alignrepro.methods.morlaif.scalarizers:<name>", or "file.py:<name>" in a row folder.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where it is called: the workflow imports this module at start (row check)
    import torch


def linear(r: torch.Tensor) -> torch.Tensor:
    return r.sum(dim=-1)


def max_median(r: torch.Tensor) -> torch.Tensor:
    # torch.median returns the lower of the two middle values for an even count (the official code's behaviour).
    return r.median(dim=-1).values


def max_min(r: torch.Tensor) -> torch.Tensor:
    return r.min(dim=-1).values


def soft_max_min(r: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    if temperature <= 0:
        raise ValueError(f"soft_max_min needs temperature > 0, got {temperature}")
    import torch

    weights = torch.softmax(-r / temperature, dim=-1)
    return (weights * r).sum(dim=-1)


def uncertainty_weighted(
    r: torch.Tensor, lam: float = 0.5, uncertainty: str = "variance", variances: torch.Tensor | None = None
) -> torch.Tensor:
    if uncertainty == "variance":
        return r.mean(dim=-1) - lam * r.var(dim=-1, unbiased=False)
    if uncertainty == "inverse_variance":
        if variances is None:
            raise ValueError("uncertainty='inverse_variance' needs variances (one per principle)")
        import torch

        inv = 1.0 / torch.as_tensor(variances, dtype=r.dtype, device=r.device)
        if inv.shape != r.shape[-1:]:
            raise ValueError(f"variances has shape {tuple(inv.shape)}, expected ({r.shape[-1]},)")
        return (r * inv).sum(dim=-1) / inv.sum()
    raise ValueError(f"uncertainty must be 'variance' or 'inverse_variance', not {uncertainty!r}")


def lower_quantile(r: torch.Tensor, quantile: float = 1 / 3) -> torch.Tensor:
    if not 0 < quantile <= 1:
        raise ValueError(f"lower_quantile needs 0 < quantile <= 1, got {quantile}")
    n = r.shape[-1]
    # floor(n * q) with a tolerance, so that q = 1/3 of 12 is 4 and not 3 through float rounding.
    m = max(1, math.floor(n * quantile + 1e-9))
    return r.sort(dim=-1).values[..., :m].mean(dim=-1)


def identity(r: torch.Tensor) -> torch.Tensor:
    """The single-PM arm: the one PM's score (no weights, no z-score: the row scores one baseline PM)."""
    if r.shape[-1] != 1:
        raise ValueError(f"identity takes exactly one PM score per sample, got {r.shape[-1]}")
    return r[..., 0]


def bernoulli_nash(r: torch.Tensor, nash: str = "sigmoid") -> torch.Tensor:
    if nash == "sigmoid":
        # exp(mean(log sigmoid(r))) = geometric mean of sigmoid(r_i), computed in log space for stability.
        import torch

        return torch.nn.functional.logsigmoid(r).mean(dim=-1).exp()
    if nash == "product":
        return r.prod(dim=-1)
    raise ValueError(f"nash must be 'sigmoid' or 'product', not {nash!r}")


SCALARIZERS: dict[str, Callable[..., torch.Tensor]] = {
    "linear": linear,
    "max_median": max_median,
    "max_min": max_min,
    "soft_max_min": soft_max_min,
    "uncertainty_weighted": uncertainty_weighted,
    "lower_quantile": lower_quantile,
    "bernoulli_nash": bernoulli_nash,
}
DEFAULT_PARAMS: dict[str, object] = {
    "temperature": 1.0,
    "lam": 0.5,
    "uncertainty": "variance",
    "variances": None,
    "quantile": 1 / 3,
    "nash": "sigmoid",
}


def accepted_params(fn: Callable[..., torch.Tensor]) -> set[str] | None:
    """The keyword parameters a scalarizer takes after its scores (None: it takes **kwargs, so any)."""
    params = list(inspect.signature(fn).parameters.values())[1:]
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def scalarize(
    scalarizer: str | Callable[..., torch.Tensor],
    scores: torch.Tensor,
    weights: torch.Tensor | None = None,
    **params: object,
) -> torch.Tensor:
    """scores [..., P] (P principles on the last axis), weights [P] or None -> rewards [...]."""
    import torch

    if callable(scalarizer):
        fn = scalarizer
    elif scalarizer in SCALARIZERS or scalarizer == "identity":
        fn = SCALARIZERS.get(scalarizer, identity)
    else:
        raise KeyError(f"unknown scalarizer {scalarizer!r}; expected one of {', '.join(SCALARIZERS)}")
    accepted = accepted_params(fn)
    unknown = set(params) - set(DEFAULT_PARAMS) - (accepted or set())
    if unknown and accepted is not None:
        raise TypeError(f"unknown scalarizer parameter(s) {sorted(unknown)}; known: {sorted(DEFAULT_PARAMS)}")
    scores = torch.as_tensor(scores)
    if scores.dim() == 0:
        raise ValueError("scores needs a principle axis (the last one)")
    r = scores
    if weights is not None:
        w = torch.as_tensor(weights, dtype=scores.dtype, device=scores.device)
        if w.shape != scores.shape[-1:]:
            raise ValueError(f"weights has shape {tuple(w.shape)}, expected ({scores.shape[-1]},)")
        r = scores * w
    own = params if accepted is None else {k: v for k, v in params.items() if k in accepted}
    return fn(r, **own)
