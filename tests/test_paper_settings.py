"""The last steps that passed dicts, typed: MORLAIF's preference models (`morlaif.pm` -> PMSettings), MORLAIF's
analysis (`morlaif.analysis` -> AnalysisSettings) and MoTE's queries (`mote.data` -> QuerySettings). Each class knows
exactly its schema's keys (plus what the rules add), every tier's section parses, what the steps record is the very
dict (same bytes, same hash) they recorded before, and a typo or a bad value fails naming its key."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import yaml

from alignrepro.config import resolve_config
from alignrepro.io import stable_hash
from alignrepro.methods.morlaif import analysis, pm
from alignrepro.methods.morlaif.settings import AnalysisSettings, PMLoraSettings, PMSettings, PMTrainSettings
from alignrepro.methods.mote import queries
from alignrepro.methods.mote.settings import QuerySettings
from alignrepro.settings import SettingsError
from alignrepro.training import merge_settings

METHODS = Path(__file__).resolve().parents[1] / "methods"
TIERS = ["ci", "tiny", "full"]
CLASSES = [PMSettings, PMLoraSettings, PMTrainSettings, AnalysisSettings, QuerySettings]


@pytest.fixture(scope="module", params=TIERS)
def cfg(request):
    return resolve_config({"tier": request.param})


def _schema(paper: str) -> dict:
    return yaml.safe_load((METHODS / paper / "schema.yaml").read_text())["properties"]


def _same_record(typed: dict, former: dict) -> None:
    """The same dict, the same bytes (key order too) and the same config hash."""
    assert typed == former
    assert json.dumps(typed) == json.dumps(former) and stable_hash(typed) == stable_hash(former)


def _pm(**over):
    return {**pm.merge_config({}), **over}


def _analysis(**over):
    return {**analysis.merge_config({}), **over}


def _queries(**over):
    return {**queries.merged_config({}), **over}


@pytest.mark.parametrize("cls", CLASSES)
def test_every_setting_is_described_and_the_objects_are_frozen(cls):
    assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen
    assert all(f.metadata.get("help") for f in dataclasses.fields(cls)), cls


def test_the_classes_know_the_schema_keys():
    morlaif, mote = _schema("morlaif"), _schema("mote")
    run_supplied = {"dtype"}  # the rules add the run's dtype (PM) and seed (analysis); the schema has neither
    assert set(PMSettings.config_keys()) - run_supplied == set(morlaif["pm"]["properties"])
    assert set(PMSettings.RUN_SUPPLIED) == run_supplied and set(AnalysisSettings.RUN_SUPPLIED) == {"seed"}
    assert set(PMLoraSettings.config_keys()) == set(morlaif["pm"]["properties"]["lora"]["properties"])
    assert set(PMTrainSettings.config_keys()) == set(morlaif["pm"]["properties"]["train"]["properties"])
    assert set(AnalysisSettings.config_keys()) - {"seed"} == set(morlaif["analysis"]["properties"])
    assert set(QuerySettings.config_keys()) == set(mote["data"]["properties"])
    # the YAML defaults (+ what the rules add) give every key the steps read
    assert set(pm.default_config()) == set(PMSettings.config_keys())
    assert set(analysis.default_config()) == set(AnalysisSettings.config_keys())
    assert set(queries.defaults()) == set(QuerySettings.config_keys())


def test_the_real_pm_section_parses_to_the_dict_model_json_recorded(cfg):
    from alignrepro.training import TrainSettings

    section = {**cfg["morlaif"]["pm"], "dtype": cfg["dtype"]}  # the rule's --config-json
    settings = pm.pm_settings(section)
    _same_record(settings.to_dict(), pm.merge_config(section))  # model.json config, provenance config_hash
    _same_record(PMSettings.from_dict(section).to_dict(), section)  # every tier's section, as given
    assert isinstance(settings.lora, PMLoraSettings) and isinstance(settings.train, PMTrainSettings)
    assert settings.lora.layers == section["lora"]["layers"] and settings.train.seed == cfg["seed"]
    assert settings.lora.to_dict() == section["lora"]  # model.json `lora`
    assert pm.pm_settings(settings) is settings  # parsed once: a typed object passes through
    train = TrainSettings.from_dict(settings.train.to_dict(), run="pm")  # what train_pm gives trainer_kwargs
    assert (train.max_length, train.learning_rate) == (
        section["train"]["max_length"],
        section["train"]["learning_rate"],
    )


def test_the_real_analysis_section_parses_to_the_dict_the_provenance_recorded(cfg):
    section = {**cfg["morlaif"]["analysis"], "seed": cfg["seed"]}  # the rule's --config-json
    former = merge_settings(analysis.default_config(), section, "analysis config")  # what merge_config returned
    settings = analysis.analysis_settings(section)
    _same_record(settings.to_dict(), former)
    _same_record(analysis.merge_config(section), former)
    _same_record(AnalysisSettings.from_dict(section).to_dict(), section)
    assert settings.l2_C == section["l2_C"] and settings.seed == cfg["seed"]
    assert analysis.analysis_settings(settings) is settings


def test_the_real_query_sections_parse_to_the_dict_the_manifest_recorded(cfg):
    section = cfg["mote"]["data"]
    shared = {"safety_prompts_dir": "results/safety/prompts", "exclude_shared_eval_from_train": True}
    for given in (section, {**section, **shared}):  # the rule adds `shared` when the jailbreak set is built
        settings = queries.query_settings(given)
        _same_record(settings.to_dict(), queries.merged_config(given))  # manifest params, provenance config_hash
        _same_record(QuerySettings.from_dict(given).to_dict(), given)
        assert queries.query_settings(settings) is settings
    counts = queries.query_settings(section).split_counts()
    assert sum(counts["train"].values()) == section["n_train"] and sum(counts["test"].values()) == section["n_test"]


def test_build_queries_records_the_merged_dict():
    given = {"source": "pool", "n_train": 4, "n_test": 4}
    splits, info = queries.build_queries(given, seed=0)
    _same_record(info["config"], queries.merged_config(given))
    assert queries.build_queries(queries.query_settings(given), seed=0) == (splits, info)  # typed or dict: the same


@pytest.mark.parametrize(
    ("parse", "message"),
    [
        (
            lambda: PMSettings.from_dict(_pm(margn=True)),
            r"morlaif\.pm\.margn: unknown PM setting \(did you mean 'margin'",
        ),
        (
            lambda: PMSettings.from_dict(_pm(train={**_pm()["train"], "max_lenght": 9})),
            r"morlaif\.pm\.train\.max_lenght: unknown PM training setting \(did you mean 'max_length'",
        ),
        (
            lambda: PMSettings.from_dict(_pm(lora={**_pm()["lora"], "layer": 1})),
            r"morlaif\.pm\.lora\.layer: unknown LoRA setting \(did you mean 'layers'",
        ),
        (lambda: pm.pm_settings({"min_abs_margn": 0.1}), r"morlaif\.pm: .*did you mean 'min_abs_margin'"),
        (
            lambda: AnalysisSettings.from_dict(_analysis(max_iters=5)),
            r"morlaif\.analysis\.max_iters: unknown analysis setting \(did you mean 'max_iter'",
        ),
        (lambda: analysis.analysis_settings({"agreement": "all"}), "did you mean 'agreement_split'"),
        (
            lambda: QuerySettings.from_dict(_queries(n_trian=4)),
            r"mote\.data\.n_trian: unknown data setting \(did you mean 'n_train'",
        ),
        (lambda: queries.query_settings({"hh_revison": "main"}), "did you mean 'hh_revision'"),
    ],
)
def test_a_typo_fails_naming_the_key_and_the_closest_valid_one(parse, message):
    with pytest.raises(SettingsError, match=message):
        parse()


@pytest.mark.parametrize(
    ("parse", "message"),
    [
        (lambda: pm.pm_settings({"margin": "yes"}), r"morlaif\.pm\.margin: 'yes' is not true/false"),
        (lambda: pm.pm_settings({"min_abs_margin": -1}), r"morlaif\.pm\.min_abs_margin: -1 \(expected >= 0\)"),
        (lambda: pm.pm_settings({"max_pairs": 0}), r"morlaif\.pm\.max_pairs: 0 \(expected > 0\)"),
        (lambda: pm.pm_settings({"lora": {"layers": 0}}), r"morlaif\.pm\.lora\.layers: 0 \(expected > 0\)"),
        (lambda: pm.pm_settings({"lora": {"layers": "top"}}), r"morlaif\.pm\.lora\.layers: 'top' is not"),
        (lambda: pm.pm_settings({"lora": {"target_modules": "everything"}}), r"morlaif\.pm\.lora\.target_modules"),
        (lambda: pm.pm_settings({"lora": {"dropout": 1.0}}), r"morlaif\.pm\.lora\.dropout: 1\.0"),
        (lambda: pm.pm_settings({"train": {"learning_rate": 0}}), r"morlaif\.pm\.train\.learning_rate: 0"),
        (lambda: pm.pm_settings({"train": {"lr_scheduler": "cosin"}}), r"morlaif\.pm\.train\.lr_scheduler: 'cosin'"),
        (lambda: pm.pm_settings({"train": {"max_length": 2.5}}), r"morlaif\.pm\.train\.max_length: 2\.5 is not an"),
        (
            lambda: pm.pm_settings({"train": {"warmup_steps": None}}),
            r"morlaif\.pm\.train: give warmup_steps or warmup_ratio",
        ),
        (lambda: analysis.analysis_settings({"weights": "ridge"}), r"morlaif\.analysis\.weights: 'ridge'"),
        (lambda: analysis.analysis_settings({"agreement_split": "dev"}), r"morlaif\.analysis\.agreement_split"),
        (lambda: analysis.analysis_settings({"l2_C": 0}), r"morlaif\.analysis\.l2_C: 0 \(expected > 0\)"),
        (lambda: analysis.analysis_settings({"max_iter": 0}), r"morlaif\.analysis\.max_iter: 0"),
        (lambda: analysis.analysis_settings({"principles": ["kindness"]}), r"morlaif\.analysis\.principles: 'kin"),
        (lambda: analysis.analysis_settings({"principles": []}), r"morlaif\.analysis\.principles: empty"),
        (lambda: analysis.analysis_settings({"baselines": ["cai", "cai"]}), r"morlaif\.analysis\.baselines: .*twice"),
        (lambda: queries.query_settings({"source": "web"}), r"mote\.data\.source: 'web' is not one of"),
        (lambda: queries.query_settings({"n_train": 1}), r"mote\.data\.n_train: 1 \(expected >= 2\)"),
        (lambda: queries.query_settings({"harmful_frac": 1.5}), r"mote\.data\.harmful_frac: 1\.5"),
        (lambda: queries.query_settings({"max_query_chars": 0}), r"mote\.data\.max_query_chars: 0"),
        (lambda: queries.query_settings({"hh_file": "{subst}.jsonl"}), r"mote\.data\.hh_file: '\{subst\}\.jsonl'"),
        (lambda: queries.query_settings({"hh_path": ""}), r"mote\.data\.hh_path: empty"),
        (
            lambda: queries.query_settings({"source": "pool", "exclude_shared_eval_from_train": True}),
            r"mote\.data: exclude_shared_eval_from_train needs safety_prompts_dir",
        ),
    ],
)
def test_a_bad_value_fails_naming_the_key(parse, message):
    with pytest.raises(SettingsError, match=message):
        parse()
