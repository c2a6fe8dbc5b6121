"""Typed step settings: each step parses its config section once into a frozen dataclass (the pattern of
`alignrepro.training.TrainSettings`), so a typo or a value of the wrong type fails at the step's entry naming the
config key (and the closest valid key), never as a KeyError deep inside the step.

A settings class subclasses `Settings` and is a frozen dataclass whose fields carry `metadata={"help": ...}`. Its
field defaults are the engine's own (what a backend does when nothing is said), never a paper's: those live in YAML
(methods/<paper>/config.yaml `defaults:`). `to_dict()` gives back what the config gave (the keys `from_dict` read),
so provenance blocks and their config hashes stay what they were when the dict itself was recorded.

Light on purpose (no torch): rules, CLIs and tests import it to check a section without loading a model.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import types
import typing
from functools import cache
from typing import Any, ClassVar, Literal

from alignrepro.errors import UserError


class SettingsError(UserError, ValueError):
    """A step's settings name an unknown key or hold a bad value (a ValueError too, what the merge functions raised
    before)."""


def closest_key(key: str, known: Any) -> str:
    """' (did you mean 'x'?)' for the closest valid key, or ''."""
    known = [str(k) for k in known]
    close = difflib.get_close_matches(str(key), known, n=1)
    close = close or sorted((k for k in known if k in str(key) or str(key) in k), key=len)[-1:]  # kl_target -> kl
    return f" (did you mean {close[0]!r}?)" if close else ""


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def type_ok(value: Any, tp: Any) -> bool:
    """Whether a config value fits a field annotation (ints are floats too; bools are neither; floats are finite)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return True
    if tp is type(None):
        return value is None
    if origin in (typing.Union, types.UnionType):
        return any(type_ok(value, a) for a in args)
    if origin is Literal:
        return any(value == a and type(value) is type(a) for a in args)
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if origin in (list, tuple):
        return isinstance(value, list | tuple) and all(type_ok(v, args[0]) for v in value) if args else True
    if origin is dict:
        return isinstance(value, dict) and all(type_ok(v, args[1]) for v in value.values())
    return isinstance(value, origin or tp)


def type_name(tp: Any) -> str:
    """An annotation in words, for error messages ("an integer or null")."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) for a in args)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (list, tuple):
        plural = {str: "strings", int: "integers", float: "numbers", bool: "true/false values"}
        return f"a list of {plural.get(args[0], type_name(args[0]))}" if args else "a list"
    if origin is dict:
        return "a mapping"
    names = {bool: "true/false", int: "an integer", float: "a finite number", str: "a string", type(None): "null"}
    return names.get(tp, getattr(tp, "__name__", str(tp)))


class Settings:
    """Mixin of the typed settings dataclasses: `from_dict` (parse and check), `to_dict` (provenance), `with_`."""

    WHAT: ClassVar[str] = "setting"  # "unknown <WHAT>" in messages
    SECTION: ClassVar[str] = "settings"  # the config path messages name when the caller gives none
    NOT_CONFIG: ClassVar[tuple[str, ...]] = ()  # fields no config key sets (filled by from_dict itself)

    @classmethod
    def config_keys(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls) if f.init and f.name not in cls.NOT_CONFIG]

    @classmethod
    def parse(cls, data: Any, where: str, extra: tuple[str, ...] = ()) -> dict[str, Any]:
        """The constructor's keyword arguments from a config section: every key known (or in `extra`, which the
        caller files itself), every required key given, every value of its field's type (a nested Settings field
        parsed by its own class, its path in the messages)."""
        if isinstance(data, Settings):
            data = data.to_dict()
        if not isinstance(data, dict):
            raise SettingsError(f"{where}: expected a mapping of {cls.WHAT}s, got {type(data).__name__} {data!r}")
        names = cls.config_keys()
        for key in data:
            if key not in names and key not in extra:
                known = sorted([*names, *extra])
                raise SettingsError(f"{where}.{key}: unknown {cls.WHAT}{closest_key(key, known)}; known: {known}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        required = [n for n in names if _required(fields[n])]
        missing = [n for n in required if n not in data]
        if missing:
            raise SettingsError(f"{where}: missing {cls.WHAT}(s) {missing}")
        hints, out = _hints(cls), {}
        for key, value in data.items():
            if key not in names:
                continue
            tp = hints[key]
            sub = _settings_class(tp)
            if sub is not None and isinstance(value, dict):
                value = sub.from_dict(value, f"{where}.{key}")
            elif not type_ok(value, tp):
                raise SettingsError(f"{where}.{key}: {value!r} is not {type_name(tp)}")
            out[key] = copy.deepcopy(value) if isinstance(value, list | dict) else value
        return out

    @classmethod
    def from_dict(cls, data: Any, where: str | None = None):
        """Parse a config section (`where`: its config path, for the messages); then `check` the value ranges."""
        where = where or cls.SECTION
        obj = cls(**cls.parse(data, where))._given_keys(list(data.to_dict() if isinstance(data, Settings) else data))
        obj.check(where)
        return obj

    def check(self, where: str) -> None:
        """Value ranges and cross-field rules (a subclass's); raise SettingsError naming `where`.<key>."""

    def _given_keys(self, keys: list[str]):
        object.__setattr__(self, "_given", tuple(k for k in keys if k in self.config_keys()))
        return self

    def to_dict(self) -> dict[str, Any]:
        """The settings as the config gave them (JSON-able): the keys `from_dict` read, or every field that differs
        from its default when built directly; nested settings likewise."""
        given = getattr(self, "_given", None)
        if given is None:
            given = [
                f.name
                for f in dataclasses.fields(self)
                if f.name in self.config_keys() and getattr(self, f.name) != _default(f)
            ]
        return {k: _plain(getattr(self, k)) for k in given}

    def with_(self, **changes: Any):
        """A copy with `changes` (recorded as given, as if the config had said them)."""
        given = [*self.to_dict(), *(k for k in changes if k not in self.to_dict())]
        return dataclasses.replace(self, **changes)._given_keys(given)


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else dataclasses.MISSING


def _settings_class(tp: Any) -> type[Settings] | None:
    for t in (tp, *typing.get_args(tp)):
        if isinstance(t, type) and issubclass(t, Settings):
            return t
    return None


def _plain(value: Any) -> Any:
    if isinstance(value, Settings):
        return value.to_dict()
    return copy.deepcopy(value)


def check_positive(where: str, key: str, value: Any, minimum: float = 0, inclusive: bool = False) -> None:
    """`value` > `minimum` (>= with `inclusive`); None passes (an optional setting left out)."""
    if value is None:
        return
    if value < minimum or (value == minimum and not inclusive):
        raise SettingsError(f"{where}.{key}: {value!r} (expected {'>=' if inclusive else '>'} {minimum})")


def check_choice(where: str, key: str, value: Any, choices: tuple[Any, ...]) -> None:
    if value not in choices:
        raise SettingsError(f"{where}.{key}: {value!r} (expected one of {', '.join(map(repr, choices))})")


@dataclasses.dataclass(frozen=True)
class LoraSettings(Settings):
    """A LoRA adapter (alignrepro.training.lora_config reads `to_dict()`)."""

    WHAT: ClassVar[str] = "LoRA setting"
    SECTION: ClassVar[str] = "lora"

    r: int = dataclasses.field(metadata={"help": "LoRA rank (> 0)"})
    alpha: float = dataclasses.field(metadata={"help": "LoRA alpha (scale = alpha / r; > 0)"})
    dropout: float = dataclasses.field(metadata={"help": "LoRA dropout, in [0, 1)"})
    target_modules: str | list[str] = dataclasses.field(metadata={"help": "module names, or 'all-linear'"})

    def check(self, where: str) -> None:
        check_positive(where, "r", self.r)
        check_positive(where, "alpha", self.alpha)
        if not 0 <= self.dropout < 1:
            raise SettingsError(f"{where}.dropout: {self.dropout!r} (expected a number in [0, 1))")
