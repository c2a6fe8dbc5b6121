"""OpenAI-compatible chat client with our own retry loop, request budget and cost tracking, and the GPT-4 judge.

The API key is read from the environment at connection time and lives only inside the `openai.OpenAI` object, which
is never pickled, logged or written: `__repr__`, `__getstate__` and `describe()` leave it out.
"""

from __future__ import annotations

import email.utils
import logging
import os
import random
import re
import time
import warnings
from collections.abc import Callable
from typing import Any

from alignrepro.io import sha256_text
from alignrepro.judges.base import PairItem, both_orders, load_annotator, render_messages, template_to_messages
from alignrepro.judges.grading import parse_rating, parse_verdict

log = logging.getLogger(__name__)

RETRY_STATUS = {408, 409, 429}  # plus every 5xx


class RequestBudgetExceeded(RuntimeError):
    pass


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

    def _connect(self):
        from openai import OpenAI

        key = os.environ.get(self.api_key_env, "").strip()
        if not key:
            raise RuntimeError(
                f"OpenAI judge: the environment variable {self.api_key_env} is unset or empty; export the API key "
                f"there (keys are read from the environment only, never from config files)"
            )
        # max_retries=0: the SDK must not retry behind our back, our loop counts and bounds every attempt.
        return OpenAI(api_key=key, base_url=self.base_url, max_retries=0, timeout=self.timeout)

    def __repr__(self) -> str:
        return f"OpenAIChatClient(base_url={self.base_url!r}, model={self.model!r}, api_key_env={self.api_key_env!r})"

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
        keys = ("base_url", "model", "api_key_env", "max_requests", "n_requests", "n_attempts", "n_retries")
        return {k: getattr(self, k) for k in keys} | {
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

        if isinstance(err, openai.APIConnectionError):  # includes APITimeoutError
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
                resp = self._client.chat.completions.create(**kwargs)
                break
            except Exception as err:
                if not self._retryable(err) or attempt == self.max_retries:
                    raise RuntimeError(
                        f"OpenAI request to {self.model} failed after {attempt + 1} attempt(s): {type(err).__name__}"
                        f": {err}"
                    ) from err
                delay = self._delay(attempt, err)
                self.n_retries += 1
                log.warning("OpenAI %s (%s); retry %d in %.1fs", self.model, type(err).__name__, attempt + 1, delay)
                self._sleep(delay)
        return self._parse(resp)

    def _parse(self, resp: Any) -> dict[str, Any]:
        choice = resp.choices[0]
        top = None
        if choice.logprobs is not None and choice.logprobs.content:
            top = [{t.token: t.logprob for t in (p.top_logprobs or [p])} for p in choice.logprobs.content]
        usage = {"prompt_tokens": 0, "completion_tokens": 0}
        if resp.usage is not None:
            usage = {"prompt_tokens": resp.usage.prompt_tokens, "completion_tokens": resp.usage.completion_tokens}
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
