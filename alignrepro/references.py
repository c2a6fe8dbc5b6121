"""Names that point elsewhere in the config, checked at workflow start (else a KeyError an hour later, at job time).

A base names a registry model (`models`); a judge, critic or feedback model names an entry of one registry,
`evals.judges` (or a built-in: oracle, heuristic). Each use of a name plays a *role*, whose keys are a `$defs`
schema: `judge` (config/schema.yaml: compares two answers), and what a paper's manifest adds, e.g. CUT's
`critic` (writes a critique) and MORLAIF's `feedback_model` (label log-probs). A manifest lists its names by path:

    references:
      models: [online_base, "bases[]"]
      judges: {"eval.judge.*": judge, "critic.*": critic}   # path -> role; a plain list means role `judge`

An entry must fit the role of every use (an entry may play several: the tiny tier's `smollm2` judges and gives
MORLAIF's feedback); an entry that no use names must fit some role.
"""

from __future__ import annotations

from typing import Any

import jsonschema

from alignrepro.config import ConfigError, _did_you_mean, _messages, _raise

JUDGE_ROLE = "judge"


def _at(node: Any, path: str, prefix: str) -> list[tuple[str, Any]]:
    """(key path, value) pairs a reference path names: "bases[]" = every item, "critic.*" = every value."""
    found = [(prefix, node)]
    for part in path.split("."):
        nxt = []
        for where, value in found:
            if part == "*" and isinstance(value, dict):
                nxt += [(f"{where}.{k}", v) for k, v in value.items()]
            elif part.endswith("[]") and isinstance(value, dict) and isinstance(value.get(part[:-2]), list):
                nxt += [(f"{where}.{part[:-2]}[{i}]", v) for i, v in enumerate(value[part[:-2]])]
            elif isinstance(value, dict) and part in value:
                nxt.append((f"{where}.{part}", value[part]))
        found = nxt
    return found


def judge_paths(references: dict[str, Any]) -> dict[str, str]:
    """A manifest's `references.judges` as {config path: role}."""
    value = references.get("judges") or {}
    return dict.fromkeys(value, JUDGE_ROLE) if isinstance(value, list) else dict(value)


def roles() -> list[str]:
    """Every role an `evals.judges` entry can play: the pairwise judge, then each role a manifest names."""
    from alignrepro.papers import discover

    found = [JUDGE_ROLE]
    for paper in discover().values():
        found += [r for r in judge_paths(paper.references).values() if r not in found]
    return found


def entry_schema(defs: dict[str, Any]) -> dict[str, Any]:
    """The schema of one `evals.judges` entry: every key some role takes (each use then checks its role's keys)."""
    properties: dict[str, Any] = {}
    takers: dict[str, list[str]] = {}
    backends: list[str] = []
    for role in roles():
        if role not in defs:
            raise ConfigError(f"a paper manifest names judge role {role!r}, but no schema defines $defs {role!r}")
        for key, value in defs[role]["properties"].items():
            if key == "backend":
                backends += [b for b in value["enum"] if b not in backends]
            else:
                properties.setdefault(key, value)
                takers.setdefault(key, []).append(role)
    for key, who in takers.items():  # what a key means depends on the role: say whose it is
        if len(who) < len(roles()):
            properties[key] = {**properties[key], "description": f"{', '.join(who)}: {properties[key]['description']}"}
    backend = {"enum": backends, "description": f"the backend (each role takes some: $defs {', '.join(roles())})"}
    return {
        "description": "a named judge, critic or feedback model; each use checks the keys of its role",
        "type": "object",
        "additionalProperties": False,
        "required": ["backend"],
        "properties": {"backend": backend, **properties},
    }


def _role_problems(defs: dict[str, Any], role: str, name: str, entry: dict[str, Any]) -> list[str]:
    """What keeps entry `name` from playing `role`, as config-key messages about `evals.judges.<name>`."""
    validator = jsonschema.Draft202012Validator({"$defs": defs, "$ref": f"#/$defs/{role}"})
    errors = list(validator.iter_errors(entry))
    if any("propertyNames" in e.schema_path for e in errors):  # "not used with backend X" says more than "unknown"
        errors = [e for e in errors if e.validator != "additionalProperties"]
    where = {"evals": {"judges": {name: entry}}}
    out: list[str] = []
    for err in errors:
        err.path.extendleft(reversed(("evals", "judges", name)))
        out += _messages(err, where, set())
    return list(dict.fromkeys(out))


def _title(defs: dict[str, Any], role: str) -> str:
    return defs[role].get("title", role)


def check_references(config: dict, defs: dict[str, Any], source: str = "config") -> None:
    """Every name used exists, and every named judge, critic or feedback model fits the role of each use (`defs`:
    the assembled schema's $defs, whose role schemas list the keys each role takes)."""
    from alignrepro.judges import registry
    from alignrepro.papers import discover

    models, entries = set(config["models"]), registry(config)
    model_refs: list[tuple[str, Any]] = []
    uses: list[tuple[str, Any, str]] = []  # (key path, name, role)
    ev = config["evals"]
    uses += [("evals.judge", ev["judge"], JUDGE_ROLE)]
    uses += [(f"evals.cards[{i}]", name, JUDGE_ROLE) for i, name in enumerate(ev["cards"])]
    for name, paper in discover().items():
        for path in paper.references.get("models", []):
            model_refs += _at(config[name], path, name)
        for path, role in judge_paths(paper.references).items():
            uses += [(where, value, role) for where, value in _at(config[name], path, name)]
    # `model` is a registry name only for in-process backends; for openai it is the API's model name
    model_refs += [(f"evals.judges.{n}.model", s["model"]) for n, s in ev["judges"].items() if s["backend"] == "local"]

    problems = [
        f"config key '{path}': unknown model {name!r}{_did_you_mean(str(name), models)}. "
        f"Available: {', '.join(sorted(models)) or 'none'}"
        for path, name in model_refs
        if name not in models
    ]
    fits = {(n, r): not _role_problems(defs, r, n, e) for n, e in entries.items() for r in roles()}
    misfits: dict[tuple[str, str], list[str]] = {}  # (name, role) -> the paths that use it so: one message each
    for path, name, role in uses:
        title = _title(defs, role)
        if name not in entries:
            valid = sorted(n for n in entries if fits[n, role])
            problems.append(
                f"config key '{path}': unknown {title} {name!r}{_did_you_mean(str(name), valid)}. "
                f"Available (evals.judges or built-in): {', '.join(valid) or 'none'}"
            )
        elif not fits[name, role]:
            misfits.setdefault((name, role), []).append(path)
    for (name, role), paths in misfits.items():
        also = f" (and {', '.join(paths[1:])})" if len(paths) > 1 else ""
        why = "; ".join(_role_problems(defs, role, name, entries[name]))
        problems.append(f"config key '{paths[0]}'{also}: {name!r} cannot be used as a {_title(defs, role)}: {why}")
    used = {name for _, name, _ in uses}
    for name, entry in ev["judges"].items():
        if name not in used and not any(fits[name, r] for r in roles()):
            # the role it comes closest to fitting says what is wrong with it
            found = [_role_problems(defs, r, name, entry) for r in roles()]
            problems += min(found, key=len)
    if problems:
        _raise(problems, source, "configuration names something that is not defined or does not fit its use")
