"""Regex-guided decoding for the served teacher: vLLM's `guided_regex` request field, through lm-format-enforcer
(one of vLLM's own guided-decoding backends).

A weak teacher (SmolLM2 at the tiny tier) does not keep the tag format instructlab-sdg's parsers read, so every
pipeline stage came back empty; constrained to a regex of that format it must. lm-format-enforcer's transformers
integration does not import under transformers 5 (`transformers.tokenization_utils` is gone), so the tokenizer data
it needs is built here, as its integration builds it.

One addition to vLLM's semantics: a guided completion finishes within max_tokens. Once a row's remaining budget is
down to the characters still needed to reach an accepting state, only tokens that bring it closer are allowed (the
model still chooses among them: a judge's score digit stays its own). vLLM would cut such a row off unparsed; a
rambling small teacher otherwise never reaches the verdict its rationale precedes.
"""

from __future__ import annotations

import logging
from functools import cache
from typing import Any

import torch

from alignrepro.prefix_cache import RequestError

log = logging.getLogger(__name__)


@cache
def _parse(regex: str):
    import interegular

    return interegular.parse_pattern(regex).to_fsm()


def check_regex(regex: Any, param: str) -> str:
    """A request's regex, compiled once here so that a bad one is a 400 naming the field, not a failed generation."""
    if not isinstance(regex, str) or not regex:
        raise RequestError(param, f"expected a non-empty regular expression, got {regex!r}")
    try:
        _parse(regex)
    except Exception as e:  # interegular raises its own parse errors
        raise RequestError(param, f"not a regular expression this server can follow: {e}") from e
    return regex


def tokenizer_data(tok: Any, eos: set[int], vocab: int):
    """lm-format-enforcer's per-tokenizer data: (id, text as it reads mid-word, starts a word) for every regular
    token. A token's text is read after a "0" token, so a leading space (SentencePiece's ▁) is kept."""
    from lmformatenforcer import TokenEnforcerTokenizerData

    special = set(tok.all_special_ids)
    zero = tok.encode("0", add_special_tokens=False)[-1]
    ids = [i for i in range(min(len(tok), vocab)) if i not in special]
    after_zero = tok.batch_decode([[zero, i] for i in ids])
    alone = tok.batch_decode([[i] for i in ids])
    regular = [(i, a[1:], len(a) - 1 > len(p)) for i, a, p in zip(ids, after_zero, alone, strict=True)]

    def decode(tokens: list[int]) -> str:
        return tok.decode(tokens).rstrip("\ufffd")  # an incomplete UTF-8 tail is not text yet

    return TokenEnforcerTokenizerData(regular, decode, sorted(eos), False, vocab)


@cache
def _distances(regex: str) -> dict[int, int]:
    """FSM state -> the fewest characters that reach an accepting state (unreachable states are absent)."""
    fsm = _parse(regex)
    back: dict[int, set[int]] = {}
    for state, moves in fsm.map.items():
        for nxt in moves.values():
            back.setdefault(nxt, set()).add(state)
    dist, frontier = dict.fromkeys(fsm.finals, 0), list(fsm.finals)
    while frontier:
        state = frontier.pop(0)
        for prev in back.get(state, ()):
            if prev not in dist:
                dist[prev] = dist[state] + 1
                frontier.append(prev)
    return dist


class RegexGuide:
    """The tokens each row may take next so that its completion can still match `regex` (EOS once it does), and
    can still match it within the row's max_tokens."""

    def __init__(self, data: Any, regex: str, vocab: int):
        from lmformatenforcer import RegexParser, TokenEnforcer

        self.enforcer = TokenEnforcer(data, RegexParser(regex))
        self.fsm, self.dist = _parse(regex), _distances(regex)
        self.texts = {i: text for i, text, _ in data.regular_tokens}
        self.decode, self.eos = data.decoder, data.eos_token_id
        self.vocab, self._masks, self._closing = vocab, {}, {}

    def new_request(self) -> None:
        """Forget the sequences of earlier requests; keep what depends on parser states only (the expensive part:
        a free-text state's allowed tokens take a walk over the whole vocabulary, ~1 s for SmolLM2's)."""
        self.enforcer.prefix_states.clear()

    def mask(self, prompts: list[list[int]], news: list[list[int]], max_tokens: int, device) -> torch.Tensor:
        """(rows, vocab) additive mask: 0 where allowed, -inf elsewhere, for rows of prompt + new tokens."""
        out = torch.empty((len(prompts), self.vocab), device=device)
        for k, (prompt, new) in enumerate(zip(prompts, news, strict=True)):
            allowed = self.enforcer.get_allowed_tokens(prompt + new)
            state = self._state(self.decode(new)) if new else self.fsm.initial
            if state is not None and max_tokens - len(new) <= self.dist.get(state, 0) + 1:
                out[k] = self._closing_mask(state, allowed.allowed_tokens, device)
                continue
            # The enforcer returns the same TokenList object for a repeated parser state: build its mask once.
            key = id(allowed)
            if key not in self._masks:
                self._masks[key] = (allowed, self._to_mask(allowed.allowed_tokens, device))  # keeps its id its own
            out[k] = self._masks[key][1]
        return out

    def _to_mask(self, ids: list[int], device) -> torch.Tensor:
        m = torch.full((self.vocab,), -float("inf"), device=device)
        m[torch.tensor(ids, dtype=torch.long, device=device)] = 0.0
        return m

    def _walk(self, state: int | None, text: str) -> int | None:
        for ch in text:
            if state is None:
                return None
            state = self.fsm.map.get(state, {}).get(self.fsm.alphabet[ch])
        return state

    def _state(self, text: str) -> int | None:
        return self._walk(self.fsm.initial, text)

    def _closing_mask(self, state: int, allowed: list[int], device) -> torch.Tensor:
        """Only the allowed tokens that bring `state` closer to acceptance (EOS once it is accepted)."""
        if state not in self._closing:
            here = self.dist[state]
            eos = self.eos if isinstance(self.eos, list) else [self.eos]
            if here == 0:
                ids = [t for t in allowed if t in eos]
            else:
                closer = (t for t in allowed if t in self.texts)
                ids = [t for t in closer if self.dist.get(self._walk(state, self.texts[t]), here) < here]
            self._closing[state] = self._to_mask(ids or allowed, device)
        return self._closing[state]
