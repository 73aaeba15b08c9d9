"""Prompt templates for instruction tuning and inference.

A template is a JSON data file (``knowlm_utils/data/prompts/NAME.json``, or any path) with four
string keys::

    {"description":     "what the template is for",
     "prompt_input":    "... {instruction} ... {input} ... <response_split>\\n",
     "prompt_no_input": "... {instruction} ... <response_split>\\n",
     "response_split":  "<the response marker>"}

``prompt_input`` is used when the record has a non-empty ``input``, ``prompt_no_input`` otherwise.
The only placeholders are ``{instruction}`` and ``{input}`` (``{{``/``}}`` for literal braces);
each prompt ends with the response marker (trailing whitespace allowed, e.g. a newline), so a
built prompt is everything the model sees before its answer. :meth:`Prompter.load` checks all
of this and reports a bad file in one line naming the file and the key.

Shipped templates:

* ``alpaca_en`` / ``alpaca_zh`` — Alpaca-style headings (``### Instruction:`` / ``### Input:`` /
  ``### Response:``; ``### 指令:`` / ``### 输入:`` / ``### 回答:``) for the ``text`` style
  (KG2Instruction templates, the sentence in ``input``) and the general ``alpaca`` records.
* ``oneke_chat`` — a LLaMA-2-like chat turn for the ``iepile`` style, whose ``instruction`` is a
  whole JSON string ``{"instruction", "schema", "input"}``: ``[INST] <<SYS>> system <</SYS>>
  {instruction} [/INST]`` and the answer (a JSON object) on the next line.

:func:`template_for` picks a record's template (``iepile`` → ``oneke_chat``, else by language);
:class:`PromptSet` holds the templates of one run and builds/parses prompts per record.
"""

from __future__ import annotations

import json
import os
import string
from collections.abc import Mapping
from pathlib import Path
from typing import Any

PROMPTS_DIR = Path(__file__).resolve().parent.parent / "data" / "prompts"
TEMPLATE_KEYS = ("description", "prompt_input", "prompt_no_input", "response_split")
PLACEHOLDERS = ("instruction", "input")
#: Default record → template choice; keys are tried as ``style:lang``, ``style``, ``lang``, ``default``.
DEFAULT_TEMPLATES: dict[str, str] = {"iepile": "oneke_chat", "zh": "alpaca_zh", "en": "alpaca_en"}


def available_templates() -> list[str]:
    """Names of the templates shipped in ``knowlm_utils/data/prompts``."""
    return sorted(p.stem for p in PROMPTS_DIR.glob("*.json"))


def template_path(name_or_path: str | os.PathLike) -> Path:
    """The file of a template given by name (``alpaca_en``) or path (``my/prompt.json``)."""
    text = os.fspath(name_or_path)
    if not text:
        raise ValueError("prompt template: empty name")
    p = Path(text)
    if p.suffix == ".json" or os.sep in text or "/" in text or p.is_file():
        return p
    shipped = PROMPTS_DIR / f"{text}.json"
    if not shipped.is_file():
        raise ValueError(f"prompt template {text!r}: no such template; shipped: {', '.join(available_templates())} "
                         "(or give a path to a .json file)")
    return shipped


def _fields(template: str, where: str) -> list[str]:
    """The placeholder names used in ``template``; anything but a bare allowed name is an error."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"{where}: bad braces ({exc}); write {{{{ and }}}} for literal braces") from None
    names = []
    for _literal, name, spec, conversion in parsed:
        if name is None:
            continue
        if name not in PLACEHOLDERS or spec or conversion:
            shown = "{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
            raise ValueError(f"{where}: placeholder {shown} is not allowed; only {{instruction}} and {{input}} "
                             "(write {{ and }} for literal braces)")
        names.append(name)
    return names


def _literal_ends(template: str) -> tuple[str, str]:
    """(text before the first placeholder, text after the last one), braces unescaped."""
    parts = list(string.Formatter().parse(template))
    fields = [i for i, part in enumerate(parts) if part[1] is not None]
    if not fields:
        return "".join(part[0] for part in parts), ""
    head = "".join(part[0] for part in parts[: fields[0] + 1])
    tail = "".join(part[0] for part in parts[fields[-1] + 1:])
    return head, tail


def _read_json(path: Path, what: str) -> Any:
    """The JSON in ``path``; a missing, unreadable or invalid file is a one-line ``ValueError``."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"{path}: cannot read {what} ({exc.strerror or exc})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: invalid JSON ({' '.join(str(exc).split())})") from None


class Prompter:
    """One prompt template: :meth:`build` a prompt, extract the :meth:`response` from generated text."""

    def __init__(self, name: str, prompt_input: str, prompt_no_input: str, response_split: str,
                 description: str = "", path: Path | None = None):
        self.name, self.description, self.path = name, description, path
        self.prompt_input, self.prompt_no_input, self.response_split = prompt_input, prompt_no_input, response_split
        self._ends = {True: _literal_ends(prompt_input), False: _literal_ends(prompt_no_input)}

    @classmethod
    def load(cls, name_or_path: str | os.PathLike) -> "Prompter":
        """The template named ``name_or_path`` (shipped) or stored at that path, validated; a bad
        file raises a one-line ``ValueError`` naming the file and the key."""
        path = template_path(name_or_path)
        data = _read_json(path, "prompt template")
        return cls.from_dict(data, where=str(path), name=path.stem, path=path)

    @classmethod
    def from_dict(cls, data: Any, where: str = "prompt template", name: str = "custom",
                  path: Path | None = None) -> "Prompter":
        """A template from its mapping (the JSON file's content), validated like :meth:`load`."""
        if not isinstance(data, Mapping):
            raise ValueError(f"{where}: expected a JSON object with keys {', '.join(TEMPLATE_KEYS)}, "
                             f"got {type(data).__name__}")
        for key in TEMPLATE_KEYS:
            if key not in data:
                raise ValueError(f"{where}: {key}: missing (a template needs {', '.join(TEMPLATE_KEYS)})")
            if not isinstance(data[key], str):
                raise ValueError(f"{where}: {key}: expected a string, got {type(data[key]).__name__}")
        unknown = sorted(set(data) - set(TEMPLATE_KEYS))
        if unknown:
            raise ValueError(f"{where}: {unknown[0]}: unknown key (allowed: {', '.join(TEMPLATE_KEYS)})")
        split = data["response_split"]
        if not split.strip():
            raise ValueError(f"{where}: response_split: must not be empty or blank")
        for key, needed in (("prompt_input", {"instruction", "input"}), ("prompt_no_input", {"instruction"})):
            template = data[key]
            names = _fields(template, f"{where}: {key}")
            missing = sorted(needed - set(names))
            if missing:
                raise ValueError(f"{where}: {key}: the placeholder {{{missing[0]}}} is missing")
            if key == "prompt_no_input" and "input" in names:
                raise ValueError(f"{where}: {key}: must not use {{input}} (it is the prompt for records without input)")
            literal_tail = _literal_ends(template)[1]
            if split not in literal_tail:
                raise ValueError(f"{where}: {key}: response_split {split!r} must occur in the template text "
                                 "after the last placeholder")
            if not literal_tail.rstrip().endswith(split.rstrip()):
                raise ValueError(f"{where}: {key}: must end with response_split {split!r} "
                                 "(only whitespace may follow it)")
        return cls(name, data["prompt_input"], data["prompt_no_input"], split, data["description"], path)

    # ------------------------------------------------------------------------ using it ----
    def template(self, has_input: bool) -> str:
        return self.prompt_input if has_input else self.prompt_no_input

    def build(self, instruction: str, input: str = "") -> str:  # noqa: A002 - the record's key
        """The prompt up to and including the response marker (and the whitespace after it)."""
        if input:
            return self.prompt_input.format(instruction=instruction, input=input)
        return self.prompt_no_input.format(instruction=instruction)

    def head(self, has_input: bool) -> str:
        """The template text before its first placeholder (preamble and first heading)."""
        return self._ends[bool(has_input)][0]

    def tail(self, has_input: bool) -> str:
        """The template text after its last placeholder (it holds the response marker)."""
        return self._ends[bool(has_input)][1]

    def response(self, generated_text: str) -> str:
        """The text after the LAST response marker, stripped (the whole text stripped when the
        marker is absent, e.g. when only the new tokens were decoded)."""
        _, found, after = generated_text.rpartition(self.response_split)
        return (after if found else generated_text).strip()

    def __repr__(self) -> str:
        return f"Prompter({self.name!r})"


def _record_str(record: Mapping[str, Any], key: str, default: str | None = None) -> str:
    value = record.get(key, default)
    if not isinstance(value, str):
        raise ValueError(f"record {record.get('id', '?')!r}: {key}: expected a string, got "
                         f"{type(value).__name__ if key in record else 'nothing'}")
    return value


def template_for(record: Mapping[str, Any], mapping: Mapping[str, str] | None = None) -> str:
    """The template (name or path) a record uses: the first of ``style:lang``, ``style``, ``lang``,
    ``default`` found in ``{**DEFAULT_TEMPLATES, **mapping}``. By default ``iepile`` records use
    ``oneke_chat`` and the others ``alpaca_zh`` / ``alpaca_en`` by language."""
    merged = {**DEFAULT_TEMPLATES, **(mapping or {})}
    style, lang = record.get("style"), record.get("lang")
    for key in (f"{style}:{lang}", style, lang, "default"):
        if isinstance(key, str) and key in merged:
            return merged[key]
    raise ValueError(f"record {record.get('id', '?')!r}: no prompt template for style {style!r}, lang {lang!r} "
                     f"(templates mapping keys: {', '.join(sorted(merged))}; add one of them or 'default')")


#: File an SFT run writes beside its outputs (run folder, final/, final/adapter/): the template
#: choice and every template's text, so evaluation prompts exactly as training did.
PROMPTS_FILE = "prompt_templates.json"


class PromptSet:
    """The templates of one run, each loaded (and validated) once; per-record prompts."""

    def __init__(self, mapping: Mapping[str, str] | None = None,
                 templates: Mapping[str, Mapping[str, Any]] | None = None, where: str = "templates",
                 segmentation: str = "tokenizer"):
        from .segmentation import check_segmentation

        #: how prompts become ids (:mod:`knowlm_utils.sft.segmentation`): saved with the run, followed
        #: by prediction and generation
        self.segmentation = check_segmentation(segmentation, f"{where}: segmentation")
        self.mapping = {**DEFAULT_TEMPLATES, **(mapping or {})}
        for key, value in self.mapping.items():
            if not isinstance(key, str) or not isinstance(value, str) or not value:
                raise ValueError(f"{where}: {key!r}: expected a template name or path, got {value!r}")
        self._cache: dict[str, Prompter] = {}
        for name, data in (templates or {}).items():  # embedded texts (a saved run): no file is read
            self._cache[name] = Prompter.from_dict(data, where=f"{where}: {name}", name=Path(name).stem)
        for value in self.mapping.values():  # fail early on a bad mapping
            self.get(value)

    # ----------------------------------------------------------------- saved with a run ----
    def to_dict(self) -> dict[str, Any]:
        """``{"mapping", "templates"}``: the choice and the full text of every template it names, and
        ``"segmentation"`` when it is not the tokenizer's own."""
        out: dict[str, Any] = {
            "mapping": dict(self.mapping),
            "templates": {name: {"description": p.description, "prompt_input": p.prompt_input,
                                 "prompt_no_input": p.prompt_no_input, "response_split": p.response_split}
                          for name, p in sorted(self.prompters.items()) if name in self.mapping.values()}}
        if self.segmentation != "tokenizer":
            out["segmentation"] = self.segmentation
        return out

    def save(self, folder: str | os.PathLike) -> Path:
        """Write :data:`PROMPTS_FILE` into ``folder`` (atomically); returns its path."""
        from ..fileio import write_json_atomic

        path = Path(folder) / PROMPTS_FILE
        write_json_atomic(path, self.to_dict())
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "PromptSet":
        """The templates saved by :meth:`save` (a :data:`PROMPTS_FILE` or a folder holding one)."""
        p = Path(path)
        p = p / PROMPTS_FILE if p.is_dir() else p
        data = _read_json(p, "saved prompt templates")
        if not isinstance(data, Mapping) or not isinstance(data.get("mapping"), Mapping) \
                or not isinstance(data.get("templates"), Mapping):
            raise ValueError(f"{p}: expected an object with 'mapping' and 'templates' (written by PromptSet.save)")
        return cls(data["mapping"], data["templates"], where=str(p),
                   segmentation=data.get("segmentation", "tokenizer"))

    @classmethod
    def for_run(cls, *folders: str | os.PathLike | None) -> "PromptSet":
        """The templates a model was trained with: the first :data:`PROMPTS_FILE` found in one of
        ``folders`` (an adapter, a checkpoint, a final/ folder) or the two folders above it; the
        defaults when there is none (e.g. a base model that never saw SFT)."""
        for folder in folders:
            if folder is None:
                continue
            f = Path(folder).resolve()
            for candidate in (f, f.parent, f.parent.parent):
                if (candidate / PROMPTS_FILE).is_file():
                    return cls.load(candidate / PROMPTS_FILE)
        return cls()

    def get(self, name_or_path: str) -> Prompter:
        if name_or_path not in self._cache:
            self._cache[name_or_path] = Prompter.load(name_or_path)
        return self._cache[name_or_path]

    @property
    def prompters(self) -> dict[str, Prompter]:
        """The loaded templates by the name or path they were asked for."""
        return dict(self._cache)

    def template_for(self, record: Mapping[str, Any]) -> str:
        return template_for(record, self.mapping)

    def prompter(self, record: Mapping[str, Any]) -> Prompter:
        return self.get(self.template_for(record))

    @staticmethod
    def fields(record: Mapping[str, Any]) -> tuple[str, str]:
        """(instruction, input) of a record, checked to be strings (``input`` may be absent or null)."""
        instruction = _record_str(record, "instruction")
        input_text = "" if record.get("input") is None else _record_str(record, "input")
        return instruction, input_text

    def prompt(self, record: Mapping[str, Any]) -> str:
        """The record's prompt (up to and including the response marker)."""
        instruction, input_text = self.fields(record)
        return self.prompter(record).build(instruction, input_text)

    def response(self, record: Mapping[str, Any], generated: str) -> str:
        """The answer in text generated for ``record`` (see :meth:`Prompter.response`)."""
        return self.prompter(record).response(generated)


__all__ = ["PROMPTS_DIR", "PROMPTS_FILE", "TEMPLATE_KEYS", "PLACEHOLDERS", "DEFAULT_TEMPLATES", "available_templates",
           "template_path", "Prompter", "template_for", "PromptSet"]
