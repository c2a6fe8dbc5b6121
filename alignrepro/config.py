"""One config tree: defaults < tier < the user's config (config.yaml, --config), validated.

The shared settings live in config/defaults.yaml and config/tiers/<tier>.yaml; each paper's live in its own folder
(methods/<paper>/config.yaml: `defaults` and `tiers.<tier>`, schema in methods/<paper>/schema.yaml), found through
the paper manifests (alignrepro.papers), and are merged at the paper's key.

Validation happens at workflow start, so a typo fails in a second with the key's path, not an hour later:
every YAML file is read strictly (a duplicate key is an error, not a silent override), every number must be finite,
the merged tree is checked against config/schema.yaml (every object closed: an unknown key names the closest valid
one), and names that point elsewhere in the tree (models; judges, critics, feedback models) must exist and fit
their use (alignrepro/references.py).
"""

from __future__ import annotations

import copy
import difflib
import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from alignrepro.errors import UserError

CONFIG_DIR = Path(__file__).resolve().parents[1] / "config"
TIERS = ("ci", "tiny", "full")


class ConfigError(UserError, ValueError):
    """A config file or value is wrong; the message names the file or the key and what was expected."""


class StrictLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader, except that a key given twice in one mapping is an error: plain PyYAML keeps the last
    value silently, so a second `tier:` further down a config file would quietly win."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        if isinstance(node, yaml.MappingNode):
            first_line: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor` merges are allowed to repeat keys
                    continue
                key = self.construct_object(key_node, deep=deep)
                try:
                    seen = key in first_line
                except TypeError:  # an unhashable key: SafeLoader's own error says so
                    break
                if seen:
                    raise yaml.constructor.ConstructorError(
                        None,
                        None,
                        f"duplicate key {key!r} (first given on line {first_line[key] + 1}; a key may appear once)",
                        key_node.start_mark,
                    )
                first_line[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def _shown(path: Path) -> str:
    """The path relative to the working directory when it is below it (`config/config.yaml`), else absolute."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def load_yaml(path: str | Path) -> dict:
    """A config YAML file as a mapping (an empty file is {}); any problem is a ConfigError naming the file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"{_shown(path)}: cannot read the config file ({e.strerror or e})") from e
    try:
        data = yaml.load(text, Loader=StrictLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"{_shown(path)}{where}: not valid YAML: {e.problem or e.context}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"{_shown(path)}: not valid YAML: {e}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{_shown(path)}: expected a mapping of config keys at the top level (e.g. `tier: tiny`), "
            f"got a {type(data).__name__}"
        )
    return data


def check_config_files(paths: Iterable[str | Path]) -> None:
    """Read the user's config files strictly before Snakemake does: its own loader names no file in its errors
    and keeps the last of duplicate keys. Missing files are left to Snakemake (`configfile:` may be optional)."""
    for path in paths:
        if Path(path).exists():
            load_yaml(path)


def deep_merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        # A component spec (a judge registry entry: it has a `backend`) is replaced whole: keys of the default backend
        # (say, an API model name) must not leak into a different backend's spec.
        if isinstance(value, dict) and isinstance(out.get(key), dict) and "backend" not in value:
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


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


def defaults_for_tier(tier: str, config_dir: Path = CONFIG_DIR) -> dict[str, Any]:
    """The shared defaults and tier preset with every paper's own merged in at its key (before the user's values)."""
    from alignrepro.papers import discover

    merged = deep_merge(load_yaml(config_dir / "defaults.yaml"), load_yaml(config_dir / "tiers" / f"{tier}.yaml"))
    for name, paper in discover().items():
        if name in merged:
            raise ConfigError(f"config key {name!r} is both a shared setting and paper {paper.folder}")
        merged[name] = deep_merge(paper.defaults(), paper.tier(tier))
        for model, spec in paper.models(tier).items():  # registry models only this paper uses (its full-tier base)
            if model in merged["models"] and merged["models"][model] != spec:
                raise ConfigError(f"{paper.config}: models.{tier}.{model} differs from the registry entry of that name")
            merged["models"][model] = spec
    return merged


def schema(config_dir: Path = CONFIG_DIR) -> dict[str, Any]:
    """config/schema.yaml with each paper's fragment at its key (its $defs joined to the shared ones)."""
    from alignrepro.papers import discover
    from alignrepro.references import entry_schema

    out = load_yaml(config_dir / "schema.yaml")
    names = list(discover())
    for name, paper in discover().items():
        frag = dict(paper.schema_fragment())
        for key, value in (frag.pop("$defs", None) or {}).items():
            if key in out["$defs"]:
                raise ConfigError(f"{paper.schema}: $defs {key!r} is already defined in config/schema.yaml")
            out["$defs"][key] = value
        for key, table in paper.row_lists.items():  # lists of rows name the rows the manifest declares (one table)
            frag["properties"][key]["items"] = {"enum": [n for n, r in paper.rows.items() if r.get("table") == table]}
        out["properties"][name] = frag
        out["required"].append(name)
    out["properties"]["papers"]["items"] = {"enum": names}
    # the judge registry's entries take the keys of every role (a judge's, CUT's critic's, MORLAIF's feedback model's)
    out["$defs"]["judge_entry"] = entry_schema(out["$defs"])
    return out


def resolve_config(user: dict[str, Any], config_dir: Path = CONFIG_DIR) -> dict[str, Any]:
    """Merge the tier preset under the user's values and validate the result against the assembled schema."""
    from alignrepro.papers import discover
    from alignrepro.references import check_references

    user = coerce_scalars(user)
    tier = user.get("tier", "tiny")
    if tier not in TIERS:
        raise ConfigError(
            f"config key 'tier': {tier!r} is not one of {list(TIERS)} (set in config/config.yaml or --config tier=...)"
        )
    merged = deep_merge(defaults_for_tier(tier, config_dir), user)
    source = f"tier {tier} (config/ + methods/*/config.yaml) + config/config.yaml/--config"
    check_finite(merged, source)
    tree = schema(config_dir)
    validate(merged, tree, source=source)
    check_references(merged, tree["$defs"], source)
    # One W&B project per tier: every script gets the concrete name (alignrepro/wandb_runs.py)
    merged["wandb"]["project"] = merged["wandb"]["project"].replace("{tier}", tier)
    for name, paper in discover().items():  # a run's `seed` reseeds its training too, unless a paper pins its own
        for path in paper.training_seeds:
            node = merged[name]
            for key in path.split("."):
                node = node[key] if node is not None else None
            if node is not None:  # an optional step switched off (null) has no seed to set
                node.setdefault("seed", merged["seed"])
    return merged


# ------------------------------------------------------------------------------------------------ error messages
def key_path(parts: Iterable[Any]) -> str:
    """`cut.bases[0]`-style path of a key; '<top level>' for the root."""
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "<top level>"


def _raise(problems: list[str], source: str, what: str) -> None:
    if len(problems) == 1:
        raise ConfigError(f"{what} ({source}): {problems[0]}")
    shown = problems[:10] + ([f"... and {len(problems) - 10} more"] if len(problems) > 10 else [])
    raise ConfigError(f"{what} ({source}):\n" + "\n".join(f"  {p}" for p in shown))


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_finite(config: Any, source: str = "config") -> None:
    """YAML's .nan / .inf are floats that pass every JSON-schema bound (NaN compares false both ways): refuse them."""
    bad: list[str] = []

    def walk(node: Any, path: tuple) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, (*path, k))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, (*path, i))
        elif isinstance(node, float) and not math.isfinite(node):
            bad.append(f"config key '{key_path(path)}': {node} is not a finite number")

    walk(config, ())
    if bad:
        _raise(bad, source, "invalid configuration")


def _unknown_keys(err: jsonschema.ValidationError) -> list[str]:
    """The keys an `additionalProperties: false` error is about, in the order given."""
    allowed = err.schema.get("properties", {})
    patterns = err.schema.get("patternProperties", {})
    return [k for k in err.instance if k not in allowed and not any(re.search(p, k) for p in patterns)]


def _messages(err: jsonschema.ValidationError, config: dict, unknown: set[tuple[str, str]]) -> list[str]:
    where = key_path(err.absolute_path)
    if err.validator == "additionalProperties" and err.validator_value is False:
        allowed = sorted(err.schema.get("properties", {}))
        out = []
        for key in _unknown_keys(err):
            unknown.add((where, key))
            hint = _did_you_mean(key, allowed) or f" (allowed: {', '.join(allowed)})"
            out.append(f"config key '{where}': unknown key {key!r}{hint}")
        return out
    if "propertyNames" in err.schema_path:
        return _key_name_message(err, where, config, unknown)
    if err.validator == "enum" and isinstance(err.instance, str):
        return [f"config key '{where}': {err.message}{_did_you_mean(err.instance, map(str, err.validator_value))}"]
    if err.validator in ("oneOf", "anyOf") and err.context:
        if isinstance(err.instance, dict | list):  # what the alternative of the value's own type found wrong in it
            deeper = [c for c in err.context if c.relative_path]
            same = [c for c in err.context if not c.relative_path and c.validator not in ("type", "const", "enum")]
            if deeper or same:
                return [m for c in deeper + same for m in _messages(c, config, unknown)]
        # e.g. `target_modules: 3`: say what each alternative wanted, not only "is not valid under any given schema"
        wanted = "; ".join(dict.fromkeys(c.message for c in err.context if not c.relative_path))
        return [f"config key '{where}': {err.instance!r} is not valid here: {wanted or err.message}"]
    return [f"config key '{where}': {err.message}"]


def _key_name_message(
    err: jsonschema.ValidationError, where: str, config: dict, unknown: set[tuple[str, str]]
) -> list[str]:
    """An error of `propertyNames`: a registry name that cannot be a file name, or a key the object's
    backend/source does not take (its schema lists the keys of every backend)."""
    name = err.instance
    if err.validator == "pattern":
        return [
            f"config key '{where}': name {name!r} is not valid: use letters, digits, '.', '_' and '-' "
            "(names become file paths)"
        ]
    if (where, name) in unknown:
        return []  # already reported as an unknown key
    allowed = [str(v) for v in err.validator_value] if err.validator == "enum" else []
    node: Any = config
    for p in err.absolute_path:
        node = node[p]
    kind = next((f"{k} {node[k]!r}" for k in ("backend", "source") if isinstance(node, dict) and k in node), None)
    if kind is None:
        hint = _did_you_mean(str(name), allowed) or (f" (allowed: {', '.join(allowed)})" if allowed else "")
        return [f"config key '{where}': unknown key {name!r}{hint}{'' if allowed else ': ' + err.message}"]
    return [f"config key '{where}': key {name!r} is not used with {kind} (its keys: {', '.join(allowed)})"]


def validate(config: dict, schema_tree: dict[str, Any], source: str) -> None:
    validator = jsonschema.Draft202012Validator(schema_tree)
    # additionalProperties first, so that a propertyNames error on the same unknown key is not reported twice
    errors = sorted(
        validator.iter_errors(config),
        key=lambda e: (e.validator != "additionalProperties", [str(p) for p in e.absolute_path]),
    )
    if errors:
        unknown: set[tuple[str, str]] = set()
        lines = [m for err in errors for m in _messages(err, config, unknown)]
        _raise(lines, f"{source}, checked against the schema", "invalid configuration")
