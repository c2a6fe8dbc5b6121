"""Pairwise judges (alpaca_eval preference convention) built from config dicts.

Backends import their heavy dependencies (torch, transformers, openai) only when built.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from alignrepro.judges.base import PairItem, PairwiseJudge, both_orders

__all__ = [
    "BACKENDS",
    "BUILTIN_JUDGES",
    "PairItem",
    "PairwiseJudge",
    "both_orders",
    "make_judge",
    "named_spec",
    "registry",
    "resolve_spec",
]

BACKENDS = ("oracle", "local", "heuristic", "openai")
BUILTIN_JUDGES = {"oracle": {"backend": "oracle"}, "heuristic": {"backend": "heuristic"}}  # named without config


def registry(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every named judge, critic and feedback model of a resolved config (`evals.judges` over the built-ins)."""
    return {**BUILTIN_JUDGES, **config["evals"]["judges"]}


def named_spec(
    entries: dict[str, dict[str, Any]], name: str, dtype: str | None = None, **options: Any
) -> dict[str, Any]:
    """A named critic or feedback model as its step reads it, the very spec that was written inline before: the
    entry (`model` stays a registry or API name: the step finds the folder), the use's own options (MORLAIF's
    order, layout, ...) and, for an in-process model, the run's `dtype` unless the entry names one."""
    out = {**entries[name], **options}
    if out["backend"] == "local" and dtype is not None:
        out.setdefault("dtype", dtype)
    return out


def resolve_spec(
    spec: dict[str, Any], models_dir: str | Path = "results/models", dtype: str | None = None
) -> dict[str, Any]:
    """A judge spec from the config as a make_judge spec: a local judge's registry `model` name becomes its folder,
    so specs in the config stay tier-independent; a local judge runs in the tier's `dtype` unless it names one."""
    out = dict(spec)
    if out["backend"] == "local":
        out["model_dir"] = str(Path(models_dir) / out.pop("model"))
        if dtype is not None:
            out.setdefault("dtype", dtype)
    return out


def _check_keys(spec: dict[str, Any], *fns: Any) -> None:
    allowed = {"backend"} | {
        p for fn in fns for p in inspect.signature(fn).parameters if p not in ("self", "client", "sleep")
    }
    unknown = set(spec) - allowed
    if unknown:
        raise ValueError(
            f"judge spec for backend {spec['backend']!r}: unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}"
        )


def make_judge(spec: dict[str, Any]) -> PairwiseJudge:
    """E.g. {"backend": "oracle"}, {"backend": "local", "model_dir": ...}, {"backend": "heuristic"},
    {"backend": "openai", "model": "gpt-4-0613", "base_url": None, "max_requests": 2000}."""
    if not isinstance(spec, dict) or "backend" not in spec:
        raise ValueError(
            f"judge spec must be a mapping with key 'backend' (one of {', '.join(BACKENDS)}); got {spec!r}"
        )
    backend, kw = spec["backend"], {k: v for k, v in spec.items() if k != "backend"}
    if backend == "oracle":
        from alignrepro.judges.oracle import OracleJudge

        _check_keys(spec, OracleJudge.__init__)
        return OracleJudge()
    if backend == "heuristic":
        from alignrepro.judges.heuristic import LengthHeuristicJudge

        _check_keys(spec)
        return LengthHeuristicJudge()
    if backend == "local":
        import torch

        from alignrepro.judges.local import LocalLogprobJudge

        _check_keys(spec, LocalLogprobJudge.__init__)
        if isinstance(kw.get("dtype"), str):  # "bfloat16" / "torch.bfloat16" in YAML
            kw["dtype"] = getattr(torch, kw["dtype"].removeprefix("torch."))
        return LocalLogprobJudge(**kw)
    if backend == "openai":
        from alignrepro.judges.openai_api import OpenAIChatClient, OpenAIPairwiseJudge

        _check_keys(spec, OpenAIChatClient.__init__, OpenAIPairwiseJudge.__init__)
        prompt = kw.pop("prompt", "alpaca_eval_gpt4")
        grade_max_tokens = kw.pop("grade_max_tokens", 2048)
        kw.setdefault("base_url", None)
        return OpenAIPairwiseJudge(OpenAIChatClient(**kw), prompt=prompt, grade_max_tokens=grade_max_tokens)
    raise ValueError(f"unknown judge backend {backend!r} in key 'backend'; allowed values: {', '.join(BACKENDS)}")
