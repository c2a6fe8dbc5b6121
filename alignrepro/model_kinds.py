"""Model kinds (model.json `kind`) are looked up, never imported: "base" and "lora" are the engine's own (plain causal
LMs, alignrepro.models); any other kind is a paper's, registered under `model_kinds:` in its paper.yaml with the
objects the shared layer needs for it ("backend" for generation, "scoring" for lm-eval's log-likelihoods)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alignrepro import papers
from alignrepro.errors import UserError
from alignrepro.models import model_kind

PLAIN_KINDS = ("base", "lora")  # loaded by alignrepro.models.load_model as a plain causal LM


def registered_kinds() -> dict[str, str]:
    """kind -> the paper that registers it."""
    return {kind: p.name for p in papers.discover().values() for kind in p.model_kinds}


def kind_object(model_ref: str | Path | None, role: str) -> Any | None:
    """What a paper registered for this model folder's kind and `role`, or None for the plain path (no folder, a
    base or LoRA model, or a kind whose paper registers nothing for `role`). A kind that no paper registers is a
    UserError naming the model.json and the kinds there are."""
    kind = model_kind(model_ref)
    if kind is None or kind in PLAIN_KINDS:
        return None
    known = registered_kinds()
    if kind not in known:
        available = ", ".join([*PLAIN_KINDS, *(f"{k} ({paper})" for k, paper in sorted(known.items()))])
        raise UserError(f"{Path(model_ref) / 'model.json'}: unknown model kind {kind!r}. Available: {available}")
    return papers.model_kind_entry(kind, role)
