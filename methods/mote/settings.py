"""MoTE's step settings, typed. `mote.chains.generation` and `mote.baseline_generation` (chains, the baselines'
data, the prompting rows, the baselines' answers) are one section type, the engine's generation spec plus what the
chain runner itself reads. Parsed once at each step's entry (`ChainSettings.from_dict`, after chains.merged_spec
filled in the YAML defaults); `to_dict()` is the merged section, as the summaries and provenance record it.
`mote.data` (the train / test queries, queries.py) is `QuerySettings`, parsed likewise after queries.merged_config.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from alignrepro.generation_spec import GenerationSpec
from alignrepro.settings import Settings, SettingsError, check_choice, check_positive, closest_key

SAFETY_CHECKS = ("self", "keyword", "both")


@dataclass(frozen=True)
class ChainSettings(Settings):
    """How the chain runner asks the policy (chains.StepRunner) and checks its answers. No paper defaults here: they
    are methods/mote/config.yaml `defaults.chains.generation`."""

    WHAT: ClassVar[str] = "chain generation setting"
    NOT_CONFIG: ClassVar[tuple[str, ...]] = ("generation",)

    max_new_tokens: int | dict[str, int] = field(
        metadata={"help": "tokens per step: one number, or per step name with an optional 'default'"}
    )
    self_check_tokens: int = field(metadata={"help": "tokens of a parsed self safety check (no log-probs)"})
    self_check_threshold: float = field(metadata={"help": "P(Yes) / (P(Yes) + P(No)) at which an answer is safe"})
    safety_check: str = field(metadata={"help": "who decides v5's skips and filter_unsafe: self, keyword or both"})
    filter_unsafe: bool = field(metadata={"help": "drop rows whose final answer the check calls unsafe"})
    copy_threshold: float | None = field(metadata={"help": "word 4-gram overlap at which a step copies an earlier"})
    copy_fallback: bool = field(metadata={"help": "a copied step counts as empty (else it is only flagged)"})
    generation: GenerationSpec = field(
        default_factory=GenerationSpec, metadata={"help": "the backend's settings (every other key of the section)"}
    )

    @classmethod
    def chain_keys(cls) -> list[str]:
        return cls.config_keys()

    @classmethod
    def from_dict(cls, data: Any, where: str = "mote.chains.generation") -> ChainSettings:
        """Parse a merged section: its chain keys here, the rest as the engine's GenerationSpec (a key neither
        knows fails naming the closest of both)."""
        if isinstance(data, ChainSettings):
            return data
        if not isinstance(data, dict):
            raise SettingsError(f"{where}: expected a mapping of chain generation settings, got {data!r}")
        mine, gen_keys = cls.chain_keys(), GenerationSpec.config_keys()
        for key in data:
            if key not in mine and key not in gen_keys:
                known = sorted([*mine, *gen_keys])
                raise SettingsError(f"{where}.{key}: unknown {cls.WHAT}{closest_key(key, known)}; known: {known}")
        rest = {k: v for k, v in data.items() if k not in mine}
        kwargs = cls.parse({k: v for k, v in data.items() if k in mine}, where)
        obj = cls(**kwargs, generation=GenerationSpec.from_dict(rest, where))
        obj.check(where)
        return obj._given_keys(list(data))

    def check(self, where: str) -> None:
        budgets = self.max_new_tokens if isinstance(self.max_new_tokens, dict) else {"": self.max_new_tokens}
        for step, n in budgets.items():
            check_positive(where, f"max_new_tokens{'.' + step if step else ''}", n)
        check_positive(where, "self_check_tokens", self.self_check_tokens)
        check_choice(where, "safety_check", self.safety_check, SAFETY_CHECKS)
        for key in ("self_check_threshold", "copy_threshold"):
            value = getattr(self, key)
            if value is not None and not 0 <= value <= 1:
                raise SettingsError(f"{where}.{key}: {value!r} (expected a number in [0, 1])")

    def to_dict(self) -> dict[str, Any]:
        """The section as merged: the chain keys and the generation spec's, one flat mapping."""
        return {**super().to_dict(), **self.generation.to_dict()}


@dataclass(frozen=True)
class QuerySettings(Settings):
    """The train / test queries (queries.build_queries): HH-RLHF (full) or the offline harmful/helpful pool. No paper
    defaults here: they are methods/mote/config.yaml `defaults.data` (queries.merged_config merges them in first)."""

    WHAT: ClassVar[str] = "data setting"
    SECTION: ClassVar[str] = "mote.data"

    source: Literal["hh_rlhf", "pool"] = field(metadata={"help": "hh_rlhf (HH-RLHF) or pool (the offline prompts)"})
    n_train: int = field(metadata={"help": "train queries, both kinds (>= 2)"})
    n_test: int = field(metadata={"help": "test queries, both kinds (>= 2)"})
    harmful_frac: float = field(metadata={"help": "share of harmful queries, in [0, 1]"})
    hh_path: str = field(metadata={"help": "hh_rlhf: hub id or local folder in the hub's layout"})
    hh_revision: str | None = field(metadata={"help": "hh_rlhf: hub revision (None: the default branch)"})
    hh_harmful: str = field(metadata={"help": "hh_rlhf: subset of the harmful queries"})
    hh_helpful: str = field(metadata={"help": "hh_rlhf: subset of the helpful queries"})
    hh_file: str = field(metadata={"help": "hh_rlhf: file pattern with {subset} and {split}"})
    max_query_chars: int | None = field(metadata={"help": "drop a dialogue's earliest turns above it (None: keep)"})
    open_split: str | None = field(metadata={"help": "pool: split of the shipped open instructions (None: all)"})
    safety_prompts_dir: str | None = field(metadata={"help": "evals.safety.prompts output (overlap report)"})
    exclude_shared_eval_from_train: bool = field(metadata={"help": "pool: keep the shared safety prompts out of train"})

    def check(self, where: str) -> None:
        for key in ("n_train", "n_test"):
            check_positive(where, key, getattr(self, key), minimum=2, inclusive=True)
        if not 0 <= self.harmful_frac <= 1:
            raise SettingsError(f"{where}.harmful_frac: {self.harmful_frac!r} (expected a number in [0, 1])")
        check_positive(where, "max_query_chars", self.max_query_chars)
        for key in ("hh_path", "hh_harmful", "hh_helpful", "hh_file"):
            if not getattr(self, key):
                raise SettingsError(f"{where}.{key}: empty (expected a non-empty string)")
        try:
            self.hh_file.format(subset="s", split="s")
        except (KeyError, IndexError, ValueError) as e:
            msg = f"{where}.hh_file: {self.hh_file!r} (expected a pattern of {{subset}} and {{split}}; {e!r})"
            raise SettingsError(msg) from None
        if self.source == "pool" and self.exclude_shared_eval_from_train and not self.safety_prompts_dir:
            raise SettingsError(f"{where}: exclude_shared_eval_from_train needs safety_prompts_dir")

    def split_counts(self) -> dict[str, dict[str, int]]:
        """Queries per split and kind: round(n * harmful_frac) harmful, the rest helpful."""
        out = {}
        for split, n in (("train", self.n_train), ("test", self.n_test)):
            n_harm = round(n * float(self.harmful_frac))
            out[split] = {"harmful": n_harm, "helpful": n - n_harm}
        return out
