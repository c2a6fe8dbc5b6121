"""The generation spec, typed: what every generating step (the generation CLI, the shared benchmarks' answers, a
paper's respond / chains / samples) tells `alignrepro.generation.make_backend`. Parsed once at the step's entry
(`GenerationSpec.from_dict`, or `alignrepro.generation.parse_spec`, which also knows a paper backend's own keys).

The defaults here are the backends' own (greedy, batch 16, float32: what make_backend always did when a key was
left out), never a paper's: papers set theirs in YAML. `to_dict()` is the spec as given, which steps record.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, ClassVar

from alignrepro.settings import Settings, SettingsError, check_choice, check_positive

log = logging.getLogger(__name__)

# One name per backend: `local` is a registry model in-process (as for judges), `openai` an OpenAI-compatible endpoint.
# `hf` was the in-process backend's old name here; still accepted, with a deprecation message.
BACKENDS = ("local", "openai")
DEPRECATED_BACKENDS = {"hf": "local"}
TEMPLATES = ("alpaca", "chat", "raw", "hh")
DTYPES = ("float32", "fp32", "bfloat16", "bf16", "auto")  # alignrepro.models.choose_dtype


def backend_name(spec: GenerationSpec | dict[str, Any]) -> str:
    """The spec's backend under its one current name (default: local); an old name is accepted with a warning."""
    name = spec.backend if isinstance(spec, GenerationSpec) else spec.get("backend", "local")
    if name in DEPRECATED_BACKENDS:
        log.warning("generation backend %r is deprecated: call it %r", name, DEPRECATED_BACKENDS[name])
        return DEPRECATED_BACKENDS[name]
    return name


@dataclass(frozen=True)
class GenerationSpec(Settings):
    """How a model answers: the backend and its decoding settings. `options` holds the settings of a paper's own
    backend (a model kind's, e.g. MoTE's step_max_tokens), which that backend reads; the engine does not."""

    WHAT: ClassVar[str] = "generation setting"
    NOT_CONFIG: ClassVar[tuple[str, ...]] = ("options",)

    backend: str = field(default="local", metadata={"help": "local (a model folder in process) or openai"})
    model: str | None = field(default=None, metadata={"help": "openai: the API model; a local critic: a registry name"})
    base_url: str | None = field(default=None, metadata={"help": "openai: the endpoint (None: OpenAI's)"})
    api_key_env: str = field(default="OPENAI_API_KEY", metadata={"help": "openai: environment variable of the key"})
    max_requests: int | None = field(default=None, metadata={"help": "openai: request budget (None: unlimited)"})
    dtype: str = field(default="float32", metadata={"help": "local: weights dtype (the run's; never the hardware's)"})
    batch_size: int = field(default=16, metadata={"help": "local: prompts per batch (> 0)"})
    max_batch_tokens: int | None = field(default=None, metadata={"help": "local: padded tokens per batch cap"})
    temperature: float = field(default=0.0, metadata={"help": "0: greedy; > 0: seeded sampling"})
    seed: int = field(default=0, metadata={"help": "sampling seed"})
    min_new_tokens: int = field(default=0, metadata={"help": "local: tokens before an end token is allowed"})
    max_new_tokens: int | None = field(default=None, metadata={"help": "tokens per answer (None: the step's own)"})
    stop: list[str] | None = field(default=None, metadata={"help": "strings that end an answer (None: the format's)"})
    template: str = field(default="alpaca", metadata={"help": "the generation CLI's prompt format (and its stops)"})
    options: dict[str, Any] = field(default_factory=dict, metadata={"help": "a paper backend's own settings"})

    @classmethod
    def from_dict(cls, data: Any, where: str = "generation", extra: tuple[str, ...] | None = ()) -> GenerationSpec:
        """Parse a spec. `extra`: the keys a paper's backend takes (they go to `options`); None: any key the engine
        does not know is the backend's own (a paper kind that lists none, or a dict handed to make_backend)."""
        if isinstance(data, GenerationSpec):
            return data
        if not isinstance(data, dict):
            raise SettingsError(f"{where}: expected a mapping of generation settings, got {data!r}")
        own = [k for k in data if k not in cls.config_keys()] if extra is None else list(extra)
        kwargs = cls.parse(data, where, tuple(own))
        kwargs["backend"] = backend_name(kwargs)
        spec = cls(**kwargs, options={k: data[k] for k in own if k in data})
        spec.check(where)
        return spec._given_keys(list(data))

    def check(self, where: str) -> None:
        check_choice(where, "backend", self.backend, BACKENDS)
        check_choice(where, "dtype", self.dtype, DTYPES)
        check_choice(where, "template", self.template, TEMPLATES)
        check_positive(where, "batch_size", self.batch_size)
        check_positive(where, "max_batch_tokens", self.max_batch_tokens)
        check_positive(where, "max_requests", self.max_requests)
        check_positive(where, "max_new_tokens", self.max_new_tokens)
        check_positive(where, "temperature", self.temperature, inclusive=True)
        check_positive(where, "min_new_tokens", self.min_new_tokens, inclusive=True)
        if self.backend == "openai" and not self.model:
            raise SettingsError(f"{where}.model: the openai backend needs the API model's name")

    def to_dict(self) -> dict[str, Any]:
        """As given (a deprecated backend name under its current one), a paper backend's own keys included."""
        return {**super().to_dict(), **self.options}
