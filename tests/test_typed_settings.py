"""Typed step settings beyond TrainSettings: the generation spec, the judge spec, MORLAIF's PPO and feedback-model
settings and MoTE's chain settings are each parsed once, at the step's entry, into a frozen dataclass. A typo fails
there naming the key and the closest valid one; the real config's sections parse at every tier; and what the steps
record (provenance, model.json `config`) is the very dict they recorded before, so no config hash moves."""

from __future__ import annotations

import dataclasses

import pytest

from alignrepro.config import resolve_config
from alignrepro.generation_spec import GenerationSpec
from alignrepro.io import stable_hash
from alignrepro.judges import JudgeSpec, named_spec, registry, resolve_spec
from alignrepro.methods.morlaif import ppo
from alignrepro.methods.morlaif.settings import FeedbackSettings, KLSettings, PPOSettings, RewardSettings
from alignrepro.methods.mote import chains
from alignrepro.methods.mote.settings import ChainSettings
from alignrepro.settings import LoraSettings, SettingsError

TIERS = ["ci", "tiny", "full"]
CLASSES = [GenerationSpec, JudgeSpec, PPOSettings, KLSettings, RewardSettings, LoraSettings, FeedbackSettings]


@pytest.fixture(scope="module", params=TIERS)
def cfg(request):
    return resolve_config({"tier": request.param})


@pytest.mark.parametrize("cls", [*CLASSES, ChainSettings])
def test_every_setting_is_described_and_the_objects_are_frozen(cls):
    assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen
    assert all(f.metadata.get("help") for f in dataclasses.fields(cls)), cls


def _ppo_section(**over):
    section = ppo.resolve_config({"steps": 1, "batch_size": 4})
    return {**section, **over}


@pytest.mark.parametrize(
    ("parse", "message"),
    [
        (
            lambda: GenerationSpec.from_dict({"temprature": 0.5}, "evals.generation"),
            r"evals.generation.temprature: unknown generation setting \(did you mean 'temperature'\?\)",
        ),
        (
            lambda: JudgeSpec.from_dict({"backend": "openai", "model": "gpt-4", "max_request": 5}, "--judge-config"),
            r"--judge-config.max_request: unknown judge setting \(did you mean 'max_requests'\?\)",
        ),
        (
            lambda: FeedbackSettings.from_dict({"backend": "heuristic", "ordr": "both"}, "--feedback-json"),
            r"--feedback-json.ordr: unknown feedback setting \(did you mean 'order'\?\)",
        ),
        (
            lambda: PPOSettings.from_dict(_ppo_section(lerning_rate=1.0), "morlaif.ppo"),
            r"morlaif.ppo.lerning_rate: unknown PPO setting \(did you mean 'learning_rate'\?\)",
        ),
        (
            lambda: PPOSettings.from_dict(_ppo_section(kl={**_ppo_section()["kl"], "targt": 6}), "morlaif.ppo"),
            r"morlaif.ppo.kl.targt: unknown KL setting \(did you mean 'target'\?\)",
        ),
        (
            lambda: PPOSettings.from_dict(_ppo_section(lora={**_ppo_section()["lora"], "dropot": 0}), "morlaif.ppo"),
            r"morlaif.ppo.lora.dropot: unknown LoRA setting \(did you mean 'dropout'\?\)",
        ),
        (
            lambda: ChainSettings.from_dict({**chains.merged_spec({}), "self_chek_tokens": 3}, "mote.chains"),
            r"mote.chains.self_chek_tokens: unknown chain generation setting \(did you mean 'self_check_tokens'\?\)",
        ),
        (
            lambda: ChainSettings.from_dict({**chains.merged_spec({}), "bach_size": 3}, "mote.chains"),
            r"mote.chains.bach_size: unknown chain generation setting \(did you mean 'batch_size'\?\)",
        ),
    ],
)
def test_a_typo_fails_naming_the_key_and_the_closest_valid_one(parse, message):
    with pytest.raises(SettingsError, match=message):
        parse()


@pytest.mark.parametrize(
    ("parse", "message"),
    [
        (lambda: GenerationSpec.from_dict({"batch_size": 0}, "g"), r"g.batch_size: 0 \(expected > 0\)"),
        (lambda: GenerationSpec.from_dict({"temperature": "hot"}, "g"), "g.temperature: 'hot' is not a finite"),
        (lambda: GenerationSpec.from_dict({"stop": "###"}, "g"), "g.stop: '###' is not a list of strings or null"),
        (lambda: GenerationSpec.from_dict({"backend": "vllm"}, "g"), r"g.backend: 'vllm' \(expected one of"),
        (lambda: GenerationSpec.from_dict({"backend": "openai"}, "g"), "g.model: the openai backend needs"),
        (lambda: JudgeSpec.from_dict({"backend": "gpt4"}, "j"), "j.backend: unknown judge backend 'gpt4'"),
        (lambda: JudgeSpec.from_dict({"backend": "local", "model": "m", "batch_size": "4"}, "j"), "j.batch_size"),
        (
            lambda: JudgeSpec.from_dict({"backend": "local", "model": "m", "base_url": "http://x"}, "j"),
            "j.base_url: not a setting of judge backend 'local'",
        ),
        (lambda: FeedbackSettings.from_dict({"backend": "heuristic", "order": "sideways"}, "f"), "f.order"),
        (
            lambda: FeedbackSettings.from_dict({"backend": "heuristic", "batch_size": 2}, "f"),
            "f.batch_size: not a setting of feedback backend 'heuristic'",
        ),
        (lambda: PPOSettings.from_dict(_ppo_section(mini_batch_size=3), "p"), "p: batch_size 4 is not a multiple"),
        (lambda: PPOSettings.from_dict(_ppo_section(steps=True), "p"), "p.steps: True is not an integer"),
        (
            lambda: PPOSettings.from_dict(_ppo_section(kl={**_ppo_section()["kl"], "estimator": "k2"}), "p"),
            r"p.kl.estimator: 'k2' \(expected one of 'k1', 'k3'\)",
        ),
        (lambda: PPOSettings.from_dict({"steps": 1}, "p"), r"p: missing PPO setting\(s\) \['batch_size'"),
        (
            lambda: ChainSettings.from_dict({**chains.merged_spec({}), "safety_check": "nobody"}, "c"),
            "c.safety_check: 'nobody'",
        ),
        (
            lambda: ChainSettings.from_dict({**chains.merged_spec({}), "max_new_tokens": {"answer": 0}}, "c"),
            r"c.max_new_tokens.answer: 0 \(expected > 0\)",
        ),
    ],
)
def test_a_bad_value_fails_naming_the_key(parse, message):
    with pytest.raises(SettingsError, match=message):
        parse()


def test_the_real_generation_sections_parse_and_record_what_they_gave(cfg):
    dtype, seed = cfg["dtype"], cfg["seed"]
    sections = {
        "evals.generation": {**cfg["evals"]["generation"], "dtype": dtype},
        "cut.generation": {**cfg["cut"]["generation"], "dtype": dtype},
        "morlaif.generation": cfg["morlaif"]["generation"],
        "ld_align.generation": {**cfg["ld_align"]["generation"], "dtype": dtype},
    }
    for name in ("verifiable", "open"):  # CUT's critics write through a generation backend
        entry = registry(cfg)[cfg["cut"]["critic"][name]]
        if entry["backend"] != "oracle":
            sections[f"cut.critic.{name}"] = named_spec(registry(cfg), cfg["cut"]["critic"][name], dtype)
    for where, section in sections.items():
        spec = GenerationSpec.from_dict(section, where)
        assert spec.to_dict() == section and stable_hash(spec.to_dict()) == stable_hash(section), where
        with_stop = spec.with_(stop=["\n### "])  # backend_for adds the format's stop strings
        assert with_stop.to_dict() == {**section, "stop": ["\n### "]} and with_stop.stop == ["\n### "]
    mote_gen = {**cfg["mote"]["generation"], "dtype": dtype, "seed": seed}  # MoTE's backend takes step_max_tokens
    spec = GenerationSpec.from_dict(mote_gen, "mote.generation", extra=("step_max_tokens",))
    assert spec.to_dict() == mote_gen and set(spec.options) <= {"step_max_tokens"}
    with pytest.raises(SettingsError, match="did you mean 'max_new_tokens'"):
        GenerationSpec.from_dict(mote_gen, "mote.generation")  # a plain model takes no such key


def test_every_judge_the_config_names_parses_as_make_judge_reads_it(cfg):
    entries = registry(cfg)
    names = {cfg["evals"]["judge"], *cfg["evals"]["cards"], cfg["mote"]["judge"], cfg["morlaif"]["judge"]}
    names |= set(cfg["cut"]["eval"]["judge"].values())
    for name in sorted(names):
        resolved = resolve_spec(entries[name], dtype=cfg["dtype"])  # what the rules pass as --judge-config
        spec = JudgeSpec.from_dict(resolved, f"evals.judges.{name}")
        assert spec.to_dict() == resolved, name  # judge_config and its hash as before
        typed = JudgeSpec.from_dict(entries[name]).resolved(dtype=cfg["dtype"])  # MORLAIF's matrix resolves itself
        assert typed == spec and typed.to_dict() == resolved


def test_the_real_ppo_section_parses_to_the_dict_model_json_recorded(cfg):
    section = {**cfg["morlaif"]["ppo"], "dtype": cfg["dtype"]}  # what the rule passes as --config-json
    settings = ppo.ppo_settings(section)
    merged = ppo.resolve_config(section)
    assert settings.to_dict() == merged and stable_hash(settings.to_dict()) == stable_hash(merged)
    assert isinstance(settings.kl, KLSettings) and isinstance(settings.lora, LoraSettings)
    assert settings.kl.target == merged["kl"]["target"] and settings.lora.r == merged["lora"]["r"]
    assert ppo.ppo_settings(settings) is settings  # parsed once: a typed object passes through


def test_the_real_feedback_spec_parses_to_what_the_step_recorded(cfg):
    fb = cfg["morlaif"]["feedback"]
    options = {k: v for k, v in fb.items() if k != "model"}
    spec = named_spec(registry(cfg), fb["model"], cfg["dtype"], **options)  # the rules' --feedback-json
    settings = FeedbackSettings.from_dict(spec, "--feedback-json")
    assert settings.to_dict() == spec and (settings.order, settings.layout) == (fb["order"], fb["layout"])
    assert not set(settings.backend_kwargs()) & {"order", "layout", "cai_template", "chunk_size"}


def test_the_real_chain_sections_parse_to_the_merged_dicts(cfg):
    for key in ("chains", "baseline_generation"):
        section = cfg["mote"]["chains"]["generation"] if key == "chains" else cfg["mote"][key]
        gen = {**section, "dtype": cfg["dtype"], "seed": cfg["seed"]}  # the rules' --gen-json
        settings = chains.chain_settings(gen)
        assert settings.to_dict() == chains.merged_spec(gen)  # summaries and provenance as before
        assert settings.generation.batch_size == section["batch_size"]
        assert settings.generation.to_dict().keys().isdisjoint(ChainSettings.chain_keys())
        runner = chains.StepRunner(backend=None, fmt="chat", spec=gen)  # a dict is typed on the way in
        assert runner.spec == settings


def test_a_step_passes_the_same_settings_whether_given_a_dict_or_the_typed_object(ci_model):
    from alignrepro.generation import backend_for, make_backend

    raw = {"batch_size": 3, "temperature": 0.5, "seed": 7, "min_new_tokens": 2, "max_batch_tokens": 64}
    a, b = make_backend(raw, ci_model), make_backend(GenerationSpec.from_dict(raw), ci_model)
    for attr in ("batch_size", "temperature", "seed", "min_new_tokens", "max_batch_tokens", "stop", "id"):
        assert getattr(a, attr) == getattr(b, attr), attr
    backend, template, used = backend_for(GenerationSpec.from_dict(raw), ci_model)
    assert isinstance(used, GenerationSpec) and used.stop == backend.stop  # the format's stops, recorded
    assert used.to_dict() == {**raw, "stop": backend.stop}


def test_make_judge_and_the_feedback_backend_take_the_typed_specs():
    from alignrepro.judges import make_judge
    from alignrepro.methods.morlaif import feedback

    for raw in ({"backend": "oracle"}, {"backend": "heuristic"}):
        assert make_judge(raw).id == make_judge(JudgeSpec.from_dict(raw)).id
    with pytest.raises(SettingsError, match="did you mean 'grade_max_tokens'"):
        make_judge({"backend": "openai", "model": "gpt-4", "grade_max_token": 9})  # a dict is typed on the way in
    settings = FeedbackSettings.from_dict({"backend": "heuristic", "order": "fixed", "chunk_size": 8})
    assert type(feedback.make_backend(settings)).__name__ == "HeuristicFeedback"
    assert settings.to_dict() == {"backend": "heuristic", "order": "fixed", "chunk_size": 8}
