"""MORLAIF's step settings, typed: the PPO section (`morlaif.ppo`, read by ppo.py), the feedback model's spec
(the evals.judges entry `morlaif.feedback.model` names plus the use's options, read by feedback.py), the preference
models' section (`morlaif.pm`, read by pm.py) and the analysis section (`morlaif.analysis`, read by analysis.py).
Each step parses its section once at its entry; the objects travel through the step, and `to_dict()` gives back the
section as it was recorded before (model.json `config`, provenance config hashes).

No paper defaults here: they are methods/morlaif/config.yaml `defaults:` (ppo.resolve_config, pm.merge_config and
analysis.merge_config merge them in first). Light on purpose (no torch, no transformers): the feedback step imports
this module, so the PM's `train` section is its own class here and pm.py builds the engine's TrainSettings from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from alignrepro.methods.morlaif.principles import BASELINES, PRINCIPLES
from alignrepro.settings import LoraSettings, Settings, SettingsError, check_choice, check_positive

LR_SCHEDULERS = (
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
    "inverse_sqrt",
)


@dataclass(frozen=True)
class KLSettings(Settings):
    """The KL penalty towards the reference policy (ppo.AdaptiveKLCallback adapts it)."""

    WHAT: ClassVar[str] = "KL setting"
    SECTION: ClassVar[str] = "morlaif.ppo.kl"

    init_coef: float = field(metadata={"help": "initial KL coefficient (>= 0)"})
    adaptive: bool = field(metadata={"help": "adapt the coefficient towards `target`"})
    target: float = field(metadata={"help": "target KL of the adaptive controller (> 0)"})
    horizon: int = field(metadata={"help": "adaptive controller horizon (> 0)"})
    estimator: str = field(metadata={"help": "TRL's KL estimator: k1 or k3"})

    def check(self, where: str) -> None:
        check_positive(where, "init_coef", self.init_coef, inclusive=True)
        check_positive(where, "target", self.target)
        check_positive(where, "horizon", self.horizon)
        check_choice(where, "estimator", self.estimator, ("k1", "k3"))


@dataclass(frozen=True)
class RewardSettings(Settings):
    """Post-processing of the scalarized reward (trlx's running scaling and clipping)."""

    WHAT: ClassVar[str] = "reward setting"
    SECTION: ClassVar[str] = "morlaif.ppo.reward"

    scale: str = field(metadata={"help": "running (divide by the running std) or none"})
    clip: float | None = field(metadata={"help": "clip rewards to +-clip (None: no clipping)"})
    missing_eos_penalty: float | None = field(metadata={"help": "penalty of a response without EOS (TRL)"})
    pm_batch_size: int = field(metadata={"help": "texts per preference-model forward pass"})

    def check(self, where: str) -> None:
        if self.scale not in ("running", "none"):  # the wording ppo.resolve_config always used
            raise SettingsError(f"{where}.scale: reward.scale must be 'running' or 'none', got {self.scale!r}")
        check_positive(where, "clip", self.clip)
        check_positive(where, "missing_eos_penalty", self.missing_eos_penalty, inclusive=True)
        check_positive(where, "pm_batch_size", self.pm_batch_size)


@dataclass(frozen=True)
class PPOSettings(Settings):
    """Scalarized PPO, the same for every arm: the YAML section (ppo.resolve_config: defaults merged) plus what the
    rules add (dtype; scalarizer_params for a scalarizer named without its row)."""

    WHAT: ClassVar[str] = "PPO setting"
    SECTION: ClassVar[str] = "morlaif.ppo"

    batch_size: int = field(metadata={"help": "rollouts per PPO step (the budget, with steps)"})
    steps: int = field(metadata={"help": "PPO steps: steps x batch_size episodes"})
    mini_batch_size: int = field(metadata={"help": "PPO update batch (divides batch_size)"})
    rollout_forward_batch_size: int | None = field(metadata={"help": "generation/scoring chunk (None: batch)"})
    ppo_epochs: int = field(metadata={"help": "update epochs per rollout batch"})
    learning_rate: float = field(metadata={"help": "policy/value learning rate (> 0)"})
    lr_scheduler: str = field(metadata={"help": "transformers scheduler name"})
    warmup_steps: int = field(metadata={"help": "warm-up optimizer steps"})
    adam_betas: list[float] = field(metadata={"help": "Adam (beta1, beta2)"})
    adam_eps: float = field(metadata={"help": "Adam epsilon (> 0)"})
    weight_decay: float = field(metadata={"help": "AdamW weight decay (>= 0)"})
    cliprange: float = field(metadata={"help": "policy ratio clip (> 0)"})
    cliprange_value: float = field(metadata={"help": "value clip (> 0)"})
    vf_coef: float = field(metadata={"help": "value loss coefficient (>= 0)"})
    gamma: float = field(metadata={"help": "discount, in [0, 1]"})
    lam: float = field(metadata={"help": "GAE lambda, in [0, 1]"})
    whiten_rewards: bool = field(metadata={"help": "whiten rewards per batch"})
    kl: KLSettings = field(metadata={"help": "the KL penalty"})
    reward: RewardSettings = field(metadata={"help": "reward post-processing"})
    response_length: int = field(metadata={"help": "max new tokens per rollout"})
    temperature: float = field(metadata={"help": "rollout sampling temperature (> 0)"})
    max_prompt_length: int = field(metadata={"help": "prompt tokens (left-truncated)"})
    lora: LoraSettings = field(metadata={"help": "the policy's LoRA adapter"})
    value_trainable_layers: int | str = field(metadata={"help": "'all', or the value model's top N layers that train"})
    scalarizer_params: dict[str, Any] = field(metadata={"help": "keyword arguments of a scalarizer named alone"})
    dtype: str = field(metadata={"help": "weights dtype (the run's)"})

    def check(self, where: str) -> None:
        for key in ("batch_size", "steps", "mini_batch_size", "rollout_forward_batch_size", "ppo_epochs"):
            check_positive(where, key, getattr(self, key))
        for key in ("learning_rate", "adam_eps", "cliprange", "cliprange_value", "temperature"):
            check_positive(where, key, getattr(self, key))
        for key in ("response_length", "max_prompt_length"):
            check_positive(where, key, getattr(self, key))
        for key in ("warmup_steps", "weight_decay", "vf_coef"):
            check_positive(where, key, getattr(self, key), inclusive=True)
        check_choice(where, "lr_scheduler", self.lr_scheduler, LR_SCHEDULERS)
        if len(self.adam_betas) != 2 or not all(0 <= b < 1 for b in self.adam_betas):
            raise SettingsError(f"{where}.adam_betas: {self.adam_betas!r} (expected two numbers in [0, 1))")
        for key in ("gamma", "lam"):
            if not 0 <= getattr(self, key) <= 1:
                raise SettingsError(f"{where}.{key}: {getattr(self, key)!r} (expected a number in [0, 1])")
        if self.batch_size % self.mini_batch_size:
            raise SettingsError(f"{where}: batch_size {self.batch_size} is not a multiple of mini_batch_size")
        layers = self.value_trainable_layers
        if layers != "all" and (not isinstance(layers, int) or layers < 0):
            raise SettingsError(f"{where}.value_trainable_layers: {layers!r} (expected 'all' or an integer >= 0)")


# The feedback model's keys per backend (its constructor's arguments; a local model is named by registry `model`,
# which make_backend turns into the folder, or by `model_dir`), and the use's options, read by the step itself.
FEEDBACK_BACKEND_KEYS = {
    "heuristic": (),
    "local": ("model", "model_dir", "dtype", "batch_size", "max_length", "device"),
    "openai": (
        "model",
        "base_url",
        "api_key_env",
        "max_requests",
        "temperature",
        "top_logprobs",
        "timeout",
        "max_retries",
        "price_per_1k_input",
        "price_per_1k_output",
    ),
}
USE_KEYS = ("order", "cai_template", "layout", "chunk_size")


@dataclass(frozen=True)
class FeedbackSettings(Settings):
    """The feedback model (backend + its settings; None: the backend's default) and how it is asked. The use's
    defaults (both orders, standard prompts) are the step's own, as they were; the workflow always names them."""

    WHAT: ClassVar[str] = "feedback setting"
    SECTION: ClassVar[str] = "feedback spec"

    backend: str = field(metadata={"help": "local (a registry model), openai or heuristic (ci)"})
    model: str | None = field(default=None, metadata={"help": "local: a registry model; openai: the API model"})
    model_dir: str | None = field(default=None, metadata={"help": "local: the model folder (instead of model)"})
    dtype: str | None = field(default=None, metadata={"help": "local: weights dtype (the run's)"})
    batch_size: int | None = field(default=None, metadata={"help": "local: prompts per forward pass"})
    max_length: int | None = field(default=None, metadata={"help": "local: tokens kept per prompt"})
    device: str | None = field(default=None, metadata={"help": "local: torch device (None: cuda when available)"})
    base_url: str | None = field(default=None, metadata={"help": "openai: endpoint (None: OpenAI's)"})
    api_key_env: str | None = field(default=None, metadata={"help": "openai: environment variable of the key"})
    max_requests: int | None = field(default=None, metadata={"help": "openai: request budget (None: unlimited)"})
    temperature: float | None = field(default=None, metadata={"help": "openai: sampling temperature"})
    top_logprobs: int | None = field(default=None, metadata={"help": "openai: log-probs returned per token"})
    timeout: float | None = field(default=None, metadata={"help": "openai: seconds per request"})
    max_retries: int | None = field(default=None, metadata={"help": "openai: retries of a failed request"})
    price_per_1k_input: float | None = field(default=None, metadata={"help": "openai: USD per 1000 prompt tokens"})
    price_per_1k_output: float | None = field(default=None, metadata={"help": "openai: USD per 1000 output tokens"})
    order: str = field(default="both", metadata={"help": "both (position bias cancels) or fixed (A first only)"})
    cai_template: str = field(default="standard", metadata={"help": "the CAI prompt variant: standard or clean"})
    layout: str = field(default="standard", metadata={"help": "prompt layout: standard or principle_last"})
    chunk_size: int = field(default=64, metadata={"help": "prompts scored, then cached, at a time"})

    def check(self, where: str) -> None:
        check_choice(where, "backend", self.backend, tuple(FEEDBACK_BACKEND_KEYS))
        takes = FEEDBACK_BACKEND_KEYS[self.backend]
        for key in self.to_dict():
            if key != "backend" and key not in takes and key not in USE_KEYS:
                raise SettingsError(
                    f"{where}.{key}: not a setting of feedback backend {self.backend!r} "
                    f"(it takes: {', '.join(takes) or 'no settings'}; every backend: {', '.join(USE_KEYS)})"
                )
        check_choice(where, "order", self.order, ("both", "fixed"))
        check_choice(where, "cai_template", self.cai_template, ("standard", "clean"))
        check_choice(where, "layout", self.layout, ("standard", "principle_last"))
        for key in ("chunk_size", "batch_size", "max_length", "max_requests", "top_logprobs", "timeout"):
            check_positive(where, key, getattr(self, key))
        if self.backend == "openai" and not self.model:
            raise SettingsError(f"{where}.model: an openai feedback model needs the API model's name")

    def backend_kwargs(self) -> dict[str, Any]:
        """The backend constructor's arguments: what the spec gives, the use's options left out."""
        return {k: v for k, v in self.to_dict().items() if k != "backend" and k not in USE_KEYS}


@dataclass(frozen=True)
class PMLoraSettings(LoraSettings):
    """A preference model's LoRA adapter: the policy's keys plus `layers` (pm.pm_lora_config reads it)."""

    SECTION: ClassVar[str] = "morlaif.pm.lora"

    layers: int | Literal["all"] | None = field(
        default=None, metadata={"help": "LoRA on the top k decoder layers only (None or 'all': every layer)"}
    )

    def check(self, where: str) -> None:
        super().check(where)
        if isinstance(self.layers, int):
            check_positive(where, "layers", self.layers)
        targets = self.target_modules
        if isinstance(targets, str) and targets.lower() != "all-linear":
            raise SettingsError(f"{where}.target_modules: {targets!r} (expected module names or 'all-linear')")


@dataclass(frozen=True)
class PMTrainSettings(Settings):
    """Reward-model training: the keys of alignrepro.training.TrainSettings a PM reads (pm.py builds that from
    `to_dict()`; kept here so that this module never imports transformers)."""

    WHAT: ClassVar[str] = "PM training setting"
    SECTION: ClassVar[str] = "morlaif.pm.train"

    per_device_batch_size: int = field(metadata={"help": "pairs per device step (> 0)"})
    grad_accum: int = field(metadata={"help": "gradient accumulation steps (> 0)"})
    epochs: float = field(metadata={"help": "passes over the pairs (> 0)"})
    learning_rate: float = field(metadata={"help": "peak learning rate (> 0)"})
    lr_scheduler: str = field(metadata={"help": "transformers scheduler name"})
    save_steps: int = field(metadata={"help": "checkpoint every N optimizer steps (> 0)"})
    max_length: int = field(metadata={"help": "tokens per (prompt + response), left-truncated (> 0)"})
    seed: int = field(metadata={"help": "training seed (the rules give the run's)"})
    warmup_steps: int | None = field(default=None, metadata={"help": "warm-up steps (None: warmup_ratio)"})
    warmup_ratio: float | None = field(default=None, metadata={"help": "warm-up share (when warmup_steps is None)"})

    def check(self, where: str) -> None:
        for key in ("per_device_batch_size", "grad_accum", "epochs", "learning_rate", "save_steps", "max_length"):
            check_positive(where, key, getattr(self, key))
        check_choice(where, "lr_scheduler", self.lr_scheduler, LR_SCHEDULERS)
        check_positive(where, "warmup_steps", self.warmup_steps, inclusive=True)
        if self.warmup_ratio is not None and not 0 <= self.warmup_ratio <= 1:
            raise SettingsError(f"{where}.warmup_ratio: {self.warmup_ratio!r} (expected a number in [0, 1])")
        if self.warmup_steps is None and self.warmup_ratio is None:
            raise SettingsError(f"{where}: give warmup_steps or warmup_ratio")


@dataclass(frozen=True)
class PMSettings(Settings):
    """One preference model per principle (pm.train_pm): the YAML section (pm.merge_config: defaults merged) plus the
    run's dtype."""

    WHAT: ClassVar[str] = "PM setting"
    SECTION: ClassVar[str] = "morlaif.pm"
    RUN_SUPPLIED: ClassVar[tuple[str, ...]] = ("dtype",)  # the rules add it; not a key of the paper's schema

    lora: PMLoraSettings = field(metadata={"help": "the PM's LoRA adapter"})
    train: PMTrainSettings = field(metadata={"help": "reward-model training"})
    margin: bool = field(metadata={"help": "use the feedback margin in the Bradley-Terry loss"})
    min_abs_margin: float = field(metadata={"help": "drop feedback with |margin| below it (>= 0)"})
    max_pairs: int | None = field(metadata={"help": "cap on training pairs, a seeded draw (None: all)"})
    dtype: str = field(metadata={"help": "weights dtype (the run's)"})

    def check(self, where: str) -> None:
        check_positive(where, "min_abs_margin", self.min_abs_margin, inclusive=True)
        check_positive(where, "max_pairs", self.max_pairs)


WEIGHT_MODES = ("pm_regression", "feedback_regression", "uniform")
AGREEMENT_SPLITS = ("all", "train", "test")


@dataclass(frozen=True)
class AnalysisSettings(Settings):
    """Principle weights and figures A, F, G (analysis.run_analysis): the YAML section (analysis.merge_config:
    defaults merged) plus the run's seed."""

    WHAT: ClassVar[str] = "analysis setting"
    SECTION: ClassVar[str] = "morlaif.analysis"
    RUN_SUPPLIED: ClassVar[tuple[str, ...]] = ("seed",)

    principles: list[str] = field(metadata={"help": "principles analysed (weights, figures A, F, G)"})
    baselines: list[str] = field(metadata={"help": "single-PM baselines analysed: cai, hhh"})
    weights: str = field(metadata={"help": "how weights.json's weights are fitted: " + ", ".join(WEIGHT_MODES)})
    agreement_split: str = field(metadata={"help": "pairs of figure F's agreement: all, train or test"})
    max_iter: int = field(metadata={"help": "logistic-regression iterations (> 0)"})
    l2_C: float | None = field(metadata={"help": "L2 inverse strength (> 0; None: un-penalised)"})
    seed: int = field(metadata={"help": "the run's seed (recorded; the fits are deterministic)"})

    def check(self, where: str) -> None:
        check_choice(where, "weights", self.weights, WEIGHT_MODES)
        check_choice(where, "agreement_split", self.agreement_split, AGREEMENT_SPLITS)
        check_positive(where, "max_iter", self.max_iter)
        check_positive(where, "l2_C", self.l2_C)
        for key, known in (("principles", PRINCIPLES), ("baselines", BASELINES)):
            names = getattr(self, key)
            for name in names:
                check_choice(where, key, name, tuple(known))
            if len(set(names)) != len(names):
                raise SettingsError(f"{where}.{key}: {names!r} names a principle twice")
        if not self.principles:
            raise SettingsError(f"{where}.principles: empty (expected at least one principle)")
