"""Loading a configuration: YAML files and command-line overrides into checked dataclasses.

The schema lives beside this file (:mod:`training.config.sft`,
:mod:`training.config.rl`); this module knows nothing of its sections. It builds
any dataclass tree from a nested mapping, coercing each value to the field's type
and naming the closest key when one is unknown, and makes the command line from
the same classes::

    python -m training.sft --config training/configs/tiny-cpu.yaml --optim.lr 1e-3
    python -m training.sft --config training/configs/tiny-cpu.yaml train.steps=10

A schema field declares its help text with :func:`help_text` and a section checks
itself in ``__post_init__`` with :func:`check`, so a wrong value fails at start-up
with a message that says what to change.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from sr3desk.errors import Sr3Error

T = TypeVar("T")


class ConfigError(Sr3Error):
    """A configuration value is missing, unknown or out of range."""


def help_text(text: str) -> dict[str, str]:
    """Field metadata carrying ``text`` as the field's help (``--help`` and errors)."""
    return {"help": text}


def check(ok: bool, message: str) -> None:
    """Raise :class:`ConfigError` with ``message`` (which says what to change) unless ``ok``."""
    if not ok:
        raise ConfigError(message)


def from_mapping(cls: type[T], data: Mapping[str, Any], where: str = "") -> T:
    """Build dataclass ``cls`` from a nested mapping, coercing and checking each value.

    Unknown keys raise :class:`ConfigError` naming the closest known key; a
    top-level section listed in ``cls.other_stages`` is skipped.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where or 'config'} must be a mapping of keys to values")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    skip = set(getattr(cls, "other_stages", ())) if not where else set()
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key in skip and key not in fields:
            continue
        if key not in fields:
            near = difflib.get_close_matches(key, list(fields), n=1)
            hint = f" (did you mean {where}{near[0]}?)" if near else ""
            known = ", ".join(fields)
            raise ConfigError(f"unknown config key {where}{key}{hint}; known: {known}")
        kwargs[key] = _coerce(value, hints[key], f"{where}{key}")
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{where or 'config'}: {exc}") from exc


def _coerce(value: Any, hint: Any, name: str) -> Any:
    """Convert a YAML or command-line value to the field's declared type."""
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return from_mapping(hint, value or {}, where=f"{name}.")
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        is_null = value is None or (
            isinstance(value, str) and value.lower() in ("null", "none", "~")
        )
        if is_null and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], name)
    if origin in (list, tuple):
        if isinstance(value, str):
            parsed = yaml.safe_load(value) if value.strip().startswith("[") else None
            items = (
                parsed
                if isinstance(parsed, list)
                else [v.strip() for v in value.split(",") if v.strip()]
            )
        elif isinstance(value, list | tuple):
            items = list(value)
        elif value is None:
            items = []
        else:
            raise ConfigError(f"{name} must be a list, got {value!r}")
        item_type = args[0] if args else str
        out = [_coerce(v, item_type, f"{name}[{i}]") for i, v in enumerate(items)]
        return tuple(out) if origin is tuple else out
    if hint is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "yes", "on", "1"):
            return True
        if text in ("false", "no", "off", "0"):
            return False
        raise ConfigError(f"{name} must be true or false, got {value!r}")
    if hint is int:
        if isinstance(value, bool):
            raise ConfigError(f"{name} must be an integer, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name} must be an integer, got {value!r}") from None
        if number != int(number):
            raise ConfigError(f"{name} must be an integer, got {value!r}")
        return int(number)
    if hint is float:
        if isinstance(value, bool):
            raise ConfigError(f"{name} must be a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name} must be a number, got {value!r}") from None
    if hint is str:
        if value is None:
            return ""
        if isinstance(value, Mapping | list):
            raise ConfigError(f"{name} must be a string, got {value!r}")
        return str(value)
    return value


def _merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file into a dict; ConfigError when missing or malformed."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {p} does not exist")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {p} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p} must hold a mapping of sections")
    return data


def _field_paths(cls: type, prefix: str = "") -> list[tuple[str, dataclasses.Field[Any], Any]]:
    """Every leaf field of a dataclass tree as (dotted name, field, type)."""
    hints = typing.get_type_hints(cls)
    out: list[tuple[str, dataclasses.Field[Any], Any]] = []
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint) and isinstance(hint, type):
            out.extend(_field_paths(hint, f"{prefix}{f.name}."))
        else:
            out.append((f"{prefix}{f.name}", f, hint))
    return out


def _default_text(f: dataclasses.Field[Any]) -> str:
    if f.default is not dataclasses.MISSING:
        return json.dumps(f.default)
    if f.default_factory is not dataclasses.MISSING:
        return json.dumps(f.default_factory())
    return "required"


def add_field_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add one ``--section.field V`` option per leaf field of dataclass ``cls``.

    Read the values back with :func:`overrides_from_args`.
    """
    for dotted, f, _hint in _field_paths(cls):
        text = f.metadata.get("help", "")
        parser.add_argument(
            f"--{dotted}",
            dest=f"set:{dotted}",
            default=None,
            metavar="V",
            help=f"{text} (default: {_default_text(f)})",
        )


def overrides_from_args(
    ns: argparse.Namespace, tree: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Apply the ``--section.field`` values of a parsed namespace onto ``tree`` (a copy)."""
    out = _merge({}, tree or {})
    for key, value in vars(ns).items():
        if key.startswith("set:") and value is not None:
            _set_dotted(out, key[4:], _yaml_scalar(value))
    return out


def build_parser(
    cls: type, prog: str | None = None, description: str | None = None
) -> argparse.ArgumentParser:
    """An argparse parser with ``--config``, ``KEY=VALUE`` and one ``--section.field`` per field."""
    parser = argparse.ArgumentParser(
        prog=prog, description=description or (cls.__doc__ or "").strip().splitlines()[0]
    )
    parser.add_argument(
        "--config", action="append", default=[], help="YAML config file (repeat to layer)"
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="overrides such as train.steps=10 (same as --train.steps 10)",
    )
    add_field_arguments(parser, cls)
    return parser


def load_config(
    cls: type[T],
    argv: Sequence[str] | None = None,
    prog: str | None = None,
    description: str | None = None,
) -> T:
    """Parse ``--config FILE`` (repeatable), ``--a.b V`` and ``a.b=V`` into a checked ``cls``.

    ``argv`` defaults to ``sys.argv[1:]``. Later sources win: the files in order,
    then ``--a.b V`` options, then ``a.b=V`` overrides.
    """
    parser = build_parser(cls, prog=prog, description=description)
    ns = parser.parse_args(list(argv) if argv is not None else None)
    tree: dict[str, Any] = {}
    for path in ns.config:
        tree = _merge(tree, read_yaml(path))
    tree = overrides_from_args(ns, tree)
    known = {dotted for dotted, _f, _h in _field_paths(cls)}
    for item in ns.overrides:
        if "=" not in item:
            raise ConfigError(f"cannot read argument {item!r}: write overrides as key=value")
        key, value = item.split("=", 1)
        key = key.strip()
        if key not in known:
            near = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f" (did you mean {near[0]}?)" if near else ""
            raise ConfigError(f"unknown config key {key}{hint}")
        _set_dotted(tree, key, _yaml_scalar(value))
    return from_mapping(cls, tree)


def _yaml_scalar(value: str) -> Any:
    """Parse a command-line value the way YAML would (lists, null, booleans)."""
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError:
        return value


def save_config(config: Any, path: str | Path) -> None:
    """Write a config dataclass as YAML (readable, and loadable with ``--config``)."""
    Path(path).write_text(
        yaml.safe_dump(dataclasses.asdict(config), sort_keys=False), encoding="utf-8"
    )
