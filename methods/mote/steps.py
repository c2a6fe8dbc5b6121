"""MoTE's reasoning steps as tokens: the special step tokens, their trainable embedding rows, chain encoding for
training, and parsing of generated chains (with counted fallbacks for malformed output). No CLI.

A chain, as training text after the chat template's assistant tag (absent steps are left out):
  <|analysis|>ANALYSIS<|/analysis|><|guidance|>GUIDANCE<|/guidance|><|response|>ANSWER<|/response|>
A step's start and end tokens belong to that step (same step id, routed to its expert).

New token rows (ours, note §7.6): the base matrices stay frozen; the embedding wrapper and the output-head wrapper
read the step tokens' rows from one small trainable parameter ([n_new, hidden]; one shared parameter when the
model ties its embeddings, so tying is kept). The head rows must train too: the model has to *emit* the step
tokens at inference, and resized rows all start alike. This costs 6·hidden parameters instead of a full
`modules_to_save` copy of embed/lm_head, works the same under MoTE and under PEFT LoRA, and merges back into a
plain model (`merge_step_tokens`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

log = logging.getLogger(__name__)

STEP_IDS = {"query": 0, "analysis": 1, "guidance": 2, "answer": 3}
STEP_TOKENS = {
    "analysis": ("<|analysis|>", "<|/analysis|>"),
    "guidance": ("<|guidance|>", "<|/guidance|>"),
    "answer": ("<|response|>", "<|/response|>"),
}
STEPS = ("analysis", "guidance", "answer")  # chain order
ALL_STEP_TOKENS = [t for s in STEPS for t in STEP_TOKENS[s]]
IGNORE_INDEX = -100


class ChainTooLong(ValueError):
    """The chain alone does not fit max_length (the chain is never truncated; the caller skips and counts it)."""


# ---------------------------------------------------------------------------------------------------- tokens
def step_token_ids(tokenizer) -> dict[str, tuple[int, int]]:
    """{step: (start id, end id)}; the tokenizer must already hold the step tokens."""
    out = {}
    for step, (start, end) in STEP_TOKENS.items():
        ids = tokenizer.convert_tokens_to_ids([start, end])
        if any(i is None or i == tokenizer.unk_token_id for i in ids):
            raise KeyError(f"tokenizer lacks the step tokens {start}/{end}: call add_step_tokens first")
        out[step] = (int(ids[0]), int(ids[1]))
    return out


class _WrappedWeight(nn.Module):
    """`.weight` is the wrapped layer's (`self.base`): transformers reads it, and ties it by assigning a Parameter,
    which nn.Module would otherwise try to register on the wrapper (e.g. lm-eval's HFLM calls tie_weights)."""

    base: nn.Module

    @property
    def weight(self) -> torch.Tensor:
        return self.base.weight

    def __setattr__(self, name: str, value: object) -> None:
        if name == "weight":
            self.base.weight = value
        else:
            super().__setattr__(name, value)


class StepTokenEmbedding(_WrappedWeight):
    """Input embedding whose step-token rows come from a trainable parameter (the base matrix stays frozen)."""

    def __init__(self, base: nn.Embedding, ids: torch.Tensor, rows: nn.Parameter):
        super().__init__()
        self.base = base
        self.rows = rows
        slot = torch.full((base.num_embeddings,), -1, dtype=torch.long)
        slot[ids] = torch.arange(len(ids))
        self.register_buffer("slot", slot, persistent=False)
        self.register_buffer("ids", ids.clone(), persistent=False)

    @property
    def num_embeddings(self) -> int:
        return self.base.num_embeddings

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        out = self.base(input_ids)
        slot = self.slot[input_ids]
        new = slot >= 0
        if bool(new.any()):
            out = torch.where(new[..., None], self.rows[slot.clamp(min=0)].to(out.dtype), out)
        return out


class StepTokenHead(_WrappedWeight):
    """Output head whose step-token logits come from the trainable rows."""

    def __init__(self, base: nn.Linear, ids: torch.Tensor, rows: nn.Parameter):
        super().__init__()
        self.base = base
        self.rows = rows
        self.register_buffer("ids", ids.clone(), persistent=False)

    @property
    def bias(self) -> torch.Tensor | None:
        return self.base.bias

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = self.base(hidden)
        new = hidden @ self.rows.to(hidden.dtype).T
        if self.base.bias is not None:
            new = new + self.base.bias[self.ids]
        return logits.index_copy(-1, self.ids, new.to(logits.dtype))


def _mark_trainable(p: nn.Parameter) -> nn.Parameter:
    p._mote_keep_trainable = True  # apply_mote / train.py keep it trainable when they freeze the base
    return p


def add_step_tokens(tokenizer, model, seed: int = 0) -> dict[str, tuple[int, int]]:
    """Add the six step tokens (special: never split), resize the embeddings if needed (mean-resizing, seeded) and
    give the new rows trainable parameters. Idempotent. Returns {step: (start id, end id)}."""
    tokenizer.add_tokens(ALL_STEP_TOKENS, special_tokens=True)
    ids_map = step_token_ids(tokenizer)
    emb = model.get_input_embeddings()
    if isinstance(emb, StepTokenEmbedding):
        return ids_map
    if emb.num_embeddings < len(tokenizer):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
    emb, head = model.get_input_embeddings(), model.get_output_embeddings()
    ids = torch.tensor([i for s in STEPS for i in ids_map[s]], dtype=torch.long, device=emb.weight.device)
    tied = head is not None and head.weight is emb.weight
    rows_in = _mark_trainable(nn.Parameter(emb.weight.detach()[ids].clone().float()))
    model.set_input_embeddings(StepTokenEmbedding(emb, ids, rows_in))
    if head is not None:
        rows_out = rows_in if tied else _mark_trainable(nn.Parameter(head.weight.detach()[ids].clone().float()))
        model.set_output_embeddings(StepTokenHead(head, ids, rows_out))
    return ids_map


def step_token_parameters(model) -> list[nn.Parameter]:
    """The trainable step-token rows (input, and output when untied)."""
    emb, head = model.get_input_embeddings(), model.get_output_embeddings()
    rows = [emb.rows] if isinstance(emb, StepTokenEmbedding) else []
    if isinstance(head, StepTokenHead) and all(head.rows is not r for r in rows):
        rows.append(head.rows)
    return rows


def step_token_state(model) -> dict[str, torch.Tensor]:
    """The trained step-token rows (to save beside an adapter)."""
    emb, head = model.get_input_embeddings(), model.get_output_embeddings()
    if not isinstance(emb, StepTokenEmbedding):
        return {}
    out = {"step_tokens.ids": emb.ids.cpu(), "step_tokens.rows_in": emb.rows.detach().cpu()}
    if isinstance(head, StepTokenHead) and head.rows is not emb.rows:
        out["step_tokens.rows_out"] = head.rows.detach().cpu()
    return out


def load_step_token_state(model, state: dict[str, torch.Tensor]) -> None:
    emb, head = model.get_input_embeddings(), model.get_output_embeddings()
    if not isinstance(emb, StepTokenEmbedding):
        raise ValueError("call add_step_tokens(tokenizer, model) before loading step-token rows")
    if not torch.equal(emb.ids.cpu(), state["step_tokens.ids"]):
        raise ValueError(
            f"step-token ids differ: model {emb.ids.tolist()} vs saved {state['step_tokens.ids'].tolist()}"
        )
    with torch.no_grad():
        emb.rows.copy_(state["step_tokens.rows_in"])
        if "step_tokens.rows_out" in state:
            head.rows.copy_(state["step_tokens.rows_out"])


def merge_step_tokens(model):
    """Write the trained rows into the embedding matrices and unwrap: a plain (resized) HF model."""
    emb, head = model.get_input_embeddings(), model.get_output_embeddings()
    if not isinstance(emb, StepTokenEmbedding):
        return model
    with torch.no_grad():
        emb.base.weight[emb.ids] = emb.rows.to(emb.base.weight.dtype)
        if isinstance(head, StepTokenHead):
            head.base.weight[head.ids] = head.rows.to(head.base.weight.dtype)
    model.set_input_embeddings(emb.base)
    if isinstance(head, StepTokenHead):
        model.set_output_embeddings(head.base)
    return model


# ---------------------------------------------------------------------------------------------------- encoding
def chain_steps(chain: dict[str, Any], require_answer: bool = True) -> list[tuple[str, str]]:
    """The present steps of a chain in order; empty/None steps are absent; the answer is required unless
    require_answer=False (the reasoning-only sub-chains of the explicit datasets, Table 6)."""
    steps = [(s, (chain.get(s) or "").strip()) for s in STEPS]
    steps = [(s, t) for s, t in steps if t]
    if not steps or (require_answer and steps[-1][0] != "answer"):
        raise ValueError(f"chain {chain.get('id')!r} has no answer")
    return steps


def chain_text(chain: dict[str, Any]) -> str:
    """The chain as one string (what the model learns to write after the assistant tag)."""
    return "".join(f"{STEP_TOKENS[s][0]}{t}{STEP_TOKENS[s][1]}" for s, t in chain_steps(chain))


def prompt_text(tokenizer, messages: list[dict[str, str]]) -> str:
    """The query in the model's own chat template, ending with the assistant tag (prompt_template "chat")."""
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def encode_prompt(tokenizer, messages: list[dict[str, str]]) -> list[int]:
    # The tokenizer's default special tokens, like alignrepro.generation.HFBackend (BOS for Llama tokenizers).
    return list(tokenizer(prompt_text(tokenizer, messages))["input_ids"])


def encode_chain(
    tokenizer, messages: list[dict[str, str]], chain: dict[str, Any], max_length: int, require_answer: bool = True
) -> dict[str, Any]:
    """Token ids, step ids and labels of one training chain.

    Query/template tokens: step 0, label -100 (no loss). Chain tokens (text and step tokens): their step's id and
    their own id as the label (the causal shift happens in the loss). A too long example loses tokens from the start
    of the query (left truncation); the chain is never cut — `ChainTooLong` when it alone does not fit.
    """
    ids_map = step_token_ids(tokenizer)
    chain_ids: list[int] = []
    chain_step: list[int] = []
    for step, text in chain_steps(chain, require_answer):
        start, end = ids_map[step]
        seg = [start, *tokenizer(text, add_special_tokens=False)["input_ids"], end]
        chain_ids += seg
        chain_step += [STEP_IDS[step]] * len(seg)
    if len(chain_ids) + 1 > max_length:  # at least one query token must predict the first step token
        raise ChainTooLong(f"chain {chain.get('id')!r}: {len(chain_ids)} tokens > max_length {max_length} - 1")
    query = encode_prompt(tokenizer, messages)
    cut = max(0, len(query) + len(chain_ids) - max_length)
    query = query[cut:]
    return {
        "input_ids": query + chain_ids,
        "step_ids": [STEP_IDS["query"]] * len(query) + chain_step,
        "labels": [IGNORE_INDEX] * len(query) + chain_ids,
        "query_truncated": cut,
    }


# ---------------------------------------------------------------------------------------------------- parsing
_MARKERS = {tok: (step, i == 0) for step, pair in STEP_TOKENS.items() for i, tok in enumerate(pair)}
_SPLIT = re.compile("(" + "|".join(re.escape(t) for t in _MARKERS) + ")")


def _items_from_text(text: str) -> list[tuple[str, str]]:
    items = []
    for part in _SPLIT.split(text):
        if part in _MARKERS:
            step, is_start = _MARKERS[part]
            items.append(("start" if is_start else "end", step))
        elif part:
            items.append(("text", part))
    return items


def _items_from_ids(ids: Sequence[int], tokenizer) -> list[tuple[str, str]]:
    marker = {i: (s, k == 0) for s, pair in step_token_ids(tokenizer).items() for k, i in enumerate(pair)}
    items: list[tuple[str, str]] = []
    run: list[int] = []

    def flush() -> None:
        if run:
            text = tokenizer.decode(run, skip_special_tokens=True)
            if text:
                items.append(("text", text))
            run.clear()

    for i in ids:
        i = int(i)
        if i in marker:
            flush()
            step, is_start = marker[i]
            items.append(("start" if is_start else "end", step))
        else:
            run.append(i)
    flush()
    return items


def parse_generated(text_or_ids: str | Sequence[int], tokenizer=None) -> tuple[dict[str, str], list[str]]:
    """Steps of a generated chain, never raising on malformed output. Returns ({step: text}, fallbacks).

    Fallbacks (each counted by the caller): no_step_tokens (plain text is taken as the answer), unclosed_<step>
    (the step runs to the next start token or the end), duplicate_<step> (the first occurrence is kept),
    orphan_end_<step>, mismatched_end_<step> (closes the open step), out_of_order, stray_text (text outside any
    step), answer_outside_step (no answer step: text after the last step is taken as the answer), no_answer ("").
    Token ids need the tokenizer (step tokens are special and would vanish from decoded text).
    """
    if isinstance(text_or_ids, str):
        items = _items_from_text(text_or_ids)
    else:
        if tokenizer is None:
            raise ValueError("parse_generated needs the tokenizer to parse token ids")
        items = _items_from_ids(text_or_ids, tokenizer)
    fallbacks: list[str] = []
    if not any(kind != "text" for kind, _ in items):
        text = "".join(v for _, v in items).strip()
        return {"answer": text}, ["no_step_tokens"] + ([] if text else ["no_answer"])
    steps: dict[str, str] = {}
    order: list[str] = []
    current: str | None = None
    buf: list[str] = []
    stray_after_last: list[str] = []

    def commit(step: str) -> None:
        if step in steps:
            fallbacks.append(f"duplicate_{step}")
        else:
            steps[step] = "".join(buf).strip()
            order.append(step)
        buf.clear()

    for kind, value in items:
        if kind == "start":
            if current is not None:
                fallbacks.append(f"unclosed_{current}")
                commit(current)
            current = value
            stray_after_last.clear()
        elif kind == "end":
            if current == value:
                commit(current)
                current = None
            elif current is None:
                fallbacks.append(f"orphan_end_{value}")
            else:
                fallbacks.append(f"mismatched_end_{value}")
                commit(current)
                current = None
        elif current is not None:
            buf.append(value)
        elif value.strip():
            fallbacks.append("stray_text")
            stray_after_last.append(value)
    if current is not None:
        fallbacks.append(f"unclosed_{current}")
        commit(current)
    if order != sorted(order, key=STEPS.index):
        fallbacks.append("out_of_order")
    if "answer" not in steps:
        tail = "".join(stray_after_last).strip()
        if tail:
            steps["answer"] = tail
            fallbacks.append("answer_outside_step")
        else:
            steps["answer"] = ""
            fallbacks.append("no_answer")
    if fallbacks:
        log.debug("parse_generated fallbacks: %s", fallbacks)
    return {s: steps[s] for s in STEPS if s in steps}, fallbacks
