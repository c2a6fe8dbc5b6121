"""One config tree: defaults.yaml < tiers/<tier>.yaml < the user's config (config.yaml, --config), validated.

Validation happens at workflow start, so a typo fails in a second with the key's path, not an hour later.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import yaml

CONFIG_DIR = Path(__file__).resolve().parents[1] / "config"
TIERS = ("ci", "tiny", "full")


class ConfigError(ValueError):
    pass


def deep_merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        # A component spec (judge/critic with a `backend`) is replaced whole: keys of the default backend
        # (say, an API model name) must not leak into a different backend's spec.
        if isinstance(value, dict) and isinstance(out.get(key), dict) and "backend" not in value:
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _load_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def coerce_scalars(value: Any) -> Any:
    """Snakemake parses nested `--config cut='{dpo: {beta: 0.2}}'` values as strings; read them as YAML scalars
    (as it does for top-level values), so `0.2` is a number and `true` a boolean before validation."""
    if isinstance(value, dict):
        return {k: coerce_scalars(v) for k, v in value.items()}
    if isinstance(value, list):
        return [coerce_scalars(v) for v in value]
    if isinstance(value, str):
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            return value
        return parsed if isinstance(parsed, int | float | bool) or parsed is None and value.strip() == "null" else value
    return value


# Training sections whose optional `seed` defaults to the top-level one (`--config seed=7` changes every draw).
TRAINING_SEEDS = (("cut", "train"), ("morlaif", "pm", "train"), ("mote", "train", "train"))


def resolve_config(user: dict[str, Any], config_dir: Path = CONFIG_DIR) -> dict[str, Any]:
    """Merge the tier preset under the user's values and validate the result against config/schema.yaml."""
    user = coerce_scalars(user)
    tier = user.get("tier", "tiny")
    if tier not in TIERS:
        raise ConfigError(
            f"config key 'tier': {tier!r} is not one of {list(TIERS)} (set in config/config.yaml or --config tier=...)"
        )
    merged = deep_merge(_load_yaml(config_dir / "defaults.yaml"), _load_yaml(config_dir / "tiers" / f"{tier}.yaml"))
    merged = deep_merge(merged, user)
    validate(merged, config_dir / "schema.yaml", source=f"config/tiers/{tier}.yaml + config/config.yaml/--config")
    for path in TRAINING_SEEDS:  # a run's `seed` reseeds its training too, unless a paper pins its own
        node = merged
        for key in path:
            node = node[key]
        node.setdefault("seed", merged["seed"])
    return merged


def validate(config: dict, schema_path: Path, source: str) -> None:
    schema = _load_yaml(schema_path)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        lines = []
        for err in errors[:10]:
            key = ".".join(str(p) for p in err.absolute_path) or "<top level>"
            lines.append(f"  config key '{key}': {err.message}")
        raise ConfigError(f"invalid configuration ({source}), checked against {schema_path.name}:\n" + "\n".join(lines))
