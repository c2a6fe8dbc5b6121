"""LAB's step settings, typed: `lab.teacher`, `lab.taxonomy` and `lab.sdg`, parsed once at each step's entry
(`from_dict`), so a typo or a bad value names the config key before a teacher is started or a leaf is read. No paper
defaults here: they are methods/lab/config.yaml `defaults:` (the workflow validates the same sections against
methods/lab/schema.yaml; these classes check them again where a step is run by hand).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from alignrepro.settings import Settings, SettingsError, check_positive

Server = Literal["local", "vllm", "endpoint"]
Family = Literal["chatml", "mixtral", "merlinite", "granite", "mistral"]


@dataclass(frozen=True)
class TeacherSettings(Settings):
    """Who generates and judges the SDG data: served here (`local`), by `vllm serve`, or any OpenAI /v1 endpoint."""

    WHAT: ClassVar[str] = "teacher setting"
    SECTION: ClassVar[str] = "lab.teacher"

    server: Server = field(metadata={"help": "local: alignrepro.serve; vllm: vllm serve; endpoint: a URL"})
    model: str = field(metadata={"help": "local: a registry model or 'scripted' (ci); vllm: the hub id it serves"})
    base_url: str | None = field(metadata={"help": "endpoint/vllm: the /v1 URL"})
    family: Family = field(metadata={"help": "instructlab-sdg prompt family"})
    batch_size: int = field(metadata={"help": "prompts per request"})

    def check(self, where: str) -> None:
        check_positive(where, "batch_size", self.batch_size)
        if self.server != "local" and not self.base_url:
            raise SettingsError(f"{where}.base_url: needed for server {self.server!r} (the /v1 URL)")


@dataclass(frozen=True)
class TaxonomySettings(Settings):
    """Which leaves: a checkout of instructlab/taxonomy (`dir`) or the leaves shipped in instructlab's sdist."""

    WHAT: ClassVar[str] = "taxonomy setting"
    SECTION: ClassVar[str] = "lab.taxonomy"

    source: Literal["dir", "sdist"] = field(metadata={"help": "dir: a taxonomy checkout; sdist: instructlab's leaves"})
    path: str | None = field(metadata={"help": "dir: the checkout's folder"})
    leaves: list[str] | None = field(metadata={"help": "leaf names (null: every leaf found)"})
    commit: str | None = field(default=None, metadata={"help": "dir: the pinned commit (null: any)"})
    documents: str | None = field(default=None, metadata={"help": "dir: the knowledge documents' repositories"})

    def check(self, where: str) -> None:
        if self.source == "dir" and not self.path:
            raise SettingsError(f"{where}.path: needed for source 'dir' (a checkout of instructlab/taxonomy)")


@dataclass(frozen=True)
class SdgSettings(Settings):
    """instructlab-sdg's pipelines at a tier: counts, sampling, token caps, guided formats, knowledge chunks."""

    WHAT: ClassVar[str] = "SDG setting"
    SECTION: ClassVar[str] = "lab.sdg"

    questions_per_seed: int = field(metadata={"help": "freeform questions per seed example"})
    contexts_per_seed: int = field(metadata={"help": "grounded contexts per seed example"})
    questions_per_context: int = field(metadata={"help": "grounded questions per context"})
    temperature: float = field(metadata={"help": "question/context generation (judges stay greedy)"})
    max_tokens: int | None = field(metadata={"help": "cap on every LLM block (null: the library's)"})
    block_max_tokens: dict[str, int] = field(metadata={"help": "per block name, wins over max_tokens"})
    guided: bool = field(metadata={"help": "each LLM block decodes under its parser's format"})
    chunk_word_count: int = field(metadata={"help": "knowledge document chunk size (words)"})
    max_chunks: int | None = field(metadata={"help": "chunks per knowledge document (null: every chunk)"})
    heldout_fraction: float = field(metadata={"help": "generated pairs kept out of training"})

    def check(self, where: str) -> None:
        for key in ("questions_per_seed", "contexts_per_seed", "questions_per_context", "chunk_word_count"):
            check_positive(where, key, getattr(self, key))
        check_positive(where, "temperature", self.temperature, inclusive=True)
        check_positive(where, "max_tokens", self.max_tokens)
        check_positive(where, "max_chunks", self.max_chunks)
        for name, n in self.block_max_tokens.items():
            check_positive(where, f"block_max_tokens.{name}", n)
        if not 0 <= self.heldout_fraction <= 0.5:
            raise SettingsError(f"{where}.heldout_fraction: {self.heldout_fraction!r} (expected a number in [0, 0.5])")

    def overrides(self) -> dict[str, Any]:
        """The keyword arguments of sdg_pipelines.tier_overrides."""
        keys = ("questions_per_seed", "contexts_per_seed", "questions_per_context", "temperature", "max_tokens",
                "block_max_tokens", "guided")  # fmt: skip
        return {k: getattr(self, k) for k in keys}
