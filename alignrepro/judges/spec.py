"""The judge spec, typed: what a judging step (win rate, MT-Bench grading, safety ratings, judge cards, MORLAIF's
and MoTE's judged tables) tells `make_judge`. Parsed once at the step's entry (`JudgeSpec.from_dict`).

Every field but `backend` is optional, and None means "the backend's own default" (LocalLogprobJudge's batch of 4,
the OpenAI client's 6 retries, ...): make_judge passes only what the spec gives, as it always did. `to_dict()` is
the spec as given, which the steps record (judge_config, config hashes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from alignrepro.settings import Settings, SettingsError, check_positive

BACKENDS = ("oracle", "local", "heuristic", "openai")
# The keys each backend takes besides `backend` (its constructors' arguments; a local judge names its folder as
# `model_dir`, or as `model`, a registry name that resolved() turns into the folder).
BACKEND_KEYS = {
    "oracle": (),
    "heuristic": (),
    "local": ("model", "model_dir", "dtype", "batch_size", "max_length", "device", "min_answer_mass"),
    "openai": (
        "model",
        "base_url",
        "api_key_env",
        "max_requests",
        "max_retries",
        "timeout",
        "backoff_base",
        "backoff_max",
        "price_per_1k_input",
        "price_per_1k_output",
        "prompt",
        "grade_max_tokens",
    ),
}


@dataclass(frozen=True)
class JudgeSpec(Settings):
    """A pairwise judge: its backend and that backend's settings (None: the backend's default)."""

    WHAT: ClassVar[str] = "judge setting"

    backend: str = field(metadata={"help": "oracle, local (a model in process), heuristic or openai"})
    model: str | None = field(default=None, metadata={"help": "openai: the API model; local: a registry model"})
    model_dir: str | None = field(default=None, metadata={"help": "local: the model folder (resolved from model)"})
    dtype: str | None = field(default=None, metadata={"help": "local: weights dtype (float32, bfloat16)"})
    batch_size: int | None = field(default=None, metadata={"help": "local: pairs per forward pass (> 0)"})
    max_length: int | None = field(default=None, metadata={"help": "local: tokens kept per judge prompt (> 0)"})
    device: str | None = field(default=None, metadata={"help": "local: torch device (None: cuda if available)"})
    min_answer_mass: float | None = field(
        default=None,
        metadata={"help": "local: least next-token mass on the allowed answer tokens; below it unparsable (0.5)"},
    )
    base_url: str | None = field(default=None, metadata={"help": "openai: endpoint (None: OpenAI's)"})
    api_key_env: str | None = field(default=None, metadata={"help": "openai: environment variable of the key"})
    max_requests: int | None = field(default=None, metadata={"help": "openai: request budget (None: unlimited)"})
    max_retries: int | None = field(default=None, metadata={"help": "openai: retries of a failed request"})
    timeout: float | None = field(default=None, metadata={"help": "openai: seconds per request (> 0)"})
    backoff_base: float | None = field(default=None, metadata={"help": "openai: first retry wait, seconds"})
    backoff_max: float | None = field(default=None, metadata={"help": "openai: longest retry wait, seconds"})
    price_per_1k_input: float | None = field(default=None, metadata={"help": "openai: USD per 1000 prompt tokens"})
    price_per_1k_output: float | None = field(default=None, metadata={"help": "openai: USD per 1000 output tokens"})
    prompt: str | None = field(default=None, metadata={"help": "openai: alpaca_eval annotator prompt name"})
    grade_max_tokens: int | None = field(default=None, metadata={"help": "openai: token budget of a graded answer"})

    @classmethod
    def from_dict(cls, data: Any, where: str = "judge spec") -> JudgeSpec:
        if isinstance(data, JudgeSpec):
            return data
        if not isinstance(data, dict) or "backend" not in data:
            raise SettingsError(
                f"{where}: a judge spec must be a mapping with key 'backend' (one of {', '.join(BACKENDS)}); "
                f"got {data!r}"
            )
        if data["backend"] not in BACKENDS:  # before the type check: the message names the allowed values
            raise SettingsError(
                f"{where}.backend: unknown judge backend {data['backend']!r}; allowed values: {', '.join(BACKENDS)}"
            )
        return super().from_dict(data, where)

    def check(self, where: str) -> None:
        takes = BACKEND_KEYS[self.backend]
        for key in self.to_dict():
            if key != "backend" and key not in takes:
                raise SettingsError(
                    f"{where}.{key}: not a setting of judge backend {self.backend!r} "
                    f"(it takes: {', '.join(takes) or 'no settings'})"
                )
        for key in ("batch_size", "max_length", "max_requests", "timeout", "backoff_base", "backoff_max"):
            check_positive(where, key, getattr(self, key))
        for key in ("max_retries", "price_per_1k_input", "price_per_1k_output", "min_answer_mass"):
            check_positive(where, key, getattr(self, key), inclusive=True)
        if self.min_answer_mass is not None and self.min_answer_mass > 1:
            raise SettingsError(f"{where}.min_answer_mass: a probability mass, at most 1; got {self.min_answer_mass}")
        if self.backend == "openai" and not self.model:
            raise SettingsError(f"{where}.model: an openai judge needs the API model's name")
        if self.backend == "local" and not (self.model or self.model_dir):
            raise SettingsError(f"{where}: a local judge needs `model` (a registry name) or `model_dir` (a folder)")

    def resolved(self, models_dir: str | Path = "results/models", dtype: str | None = None) -> JudgeSpec:
        """As make_judge reads it: a local judge's registry `model` becomes its folder under `models_dir` (specs in
        the config stay tier-independent), and it runs in the tier's `dtype` unless it names one."""
        if self.backend != "local":
            return self
        given = self.to_dict()
        if given.get("model") is not None:
            given["model_dir"] = str(Path(models_dir) / given.pop("model"))
        if dtype is not None:
            given.setdefault("dtype", dtype)
        return JudgeSpec.from_dict(given)

    def kwargs(self) -> dict[str, Any]:
        """The backend constructor's keyword arguments: what the spec gives (None given stays None)."""
        return {k: v for k, v in self.to_dict().items() if k != "backend"}
