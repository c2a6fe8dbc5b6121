"""LAB's typed step settings (methods/lab/settings.py): the tiers' sections parse, a typo names the closest key, a
bad value names its key, and the classes know exactly the keys methods/lab/schema.yaml allows."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from alignrepro.methods.lab.settings import SdgSettings, TaxonomySettings, TeacherSettings
from alignrepro.settings import SettingsError

LAB = Path(__file__).resolve().parents[1] / "methods/lab"
SECTIONS = {"teacher": TeacherSettings, "taxonomy": TaxonomySettings, "sdg": SdgSettings}


def _tier(tier: str) -> dict:
    cfg = yaml.safe_load((LAB / "config.yaml").read_text())
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in cfg["defaults"].items()}
    for key, value in (cfg["tiers"].get(tier) or {}).items():
        out[key] = {**out[key], **value} if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


@pytest.mark.parametrize("tier", ["ci", "tiny", "full"])
def test_every_tier_parses(tier):
    cfg = _tier(tier)
    for name, cls in SECTIONS.items():
        if name == "teacher" and tier == "full":
            cfg[name] = {**cfg[name], "base_url": "http://127.0.0.1:8000/v1"}  # vLLM's URL: given at full
        parsed = cls.from_dict(cfg[name])
        assert parsed.to_dict() == cfg[name]  # provenance records what the config gave


def test_the_classes_know_the_schema_keys():
    schema = yaml.safe_load((LAB / "schema.yaml").read_text())["properties"]
    for name, cls in SECTIONS.items():
        assert set(cls.config_keys()) == set(schema[name]["properties"]), name


def test_typos_and_bad_values_name_the_key():
    sdg = _tier("tiny")["sdg"]
    with pytest.raises(SettingsError, match=r"lab\.sdg\.max_chunk: unknown SDG setting \(did you mean 'max_chunks'"):
        SdgSettings.from_dict({**sdg, "max_chunk": 2})
    with pytest.raises(SettingsError, match=r"lab\.sdg\.max_chunks: 0"):
        SdgSettings.from_dict({**sdg, "max_chunks": 0})
    with pytest.raises(SettingsError, match=r"lab\.sdg\.block_max_tokens\.gen_spellcheck"):
        SdgSettings.from_dict({**sdg, "block_max_tokens": {"gen_spellcheck": -1}})
    with pytest.raises(SettingsError, match=r"lab\.sdg\.guided: 'yes' is not true/false"):
        SdgSettings.from_dict({**sdg, "guided": "yes"})
    teacher = _tier("full")["teacher"]
    with pytest.raises(SettingsError, match=r"lab\.teacher\.base_url: needed for server 'vllm'"):
        TeacherSettings.from_dict(teacher)
    with pytest.raises(SettingsError, match=r"lab\.teacher\.family"):
        TeacherSettings.from_dict({**teacher, "family": "llama"})
    overrides = SdgSettings.from_dict(sdg).overrides()
    assert overrides["guided"] is True and overrides["block_max_tokens"]["gen_spellcheck"] == 512
