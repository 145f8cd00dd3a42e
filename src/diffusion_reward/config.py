"""Frozen dataclass configs that document themselves, and their bridge to argparse and JSON.

Every config field is declared with :func:`option`, which stores a help string in the field's
metadata. The same dataclass then serves the Python API (construct it directly), the command
line (:func:`add_config_args` / :func:`config_from_args` make one ``--flag`` per field with the
help text) and the run directory (:func:`to_dict` / :func:`from_dict` round-trip through JSON).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
from typing import Any, Literal, TypeVar, get_args, get_origin

T = TypeVar("T")


def option(default: Any, help: str, **kwargs: Any) -> Any:
    """A dataclass field with a default and a help string shown by ``--help``."""
    if isinstance(default, (list, dict, set)):
        raise TypeError("use a tuple (immutable) for sequence defaults in frozen configs")
    return dataclasses.field(default=default, metadata={"help": help, **kwargs})


def _flag(name: str, prefix: str) -> str:
    return "--" + (prefix + name).replace("_", "-")


def _resolve_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(get_args(tp)) == 2:
            return args[0], True
    return tp, False


def add_config_args(parser: argparse.ArgumentParser, cls: type, prefix: str = "",
                    skip: tuple[str, ...] = (), only: tuple[str, ...] | None = None) -> None:
    """Add one command-line flag per field of the dataclass ``cls`` (with ``only``: of those fields alone,
    so that a command can show its settings in groups).

    Defaults are left as ``None`` in argparse so that :func:`config_from_args` can tell which
    flags the user actually gave and apply them on top of a preset.
    """
    hints = _resolve_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip or (only is not None and f.name not in only) or not f.metadata.get("cli", True):
            continue
        tp, optional = _unwrap_optional(hints[f.name])
        help_text = f.metadata.get("help", "")
        default = f.default if f.default is not dataclasses.MISSING else None
        help_text = f"{help_text} (default: {default!r})".replace("%", "%%")
        flag = _flag(f.name, prefix)
        kwargs: dict[str, Any] = {"dest": prefix + f.name, "default": None, "help": help_text}
        origin = get_origin(tp)
        if tp is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
        elif origin is Literal:
            parser.add_argument(flag, choices=list(get_args(tp)), **kwargs)
        elif origin is tuple:
            item = get_args(tp)[0]
            parser.add_argument(flag, nargs="+", type=item, metavar=item.__name__.upper(), **kwargs)
        elif tp in (int, float, str):
            parser.add_argument(flag, type=tp, metavar=tp.__name__.upper(), **kwargs)
        elif dataclasses.is_dataclass(tp):
            continue  # nested configs are exposed by their own add_config_args call
        else:
            raise TypeError(f"{cls.__name__}.{f.name}: unsupported config type {tp!r}")


def config_from_args(cls: type[T], args: argparse.Namespace, base: T | None = None,
                     prefix: str = "") -> T:
    """Build a ``cls`` from parsed args: fields the user gave override ``base`` (or the defaults)."""
    values = {}
    for f in dataclasses.fields(cls):
        value = getattr(args, prefix + f.name, None)
        if value is not None:
            values[f.name] = tuple(value) if isinstance(value, list) else value
    if base is None:
        return cls(**values)
    return dataclasses.replace(base, **values)


def to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-ready dict of a (possibly nested) config dataclass."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def from_dict(cls: type[T], data: dict[str, Any], strict: bool = True) -> T:
    """Rebuild a config dataclass from :func:`to_dict` output.

    With ``strict`` an unknown key is an error naming it (a config written by a newer version,
    or a typo in a hand-edited file); without, unknown keys are ignored. A setting that was removed
    (listed in the class's ``RETIRED``: name -> the value at which it did nothing, and the document
    that records why it went) reads as before when it holds that value, and is otherwise a
    ``ValueError`` naming it: what was made with it cannot be rebuilt without it.
    """
    hints = _resolve_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    data = _drop_retired(cls, data)
    unknown = sorted(set(data) - names)
    if unknown and strict:
        raise ValueError(f"{cls.__name__}: unknown config key(s) {unknown}; expected some of {sorted(names)}")
    values = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        tp, _ = _unwrap_optional(hints[f.name])
        if dataclasses.is_dataclass(tp) and isinstance(value, dict):
            value = from_dict(tp, value, strict=strict)
        elif get_origin(tp) is tuple and isinstance(value, list):
            value = tuple(value)
        values[f.name] = value
    return cls(**values)


def retired(inert: Any, document: str) -> tuple[Any, str]:
    """An entry of a config class's ``RETIRED``: the value at which a removed setting did nothing, and
    the document (under ``docs/``) that records the experiment that removed it."""
    return inert, document


def _drop_retired(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    gone: dict[str, tuple[Any, str]] = getattr(cls, "RETIRED", {})
    for name in set(data) & set(gone):
        inert, document = gone[name]
        value = data[name]
        if value != inert and not (isinstance(inert, float) and isinstance(value, (int, float)) and value == inert):
            raise ValueError(f"{cls.__name__}: the setting {name}={value!r} was removed (see {document}); "
                             f"this was made by an older diffusion-reward that had it")
    return {k: v for k, v in data.items() if k not in gone}


def describe(cfg: Any) -> str:
    """Pretty JSON of a config, for logs."""
    return json.dumps(to_dict(cfg), indent=2, sort_keys=True)
