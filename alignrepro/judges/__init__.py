"""Pairwise judges (alpaca_eval preference convention) built from judge specs (alignrepro.judges.spec.JudgeSpec,
parsed once at each judging step's entry; a config dict is typed on the way in).

Backends import their heavy dependencies (torch, transformers, openai) only when built.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alignrepro.judges.base import PairItem, PairwiseJudge, both_orders
from alignrepro.judges.spec import BACKENDS, JudgeSpec

__all__ = [
    "BACKENDS",
    "BUILTIN_JUDGES",
    "JudgeSpec",
    "PairItem",
    "PairwiseJudge",
    "both_orders",
    "make_judge",
    "named_spec",
    "registry",
    "resolve_spec",
]

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
    spec: JudgeSpec | dict[str, Any], models_dir: str | Path = "results/models", dtype: str | None = None
) -> Any:
    """A judge spec from the config as a make_judge spec: a local judge's registry `model` name becomes its folder,
    so specs in the config stay tier-independent; a local judge runs in the tier's `dtype` unless it names one.
    A JudgeSpec comes back typed (JudgeSpec.resolved); a dict (the rules' params) as a dict."""
    if isinstance(spec, JudgeSpec):
        return spec.resolved(models_dir, dtype)
    out = dict(spec)
    if out["backend"] == "local":
        out["model_dir"] = str(Path(models_dir) / out.pop("model"))
        if dtype is not None:
            out.setdefault("dtype", dtype)
    return out


def make_judge(spec: JudgeSpec | dict[str, Any]) -> PairwiseJudge:
    """E.g. {"backend": "oracle"}, {"backend": "local", "model_dir": ...}, {"backend": "heuristic"},
    {"backend": "openai", "model": "gpt-4-0613", "base_url": None, "max_requests": 2000}. A dict is typed first
    (JudgeSpec.from_dict: a key the backend does not take fails naming it); only the keys given reach the backend."""
    spec = JudgeSpec.from_dict(spec)
    kw = spec.kwargs()
    if spec.backend == "oracle":
        from alignrepro.judges.oracle import OracleJudge

        return OracleJudge()
    if spec.backend == "heuristic":
        from alignrepro.judges.heuristic import LengthHeuristicJudge

        return LengthHeuristicJudge()
    if spec.backend == "local":
        import torch

        from alignrepro.judges.local import LocalLogprobJudge

        if "model_dir" not in kw:
            raise ValueError(f"local judge {spec.model!r}: no model_dir (resolve_spec turns a registry name into it)")
        kw.pop("model", None)
        if isinstance(kw.get("dtype"), str):  # "bfloat16" / "torch.bfloat16" in YAML
            kw["dtype"] = getattr(torch, kw["dtype"].removeprefix("torch."))
        return LocalLogprobJudge(**kw)
    from alignrepro.judges.openai_api import OpenAIChatClient, OpenAIPairwiseJudge  # the last backend: openai

    prompt = kw.pop("prompt", "alpaca_eval_gpt4")
    grade_max_tokens = kw.pop("grade_max_tokens", 2048)
    kw.setdefault("base_url", None)
    return OpenAIPairwiseJudge(OpenAIChatClient(**kw), prompt=prompt, grade_max_tokens=grade_max_tokens)
