"""OpenAI-compatible chat client with our own retry loop, request budget and cost tracking, and the GPT-4 judge.

The API key is read from the environment at connection time and lives only inside the `openai.OpenAI` object, which
is never pickled, logged or written: `__repr__`, `__getstate__` and `describe()` leave it out.
"""

from __future__ import annotations

import email.utils
import json
import logging
import os
import random
import re
import time
import urllib.parse
import warnings
from collections.abc import Callable
from typing import Any

from alignrepro.errors import EndpointError
from alignrepro.io import sha256_text
from alignrepro.judges.base import PairItem, both_orders, load_annotator, render_messages, template_to_messages
from alignrepro.judges.grading import parse_rating, parse_verdict

log = logging.getLogger(__name__)

RETRY_STATUS = {408, 409, 429}  # plus every 5xx
OFFICIAL_ENDPOINT = "https://api.openai.com/v1"
EXPECTED = "expected a chat completion (a JSON object with a non-empty 'choices' list, each with a 'message')"


class RequestBudgetExceeded(RuntimeError):
    pass


class MalformedAnswer(Exception):
    """A 200 answer that is not a chat completion; the message says what came instead."""


def public_url(url: str) -> str:
    """`url` as it may be logged, written and hashed: no user:password@, query or fragment (they can hold
    credentials), scheme and host lower-cased, default port and trailing slash dropped."""
    parts = urllib.parse.urlsplit(url.strip())
    scheme, host = parts.scheme.lower(), parts.hostname or ""
    try:
        port = parts.port
    except ValueError:  # not a number: the SDK will say so when it connects
        port = None
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = host if port in (None, {"http": 80, "https": 443}.get(scheme)) else f"{host}:{port}"
    return urllib.parse.urlunsplit((scheme, netloc, parts.path.rstrip("/"), "", ""))


class OpenAIChatClient:
    def __init__(
        self,
        base_url: str | None,
        model: str,
        api_key_env: str = "OPENAI_API_KEY",
        max_retries: int = 6,
        max_requests: int | None = None,
        timeout: float = 60.0,
        price_per_1k_input: float = 0.0,
        price_per_1k_output: float = 0.0,
        backoff_base: float = 1.0,
        backoff_max: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url, self.model, self.api_key_env = base_url, model, api_key_env
        self.max_retries, self.max_requests, self.timeout = int(max_retries), max_requests, float(timeout)
        self.price_per_1k_input, self.price_per_1k_output = price_per_1k_input, price_per_1k_output
        self.backoff_base, self.backoff_max, self._sleep = backoff_base, backoff_max, sleep
        self.n_requests = self.n_attempts = self.n_retries = 0
        self.prompt_tokens = self.completion_tokens = 0
        self.dollars = 0.0
        self._client = self._connect()  # fail now, not after hours of generation, when the key is missing
        # The endpoint really used (base_url None means OPENAI_BASE_URL or the official API), without credentials.
        self.endpoint = public_url(str(self._client.base_url))

    def _connect(self):
        from openai import OpenAI

        key = os.environ.get(self.api_key_env, "").strip()
        if not key:
            url = public_url(self.base_url or os.environ.get("OPENAI_BASE_URL") or OFFICIAL_ENDPOINT)
            raise EndpointError(
                f"OpenAI-compatible endpoint {url} (model {self.model}): "
                f"the environment variable {self.api_key_env} is unset or empty; export the API key there (keys are "
                f"read from the environment only, never from config files)"
            )
        # max_retries=0: the SDK must not retry behind our back, our loop counts and bounds every attempt.
        return OpenAI(api_key=key, base_url=self.base_url, max_retries=0, timeout=self.timeout)

    def __repr__(self) -> str:
        return f"OpenAIChatClient(endpoint={self.endpoint!r}, model={self.model!r}, api_key_env={self.api_key_env!r})"

    def __getstate__(self) -> dict[str, Any]:
        return {
            k: v for k, v in self.__dict__.items() if k not in ("_client", "_sleep")
        }  # the SDK object holds the key

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._sleep = time.sleep
        self._client = self._connect()

    def describe(self) -> dict[str, Any]:
        """Provenance and usage, safe to write to result files."""
        keys = ("model", "api_key_env", "max_requests", "n_requests", "n_attempts", "n_retries")
        return {k: getattr(self, k) for k in keys} | {
            "base_url": public_url(self.base_url) if self.base_url else None,
            "endpoint": self.endpoint,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "dollars": round(self.dollars, 6),
        }

    def _delay(self, attempt: int, err: Exception) -> float:
        response = getattr(err, "response", None)
        headers = response.headers if response is not None else {}
        if (ms := headers.get("retry-after-ms")) is not None:
            try:
                return min(self.backoff_max, float(ms) / 1000)
            except ValueError:
                pass
        if (after := headers.get("retry-after")) is not None:
            try:
                return min(self.backoff_max, max(0.0, float(after)))
            except ValueError:
                when = email.utils.parsedate_to_datetime(after)  # an HTTP date
                if when is not None:
                    return min(self.backoff_max, max(0.0, when.timestamp() - time.time()))
        base = min(self.backoff_max, self.backoff_base * 2**attempt)
        return base * (0.5 + random.random() / 2)  # jitter: parallel clients must not retry in lockstep

    @staticmethod
    def _retryable(err: Exception) -> bool:
        import openai

        # A 200 that is not a chat completion is retried like a 5xx: gateways (LiteLLM, OpenRouter, proxies) answer
        # that way for passing upstream faults, and a wrong base_url still fails after max_retries, naming it.
        if isinstance(err, MalformedAnswer | openai.APIConnectionError):  # includes APITimeoutError
            return True
        if isinstance(err, openai.APIStatusError):
            return err.status_code in RETRY_STATUS or err.status_code >= 500
        return False

    def chat(
        self,
        messages: list[dict[str, str]],
        max_tokens: int,
        temperature: float = 0.0,
        logprobs: bool = False,
        top_logprobs: int | None = None,
    ) -> dict[str, Any]:
        if self.max_requests is not None and self.n_requests >= self.max_requests:
            raise RequestBudgetExceeded(
                f"OpenAI request budget exhausted: {self.n_requests} of max_requests={self.max_requests} used "
                f"(model {self.model}); raise max_requests in the judge config to spend more"
            )
        self.n_requests += 1
        kwargs: dict[str, Any] = {"model": self.model, "messages": messages, "max_tokens": max_tokens}
        kwargs["temperature"] = temperature
        if logprobs:
            kwargs["logprobs"] = True
            if top_logprobs:
                kwargs["top_logprobs"] = top_logprobs
        for attempt in range(self.max_retries + 1):
            self.n_attempts += 1
            try:
                return self._parse(self._create(kwargs))
            except Exception as err:
                if not self._retryable(err) or attempt == self.max_retries:
                    where = f"OpenAI-compatible endpoint {self.endpoint} (model {self.model})"
                    if isinstance(err, MalformedAnswer):
                        raise EndpointError(
                            f"{where} answered {err} after {attempt + 1} attempt(s); {EXPECTED}: "
                            f"check base_url and model"
                        ) from err
                    raise EndpointError(
                        f"{where}: request failed after {attempt + 1} attempt(s): {type(err).__name__}: {err}"
                    ) from err
                delay = self._delay(attempt, err)
                self.n_retries += 1
                log.warning("OpenAI %s (%s); retry %d in %.1fs", self.model, type(err).__name__, attempt + 1, delay)
                self._sleep(delay)
        raise AssertionError("unreachable")

    def _create(self, kwargs: dict[str, Any]) -> Any:
        try:
            return self._client.chat.completions.create(**kwargs)
        except json.JSONDecodeError as e:  # a JSON content type over a body that is not JSON
            raise MalformedAnswer(f"a body that is not JSON ({e.msg})") from e

    def _redacted(self, text: str) -> str:
        key = os.environ.get(self.api_key_env, "").strip()
        return text.replace(key, "<key>") if key else text

    def _parse(self, resp: Any) -> dict[str, Any]:
        # The SDK hands back the body's text when it is not JSON and builds a ChatCompletion from any JSON object
        # without validating it; check the shape before counting anything.
        if isinstance(resp, str):
            excerpt = self._redacted(" ".join(resp.split())[:80])
            raise MalformedAnswer(f"a body that is not JSON ({len(resp)} chars: {excerpt!r})")
        if not hasattr(resp, "choices"):
            raise MalformedAnswer(f"a JSON {type(resp).__name__}, not a JSON object")
        if not resp.choices:
            error = getattr(resp, "error", None)  # gateways put an upstream error in a 200 body
            got = "an empty 'choices' list" if resp.choices == [] else "a JSON object without 'choices'"
            raise MalformedAnswer(got + (f" (error: {self._redacted(str(error))[:200]})" if error else ""))
        choice = resp.choices[0]
        if getattr(choice, "message", None) is None:
            raise MalformedAnswer("a choice with no message")
        top = None
        if getattr(choice, "logprobs", None) is not None and choice.logprobs.content:
            top = [{t.token: t.logprob for t in (p.top_logprobs or [p])} for p in choice.logprobs.content]
        usage = {"prompt_tokens": 0, "completion_tokens": 0}
        if getattr(resp, "usage", None) is not None:
            u = resp.usage  # a gateway may leave the counts out
            usage = {"prompt_tokens": u.prompt_tokens or 0, "completion_tokens": u.completion_tokens or 0}
        self.prompt_tokens += usage["prompt_tokens"]
        self.completion_tokens += usage["completion_tokens"]
        self.dollars += (
            usage["prompt_tokens"] * self.price_per_1k_input + usage["completion_tokens"] * self.price_per_1k_output
        ) / 1000
        return {"text": choice.message.content or "", "top_logprobs": top, "usage": usage}


def parse_ranking(text: str) -> float:
    """Preference from an `alpaca_eval_gpt4` ranking answer: alpaca_eval's ranking_parser, else a regex; NaN if none."""
    if text.strip().startswith("["):  # ranking_parser literal_evals the whole answer (and logs an error if it can't)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                from alpaca_eval.completion_parsers import ranking_parser

            (rank,) = ranking_parser(text.strip())
            if rank == rank:  # not NaN
                return float(rank)
        except Exception:  # unparsable text or parser unavailable: try the regex below
            pass
    m = re.search(r"""['"]model['"]\s*:\s*['"]model_([12])['"]\s*,\s*['"]rank['"]\s*:\s*([12])""", text)
    if not m:
        return float("nan")
    model, rank = int(m.group(1)), int(m.group(2))
    return float(rank if model == 1 else 3 - rank)  # rank of model_1 is the alpaca_eval preference


class OpenAIPairwiseJudge:
    heuristic = False

    def __init__(
        self, client: OpenAIChatClient, prompt: str = "alpaca_eval_gpt4", grade_max_tokens: int = 2048
    ) -> None:
        self.client = client
        self.template, cfg = load_annotator(prompt)
        if cfg.get("fn_completion_parser") != "ranking_parser":
            raise ValueError(
                f"annotator {prompt!r} uses {cfg.get('fn_completion_parser')}; only ranking_parser is supported"
            )
        kw = cfg.get("completions_kwargs", {})
        self.max_tokens, self.temperature = int(kw.get("max_tokens", 100)), float(kw.get("temperature", 0.0))
        self.messages = template_to_messages(self.template)
        self.id = f"openai:{client.model}"
        self.prompt_hash = sha256_text(self.template)
        self.grade_max_tokens = int(grade_max_tokens)
        self.settings = {
            "annotator": prompt,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "grade_max_tokens": self.grade_max_tokens,
        }
        # The endpoint is part of the cache key (settings): the same model name at another provider is judged
        # again. The official API adds nothing, so judgments cached before this rule (paid ones) stay valid.
        if client.endpoint != OFFICIAL_ENDPOINT:
            self.settings["endpoint"] = client.endpoint

    def _one_order(self, items: list[PairItem]) -> list[float]:
        out = []
        for it in items:
            text = self.client.chat(render_messages(self.messages, it), self.max_tokens, self.temperature)["text"]
            pref = parse_ranking(text)
            if pref != pref:
                log.warning("%s: unparsable ranking answer (%d chars); preference NaN", self.id, len(text))
            out.append(pref)
        return out

    def preferences(self, items: list[PairItem]) -> list[float]:
        return both_orders(self._one_order, items)

    def single_order(self, items: list[PairItem]) -> list[float]:
        """Verdicts in the order given (judge cards measure position bias with it)."""
        return self._one_order(items)

    # --- prompts rendered by a benchmark (alignrepro.judges.grading); FastChat's judge decodes greedily ----------
    def _texts(self, prompts: list[list[dict[str, str]]]) -> list[str]:
        return [self.client.chat(m, self.grade_max_tokens, 0.0)["text"] for m in prompts]

    def rate(self, prompts: list[list[dict[str, str]]], scale: tuple[int, int] = (1, 10)) -> list[float]:
        out = [parse_rating(t, scale) for t in self._texts(prompts)]
        if any(v != v for v in out):
            log.warning("%s: %d of %d answers had no [[rating]]", self.id, sum(v != v for v in out), len(out))
        return out

    def choose(self, prompts: list[list[dict[str, str]]]) -> list[float]:
        return [parse_verdict(t) for t in self._texts(prompts)]

    @property
    def stats(self) -> dict[str, Any]:
        return self.client.describe()
