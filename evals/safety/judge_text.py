"""Replies of the pluggable judge to prompts that expect a formatted text answer (StrongREJECT's rubric, HarmBench's
yes/no classifier), and their cache.

How a judge answers depends on what it can do (duck-typed; alignrepro/judges is not changed for this):
- "text": a judge with `complete(prompts, max_tokens) -> list[str]`, or an API judge with `client.chat` (greedy, as
  both official graders decode): the reply is the judge's own text, parsed by the official parser.
- "constrained": an in-process next-token judge (`model` + `tok`, e.g. the local SmolLM2 judge). Small judges rarely
  keep a format, so the reply is built step by step: the format's fixed text is prefilled (reasoning lines are not
  written) and each answer slot takes the allowed token the judge rates most likely. Each judgment records the
  probability mass on the allowed tokens (the smallest over its slots); below `min_mass` it is unparsable.
- "unsupported": a judge that can do neither (the ci heuristic): every judgment is unparsable, counted, with the reason.
Prompts longer than the judge's max_length lose their middle (the answer slot and the instructions stay) and are
counted (n_truncated, kept in the cache with the verdict).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

from alignrepro.judges.grading import grade_key

log = logging.getLogger(__name__)
Messages = list[dict[str, str]]


@dataclass(frozen=True)
class Step:
    """One answer slot of a constrained reply: `prefix` is appended first, then one of `options`."""

    prefix: str
    options: tuple[str, ...]


@dataclass
class Verdicts:
    codes: list[float]  # the parsed verdict, encoded by the caller; NaN = unparsable
    masses: list[float | None]  # constrained judges: mass on the allowed tokens; None for text judges
    mode: str
    n_truncated: int = 0
    why_unparsable: dict[str, int] = field(default_factory=dict)


def judge_mode(judge: Any) -> str:
    if callable(getattr(judge, "complete", None)) or callable(getattr(getattr(judge, "client", None), "chat", None)):
        return "text"
    if getattr(judge, "model", None) is not None and getattr(judge, "tok", None) is not None:
        return "constrained"
    return "unsupported"


def _texts(judge: Any, prompts: list[Messages], max_tokens: int) -> list[str]:
    if callable(getattr(judge, "complete", None)):
        return list(judge.complete(prompts, max_tokens))
    return [judge.client.chat(m, max_tokens, 0.0)["text"] for m in prompts]


def _chat_text(tok: Any, messages: Messages) -> str:
    if not tok.chat_template:
        return "\n\n".join(m["content"] for m in messages) + "\n\n"
    try:
        return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except Exception:  # a template without a system role: fold everything into the user turn (as the judge does)
        merged = [{"role": "user", "content": "\n\n".join(m["content"] for m in messages)}]
        return tok.apply_chat_template(merged, tokenize=False, add_generation_prompt=True)


def _step_tokens(tok: Any, step: Step) -> tuple[str, list[int], list[str]]:
    """(prefix to append, one token id per option, the option texts as appended). The space before an answer is
    either the prefix's last token or part of the option's token, whichever the tokenizer makes one token."""
    for prefix, lead in ((step.prefix, ""), (step.prefix.rstrip(" "), " ")):
        if lead and prefix == step.prefix:
            continue
        base = tok.encode(prefix, add_special_tokens=False)
        ids = []
        for opt in step.options:
            full = tok.encode(prefix + lead + opt, add_special_tokens=False)
            if full[: len(base)] != base or len(full) != len(base) + 1:
                break
            ids.append(full[-1])
        else:
            if len(set(ids)) == len(ids):
                return prefix, ids, [lead + o for o in step.options]
    # A tokenizer that splits an option (the ci model's tiny vocabulary): its first token stands for it.
    log.warning("answer options %s are not single tokens after %r; using their first tokens", step.options, step.prefix)
    ids = [tok.encode(o, add_special_tokens=False)[0] for o in step.options]
    return step.prefix, ids, list(step.options)


def _constrained(judge: Any, prompts: list[Messages], steps: list[Step]) -> tuple[list[str], list[float], list[bool]]:
    """Each batch runs the prompt once; later answer slots only feed the tokens after it (the KV cache is kept)."""
    import torch

    tok, model, max_len = judge.tok, judge.model, int(getattr(judge, "max_length", 1024))
    device = getattr(judge, "device", "cpu")
    pad = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
    bs = int(getattr(judge, "batch_size", 4))
    plan = [_step_tokens(tok, s) for s in steps]
    # Tokens after the first slot: the chosen option, then the next prefix (same length for every row).
    tails = [tok.encode(prefix, add_special_tokens=False) for prefix, _, _ in plan[1:]]
    room = max_len - sum(len(t) + 1 for t in tails)
    seqs, truncated = [], []
    for m in prompts:
        ids = tok.encode(_chat_text(tok, m) + plan[0][0], add_special_tokens=False)
        truncated.append(len(ids) > room)
        if len(ids) > room:  # keep the instructions (head) and the answer slot (tail)
            ids = ids[: room // 2] + ids[len(ids) - (room - room // 2) :]
        seqs.append(ids)
    replies, masses = [plan[0][0]] * len(prompts), [1.0] * len(prompts)
    order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))
    for start in range(0, len(order), bs):
        idx = order[start : start + bs]
        width = max(len(seqs[i]) for i in idx)
        input_ids = torch.tensor([[pad] * (width - len(seqs[i])) + seqs[i] for i in idx], device=device)
        mask = torch.tensor([[0] * (width - len(seqs[i])) + [1] * len(seqs[i]) for i in idx], device=device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)  # padded rows see the positions of unpadded ones
        cache, chosen = None, []
        for k, (_, option_ids, option_texts) in enumerate(plan):
            if k > 0:  # feed the previous choice and this slot's prefix
                input_ids = torch.tensor([[chosen[j]] + tails[k - 1] for j in range(len(idx))], device=device)
                mask = torch.cat([mask, torch.ones_like(input_ids)], dim=1)
                positions = positions[:, -1:] + torch.arange(1, input_ids.shape[1] + 1, device=device)
            with torch.inference_mode():
                out = model(
                    input_ids=input_ids,
                    attention_mask=mask,
                    position_ids=positions,
                    past_key_values=cache,
                    use_cache=k < len(plan) - 1,
                    logits_to_keep=1,
                )
            cache = out.past_key_values
            probs = torch.softmax(out.logits[:, -1, :].float(), dim=-1)[:, option_ids].tolist()
            chosen = []
            for i, p in zip(idx, probs, strict=True):
                groups: dict[str, float] = {}  # "Yes" and "yes" are one answer to the official parser
                for text, q in zip(option_texts, p, strict=True):
                    groups[text.strip().lower()] = groups.get(text.strip().lower(), 0.0) + q
                best = max(groups, key=lambda g: groups[g])
                pick = max((j for j, t in enumerate(option_texts) if t.strip().lower() == best), key=lambda j: p[j])
                replies[i] += option_texts[pick] + (plan[k + 1][0] if k + 1 < len(plan) else "")
                masses[i] = min(masses[i], sum(p))
                chosen.append(option_ids[pick])
    return replies, masses, truncated


def cached_verdicts(
    judge: Any,
    kind: str,
    prompts: list[Messages],
    parse: Any,
    steps: list[Step],
    cache: Any = None,
    max_tokens: int = 1000,
    min_mass: float = 0.5,
) -> Verdicts:
    """parse(reply text) -> a finite float code or NaN, for each prompt; only what `cache` lacks is asked. A code and
    its mass are cached together; unparsable replies are not cached (a later run asks again). The mass threshold is
    applied on reading, so changing it needs no new judgments."""
    mode = judge_mode(judge)
    n = len(prompts)
    if mode == "unsupported" or not n:
        why = {f"judge {getattr(judge, 'id', '?')} writes no text and has no next-token model": n} if n else {}
        return Verdicts([math.nan] * n, [None] * n, mode, why_unparsable=why)
    extra = {"mode": mode, "steps": [[s.prefix, list(s.options)] for s in steps] if mode == "constrained" else None,
             "max_tokens": max_tokens if mode == "text" else None}  # fmt: skip
    keys = [grade_key(judge, kind, m, extra) for m in prompts]
    found = cache.get_many([k + sfx for k in keys for sfx in ("", "/mass", "/truncated")]) if cache else {}
    todo: dict[str, int] = {}  # one ask per distinct prompt
    for i, k in enumerate(keys):
        if k not in found and k not in todo:
            todo[k] = i
    fresh: dict[str, float] = {}
    if todo:
        asked = [prompts[i] for i in todo.values()]
        if mode == "text":
            texts, masses, cut = _texts(judge, asked, max_tokens), [None] * len(asked), [False] * len(asked)
        else:
            texts, masses, cut = _constrained(judge, asked, steps)
        for k, text, mass, c in zip(todo, texts, masses, cut, strict=True):
            fresh |= {k: float(parse(text)), k + "/mass": -1.0 if mass is None else float(mass), k + "/truncated": c}
        if cache is not None:
            cache.put_many({k: v for k, v in fresh.items() if not math.isnan(fresh[k.split("/")[0]])})
    got = {**found, **fresh}
    codes, out_mass, why = [], [], {}
    for k in keys:
        code, mass = got[k], got[k + "/mass"]
        mass = None if mass < 0 else mass
        if math.isnan(code):
            why["reply not in the official format"] = why.get("reply not in the official format", 0) + 1
        elif mass is not None and mass < min_mass:
            code = math.nan
            why[f"answer-token mass < {min_mass:g}"] = why.get(f"answer-token mass < {min_mass:g}", 0) + 1
        codes.append(code)
        out_mass.append(mass)
    return Verdicts(codes, out_mass, mode, sum(bool(got.get(k + "/truncated")) for k in keys), why)
