"""Documented dataclass configs loaded from YAML (the litgpt ``args.py`` pattern).

Every stage declares a ``@dataclass`` whose field docstrings (``metadata={"help": ...}``)
document the option. ``load_config(Cls, "configs/x.yaml", overrides)`` builds it:

* unknown keys are an error naming the file and the key (typos never pass silently);
* nested dataclasses and ``list[Dataclass]`` fields are built recursively;
* ``overrides`` are ``"a.b=value"`` strings, parsed with ``yaml.safe_load`` (never ``eval``).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or override is invalid; the message names the file and key."""


def field(default: Any = dataclasses.MISSING, *, help: str, default_factory: Any = dataclasses.MISSING):
    """A dataclass field carrying its documentation in ``metadata['help']``."""
    kw: dict[str, Any] = {"metadata": {"help": help}}
    if default is not dataclasses.MISSING:
        kw["default"] = default
    if default_factory is not dataclasses.MISSING:
        kw["default_factory"] = default_factory
    return dataclasses.field(**kw)


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def apply_overrides(data: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides in place (values parsed as YAML scalars/lists)."""
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value")
        key, raw = item.split("=", 1)
        value = yaml.safe_load(raw) if raw != "" else ""
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
        node[parts[-1]] = value
    return data


def _strip_optional(tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def from_dict(cls: type[T], data: dict[str, Any], where: str = "config") -> T:
    """Build dataclass ``cls`` from a mapping, recursively; errors name ``where`` and the key."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping for {cls.__name__}, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown} for {cls.__name__}; allowed: {sorted(fields)}")
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        tp = _strip_optional(hints[name])
        key = f"{where}.{name}"
        if dataclasses.is_dataclass(tp) and isinstance(value, dict):
            value = from_dict(tp, value, key)
        elif typing.get_origin(tp) is list and value is not None:
            (item_tp,) = typing.get_args(tp) or (Any,)
            item_tp = _strip_optional(item_tp)
            if not isinstance(value, list):
                raise ConfigError(f"{key}: expected a list, got {type(value).__name__}")
            if dataclasses.is_dataclass(item_tp):
                value = [from_dict(item_tp, v, f"{key}[{i}]") for i, v in enumerate(value)]
        kwargs[name] = value
    missing = [f.name for f in fields.values()
               if f.name not in kwargs and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"{where}: missing required key(s) {missing} for {cls.__name__}")
    try:
        obj = cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    return obj


def load_config(cls: type[T], path: str | Path, overrides: list[str] | None = None) -> T:
    """Load ``cls`` from a YAML file, applying ``key=value`` overrides."""
    data = apply_overrides(read_yaml(path), overrides)
    return from_dict(cls, data, where=str(path))


def describe(cls: type) -> list[tuple[str, str, str]]:
    """(name, default, help) for every field: used by docs and ``--help`` output."""
    rows = []
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            default = repr(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            default = repr(f.default_factory())
        else:
            default = "(required)"
        rows.append((f.name, default, f.metadata.get("help", "")))
    return rows


def add_config_arguments(parser, example: str, override_example: str, out: bool = True) -> None:
    """The arguments every stage command shares: ``CONFIG`` (a YAML), ``--out``, repeatable
    ``-o key=value`` overrides and ``--no-progress``. Read them back with :func:`cli_overrides`."""
    parser.add_argument("config", help=f"YAML config (see {example})")
    if out:
        parser.add_argument("--out", help="output folder (default: output_dir from the config)")
    parser.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE",
                        help=f"override a config value, e.g. -o {override_example} (repeatable)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def cli_overrides(args) -> list[str]:
    """``-o`` overrides of a command built with :func:`add_config_arguments`, plus
    ``progress=false`` for ``--no-progress``."""
    return list(args.override) + (["progress=false"] if args.no_progress else [])
