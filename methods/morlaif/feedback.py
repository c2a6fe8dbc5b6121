"""MORLAIF step 2: AI feedback per principle (paper note §1.2, §7.4, §7.5, §7.13, §7.17).

For every pair the feedback model reads the principle's prompt (principles.py) with the two responses as options
A and B, and the label is log p("A") - log p("B") at the first answer position:
- order "both" (default, note §7.4): scored with response_a shown first AND with response_b shown first; the swapped
  order is mapped back (delta_ba = log p(label of response_a) - log p(label of response_b)) and the two deltas are
  averaged, so a constant position bias cancels. Order "fixed" (fidelity option): response_a first only, as the
  official code always showed the HH-chosen response as A.
- margin > 0 means response_a is preferred; label = 1 if margin > 0 else 0 (an exact tie goes to B, as the official
  code does); orders_agree says whether the two orders, each read with the official rule, pick the same response.

Backends (`--feedback-json`; the workflow's is the evals.judges entry `morlaif.feedback.model` names + its options):
  {"backend": "local", "model": "<registry name>" | "model_dir": "<folder>", "batch_size": 4, "max_length": 1024,
   "dtype": "float32"}  a causal LM through alignrepro.models; the prompt is the user turn of its chat template and the
   log-probs are the next-token log-softmax of the label tokens (the tokens the assistant turn starts with).
  {"backend": "openai", "model": "gpt-3.5-turbo-0125", "base_url": null, "api_key_env": "OPENAI_API_KEY",
   "max_requests": N, "temperature": 1.0}  Chat Completions, max_tokens=1, logprobs, top_logprobs=5; a label token
   missing from the top 5 gets -10 (the official rule). The key is read from the environment only.
  {"backend": "heuristic"}  ci tier: deterministic lexical scores per principle as pseudo log-probs (meaningless).
Common keys: "order": "both" | "fixed"; "cai_template": "standard" | "clean" (note §7.13); "chunk_size": 64 (prompts
scored, then cached, at a time); "layout": "standard" (the paper's structure: the principle in the task statement and
again after the options) | "principle_last" (a speed option for local models: the principle only after the options,
so with several --principle in one run a pair's conversation and options are encoded once for all principles).

Every (prompt text, model, settings) score -- the rendered prompt carries the pair, the principle phrase and the
order -- is cached in the project's SQLite judgment cache, so a killed run resumes and parallel principle jobs share
one file safely.

Writes feedback/<principle>.jsonl (one row per pair) and feedback/<principle>.json (provenance + summary): with
`--principle P --out feedback/P.jsonl`, or for several principles in one process `--principle P1 P2 ... --out-dir
feedback`.
`python -m alignrepro.methods.morlaif.feedback --help`
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from tqdm.auto import tqdm

from alignrepro.io import atomic_write_json, read_jsonl, sha256_file, stable_hash, write_jsonl
from alignrepro.judges.cache import JudgmentCache
from alignrepro.methods.morlaif.principles import (
    ALL_PRINCIPLES,
    FEEDBACK_TEMPLATE_LAST,
    FEEDBACK_TEMPLATE_LAST_CLEAN,
    FEEDBACK_TEMPLATE_VERSION,
    LABELS,
    feedback_prompt,
    phrase_for,
    render_conversation,
    strip_human_fragments,
    template_for,
    template_hash,
)
from alignrepro.methods.morlaif.settings import FeedbackSettings
from alignrepro.provenance import provenance

log = logging.getLogger("morlaif.feedback")
ORDERS = {"both": ("ab", "ba"), "fixed": ("ab",)}
MISSING_LOGPROB = -10.0  # the official value for a label token absent from the top log-probs
FLOOR = -1e4  # keeps -inf out of the cache and the JSON files
PRINCIPLE_LAST = (FEEDBACK_TEMPLATE_LAST, FEEDBACK_TEMPLATE_LAST_CLEAN)


@dataclass
class Query:
    """One feedback request: `first` is shown as option A, `second` as option B."""

    principle: str
    phrase: str
    template: str
    conversation: str
    first: str
    second: str
    messages: list[dict[str, str]]

    @property
    def text(self) -> str:
        return feedback_prompt(self.template, self.phrase, self.conversation, self.first, self.second, strip=False)


class FeedbackBackend(Protocol):
    id: str
    heuristic: bool
    settings: dict[str, Any]

    def logprobs(self, queries: list[Query]) -> list[tuple[float, float]]: ...  # (log p("A"), log p("B"))

    def describe(self) -> dict[str, Any]: ...


# ----------------------------------------------------------------------------------------------- label arithmetic
def decide(delta: float, order: str) -> int:
    """1 if this single order prefers response_a. The official rule: the higher log-prob wins, a tie goes to the
    option shown as B -- which is response_b in order "ab" and response_a in order "ba"."""
    return int(delta > 0) if order == "ab" else int(delta >= 0)


def combine(ab: tuple[float, float], ba: tuple[float, float] | None) -> dict[str, Any]:
    """Feedback fields from (log p("A"), log p("B")) read with response_a first (`ab`) and, if scored, with
    response_b first (`ba`, mapped back so every delta is log p(response_a's label) - log p(response_b's label))."""
    logp_a, logp_b = [ab[0]], [ab[1]]
    delta_ab = ab[0] - ab[1]
    delta_ba = None
    if ba is not None:
        logp_a.append(ba[1])  # response_a was option B
        logp_b.append(ba[0])
        delta_ba = ba[1] - ba[0]
    deltas = [delta_ab] + ([delta_ba] if delta_ba is not None else [])
    margin = sum(deltas) / len(deltas)
    return {
        "logp_a": logp_a + ([None] if ba is None else []),
        "logp_b": logp_b + ([None] if ba is None else []),
        "delta_ab": delta_ab,
        "delta_ba": delta_ba,
        "margin": margin,
        "label": int(margin > 0),  # an exact tie goes to B
        "orders_agree": None if delta_ba is None else decide(delta_ab, "ab") == decide(delta_ba, "ba"),
    }


def _floor(x: float) -> float:
    return max(FLOOR, float(x)) if not math.isnan(x) else x


# ---------------------------------------------------------------------------------------------------- backends
class LocalFeedback:
    """A causal LM read at the first answer position of its chat template's assistant turn."""

    heuristic = False

    def __init__(
        self,
        model_dir: str | Path,
        dtype: str = "float32",
        batch_size: int = 4,
        max_length: int = 1024,
        device: str | None = None,
    ) -> None:
        import torch

        from alignrepro.judges.local import LocalLogprobJudge
        from alignrepro.models import choose_dtype, load_model, load_tokenizer, model_identity

        self.model_dir = Path(model_dir)
        self.tok = load_tokenizer(self.model_dir, padding_side="left")
        self.dtype = choose_dtype(dtype) if isinstance(dtype, str) else dtype
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        model = load_model(self.model_dir, dtype=self.dtype).to(device).eval()
        self.identity = model_identity(self.model_dir)
        self.id = f"local:{self.identity['name']}:{stable_hash(self.identity, 12)}"
        self.max_length = int(max_length)
        self.label_ids, self.label_tokens = self._label_ids()
        self.settings = {
            "max_length": self.max_length,
            "dtype": str(self.dtype).removeprefix("torch."),
            "label_tokens": self.label_tokens,
        }
        self.n_truncated = 0
        # The project's batched next-token scorer (shared-prefix KV cache, length-sorted left-padded batches,
        # logits_to_keep=1), used on our model rather than re-implemented.
        runner = LocalLogprobJudge.__new__(LocalLogprobJudge)
        runner.model, runner.tok, runner.device, runner.id = model, self.tok, device, self.id
        runner.batch_size = int(batch_size)
        runner.pad_id = self.tok.pad_token_id if self.tok.pad_token_id is not None else self.tok.eos_token_id or 0
        self.runner = runner

    def render(self, user_text: str) -> str:
        messages = [{"role": "user", "content": user_text}]
        if not self.tok.chat_template:  # a plain LM continues the text: the label follows as " A"
            return user_text
        return self.tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def _label_ids(self) -> tuple[list[int], list[str]]:
        """The token each label starts the assistant's answer with: the prompt is tokenized with the label appended
        ("A" after a newline-ended generation prompt, " A" after anything else) and the first new token is taken."""
        prompt = self.render("Which option? Answer A or B.")
        base = self.tok.encode(prompt, add_special_tokens=False)
        ids, shown = [], []
        for label in LABELS:
            joined = prompt + ("" if prompt[-1:].isspace() else " ") + label
            full = self.tok.encode(joined, add_special_tokens=False)
            if full[: len(base)] != base or len(full) == len(base):
                raise ValueError(f"{self.id}: label {label!r} does not tokenize as a continuation of the prompt")
            new = full[len(base) :]
            if len(new) != 1:
                log.warning(
                    "%s: label %r continues the prompt as %d tokens; scoring the first", self.id, label, len(new)
                )
            ids.append(new[0])
            shown.append(self.tok.convert_ids_to_tokens(new[0]))
        if ids[0] == ids[1]:
            raise ValueError(f"{self.id}: labels {LABELS} map to the same token {ids[0]}")
        return ids, shown

    def _n(self, text: str) -> int:
        return len(self.tok.encode(text, add_special_tokens=False))

    def fit(self, q: Query) -> Query:
        """The query within max_length: the conversation keeps its end, the two responses are shortened to equal
        budgets (a short one keeps all of its tokens), never the instructions. Both orders get the same texts."""
        n = self._n(self.render(q.text))
        if n <= self.max_length:
            return q
        self.n_truncated += 1
        ids = {k: self.tok.encode(getattr(q, k), add_special_tokens=False) for k in ("conversation", "first", "second")}
        overhead = n - sum(len(v) for v in ids.values())
        avail = self.max_length - overhead - 16
        for _ in range(4):
            if avail <= 8:
                break
            conv = min(len(ids["conversation"]), max(avail - len(ids["first"]) - len(ids["second"]), avail // 3))
            rest = avail - conv
            b1 = min(len(ids["first"]), rest // 2)  # water-filling, symmetric in the two responses
            b2 = min(len(ids["second"]), rest - b1)
            b1 = min(len(ids["first"]), rest - b2)
            conv_text = self.tok.decode(ids["conversation"][len(ids["conversation"]) - conv :]) if conv else ""
            if conv < len(ids["conversation"]):
                conv_text = "... " + conv_text
            short = Query(
                q.principle,
                q.phrase,
                q.template,
                conv_text,
                self.tok.decode(ids["first"][:b1]),
                self.tok.decode(ids["second"][:b2]),
                q.messages,
            )
            excess = self._n(self.render(short.text)) - self.max_length
            if excess <= 0:
                return short
            avail -= excess + 8
        raise ValueError(f"{self.id}: the feedback instructions alone exceed max_length={self.max_length}")

    def logprobs(self, queries: list[Query]) -> list[tuple[float, float]]:
        """Scored in groups whose prompts share a long token prefix, encoded once per group (the runner's shared
        KV cache): with the principle-last layout one group per pair and order, else one group per call (the
        instructions up to the principle)."""
        import torch

        groups: dict[tuple[str, ...] | None, list[int]] = {}
        for i, q in enumerate(queries):
            key = (q.conversation, q.first, q.second) if q.template in PRINCIPLE_LAST else None
            groups.setdefault(key, []).append(i)
        out: list[tuple[float, float]] = [(math.nan, math.nan)] * len(queries)
        with torch.inference_mode():
            for members in groups.values():
                seqs = [self.tok.encode(self.render(queries[i].text), add_special_tokens=False) for i in members]
                for idx, batch in self.runner._batches(seqs):
                    logits = self.runner._forward(batch).logits[:, -1, :].float()
                    lp = torch.log_softmax(logits, dim=-1)[:, self.label_ids].tolist()
                    for i, (a, b) in zip(idx, lp, strict=True):
                        out[members[i]] = (_floor(a), _floor(b))
        return out

    def describe(self) -> dict[str, Any]:
        return {"id": self.id, "identity": self.identity, "settings": self.settings, "n_truncated": self.n_truncated}


class OpenAIFeedback:
    """Chat Completions with max_tokens=1 and the top-5 log-probs of the first token (the official request)."""

    heuristic = False

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        max_requests: int | None = None,
        temperature: float = 1.0,
        top_logprobs: int = 5,
        timeout: float = 60.0,
        max_retries: int = 6,
        price_per_1k_input: float = 0.0,
        price_per_1k_output: float = 0.0,
    ) -> None:
        from alignrepro.judges.openai_api import OFFICIAL_ENDPOINT, OpenAIChatClient

        self.client = OpenAIChatClient(
            base_url,
            model,
            api_key_env=api_key_env,
            max_retries=max_retries,
            max_requests=max_requests,
            timeout=timeout,
            price_per_1k_input=price_per_1k_input,
            price_per_1k_output=price_per_1k_output,
        )
        self.id = f"openai:{model}"
        self.temperature, self.top_logprobs = float(temperature), int(top_logprobs)
        self.settings = {
            "max_tokens": 1,
            "temperature": self.temperature,  # the official requests left it at the API default (1.0)
            "top_logprobs": self.top_logprobs,
            "missing_logprob": MISSING_LOGPROB,
            "label_tokens": list(LABELS),
        }
        if self.client.endpoint != OFFICIAL_ENDPOINT:  # another provider's model of the same name is asked again
            self.settings["endpoint"] = self.client.endpoint

    def logprobs(self, queries: list[Query]) -> list[tuple[float, float]]:
        out = []
        for q in tqdm(queries, desc=f"feedback {self.id}", unit="req", leave=False):
            res = self.client.chat(
                [{"role": "user", "content": q.text}],
                max_tokens=1,
                temperature=self.temperature,
                logprobs=True,
                top_logprobs=self.top_logprobs,
            )
            top = (res["top_logprobs"] or [{}])[0]
            out.append(tuple(float(top.get(label, MISSING_LOGPROB)) for label in LABELS))
        return out

    def describe(self) -> dict[str, Any]:
        return {"id": self.id, "settings": self.settings, "usage": self.client.describe()}


_WORD = re.compile(r"[a-z']+")
REFUSAL = ("sorry", "cannot", "can't", "won't", "unable", "not able", "as an ai", "i apologize", "not appropriate")
HARMFUL = ("steal", "weapon", "kill", "attack", "hack", "drug", "poison", "without drawing attention", "trace",
           "cover your tracks", "not caught", "bomb", "illegal")  # fmt: skip
TOXIC = ("stupid", "idiot", "hate", "dumb", "ugly", "shut up", "loser", "kill", "disgusting", "moron")
SYCOPHANT = ("you're right", "you are right", "great question", "absolutely", "of course", "good point", "exactly")
EMPATHY = ("understand", "feel", "sorry to hear", "hope", "support", "care", "difficult")
ABSOLUTE = ("always", "never", "everyone", "nobody", "all of them", "every single", "obviously")


class HeuristicFeedback:
    """ci tier only: deterministic lexical scores per principle turned into pseudo log-probs; meaningless numbers."""

    heuristic = True
    id = "HEURISTIC-morlaif-v1"

    def __init__(self) -> None:
        self.settings: dict[str, Any] = {"version": 1}

    @staticmethod
    def _words(text: str) -> list[str]:
        return _WORD.findall(text.lower())

    @classmethod
    def score(cls, principle: str, response: str, messages: list[dict[str, str]]) -> float:
        text, words = response.lower(), cls._words(response)
        n = len(words)

        def count(lexicon: tuple[str, ...]) -> int:
            return sum(text.count(w) for w in lexicon)

        ask = set(cls._words(messages[-1]["content"])) if messages else set()
        context = set(cls._words(" ".join(m["content"] for m in messages)))
        overlap = len(ask & set(words)) / max(1, len(ask))
        refusal, harmful, toxic = count(REFUSAL), count(HARMFUL), count(TOXIC)
        scores = {
            "conciseness": -n / 50,
            "detail": math.log1p(n),
            "toxicity": -toxic - 0.5 * harmful,
            "ethicality": 0.5 * refusal - harmful,
            "relevance": overlap,
            "helpfulness": overlap + 0.3 * math.log1p(n) - 0.5 * refusal,
            "factuality": -count(ABSOLUTE) + 0.1 * sum(c.isdigit() for c in response),
            "sycophancy": -count(SYCOPHANT),
            "empathy": count(EMPATHY),
            "context": len(context & set(words)) / max(1, len(context)),
            "bias": -count(ABSOLUTE) - toxic,
            "understandability": -(sum(map(len, words)) / max(1, n)) - n / max(1, response.count(".") + 1) / 20,
        }
        if principle in scores:
            return float(scores[principle])
        # cai / hhh: helpful, honest and harmless at once
        return float(scores["helpfulness"] + scores["toxicity"] + scores["ethicality"])

    def logprobs(self, queries: list[Query]) -> list[tuple[float, float]]:
        out = []
        for q in queries:
            s1, s2 = (self.score(q.principle, r, q.messages) for r in (q.first, q.second))
            z = max(s1, s2) + math.log(math.exp(s1 - max(s1, s2)) + math.exp(s2 - max(s1, s2)))
            out.append((s1 - z, s2 - z))  # log-softmax over the two options
        return out

    def describe(self) -> dict[str, Any]:
        return {"id": self.id, "settings": self.settings, "heuristic": True}


def make_backend(spec: FeedbackSettings | dict[str, Any], models_dir: str | Path = "results/models") -> FeedbackBackend:
    """The feedback model a spec names (a dict is typed first: FeedbackSettings.from_dict); only the backend
    settings the spec gives reach it (None: the backend's default)."""
    spec = FeedbackSettings.from_dict(spec, "feedback spec")
    kw = spec.backend_kwargs()
    if spec.backend == "local":
        if "model" in kw:
            kw["model_dir"] = str(Path(models_dir) / kw.pop("model"))
        return LocalFeedback(**kw)
    if spec.backend == "openai":
        return OpenAIFeedback(**kw)
    return HeuristicFeedback()  # the settings' check allows no other backend, and heuristic takes no settings


# ---------------------------------------------------------------------------------------------------- the step
def cache_key(backend: FeedbackBackend, template_sha: str, text: str) -> str:
    # The rendered text holds the pair, the phrase and the order; the same text scores the same in any pair.
    return JudgmentCache.make_key(backend.id, template_sha, backend.settings, text, "", "")


def base_query(
    pair: dict[str, Any], principle: str, seed: int, cai_template: str = "standard", layout: str = "standard"
) -> Query:
    """The pair's query with response_a as option A (responses stripped of trailing "Human:" fragments)."""
    a, b = strip_human_fragments(pair["response_a"]), strip_human_fragments(pair["response_b"])
    return Query(
        principle,
        phrase_for(principle, pair["id"], seed),
        template_for(principle, cai_template, layout),
        render_conversation(pair["messages"]),
        a,
        b,
        pair["messages"],
    )


def swap(q: Query) -> Query:
    return Query(**{**q.__dict__, "first": q.second, "second": q.first})


def score_principles(
    pairs: list[dict[str, Any]],
    principles: list[str],
    backend: FeedbackBackend,
    cache: JudgmentCache | None = None,
    order: str = "both",
    seed: int = 0,
    cai_template: str = "standard",
    layout: str = "standard",
    chunk_size: int = 64,
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """({principle: feedback rows with the contract's fields}, stats); only prompts the cache lacks are scored.

    With layout "principle_last" the prompts of one pair and order differ only after the options, so they are
    scored together and a local backend encodes the shared part once for all principles."""
    for principle in principles:
        if principle not in ALL_PRINCIPLES:
            raise KeyError(f"unknown principle {principle!r}; expected one of {', '.join(ALL_PRINCIPLES)}")
    if order not in ORDERS:
        raise ValueError(f"feedback order must be one of {sorted(ORDERS)}, not {order!r}")
    orders = ORDERS[order]
    fit = getattr(backend, "fit", lambda q: q)
    jobs: dict[tuple[str, int, str], tuple[str, Query]] = {}  # (principle, pair index, order) -> (cache key, query)
    for principle in principles:
        for j, pair in enumerate(pairs):
            base = fit(base_query(pair, principle, seed, cai_template, layout))
            for o in orders:
                q = base if o == "ab" else swap(base)
                jobs[principle, j, o] = (cache_key(backend, template_hash(base.template), q.text), q)
    found: dict[str, tuple[float, float]] = {}
    if cache is not None:
        got = cache.get_many([f"{k}:{lab}" for k, _ in jobs.values() for lab in LABELS])
        for k, _ in jobs.values():
            if f"{k}:A" in got and f"{k}:B" in got:  # both halves, or it is a miss
                found[k] = (got[f"{k}:A"], got[f"{k}:B"])
    todo = list({k: q for k, q in jobs.values() if k not in found}.items())
    names = ",".join(principles) if len(principles) <= 3 else f"{len(principles)} principles"
    log.info("feedback %s (%s): %d prompts, %d cached, %d to score", names, backend.id, len(jobs), len(found),
             len(todo))  # fmt: skip
    if layout == "principle_last":  # one pair and order's prompts side by side, then by length
        todo.sort(key=lambda kq: (kq[1].conversation, kq[1].first, kq[1].second, len(kq[1].text)))
    else:
        todo.sort(key=lambda kq: len(kq[1].text))  # similar lengths per chunk: less padding
    stats = {"prompts": len(jobs), "prompts_cached": len(found), "prompts_scored": len(todo)}
    t0 = time.perf_counter()
    for i in tqdm(range(0, len(todo), chunk_size), desc=f"feedback {names}", unit="chunk"):
        chunk = todo[i : i + chunk_size]
        scores = backend.logprobs([q for _, q in chunk])
        fresh = {k: (float(a), float(b)) for (k, _), (a, b) in zip(chunk, scores, strict=True)}
        if cache is not None:  # A and B of one key are adjacent, so one transaction stores both
            cache.put_many({f"{k}:{lab}": v[n] for k, v in fresh.items() for n, lab in enumerate(LABELS)})
        found.update(fresh)
    stats["seconds_scoring"] = round(time.perf_counter() - t0, 3)
    stats["seconds_per_prompt"] = round(stats["seconds_scoring"] / len(todo), 4) if todo else None
    out: dict[str, list[dict[str, Any]]] = {}
    for principle in principles:
        rows = []
        for j, pair in enumerate(pairs):
            key_ab, q = jobs[principle, j, "ab"]
            ba = found[jobs[principle, j, "ba"][0]] if "ba" in orders else None
            rows.append(
                {
                    "id": pair["id"],
                    "split": pair["split"],
                    "source": pair.get("source"),
                    "kind": pair.get("kind"),
                    "human_label": pair.get("human_label"),
                    "principle": principle,
                    "phrase": q.phrase,
                    **combine(found[key_ab], ba),
                }
            )
        out[principle] = rows
    return out, stats


def score_pairs(
    pairs: list[dict[str, Any]], principle: str, backend: FeedbackBackend, cache: JudgmentCache | None = None, **kw: Any
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(feedback rows, stats) for one principle; keywords as in `score_principles`."""
    rows, stats = score_principles(pairs, [principle], backend, cache, **kw)
    return rows[principle], stats


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Label balance, order agreement, position preference and agreement with known human labels."""

    def mean(xs: list[float]) -> float | None:
        return round(sum(xs) / len(xs), 4) if xs else None

    agree = [r["orders_agree"] for r in rows if r["orders_agree"] is not None]
    first = [int(r["delta_ab"] > 0) for r in rows] + [int(r["delta_ba"] < 0) for r in rows if r["delta_ba"] is not None]
    out: dict[str, Any] = {
        "n": len(rows),
        "by_split": dict(sorted(Counter(r["split"] for r in rows).items())),
        "label_balance": mean([r["label"] for r in rows]),  # share of pairs where response_a is preferred
        "orders_agree": mean([float(a) for a in agree]),
        "first_position_rate": mean([float(x) for x in first]),  # share of single-order verdicts for option A
        "mean_abs_margin": mean([abs(r["margin"]) for r in rows]),
        "n_exact_ties": sum(r["margin"] == 0 for r in rows),
    }
    for split in sorted({r["split"] for r in rows}):
        known = [r for r in rows if r["split"] == split and r.get("human_label") is not None]
        out[f"agreement_with_human_{split}"] = mean([float(r["label"] == r["human_label"]) for r in known])
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m alignrepro.methods.morlaif.feedback",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--pairs", type=Path, required=True, help="data/pairs.jsonl")
    p.add_argument(
        "--principle",
        nargs="+",
        required=True,
        choices=ALL_PRINCIPLES,
        metavar="P",
        help=f"one or more of {', '.join(ALL_PRINCIPLES)}",
    )
    p.add_argument("--feedback-json", required=True, help="feedback backend spec as JSON (see above)")
    p.add_argument("--tier", required=True)
    p.add_argument("--seed", type=int, default=0, help="draws the CAI principle per pair")
    p.add_argument("--cache", type=Path, help="SQLite cache (default: <feedback folder>/feedback_cache.sqlite)")
    p.add_argument("--models-dir", default="results/models", help="where a local backend's registry models live")
    p.add_argument("--splits", nargs="+", help="only pairs of these splits (default: all)")
    p.add_argument(
        "--shard",
        metavar="K/N",
        help="only every N-th pair from the K-th (0-based): parallel jobs fill the shared cache, then one run over "
        "all pairs (cache hits only) writes the complete files",
    )
    out = p.add_mutually_exclusive_group(required=True)
    out.add_argument("--out", type=Path, help="feedback/<principle>.jsonl (+ .json summary); one principle")
    out.add_argument("--out-dir", type=Path, help="feedback folder: <principle>.jsonl + .json for each principle")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.out is not None and len(args.principle) != 1:
        p.error("--out takes one --principle; use --out-dir for several")
    folder = args.out.parent if args.out is not None else args.out_dir
    paths = {pr: args.out if args.out is not None else folder / f"{pr}.jsonl" for pr in args.principle}

    spec = FeedbackSettings.from_dict(json.loads(args.feedback_json), "--feedback-json")  # typed once, here
    order, cai_template, layout = spec.order, spec.cai_template, spec.layout
    pairs = read_jsonl(args.pairs)
    if args.splits:
        pairs = [r for r in pairs if r["split"] in args.splits]
    if args.shard:
        k, _, n = args.shard.partition("/")
        if not (k.isdigit() and n.isdigit() and int(k) < int(n)):
            p.error(f"--shard: expected K/N with 0 <= K < N, got {args.shard!r}")
        pairs = pairs[int(k) :: int(n)]
    backend = make_backend(spec, args.models_dir)
    cache = JudgmentCache(args.cache or folder / "feedback_cache.sqlite")
    rows, stats = score_principles(
        pairs, args.principle, backend, cache, order, args.seed, cai_template, layout, spec.chunk_size
    )
    stats["principles_in_run"] = list(args.principle)
    pairs_sha = sha256_file(args.pairs)
    for principle, path in paths.items():
        write_jsonl(path, rows[principle])
        template = template_for(principle, cai_template, layout)
        summary = {
            "principle": principle,
            "feedback_model": backend.describe(),
            "heuristic": bool(backend.heuristic),
            "template_version": FEEDBACK_TEMPLATE_VERSION,
            "template_sha256": template_hash(template),
            "layout": layout,
            "cai_template": cai_template,
            "order": order,
            "summary": summarize(rows[principle]),
            "scoring": stats,
            "provenance": provenance(
                tier=args.tier,
                config=spec.to_dict(),
                seed=args.seed,
                feedback_model=backend.id,
                pairs_sha256=pairs_sha,
                template_sha256=template_hash(template),
            ),
        }
        atomic_write_json(path.with_suffix(".json"), summary)
        log.info("feedback %s: %s", principle, summary["summary"])


if __name__ == "__main__":
    main()
