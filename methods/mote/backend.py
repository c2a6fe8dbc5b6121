"""MoTE models on the shared benchmarks (evals/): a generation backend over the step decoder, and a scoring model
for lm-eval's log-likelihood tasks.

A MoTE model (model.json kind "mote") is not a plain causal LM: its experts are routed per token by step, and it
answers by writing its own chain. MoTE's paper.yaml registers this module's objects for that kind, and
`alignrepro.generation.make_backend` and `alignrepro.evals.lmeval.run.build_lm` look them up there (the shared layer
never imports a paper).

Generation (`MoteBackend`): adaptive step decoding, as in the paper's Table 1. The answer gets the shared spec's
`max_new_tokens`, the budget every other model's answer gets; the reasoning steps come on top, each capped at
`step_max_tokens` (the MoTE config's; default the answer budget), so a chain can never buy a longer answer. Only the
answer step reaches the judges.

Scoring (`scoring_model`): every token is routed as a query token (E_analysis + the shared expert, as MoTE reads a
prompt at inference, note §7.3). A one-token continuation (MMLU's " A") is then scored exactly as MoTE would emit
its first token; a longer continuation is scored as if it were still query text (MoTE would route it by the step it
chose to write).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any

import torch

from alignrepro.io import stable_hash
from alignrepro.methods.mote.infer import StepDecoder, count_chain_shapes, load_trained
from alignrepro.methods.mote.moe_lora import set_routing
from alignrepro.methods.mote.steps import STEP_IDS, STEPS
from alignrepro.models import model_identity

log = logging.getLogger(__name__)
REASONING_STEPS = [s for s in STEPS if s != "answer"]


class MoteBackend:
    """`generate_chat` over `infer.StepDecoder` (adaptive mode), batched by prompt length like HFBackend."""

    SPEC_KEYS = ("step_max_tokens",)  # its own generation settings (alignrepro.generation.parse_spec accepts them)

    def __init__(
        self,
        model_dir: str | Path,
        dtype: torch.dtype,
        batch_size: int = 16,
        temperature: float = 0.0,
        seed: int = 0,
        max_batch_tokens: int | None = None,
        spec: dict[str, Any] | None = None,
    ):
        model, self.tokenizer, _ = load_trained(model_dir, dtype)
        self.decoder = StepDecoder(model, self.tokenizer, temperature, seed)
        self.batch_size, self.max_batch_tokens = batch_size, max_batch_tokens
        self.step_max_tokens = (spec or {}).get("step_max_tokens")  # MoTE's own setting in the shared spec
        self.identity = model_identity(model_dir)
        self.id = f"mote:{stable_hash(self.identity)}"
        self.last_stats: dict[str, Any] = {}

    def budgets(self, answer_tokens: int) -> tuple[int, int]:
        """(step cap, chain budget): each reasoning step and its two step tokens, then the answer and its two."""
        step_max = self.step_max_tokens or answer_tokens
        return step_max, len(REASONING_STEPS) * (step_max + 2) + answer_tokens + 2

    @torch.inference_mode()
    def generate_chat(self, conversations: list[list[dict[str, str]]], max_new_tokens: int) -> list[str]:
        step_max, chain_budget = self.budgets(max_new_tokens)
        start = time.perf_counter()
        rows = self.decoder.generate_batched(
            conversations, "adaptive", chain_budget, step_max, max_new_tokens, self.batch_size, self.max_batch_tokens
        )
        seconds = time.perf_counter() - start
        n_tokens = sum(r["n_tokens"] for r in rows)
        self.last_stats = {
            "n_tokens": n_tokens,  # every chain token, reasoning included
            "seconds": round(seconds, 2),
            "tokens_per_s": round(n_tokens / max(seconds, 1e-9), 2),
            "dtype": str(next(self.decoder.model.parameters()).dtype).removeprefix("torch."),
            "decoding": {
                "mode": "adaptive",
                "answer_max_tokens": max_new_tokens,
                "step_max_tokens": step_max,
                "chain_budget": chain_budget,
            },
            "fallback_counts": dict(Counter(f for r in rows for f in r["fallbacks"])),
            "chain_shapes": count_chain_shapes(rows),
        }
        log.info("mote: %d chains, %d tokens in %.1fs; shapes %s", len(rows), n_tokens, seconds,
                 self.last_stats["chain_shapes"])  # fmt: skip
        return [r["output"] for r in rows]


def _route_as_query(module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
    ids = kwargs.get("input_ids", args[0] if args else None)
    if ids is None:
        raise RuntimeError("MoTE scoring model: call it with input_ids (step routing needs the token positions)")
    set_routing(module, torch.full_like(ids, STEP_IDS["query"]))


def scoring_model(model_dir: str | Path, dtype: torch.dtype):
    """(model, tokenizer) for log-likelihood scoring: each forward routes all its tokens as query tokens."""
    model, tok, _ = load_trained(model_dir, dtype)
    model.register_forward_pre_hook(_route_as_query, with_kwargs=True)
    return model, tok
