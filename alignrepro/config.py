"""One config tree: defaults.yaml < tiers/<tier>.yaml < the user's config (config.yaml, --config), validated.

Validation happens at workflow start, so a typo fails in a second with the key's path, not an hour later:
every YAML file is read strictly (a duplicate key is an error, not a silent override), every number must be finite,
the merged tree is checked against config/schema.yaml (every object closed: an unknown key names the closest valid
one), and names that point elsewhere in the tree (models, judges) must exist.
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
        # A component spec (judge/critic with a `backend`) is replaced whole: keys of the default backend
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
    merged = deep_merge(load_yaml(config_dir / "defaults.yaml"), load_yaml(config_dir / "tiers" / f"{tier}.yaml"))
    merged = deep_merge(merged, user)
    source = f"config/tiers/{tier}.yaml + config/config.yaml/--config"
    check_finite(merged, source)
    validate(merged, config_dir / "schema.yaml", source=source)
    check_references(merged, source)
    for path in TRAINING_SEEDS:  # a run's `seed` reseeds its training too, unless a paper pins its own
        node = merged
        for key in path:
            node = node[key]
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


def validate(config: dict, schema_path: Path, source: str) -> None:
    schema = load_yaml(schema_path)
    validator = jsonschema.Draft202012Validator(schema)
    # additionalProperties first, so that a propertyNames error on the same unknown key is not reported twice
    errors = sorted(
        validator.iter_errors(config),
        key=lambda e: (e.validator != "additionalProperties", [str(p) for p in e.absolute_path]),
    )
    if errors:
        unknown: set[tuple[str, str]] = set()
        lines = [m for err in errors for m in _messages(err, config, unknown)]
        _raise(lines, f"{source}, checked against {schema_path.name}", "invalid configuration")


# ---------------------------------------------------------------------------------------------------- references
def _judge_names(config: dict) -> set[str]:
    from alignrepro.judges import BUILTIN_JUDGES  # light: backends import their dependencies only when built

    return set(BUILTIN_JUDGES) | set(config["evals"]["judges"])


def check_references(config: dict, source: str = "config") -> None:
    """Names that point elsewhere in the config must exist there: a base or a local judge/critic/feedback model
    in `models`, a judge name in `evals.judges` (or a built-in judge). Otherwise a KeyError at job time."""
    models, judges = set(config["models"]), _judge_names(config)
    refs: list[tuple[str, str, str]] = []  # (key path, name, "model" | "judge")

    def model(path: str, name: Any) -> None:
        refs.append((path, name, "model"))

    cut, ml, mt, ev = config["cut"], config["morlaif"], config["mote"], config["evals"]
    model("cut.online_base", cut["online_base"])
    for section, bases in (("cut", cut["bases"]), ("morlaif", ml["bases"]), ("mote", mt["bases"])):
        for i, name in enumerate(bases):
            model(f"{section}.bases[{i}]", name)
    model("morlaif.matrix_base", ml["matrix_base"])
    # `model` is a registry name only for in-process backends; for openai it is the API's model name
    local_specs = [(f"cut.critic.{g}", s, "hf") for g, s in cut["critic"].items()]
    local_specs += [(f"cut.eval.judge.{g}", s, "local") for g, s in cut["eval"]["judge"].items()]
    local_specs += [(f"evals.judges.{n}", s, "local") for n, s in ev["judges"].items()]
    local_specs += [("morlaif.feedback", ml["feedback"], "local")]
    for path, spec, local in local_specs:
        if spec.get("backend") == local and "model" in spec:
            model(f"{path}.model", spec["model"])
    refs += [("evals.judge", ev["judge"], "judge"), ("morlaif.judge", ml["judge"], "judge")]
    refs += [("mote.judge", mt["judge"], "judge")]
    refs += [(f"evals.cards[{i}]", name, "judge") for i, name in enumerate(ev["cards"])]

    problems = []
    for path, name, kind in refs:
        known = models if kind == "model" else judges
        if name not in known:
            problems.append(
                f"config key '{path}': unknown {kind} {name!r}{_did_you_mean(str(name), known)}. "
                f"Available: {', '.join(sorted(known)) or 'none'}"
            )
    if problems:
        _raise(problems, source, "configuration names something that is not defined")
