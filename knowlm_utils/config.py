"""Documented, validated dataclass configs loaded from YAML (the litgpt ``args.py`` pattern).

Every stage declares its config as a dataclass whose fields carry their documentation and
their allowed values::

    @dataclass
    class PreprocessConfig(StageConfig):
        seq_length: int = field(1024, ge=2, help="maximum tokens per sample")
        strategy: str = field("knowlm", choices=("knowlm", "disjoint"), help="...")

* ``Section`` is the base of every config dataclass (a stage's top level and its nested
  sections). On construction it checks each field's **type** against its annotation
  (``int``, ``float``, ``bool``, ``str``, ``X | None``, ``list[X]``, ``dict[K, V]``, nested
  sections, ``Any``) and its **range** (``ge``/``gt``/``le``/``lt``/``choices`` given to
  :func:`field`), then calls ``validate()`` for rules that involve several fields. Errors
  name the key, the value and what is allowed. Subclasses override ``validate``, never
  ``__post_init__``.
* ``StageConfig`` adds loading: ``Cls.from_yaml(path, overrides)`` (unknown keys, missing keys,
  bad YAML: one-line :class:`ConfigError` naming the file and the key), ``cfg.path(value)``
  (relative paths are taken from the YAML's folder, or from a ``workdir`` field when the
  class has one), ``cfg.with_overrides(...)``.
* Overrides are ``"a.b=value"`` strings (values parsed as safe YAML without aliases, never
  ``eval``) or a mapping; :func:`parse_overrides` is the one parser behind every ``-o``.
* :func:`add_config_arguments` gives a stage command the shared arguments and a ``--help``
  that lists every field (type, default, allowed values, help) plus ``--print-config``,
  which prints a commented YAML of the defaults (or of the given config).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import os
import re
import types
import typing
from pathlib import Path
from typing import Any, Mapping, TypeVar

import yaml

T = TypeVar("T")
S = TypeVar("S", bound="StageConfig")
Overrides = typing.Union[list[str], Mapping[str, Any], None]  # "a.b=value" strings or {"a.b": value}
_BOUNDS = {"ge": (">=", lambda v, b: v >= b), "gt": (">", lambda v, b: v > b),
           "le": ("<=", lambda v, b: v <= b), "lt": ("<", lambda v, b: v < b)}


class ConfigError(ValueError):
    """A config file or override is invalid; the message names the file and key."""


# ====================================================================== declaring fields ====
def field(default: Any = dataclasses.MISSING, *, help: str, default_factory: Any = dataclasses.MISSING,
          choices: typing.Iterable[Any] | None = None, ge: float | None = None, gt: float | None = None,
          le: float | None = None, lt: float | None = None, kw_only: Any = dataclasses.MISSING):
    """A dataclass field carrying its documentation and its allowed values.

    ``choices`` and the bounds apply to the value, or to every item of a list / every value
    of a mapping; ``None`` is never range-checked (its type decides whether it is allowed)."""
    meta: dict[str, Any] = {"help": help}
    if choices is not None:
        meta["choices"] = tuple(choices)
    for name, bound in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt)):
        if bound is not None:
            meta[name] = bound
    kw: dict[str, Any] = {"metadata": meta}
    if default is not dataclasses.MISSING:
        kw["default"] = default
    if default_factory is not dataclasses.MISSING:
        kw["default_factory"] = default_factory
    if kw_only is not dataclasses.MISSING:
        kw["kw_only"] = kw_only
    return dataclasses.field(**kw)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _optional_inner(tp: Any) -> tuple[Any, bool]:
    """``(X, True)`` for ``X | None``; ``(tp, False)`` otherwise."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if type(None) in args:
            rest = [a for a in args if a is not type(None)]
            return (rest[0] if len(rest) == 1 else typing.Union[tuple(rest)]), True
    return tp, False


def type_name(tp: Any) -> str:
    """A short readable name of an annotation (``int``, ``list[str]``, ``float | None`` …)."""
    if tp is Any:
        return "any"
    if tp is type(None):
        return "null"
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in typing.get_args(tp))
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (list, dict):
        args = typing.get_args(tp)
        return f"{origin.__name__}[{', '.join(type_name(a) for a in args)}]" if args else origin.__name__
    return getattr(tp, "__name__", str(tp))


def _short(value: Any, limit: int = 60) -> str:
    """``repr`` of a value, cut short (never print a huge value in an error)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 5] + " …" + text[-3:]


def _cut(text: str, limit: int = 300) -> str:
    """``text`` cut to about ``limit`` characters (for messages)."""
    return text if len(text) <= limit else text[: limit - 5] + " …" + text[-3:]


def _convert(value: Any, tp: Any, key: str) -> Any:
    """``value`` checked against annotation ``tp``; mappings become nested sections.
    Raises ``ValueError`` naming ``key``."""
    if tp is Any or tp is object:
        return value
    inner, optional = _optional_inner(tp)
    if value is None:
        if optional:
            return None
        raise ValueError(f"{key}: a value of type {type_name(tp)} is required, got null")
    tp = inner
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for alt in typing.get_args(tp):
            try:
                return _convert(value, alt, key)
            except ValueError:
                continue
        raise ValueError(f"{key}: expected {type_name(tp)}, got {type(value).__name__} {_short(value)}")
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            raise ValueError(f"{key}: must be one of {list(typing.get_args(tp))}, got {_short(value)}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if isinstance(value, Mapping):
            return from_dict(tp, dict(value), key)
        raise ValueError(f"{key}: expected a mapping of {tp.__name__} fields, got {type(value).__name__} "
                         f"{_short(value)}")
    if origin is list or tp is list:
        if not isinstance(value, list):
            raise ValueError(f"{key}: expected a list, got {type(value).__name__} {_short(value)}")
        (item_tp,) = typing.get_args(tp) or (Any,)
        return [_convert(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{key}: expected a mapping, got {type(value).__name__} {_short(value)}")
        k_tp, v_tp = typing.get_args(tp) or (Any, Any)
        return {_convert(k, k_tp, f"{key} key"): _convert(v, v_tp, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{key}: expected true or false, got {type(value).__name__} {_short(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{key}: expected an integer, got {type(value).__name__} {_short(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{key}: expected a number, got {type(value).__name__} {_short(value)}")
        if not math.isfinite(value):
            raise ValueError(f"{key}: expected a finite number, got {value}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ValueError(f"{key}: expected a string, got {type(value).__name__} {_short(value)}")
        if any("\ud800" <= c <= "\udfff" for c in value):
            raise ValueError(f"{key}: a lone surrogate (\\ud800-\\udfff) is not text, got {_short(value)}")
        return value
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ValueError(f"{key}: expected {type_name(tp)}, got {type(value).__name__} {_short(value)}")
    return value


def _check_range(value: Any, meta: Mapping[str, Any], key: str) -> None:
    if value is None:
        return
    if isinstance(value, list):
        for i, v in enumerate(value):
            _check_range(v, meta, f"{key}[{i}]")
        return
    if isinstance(value, dict):
        for k, v in value.items():
            _check_range(v, meta, f"{key}.{k}")
        return
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        raise ValueError(f"{key}: must be one of {list(choices)}, got {_short(value)}")
    for name, (symbol, ok) in _BOUNDS.items():
        if name in meta and isinstance(value, (int, float)) and not ok(value, meta[name]):
            raise ValueError(f"{key}: must be {symbol} {meta[name]}, got {_short(value)}")


def constraint_text(f: dataclasses.Field) -> str:
    """``">= 1"``, ``"one of ['a', 'b']"``, ``"> 0, <= 1"`` … for ``--help``."""
    parts = [f"{_BOUNDS[n][0]} {f.metadata[n]}" for n in _BOUNDS if n in f.metadata]
    if "choices" in f.metadata:
        parts.insert(0, "one of " + ", ".join(str(c) for c in f.metadata["choices"]))
    return ", ".join(parts)


# ========================================================================== the bases =======
@dataclasses.dataclass
class Section:
    """Base of every config dataclass: types and ranges of all fields are checked on
    construction, then :meth:`validate` runs the cross-field rules."""

    def __post_init__(self) -> None:
        hints = _hints(type(self))
        for f in dataclasses.fields(self):
            value = _convert(getattr(self, f.name), hints[f.name], f.name)
            _check_range(value, f.metadata, f.name)
            object.__setattr__(self, f.name, value)
        self.validate()

    def validate(self) -> None:
        """Rules that involve several fields; raise ``ValueError`` naming the key(s)."""

    def to_dict(self) -> dict[str, Any]:
        """The values as plain data (what manifests and reports record); ``base_dir`` last."""
        data = dataclasses.asdict(self)
        if "base_dir" in data:
            data["base_dir"] = data.pop("base_dir")
        return data


@dataclasses.dataclass
class StageConfig(Section):
    """Base of a stage's top-level config: YAML loading, overrides and path resolution."""

    base_dir: str | None = field(None, kw_only=True, help="folder that relative paths are taken from (set to the "
                                                          "YAML's folder when loaded from a file; else the cwd)")

    @classmethod
    def from_yaml(cls: type[S], path: str | os.PathLike, overrides: Overrides = None) -> S:
        """The config in YAML file ``path`` with ``overrides`` applied; ``base_dir`` is the
        file's folder unless the file sets it."""
        data = apply_overrides(read_yaml(path), overrides)
        data.setdefault("base_dir", str(Path(path).resolve().parent))
        return from_dict(cls, data, where=str(path))

    @classmethod
    def load(cls: type[S], config: S | str | os.PathLike, overrides: Overrides = None) -> S:
        """A config object (overrides applied to a copy) or a YAML path: what every stage's
        ``main(config, overrides=None)`` accepts."""
        if isinstance(config, cls):
            return config.with_overrides(overrides) if overrides else config
        if isinstance(config, (str, os.PathLike)):
            return cls.from_yaml(config, overrides)
        raise TypeError(f"expected a {cls.__name__} or the path of its YAML file, got {type(config).__name__}")

    def with_overrides(self: S, overrides: Overrides) -> S:
        """A validated copy with ``overrides`` applied."""
        data = apply_overrides(_plain(self), overrides)
        return from_dict(type(self), data, where=type(self).__name__)

    def path(self, value: str | os.PathLike, *, in_workdir: bool = True) -> Path:
        """A config path made absolute: from ``workdir`` when the class has that field, it is
        set (itself relative to ``base_dir``) and ``in_workdir``, else from ``base_dir``, else
        from the cwd. ``config.path(config.workdir, in_workdir=False)`` is the workdir itself."""
        p = Path(value).expanduser()
        if p.is_absolute():
            return p
        base = Path(self.base_dir).expanduser() if self.base_dir else Path.cwd()
        workdir = getattr(self, "workdir", None)
        if in_workdir and isinstance(workdir, str) and workdir:
            wd = Path(workdir).expanduser()
            base = wd if wd.is_absolute() else base / wd
        return (base / p).resolve()


def _plain(obj: Any) -> Any:
    """Sections → dicts (not deep-copied values of other kinds)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, list):
        return [_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    return obj


# =========================================================================== loading ========
MAX_CONFIG_BYTES = 1 << 20  # a config is a page of settings; anything larger is refused unread


class _ConfigLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` without aliases: configs need no ``*anchor`` references, and refusing
    them rules out "billion laughs" expansion (a few lines that grow to gigabytes)."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, f"YAML aliases (*{_cut(str(event.anchor), 30)}) are not allowed in configs; write the "
                            "value out", event.start_mark)
        return super().compose_node(parent, index)


# YAML 1.1 (PyYAML) reads ``1e-3`` as a string: it wants ``1.0e-3``. Configs are full of learning
# rates, so numbers in YAML 1.2's form (``1e-3``, ``3E+4``, ``.5``) resolve as floats too.
_ConfigLoader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(
    r"^[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[0-9][0-9_]*[eE][-+]?[0-9]+|\.[0-9_]+(?:[eE][-+]?[0-9]+)?"
    r"|\.(?:inf|Inf|INF)|[-+]\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"), list("-+0123456789."))


def load_yaml_text(text: str) -> Any:
    """Parse config YAML (safe types only, no aliases)."""
    return yaml.load(text, Loader=_ConfigLoader)  # noqa: S506 - a SafeLoader subclass


def _yaml_error(exc: Exception) -> str:
    return _cut(" ".join(str(exc).split()))


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}" + (" (a folder)" if path.is_dir() else ""))
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path}: {size:,} bytes is too large for a config (at most {MAX_CONFIG_BYTES:,})")
        data = load_yaml_text(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    except (yaml.YAMLError, ValueError) as exc:  # ValueError: e.g. an integer of more than 4300 digits
        raise ConfigError(f"{path}: invalid YAML: {_yaml_error(exc)}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def parse_overrides(overrides: list[str] | Mapping[str, Any] | None) -> list[tuple[list[str], Any]]:
    """``[(["a", "b"], value), …]`` from ``"a.b=value"`` strings (the value parsed as YAML,
    never evaluated) or from a mapping ``{"a.b": value}``. The one parser behind every ``-o``."""
    if not overrides:
        return []
    if isinstance(overrides, Mapping):
        items = [(str(k), v) for k, v in overrides.items()]
    elif isinstance(overrides, (str, bytes)):
        raise ConfigError(f"overrides must be a list of key=value strings or a mapping, got the string "
                          f"{_short(overrides)}")
    else:
        items = []
        for item in overrides:
            if not isinstance(item, str) or "=" not in item:
                raise ConfigError(f"override {_short(item)} must look like key=value")
            key, raw = item.split("=", 1)
            try:
                value = load_yaml_text(raw) if raw != "" else ""
            except (yaml.YAMLError, ValueError) as exc:
                raise ConfigError(f"override {_short(item)}: the value is not valid YAML ({_yaml_error(exc)})") from None
            items.append((key, value))
    parsed = []
    for key, value in items:
        parts = key.strip().split(".")
        if not all(parts):
            raise ConfigError(f"override key {key!r} must be a dotted field name such as seq_length or model.preset")
        parsed.append((parts, value))
    return parsed


def apply_overrides(data: dict[str, Any], overrides: list[str] | Mapping[str, Any] | None) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides to a mapping in place and return it."""
    for parts, value in parse_overrides(overrides):
        node = data
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {'.'.join(parts)}: {part!r} is not a section")
        node[parts[-1]] = value
    return data


def from_dict(cls: type[T], data: dict[str, Any], where: str = "config") -> T:
    """Build dataclass ``cls`` from a mapping, recursively; errors name ``where`` and the key."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping for {cls.__name__}, got {type(data).__name__}")
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(k if len(k) <= 40 else k[:35] + " …" for k in map(str, set(data) - set(fields)))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown[:5]}{' …' if len(unknown) > 5 else ''} for "
                          f"{cls.__name__}; allowed: {sorted(fields)}")
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        tp, _ = _optional_inner(hints[name])
        key = f"{where}.{name}"
        if dataclasses.is_dataclass(tp) and isinstance(value, dict):
            value = from_dict(tp, value, key)
        elif typing.get_origin(tp) is list and isinstance(value, list):
            (item_tp,) = typing.get_args(tp) or (Any,)
            item_tp, _ = _optional_inner(item_tp)
            if dataclasses.is_dataclass(item_tp):
                value = [from_dict(item_tp, v, f"{key}[{i}]") if isinstance(v, dict) else v
                         for i, v in enumerate(value)]
        kwargs[name] = value
    missing = [f.name for f in fields.values()
               if f.name not in kwargs and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"{where}: missing required key(s) {missing} for {cls.__name__}")
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def load_config(cls: type[T], path: str | os.PathLike, overrides: list[str] | Mapping[str, Any] | None = None) -> T:
    """``cls`` from a YAML file with overrides (``StageConfig`` subclasses: ``cls.from_yaml``)."""
    if isinstance(cls, type) and issubclass(cls, StageConfig):
        return cls.from_yaml(path, overrides)
    return from_dict(cls, apply_overrides(read_yaml(path), overrides), where=str(path))


# ======================================================================= documentation ======
def _default_of(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _section_type(tp: Any) -> tuple[type | None, bool]:
    """(dataclass, is_list) when ``tp`` is a section or a list of sections."""
    tp, _ = _optional_inner(tp)
    if dataclasses.is_dataclass(tp):
        return tp, False
    if typing.get_origin(tp) is list:
        (item,) = typing.get_args(tp) or (Any,)
        item, _ = _optional_inner(item)
        if dataclasses.is_dataclass(item):
            return item, True
    return None, False


def _public_fields(cls: type) -> list[dataclasses.Field]:
    """Fields in reading order: the class's own first, then inherited ones, ``base_dir`` last."""
    own = list(cls.__dict__.get("__annotations__", {}))
    fields = dataclasses.fields(cls)
    order = {name: i for i, name in enumerate(own)}
    return sorted(fields, key=lambda f: (f.name == "base_dir", f.name not in order, order.get(f.name, 0)))


def describe(cls: type, prefix: str = "") -> list[tuple[str, str, str]]:
    """(dotted name, default, help) for every field, nested sections included: the rows of
    ``--help`` and of the README's option tables."""
    rows = []
    hints = _hints(cls)
    for f in _public_fields(cls):
        name = prefix + f.name
        section, is_list = _section_type(hints[f.name])
        default = _default_of(f)
        if section is not None and not is_list:
            rows.extend(describe(section, name + "."))
            continue
        shown = "(required)" if default is dataclasses.MISSING else repr(default)
        rows.append((name, shown, f.metadata.get("help", "")))
        if section is not None:
            rows.extend(describe(section, name + "[]."))
    return rows


def fields_help(cls: type, prefix: str = "") -> str:
    """Every field as ``name (type, default …): help``, wrapped for a terminal."""
    import textwrap

    lines = []
    hints = _hints(cls)
    for f in _public_fields(cls):
        name = prefix + f.name
        section, is_list = _section_type(hints[f.name])
        if section is not None and not is_list:
            lines.append(f"  {name}.  ({section.__name__}) {f.metadata.get('help', '')}")
            lines.append(fields_help(section, name + "."))
            continue
        default = _default_of(f)
        facts = [type_name(hints[f.name]), "required" if default is dataclasses.MISSING else f"default {default!r}"]
        if constraint_text(f):
            facts.append(constraint_text(f))
        head = f"  {name} ({'; '.join(facts)})"
        body = textwrap.fill(f.metadata.get("help", ""), width=96, initial_indent="      ", subsequent_indent="      ")
        lines.append(head + "\n" + body if body.strip() else head)
        if section is not None:
            lines.append(fields_help(section, name + "[]."))
    return "\n".join(line for line in lines if line)


def _yaml_value(value: Any) -> str:
    if value is dataclasses.MISSING or value is None:
        return "null" if value is None else ""
    if isinstance(value, str) and any(c in value for c in "\n\r\t"):
        return json.dumps(value, ensure_ascii=False)  # a double-quoted YAML scalar, escapes kept on one line
    text = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, sort_keys=False, width=10_000)
    text = text.strip()
    return text[:-4].rstrip() if text.endswith("\n...") else text.removesuffix("...").strip()


def _item_lines(section: type) -> list[tuple[str, str]]:
    """``("key: default", "help (facts)")`` for every field of a list item's section."""
    hints = _hints(section)
    rows = []
    for f in _public_fields(section):
        default = _default_of(f)
        facts = ("REQUIRED; " if default is dataclasses.MISSING else "") + type_name(hints[f.name])
        rows.append((f"{f.name}: {_yaml_value(default)}".rstrip(), f"{f.metadata.get('help', '')} ({facts})"))
    return rows


def commented_yaml(obj: Any, indent: str = "") -> str:
    """A YAML text of a config class's defaults (or of a config object's values), each key
    preceded by its help as a comment; required keys without a value are marked REQUIRED."""
    import textwrap

    cls = obj if isinstance(obj, type) else type(obj)
    hints = _hints(cls)
    out = []
    for f in _public_fields(cls):
        if f.name == "base_dir":
            continue
        value = getattr(obj, f.name) if not isinstance(obj, type) else _default_of(f)
        facts = [type_name(hints[f.name])]
        if constraint_text(f):
            facts.append(constraint_text(f))
        if value is dataclasses.MISSING:
            facts.insert(0, "REQUIRED")
        comment = f"{f.metadata.get('help', '')} ({'; '.join(facts)})"
        out += textwrap.wrap(comment, width=100 - len(indent), initial_indent=indent + "# ",
                             subsequent_indent=indent + "# ")
        section, is_list = _section_type(hints[f.name])
        if section is not None and not is_list:
            out.append(f"{indent}{f.name}:")
            out.append(commented_yaml(section if value is dataclasses.MISSING else value, indent + "  "))
        elif section is not None and (value is dataclasses.MISSING or not value):
            out.append(f"{indent}{f.name}:" + ("" if value is dataclasses.MISSING else " []"))
            out.append(f"{indent}  # each item has these keys:")
            for i, (line, help_) in enumerate(_item_lines(section)):
                out.append(f"{indent}  # {'- ' if i == 0 else '  '}{line:<24} # {help_}")
        elif section is not None:
            out.append(f"{indent}{f.name}:")
            for k, item in enumerate(value):
                lines = commented_yaml(item, indent + "    ").splitlines()
                if k:  # the keys were documented at the first item
                    lines = [line for line in lines if not line.lstrip().startswith("#")]
                first = next(i for i, line in enumerate(lines) if not line.strip().startswith("#"))
                lines[first] = indent + "  - " + lines[first].strip()
                out += lines
        else:
            out.append(f"{indent}{f.name}: {_yaml_value(value)}".rstrip())
    return "\n".join(out)


# =============================================================================== CLI ========
def add_config_arguments(parser: argparse.ArgumentParser, config_cls: type, example: str, override_example: str,
                         out: bool = True) -> None:
    """The arguments every config-driven stage command shares: ``CONFIG`` (a YAML), ``--out``,
    repeatable ``-o key=value``, ``--no-progress``, ``--verbose`` and ``--print-config``; ``--help`` lists
    every field of ``config_cls``. Read them back with :func:`cli_config`."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("config", nargs="?", help=f"YAML config (see {example})")
    if out:
        parser.add_argument("--out", help="output folder (default: output_dir from the config); relative to the "
                                          "current directory")
    parser.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE",
                        help=f"override a config value, e.g. -o {override_example} (repeatable)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--verbose", action="store_true",
                        help="also show the libraries' own notices, warnings and weight-loading bars")
    parser.add_argument("--print-config", action="store_true",
                        help="print the config as commented YAML (the defaults without CONFIG) and exit")
    parser.set_defaults(config_cls=config_cls)
    show_config_fields(parser, config_cls)


def show_config_fields(parser: argparse.ArgumentParser, config_cls: type) -> None:
    """Make ``parser``'s ``--help`` end with every field of ``config_cls`` (also for a command
    group such as ``knowlm corpus``, whose ``build`` subcommand reads that config)."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = (f"config fields ({config_cls.__name__}; set them in CONFIG or with -o KEY=VALUE, "
                     f"dotted for nested sections):\n" + fields_help(config_cls))


def stage_command(parser: argparse.ArgumentParser, config_cls: type, example: str, override_example: str,
                  run: typing.Callable[[Any], int | None], out: bool = True,
                  shortcuts: Mapping[str, tuple[str, type, str]] | None = None) -> argparse.ArgumentParser:
    """Make ``parser`` a config-driven stage command: the shared arguments of
    :func:`add_config_arguments`, optional shortcut flags (``{"--workers": ("workers", int,
    help)}`` = ``-o workers=N``), and a handler that loads the config and calls ``run(config)``
    (nothing after ``--print-config``); without ``--verbose`` the libraries' own notices are
    kept out of the output (:func:`knowlm_utils.quiet.quiet_library_notices`). Returns ``parser``."""
    add_config_arguments(parser, config_cls, example, override_example, out)
    for flag, (key, tp, help_) in (shortcuts or {}).items():
        parser.add_argument(flag, type=tp, dest=f"{_SHORTCUT}{key}", help=f"{help_} (= -o {key}=VALUE)")

    def handler(args: argparse.Namespace) -> int:
        config = cli_config(args)
        if config is None:
            return 0
        if not args.verbose:
            from .quiet import quiet_library_notices

            quiet_library_notices()
        return int(run(config) or 0)

    parser.set_defaults(func=handler)
    return parser


_SHORTCUT = "config_shortcut_"


def cli_overrides(args: argparse.Namespace) -> list[str]:
    """``-o`` overrides of a command built with :func:`add_config_arguments`, plus
    ``progress=false`` for ``--no-progress``, ``output_dir=`` for ``--out`` (made absolute from
    the current directory) and the values of shortcut flags (see :func:`stage_command`)."""
    overrides = list(args.override) + (["progress=false"] if args.no_progress else [])
    if getattr(args, "out", None):
        overrides.append(f"output_dir={json.dumps(str(Path(args.out).expanduser().resolve()))}")  # quoted: any path
    overrides += [f"{name[len(_SHORTCUT):]}={value}" for name, value in vars(args).items()
                  if name.startswith(_SHORTCUT) and value is not None]
    return overrides


def cli_config(args: argparse.Namespace) -> Any:
    """The config a stage command runs with; ``None`` after ``--print-config`` printed it
    (the command then exits 0)."""
    cls = args.config_cls
    if args.print_config:
        if args.config:
            print(commented_yaml(cls.from_yaml(args.config, cli_overrides(args))))
        else:
            print(commented_yaml(cls))
        return None
    if not args.config:
        raise ConfigError("give a CONFIG.yaml (or --print-config for a commented template)")
    return cls.from_yaml(args.config, cli_overrides(args))


__all__ = ["ConfigError", "field", "Section", "StageConfig", "read_yaml", "parse_overrides", "apply_overrides",
           "from_dict", "load_config", "describe", "fields_help", "commented_yaml", "type_name",
           "add_config_arguments", "stage_command", "show_config_fields", "cli_overrides", "cli_config"]
