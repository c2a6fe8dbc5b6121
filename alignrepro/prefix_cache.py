"""The served teacher's model glue (alignrepro.serve): batched sampling from a local model that reads each shared
prompt prefix once.

SDG prompts are long shared instructions plus examples, then a short varying tail, and reading them dominates CPU
cost. A batch's longest common token prefix is run once (or taken from an LRU of earlier prefixes, cropped to the
shared part and extended), its KV cache is copied into every row, and only the tails (padded between prefix and
tail) and the new tokens are computed. Each row samples from its own generator seeded by (seed, choice, prompt), so a
choice's text does not depend on batching or on the cache.

A request without `seed` samples afresh each time a prompt comes back, as vLLM does: the k-th unseeded sampled draw of
a prompt in this server's life takes draw index k (reproducible: the same requests in the same order give the same
texts). instructlab-sdg sends a knowledge chunk once per seed example and, in prompts that do not read the example
(the MMLU-branch MCQs), expects different samples (it then drops duplicate questions).
"""

from __future__ import annotations

import copy
import hashlib
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

log = logging.getLogger(__name__)


class Cancelled(Exception):
    """The server is shutting down: generation stopped between two tokens."""


@dataclass
class Sampling:
    max_tokens: int
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    top_k: int = 0  # 0 or -1 = off
    repetition_penalty: float = 1.0  # vLLM's: over prompt and output tokens
    min_tokens: int = 0
    seed: int | None = None  # None: a fresh draw per occurrence of a prompt (module docstring); the draw 0 = seed 0
    stop: list[str] = field(default_factory=list)
    regex: str | None = None  # guided decoding: the completion must match it (alignrepro.guided)


@dataclass
class Choice:
    text: str
    finish_reason: str  # "stop" (EOS or a stop string) or "length"
    tokens: int  # completion tokens, EOS included (as vLLM counts them)
    stop_reason: str | None = None  # the stop string that ended it


class RequestError(ValueError):
    """A request the teacher refuses (a bad value, too long for the model): the server answers it with an
    OpenAI-style JSON error whose `param` names the field."""

    def __init__(self, param: str | None, message: str, status: int = 400):
        super().__init__(f"{param}: {message}" if param else message)
        self.param, self.status = param, status


def number(body: dict, name: str, default: Any, lo: float | None = None, hi: float | None = None, integer=False):
    value = body.get(name)
    if value is None:
        return default
    ok = isinstance(value, int) if integer else isinstance(value, int | float) and math.isfinite(value)
    if isinstance(value, bool) or not ok:
        raise RequestError(name, f"expected {'an integer' if integer else 'a number'}, got {value!r}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise RequestError(name, f"{value!r} is out of range [{lo}, {'∞' if hi is None else hi}]")
    return value


# OpenAI/vLLM fields this teacher does not implement: refused unless left at their neutral value.
NEUTRAL = {"stream": (None, False), "echo": (None, False), "logprobs": (None, False), "top_logprobs": (None,)}
NEUTRAL |= {"suffix": (None,), "best_of": (None,), "logit_bias": (None, {}), "tools": (None, [])}
NEUTRAL |= {"frequency_penalty": (None, 0, 0.0), "presence_penalty": (None, 0, 0.0)}
NEUTRAL |= {"response_format": (None, {"type": "text"})}
KNOWN = {"model", "prompt", "messages", "n", "max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k"}
KNOWN |= {"seed", "stop", "user", "repetition_penalty", "min_tokens", "stream_options", "tool_choice"} | set(NEUTRAL)
KNOWN |= {"guided_regex", "structured_outputs", "guided_decoding_backend"}


def guided_regex(body: dict) -> str | None:
    """vLLM's guided decoding by regex: `guided_regex` (vLLM ≤ 0.10) or `structured_outputs: {regex}` (newer)."""
    from alignrepro.guided import check_regex

    if body.get("guided_regex") is not None:
        return check_regex(body["guided_regex"], "guided_regex")
    so = body.get("structured_outputs")
    if so is None:
        return None
    if not isinstance(so, dict) or set(so) != {"regex"}:
        raise RequestError("structured_outputs", 'only {"regex": ...} is supported by this server')
    return check_regex(so["regex"], "structured_outputs.regex")


def sampling_fields(body: dict) -> dict[str, Any]:
    """`n` and the Sampling fields of an OpenAI request (vLLM's names for the extras: top_k, repetition_penalty,
    min_tokens). Unknown fields are ignored with a warning, as vLLM does; no seed: a fresh (counted) draw per prompt."""
    for name, allowed in NEUTRAL.items():
        neutral = any(body[name] == a and type(body[name]) is type(a) for a in allowed) if name in body else True
        if not neutral and not (name == "best_of" and body[name] == body.get("n", 1)):
            raise RequestError(name, f"{body[name]!r} is not supported by this server")
    if unknown := sorted(set(body) - KNOWN):
        log.warning("fields ignored: %s", ", ".join(unknown))
    stop = body.get("stop")
    stop = [stop] if isinstance(stop, str) else stop
    if stop is not None and not (isinstance(stop, list) and all(isinstance(x, str) and x for x in stop)):
        raise RequestError("stop", "expected a string or a list of non-empty strings")
    return {
        "n": number(body, "n", 1, 1, 128, integer=True),
        "temperature": float(number(body, "temperature", 1.0, 0.0)),
        "top_p": float(number(body, "top_p", 1.0, 1e-9, 1.0)),
        "top_k": max(number(body, "top_k", 0, -1, integer=True), 0),
        "repetition_penalty": float(number(body, "repetition_penalty", 1.0, 1e-9)),
        "min_tokens": number(body, "min_tokens", 0, 0, integer=True),
        "seed": number(body, "seed", None, integer=True),
        "stop": stop or [],
        "regex": guided_regex(body),
    }


def common_prefix_len(a: tuple[int, ...] | list[int], b: tuple[int, ...] | list[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


class PrefixCache:
    """An LRU of batch-1 KV caches keyed by their token prefix. `get(tokens)` returns a cache of exactly `tokens`,
    built from the stored entry sharing the most leading tokens (cropped to them) plus a forward pass over the rest."""

    def __init__(self, model: Any, max_entries: int = 4):
        self.model, self.max_entries = model, max_entries
        self.entries: OrderedDict[tuple[int, ...], Any] = OrderedDict()
        self.stats = {"prefix_lookups": 0, "prefix_hits": 0, "prefix_tokens_from_lru": 0, "prefix_tokens_computed": 0}

    def get(self, tokens: list[int]) -> tuple[Any, int]:
        """(cache, tokens taken from the LRU). The cache belongs to the LRU: copy it before use."""
        from transformers import DynamicCache

        key = tuple(tokens)
        best, shared = None, 0
        for k in self.entries:
            m = common_prefix_len(k, key)
            if m > shared:
                best, shared = k, m
        self.stats["prefix_lookups"] += 1
        if shared:
            self.stats["prefix_hits"] += 1
            self.stats["prefix_tokens_from_lru"] += shared
        if best is not None and shared == len(key) == len(best):
            self.entries.move_to_end(key)
            return self.entries[key], shared
        if best is None:
            cache = DynamicCache(config=self.model.config)
        else:
            cache = copy.deepcopy(self.entries[best])
            if len(best) > shared:
                cache.crop(shared - len(best))
        if shared < len(key):
            ids = torch.tensor([key[shared:]], device=self.model.device)
            pos = torch.arange(shared, len(key), device=self.model.device)[None]
            self.model(input_ids=ids, position_ids=pos, past_key_values=cache, use_cache=True, logits_to_keep=1)
            self.stats["prefix_tokens_computed"] += len(key) - shared
        self.entries[key] = cache
        while len(self.entries) > self.max_entries:
            self.entries.popitem(last=False)
        return cache, shared


def row_seed(seed: int, choice: int, tokens: list[int], draw: int = 0) -> int:
    """Same prompt, seed, choice index and draw → same sample, wherever the row sits (as vLLM's per-request seed)."""
    h = hashlib.sha256(f"{seed}:{choice}:{','.join(map(str, tokens))}{f':{draw}' if draw else ''}".encode()).digest()
    return int.from_bytes(h[:8], "little") & ((1 << 63) - 1)


class Engine:
    """Completions for token prompts: `complete(prompts, n, sampling)` returns choice i*n+j for prompt i, choice j."""

    def __init__(self, model: Any, tokenizer: Any, max_batch: int = 8, prefix_entries: int = 4, min_prefix: int = 8):
        self.model, self.tok, self.max_batch, self.min_prefix = model.eval(), tokenizer, max_batch, min_prefix
        self.prefix = PrefixCache(model, prefix_entries) if prefix_entries > 0 else None
        eos = model.generation_config.eos_token_id
        self.eos = {tokenizer.eos_token_id} | set(eos if isinstance(eos, list) else [] if eos is None else [eos])
        # HFBackend's convention: never emit BOS/UNK-like specials mid-answer.
        self.suppress = sorted(set(tokenizer.all_special_ids) - self.eos)
        self.vocab = model.get_output_embeddings().weight.shape[0]
        self.max_len = getattr(model.config, "max_position_embeddings", None) or tokenizer.model_max_length
        self.stats = {"rows": 0, "prompt_tokens_read": 0, "prefix_tokens_reused": 0, "completion_tokens": 0}
        self._guide_data = None  # lm-format-enforcer's tokenizer data, built on the first guided request
        self._guides: dict[str, Any] = {}  # regex -> RegexGuide: its allowed-token caches outlive a request
        self._draws: dict[bytes, int] = {}  # prompt digest -> unseeded sampled draws so far (module docstring)
        if self.prefix is not None and not self._plain_cache():
            log.warning("prefix cache off: this model's cache layers are not all full-attention DynamicLayers")
            self.prefix = None

    def _plain_cache(self) -> bool:
        from transformers import DynamicCache
        from transformers.cache_utils import DynamicLayer

        cache = DynamicCache(config=self.model.config)
        return all(type(layer) is DynamicLayer for layer in cache.layers)

    def all_stats(self) -> dict[str, int]:
        return {**self.stats, **(self.prefix.stats if self.prefix else {})}

    def run(self, prompts: list[list[int]], fields: dict, max_tokens: int | None, where: str, should_stop):
        """One request: (choices, OpenAI usage). max_tokens None = up to the context length (vLLM's chat default)."""
        longest = max(map(len, prompts))
        if min(map(len, prompts)) == 0:
            raise RequestError(where, "a prompt encodes to no tokens")
        budget = self.max_len - longest
        tokens = budget if max_tokens is None else max_tokens
        if budget < 1 or tokens > budget:
            raise RequestError(
                "max_tokens" if budget >= 1 else where,
                f"this model's maximum context length is {self.max_len} tokens; the request asks for "
                f"{longest + tokens} ({longest} in the prompt, {tokens} in the completion)",
            )
        n, sampling = fields["n"], Sampling(tokens, **{k: v for k, v in fields.items() if k != "n"})
        if sampling.min_tokens > tokens:
            raise RequestError("min_tokens", f"{sampling.min_tokens} is more than max_tokens ({tokens})")
        before, start = self.all_stats().get("prefix_tokens_from_lru", 0), time.perf_counter()
        choices = self.complete(prompts, n, sampling, should_stop)
        cached = self.all_stats().get("prefix_tokens_from_lru", 0) - before
        n_new, n_prompt, secs = sum(c.tokens for c in choices), sum(map(len, prompts)), time.perf_counter() - start
        log.info(f"{len(prompts)} prompt(s) x n={n}: {n_new} new tokens in {secs:.1f}s, {cached} from the prefix LRU")
        usage = {"prompt_tokens": n_prompt, "completion_tokens": n_new, "total_tokens": n_prompt + n_new}
        return choices, {**usage, "prompt_tokens_details": {"cached_tokens": cached}}

    @torch.inference_mode()
    def complete(
        self, prompts: list[list[int]], n: int, sampling: Sampling, should_stop: Callable[[], bool] = lambda: False
    ) -> list[Choice]:
        # Greedy choices of one prompt are identical: compute one, copy it n times. A repeated prompt with the same
        # draw has the same row seeds (row_seed hashes the prompt), so its choices are the same too: computed once
        # (instructlab-sdg sends each knowledge chunk once per seed example, e.g. 5 identical spellcheck prompts).
        per_prompt = 1 if sampling.temperature == 0 else n
        fresh = sampling.seed is None and sampling.temperature > 0
        keys = [(tuple(p), self._draw(p) if fresh else 0) for p in prompts]
        first: dict[tuple, int] = {}
        for i, key in enumerate(keys):
            first.setdefault(key, i)
        rows = [(i, j) for i in sorted(set(first.values())) for j in range(per_prompt)]
        done: dict[tuple[int, int], Choice] = {}
        for start in range(0, len(rows), self.max_batch):
            chunk = rows[start : start + self.max_batch]
            choices = self._generate(
                [prompts[i] for i, _ in chunk],
                [row_seed(sampling.seed or 0, j, prompts[i], keys[i][1]) for i, j in chunk],
                sampling,
                should_stop,
            )
            done.update(zip(chunk, choices, strict=True))
        out = []
        for key in keys:
            out += [done[first[key], j if per_prompt > 1 else 0] for j in range(n)]
        return out

    def _draw(self, prompt: list[int]) -> int:
        digest = hashlib.sha256(",".join(map(str, prompt)).encode()).digest()
        k = self._draws.get(digest, 0)
        self._draws[digest] = k + 1
        return k

    def _prefill(self, rows: list[list[int]]):
        """Forward over the prompts: (output, cache, attention mask, last positions). The shared prefix comes from
        the prefix cache; each tail is left-padded after it, so padding sits between prefix and tail."""
        from transformers import DynamicCache

        dev, b = self.model.device, len(rows)
        p = min(common_prefix_len(rows[0], r) for r in rows)
        p = min(p, min(map(len, rows)) - 1)  # every row keeps ≥ 1 token to compute its next-token logits
        if self.prefix is not None and p >= self.min_prefix:
            stored, from_lru = self.prefix.get(rows[0][:p])
            cache = copy.deepcopy(stored)
            if b > 1:
                cache.batch_repeat_interleave(b)
            # Prompt tokens not recomputed: each row's prefix, less the part computed once just now.
            self.stats["prefix_tokens_reused"] += b * p - (p - from_lru)
        else:
            p, cache = 0, DynamicCache(config=self.model.config)
        tails = [r[p:] for r in rows]
        width = max(map(len, tails))
        ids = torch.full((b, width), self.tok.pad_token_id, dtype=torch.long)
        tail_mask = torch.zeros((b, width), dtype=torch.long)
        for k, t in enumerate(tails):
            ids[k, width - len(t) :] = torch.tensor(t)
            tail_mask[k, width - len(t) :] = 1
        mask = torch.cat([torch.ones((b, p), dtype=torch.long), tail_mask], 1).to(dev)
        pos = (p + tail_mask.cumsum(1) - 1).clamp(min=p).to(dev)
        out = self.model(
            input_ids=ids.to(dev),
            attention_mask=mask,
            position_ids=pos,
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        self.stats["rows"] += b
        self.stats["prompt_tokens_read"] += sum(map(len, rows))
        return out, cache, mask, pos[:, -1]

    @torch.inference_mode()
    def next_token_logits(self, rows: list[list[int]]) -> torch.Tensor:
        """The first step's logits, exactly as generation computes them (for tests of the prefix cache)."""
        return self._prefill(rows)[0].logits[:, -1].float()

    def _generate(self, rows, seeds, s: Sampling, should_stop) -> list[Choice]:
        dev, b = self.model.device, len(rows)
        out, cache, mask, last = self._prefill(rows)
        gens = [torch.Generator(device=dev).manual_seed(x) for x in seeds]
        seen = None
        if s.repetition_penalty != 1.0:
            seen = torch.zeros((b, self.vocab), dtype=torch.bool, device=dev)
            for k, r in enumerate(rows):
                seen[k, torch.tensor(r, device=dev)] = True
        window = max((len(x) for x in s.stop), default=0) + 4  # tokens enough to hold a stop string
        guide = self._guide(s.regex) if s.regex else None
        active, new = list(range(b)), [[] for _ in range(b)]
        result: list[Choice | None] = [None] * b
        for step in range(s.max_tokens):
            if should_stop():
                raise Cancelled
            logits = out.logits[:, -1].float()
            if guide is not None:  # before penalties and sampling, as vLLM applies its guided-decoding processor
                logits = logits + guide.mask([rows[a] for a in active], [new[a] for a in active], s.max_tokens, dev)
            logits = self._process(logits, s, step, seen)
            if s.temperature == 0:
                nxt = logits.argmax(-1)
            else:
                probs = torch.softmax(logits, -1)
                nxt = torch.cat([torch.multinomial(probs[k], 1, generator=gens[a]) for k, a in enumerate(active)])
            keep = []
            for k, a in enumerate(active):
                t = int(nxt[k])
                if t in self.eos:
                    result[a] = self._choice(new[a], "stop", 1)
                    continue
                new[a].append(t)
                hit = self._stop_hit(new[a][-window:], s.stop) if s.stop else None
                if hit is not None:
                    result[a] = self._choice(new[a], "stop", 0, s.stop)
                elif len(new[a]) >= s.max_tokens:
                    result[a] = self._choice(new[a], "length", 0)
                else:
                    keep.append(k)
            if not keep:
                break
            if len(keep) < len(active):  # finished rows leave the batch
                idx = torch.tensor(keep, device=dev)
                cache.batch_select_indices(idx)
                mask, last, nxt = mask[idx], last[idx], nxt[idx]
                seen = seen[idx] if seen is not None else None
                active = [active[k] for k in keep]
            if seen is not None:
                seen[torch.arange(len(active), device=dev), nxt] = True
            mask = torch.cat([mask, torch.ones((len(active), 1), dtype=mask.dtype, device=dev)], 1)
            last = last + 1
            out = self.model(
                input_ids=nxt[:, None], attention_mask=mask, position_ids=last[:, None], past_key_values=cache
            )
        choices = [c for c in result if c is not None]
        assert len(choices) == b, "every row ends with EOS, a stop string or max_tokens"
        self.stats["completion_tokens"] += sum(c.tokens for c in choices)
        return choices

    def _guide(self, regex: str):
        from alignrepro.guided import RegexGuide, tokenizer_data

        if self._guide_data is None:
            self._guide_data = tokenizer_data(self.tok, self.eos, self.vocab)
        if regex not in self._guides:
            if len(self._guides) >= 64:
                self._guides.pop(next(iter(self._guides)))
            self._guides[regex] = RegexGuide(self._guide_data, regex, self.vocab)
        guide = self._guides[regex]
        guide.new_request()
        return guide

    def _process(self, logits: torch.Tensor, s: Sampling, step: int, seen: torch.Tensor | None) -> torch.Tensor:
        if seen is not None:
            pen = torch.where(logits > 0, logits / s.repetition_penalty, logits * s.repetition_penalty)
            logits = torch.where(seen, pen, logits)
        if self.suppress:
            logits[:, self.suppress] = -float("inf")
        if step < s.min_tokens:
            logits[:, sorted(self.eos)] = -float("inf")
        if s.temperature == 0:
            return logits
        logits = logits / s.temperature
        if s.top_k > 0 and s.top_k < logits.shape[-1]:
            kth = torch.topk(logits, s.top_k, dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, -float("inf"))
        if s.top_p < 1.0:
            sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
            probs = torch.softmax(sorted_logits, -1)
            drop = probs.cumsum(-1) - probs > s.top_p  # keeps the smallest set whose mass reaches top_p
            logits = logits.scatter(-1, order, sorted_logits.masked_fill(drop, -float("inf")))
        return logits

    def _stop_hit(self, tail: list[int], stops: list[str]) -> str | None:
        text = self.tok.decode(tail, skip_special_tokens=True)
        return next((x for x in stops if x in text), None)

    def _choice(self, tokens: list[int], reason: str, extra: int, stops: list[str] | None = None) -> Choice:
        text, hit = self.tok.decode(tokens, skip_special_tokens=True), None
        if stops:  # the text ends before the first stop string (vLLM leaves it out)
            cut = min(((i, x) for x in stops if (i := text.find(x)) >= 0), default=None)
            if cut is not None:
                text, hit = text[: cut[0]], cut[1]
        return Choice(text=text, finish_reason=reason, tokens=len(tokens) + extra, stop_reason=hit)
