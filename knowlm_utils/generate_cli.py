"""``knowlm generate``: one prompt or instruction (streamed), a case file of them (a table marking
finished vs length-limited outputs), or ``--interactive`` (KnowLM's ``generate_finetune.py`` with
its cases or ``--interactive``, and ``generate_lora.py --run_ie_cases``), over
:mod:`knowlm_utils.generation`.

    knowlm generate --model RUN/final [--adapter RUN/final/adapter] [--8bit] [--preset ie|ie-beam|creative]
                    (--prompt TEXT | --instruction TEXT [--input TEXT] | --cases CASES.yaml [--out T.csv] | --interactive)

A case file (YAML or JSONL) lists ``{id?, prompt}`` or ``{id?, instruction, input?}`` entries, each
with an optional ``preset``, ``parameters`` and ``template`` (:func:`read_cases`); the table
(:func:`format_table`, :func:`write_table`) has one row per case with its output, why it ended
(``finished`` at ``</s>``, ``finished (stop)`` at a stop string, ``LENGTH-LIMITED`` at
``max_new_tokens``), its token counts and time.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .config import ConfigError, fields_help, parse_overrides
from .generation import (PRESET_HELP, PRESETS, TEMPLATE_AUTO, TEMPLATE_NONE, Generation, GenerationParams, Generator,
                         build_prompt, preset, quiet_loading, resolve_params)

# ================================================================================= case files ==
CASE_KEYS = ("id", "prompt", "instruction", "input", "template", "preset", "parameters")
MAX_CASE_FILE_BYTES = 8 << 20


@dataclasses.dataclass(frozen=True)
class Case:
    """One entry of a case file: a raw ``prompt`` or an ``instruction`` (+ ``input``)."""

    id: str
    params: GenerationParams
    prompt: str | None = None
    instruction: str | None = None
    input: str = ""
    template: str = TEMPLATE_AUTO


def _case(raw: Any, n: int, where: str, base: GenerationParams, template: str) -> Case:
    here = f"{where}: case {n}"
    if isinstance(raw, str):
        raw = {"prompt": raw}
    if not isinstance(raw, Mapping):
        raise ValueError(f"{here}: expected a mapping with prompt or instruction, got {type(raw).__name__}")
    if isinstance(raw.get("id"), (str, int)):
        here += f" ({raw['id']})"
    unknown = sorted(set(map(str, raw)) - set(CASE_KEYS))
    if unknown:
        raise ValueError(f"{here}: unknown key {unknown[0]!r}; allowed: {', '.join(CASE_KEYS)}")
    if ("prompt" in raw) == ("instruction" in raw):
        raise ValueError(f"{here}: give exactly one of prompt (raw text to continue) or instruction (+ input)")
    for key in ("prompt", "instruction", "input", "template", "preset"):
        if key in raw and not isinstance(raw[key], str):
            raise ValueError(f"{here}: {key}: expected a string, got {type(raw[key]).__name__}")
    text = raw.get("prompt", raw.get("instruction"))
    if not text.strip():
        raise ValueError(f"{here}: {'prompt' if 'prompt' in raw else 'instruction'}: must not be empty")
    if "prompt" in raw and raw.get("input"):
        raise ValueError(f"{here}: input goes with an instruction, not with a raw prompt")
    params = raw.get("parameters") or {}
    if not isinstance(params, Mapping):
        raise ValueError(f"{here}: parameters: expected a mapping, got {type(params).__name__}")
    start = raw["preset"] if "preset" in raw else base
    try:
        p = GenerationParams.from_mapping(params, where=f"{here}: parameters", base=start)
    except ValueError as exc:
        raise ValueError(f"{here}: {exc}" if str(exc).startswith("unknown preset") else str(exc)) from None
    return Case(id=str(raw.get("id", n)), params=p, prompt=raw.get("prompt"), instruction=raw.get("instruction"),
                input=raw.get("input") or "", template=raw.get("template", template))


def read_cases(path: str | os.PathLike, base: GenerationParams | str | None = None,
               template: str = TEMPLATE_AUTO) -> list[Case]:
    """The cases of a YAML or JSONL file, each with its parameters resolved.

    YAML: a list of cases, or a mapping ``{preset, parameters, template, cases: [...]}`` whose
    top-level settings apply to every case. JSONL: one case per line. A case is ``{id?, prompt}``
    or ``{id?, instruction, input?, template?}`` with an optional ``preset`` and ``parameters``
    (a mapping of :class:`GenerationParams` fields). Precedence: ``base`` (the command line) <
    the file's top level < the case's own; a ``preset`` (top level or case) starts over from that
    preset, then its ``parameters`` apply. Errors name the file, the case and the key."""
    from .config import load_yaml_text

    p = Path(path)
    try:
        if p.stat().st_size > MAX_CASE_FILE_BYTES:
            raise ValueError(f"{p}: larger than {MAX_CASE_FILE_BYTES >> 20} MiB; a case file is a list of prompts")
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{p}: not UTF-8 text ({exc.reason})") from None
    base_params = resolve_params(base)
    if p.suffix.lower() == ".jsonl":
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{p}:{n}: invalid JSON ({exc.msg})") from None
        data: Any = rows
    elif p.suffix.lower() in (".yaml", ".yml"):
        try:
            data = load_yaml_text(text)
        except Exception as exc:  # noqa: BLE001 - yaml errors and our alias refusal
            raise ValueError(f"{p}: invalid YAML ({' '.join(str(exc).split())[:200]})") from None
    else:
        raise ValueError(f"{p}: a case file is .yaml, .yml or .jsonl")
    if isinstance(data, Mapping):
        extra = sorted(set(map(str, data)) - {"preset", "parameters", "template", "cases"})
        if extra:
            raise ValueError(f"{p}: unknown top-level key {extra[0]!r}; allowed: preset, parameters, template, cases")
        try:
            base_params = GenerationParams.from_mapping(
                {**({"preset": data["preset"]} if "preset" in data else {}), **(data.get("parameters") or {})},
                where=f"{p}: parameters", base=base_params)
        except (ValueError, TypeError) as exc:
            raise ValueError(str(exc) if str(exc).startswith(str(p)) else f"{p}: {exc}") from None
        template = data.get("template", template)
        if not isinstance(template, str):
            raise ValueError(f"{p}: template: expected a string, got {type(template).__name__}")
        data = data.get("cases")
    if not isinstance(data, list) or not data:
        raise ValueError(f"{p}: no cases (expected a non-empty list of cases, or a mapping with 'cases:')")
    cases = [_case(raw, n, str(p), base_params, template) for n, raw in enumerate(data, 1)]
    seen: set[str] = set()
    for c in cases:
        if c.id in seen:
            raise ValueError(f"{p}: case id {c.id!r} is used twice")
        seen.add(c.id)
    return cases


def run_case(generator: Generator, case: Case, on_text: Callable[[str], Any] | None = None) -> dict[str, Any]:
    """One case → a table row ``{id, kind, template, prompt_text, output, finish_reason, finished, …}``
    (settings without effect are listed in the row's ``warnings``)."""
    if case.prompt is not None:
        g = generator.complete(case.prompt, case.params, on_text=on_text, emit_warnings=False)
        kind, shown = "prompt", case.prompt
    else:
        g = generator.instruct(case.instruction, case.input, case.template, case.params, on_text=on_text,
                               emit_warnings=False)
        kind, shown = "instruction", case.instruction + (f"\n{case.input}" if case.input else "")
    return {"id": case.id, "kind": kind, "template": None if kind == "prompt" else case.template, "prompt_text": shown,
            "output": g.text, "finish_reason": g.finish_reason, "finished": g.finished, "new_tokens": g.new_tokens,
            "prompt_tokens": g.prompt_tokens, "seconds": round(g.seconds, 3), "decoding": case.params.summary(),
            "warnings": list(g.warnings)}


def run_cases(generator: Generator, cases: Sequence[Case],
              on_row: Callable[[dict[str, Any]], Any] | None = None) -> list[dict[str, Any]]:
    rows = []
    for case in cases:
        rows.append(run_case(generator, case))
        if on_row is not None:
            on_row(rows[-1])
    return rows


def finish_label(row: Mapping[str, Any]) -> str:
    return {"eos": "finished", "stop": "finished (stop)", "length": "LENGTH-LIMITED",
            "cancelled": "cancelled"}.get(row["finish_reason"], row["finish_reason"])


def _cell(text: str, width: int | None) -> str:
    flat = text.replace("\\", "\\\\").replace("|", "\\|").replace("\r", "").replace("\n", "⏎")
    return flat if width is None or len(flat) <= width else flat[: width - 1] + "…"


def format_table(rows: Sequence[Mapping[str, Any]], width: int | None = 60) -> str:
    """A Markdown table of case rows (outputs cut to ``width`` characters; None: whole), with a
    closing line counting finished and length-limited outputs."""
    lines = ["| id | finish | new tokens | s | output |", "|---|---|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {_cell(str(r['id']), 24)} | {finish_label(r)} | {r['new_tokens']} | {r['seconds']:.2f} | "
                     f"{_cell(r['output'], width)} |")
    n_fin = sum(1 for r in rows if r["finished"])
    n_len = sum(1 for r in rows if r["finish_reason"] == "length")
    lines.append("")
    lines.append(f"{len(rows)} cases: {n_fin} finished, {n_len} length-limited (hit max_new_tokens)")
    return "\n".join(lines)


TABLE_COLUMNS = ("id", "kind", "template", "finish_reason", "finished", "new_tokens", "prompt_tokens", "seconds",
                 "decoding", "prompt_text", "output")


def write_table(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """Write case rows to ``.jsonl`` (every field), ``.csv`` or ``.md`` (:func:`format_table`,
    whole outputs), atomically; returns the path."""
    import csv
    import io

    from .fileio import write_jsonl_atomic, write_text_atomic

    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in (".jsonl", ".csv", ".md"):
        raise ValueError(f"--out {p}: the table is written as .jsonl, .csv or .md")
    p.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".jsonl":
        write_jsonl_atomic(p, [dict(r) for r in rows])
    elif suffix == ".csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=TABLE_COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
        write_text_atomic(p, buf.getvalue())
    else:
        write_text_atomic(p, format_table(rows, width=None) + "\n")
    return p


# ======================================================================================== CLI ==
def generator_from_args(args: argparse.Namespace, params: GenerationParams | str,
                        templates: Iterable[str] = ()) -> Generator:
    """The :class:`Generator` of ``--model/--adapter/--tokenizer/--templates/--8bit/--dtype/--device``;
    the prompt ``templates`` to be used are checked before the model is loaded."""
    from .sft.prompter import PromptSet

    if not Path(args.model).is_dir():
        raise ValueError(f"--model {args.model}: not a model folder")
    if args.adapter is not None and not Path(args.adapter).is_dir():
        raise ValueError(f"--adapter {args.adapter}: not a folder")
    prompts = PromptSet.load(args.templates) if args.templates is not None else PromptSet.for_run(args.adapter,
                                                                                                  args.model)
    for template in templates:
        build_prompt("x", "", template, prompts)
    quiet_loading()
    return Generator.load(args.model, args.adapter, args.tokenizer, prompts, load_in_8bit=args.load_in_8bit,
                          dtype=args.dtype, device=args.device, params=params)


def params_from_args(args: argparse.Namespace) -> GenerationParams:
    """The preset with the command line's parameter flags and ``-p KEY=VALUE`` applied."""
    changes: dict[str, Any] = {}
    for parts, value in parse_overrides(args.param):
        changes[".".join(parts)] = value
    for key in ("max_new_tokens", "do_sample", "temperature", "top_k", "top_p", "num_beams", "repetition_penalty",
                "seed"):
        if getattr(args, key, None) is not None:
            changes[key] = getattr(args, key)
    if args.stop:
        changes["stop"] = list(args.stop)
    if args.no_cache:
        changes["use_cache"] = False
    try:
        return GenerationParams.from_mapping(changes, where="parameters", base=args.preset)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None


def _warn(msgs: Iterable[str], seen: set[str] | None = None) -> None:
    for m in msgs:
        if seen is None or m not in seen:
            print(f"knowlm generate: warning: {m}", file=sys.stderr)
            if seen is not None:
                seen.add(m)


def _status(g: Generation) -> str:
    label = {"eos": "finished (</s>)", "stop": "finished (stop string)", "length": "LENGTH-LIMITED (max_new_tokens)",
             "cancelled": "cancelled"}[g.finish_reason]
    return f"[{label} · {g.new_tokens} new tokens · {g.seconds:.2f} s · {g.tokens_per_s:.1f} tok/s]"


def _print_chunk(chunk: str) -> None:
    sys.stdout.write(chunk)
    sys.stdout.flush()


def _cli_generate(args: argparse.Namespace) -> int:
    params = params_from_args(args)
    if args.input is not None and args.instruction is None:
        raise ValueError("--input goes with --instruction")
    if args.out is not None and args.cases is None:
        raise ValueError("--out goes with --cases")
    cases = read_cases(args.cases, params, args.template) if args.cases is not None else None
    if args.instruction is not None:
        build_prompt(args.instruction, args.input or "", TEMPLATE_NONE)  # empty instruction: fail before loading
    templates = {args.template} | {c.template for c in cases or () if c.instruction is not None}
    gen = generator_from_args(args, params, templates if args.prompt is None else ())
    seen: set[str] = set()
    if cases is not None:
        return _cli_cases(gen, cases, args, seen)
    if args.interactive:
        return interactive(gen, params, args.template, sys.stdin, sys.stdout, sys.stderr)
    on_text = None if args.json else _print_chunk  # warnings: printed from Generation.warnings
    if args.prompt is not None:
        g = gen.complete(args.prompt, params, on_text=on_text, emit_warnings=False)
    else:
        g = gen.instruct(args.instruction, args.input or "", args.template, params, on_text=on_text,
                         emit_warnings=False)
    if args.json:
        print(json.dumps(g.to_dict(), ensure_ascii=False))
    else:
        print()
        print(_status(g), file=sys.stderr)
    _warn(g.warnings, seen)
    return 0


def _cli_cases(gen: Generator, cases: Sequence[Case], args: argparse.Namespace, seen: set[str]) -> int:
    def progress(row: Mapping[str, Any]) -> None:
        print(f"  {row['id']}: {finish_label(row)}, {row['new_tokens']} new tokens, {row['seconds']:.2f} s",
              file=sys.stderr)
        _warn(row["warnings"], seen)

    rows = run_cases(gen, cases, on_row=progress)
    print(format_table(rows))
    if args.out is not None:
        print(f"→ {write_table(rows, args.out)}", file=sys.stderr)
    return 0


INTERACTIVE_HELP = """commands:
  /preset NAME          switch to a preset ({presets})
  /set KEY=VALUE ...    change parameters (e.g. /set temperature=0.7 do_sample=true max_new_tokens=64)
  /params               show the current parameters
  /template NAME        auto, none (raw continuation), zh, en, or a template name
  /input TEXT           the input for the next instruction (/input alone clears it)
  /help                 this text
  /quit                 leave (Ctrl-D too)
anything else is an instruction (with template none: a raw prompt to continue)"""


def interactive(gen: Generator, params: GenerationParams, template: str, stdin: Any, stdout: Any, stderr: Any) -> int:
    """KnowLM's ``--interactive``: read instructions line by line, stream each answer."""
    tty = hasattr(stdin, "isatty") and stdin.isatty()
    pending_input = ""
    print(f"knowlm generate — {gen.name}; template {template}; {params.summary()}. /help for commands, /quit to "
          "leave.", file=stderr)
    while True:
        if tty:
            stdout.write(">>> ")
            stdout.flush()
        line = stdin.readline()
        if not line:
            return 0
        line = line.rstrip("\n")
        if not line.strip():
            continue
        try:
            if line.startswith("/"):
                cmd, _, rest = line[1:].partition(" ")
                if cmd in ("quit", "exit", "q"):
                    return 0
                if cmd == "help":
                    print(INTERACTIVE_HELP.format(presets=", ".join(PRESETS)), file=stderr)
                elif cmd == "preset":
                    params = preset(rest.strip())
                elif cmd == "set":
                    params = params.replace(**{".".join(k): v for k, v in parse_overrides(rest.split())})
                elif cmd == "template":
                    build_prompt("x", "", rest.strip(), gen.prompts)  # check it
                    template = rest.strip()
                elif cmd == "input":
                    pending_input = rest
                elif cmd != "params":
                    raise ValueError(f"unknown command /{cmd}; /help lists them")
                print(f"[template {template}; {params.summary()}"
                      f"{'; input: ' + pending_input if pending_input else ''}]", file=stderr)
                continue

            def put(chunk: str) -> None:
                stdout.write(chunk)
                stdout.flush()

            if template == TEMPLATE_NONE and not pending_input:
                g = gen.complete(line, params, on_text=put, emit_warnings=False)
            else:
                g = gen.instruct(line, pending_input, template, params, on_text=put, emit_warnings=False)
            pending_input = ""
            stdout.write("\n")
            stdout.flush()
            print(_status(g), file=stderr)
            for w in g.warnings:
                print(f"warning: {w}", file=stderr)
        except ValueError as exc:
            print(f"error: {' '.join(str(exc).split())}", file=stderr)


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """--model/--adapter/--tokenizer/--templates/--8bit/--dtype/--device (``generate`` and ``serve``)."""
    g = p.add_argument_group("model")
    g.add_argument("--model", required=True, help="model folder (safetensors): a base model, a merged SFT model, or "
                                                  "the base under --adapter")
    g.add_argument("--adapter", default=None, help="PEFT (LoRA) adapter folder to put on --model")
    g.add_argument("--tokenizer", default=None, help="tokenizer folder or .model file (default: the model folder)")
    g.add_argument("--templates", default=None, help="prompt_templates.json of the SFT run (default: the one saved "
                                                     "beside --adapter/--model, else the shipped defaults)")
    g.add_argument("--8bit", dest="load_in_8bit", action="store_true",
                   help="load the linear layers in 8 bits (bitsandbytes LLM.int8(); runs on CPU too)")
    g.add_argument("--dtype", default=None, help="torch dtype of the weights (default float32; float16 with --8bit)")
    g.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:1 …")


def add_param_arguments(p: argparse.ArgumentParser, default_preset: str = "ie") -> None:
    """--preset and the decoding flags (``generate`` and ``serve``)."""
    g = p.add_argument_group("decoding (a preset, then single parameters; -p sets any field listed below)")
    g.add_argument("--preset", choices=list(PRESETS), default=default_preset,
                   help="; ".join(f"{k}: {v}" for k, v in PRESET_HELP.items()) + f" (default {default_preset})")
    g.add_argument("--max-new-tokens", type=int, default=None)
    g.add_argument("--do-sample", dest="do_sample", action="store_const", const=True, default=None,
                   help="sample (temperature/top-k/top-p act only then)")
    g.add_argument("--greedy", dest="do_sample", action="store_const", const=False, help="no sampling")
    g.add_argument("--temperature", type=float, default=None)
    g.add_argument("--top-k", type=int, default=None)
    g.add_argument("--top-p", type=float, default=None)
    g.add_argument("--num-beams", type=int, default=None, help="beam search width (greedy only)")
    g.add_argument("--repetition-penalty", type=float, default=None)
    g.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    g.add_argument("--seed", type=int, default=None, help="sampling seed (default 0)")
    g.add_argument("--no-cache", action="store_true", help="no KV cache (slow; for comparison)")
    g.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                   help="any parameter, e.g. -p presence_penalty=0.5 (repeatable)")


def add_cli(subparsers) -> None:
    """``knowlm generate --model M (--prompt T | --instruction T [--input T] | --cases F | --interactive)``."""
    p = subparsers.add_parser(
        "generate", help="generate text with a model (+ adapter): a prompt, an instruction, a case file, interactive",
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="parameters (GenerationParams; -p KEY=VALUE, or 'parameters:' in a case file):\n"
               + fields_help(GenerationParams)
               + "\n\ncase file (YAML): [preset: creative] [parameters: {...}] [template: auto] cases: "
                 "[{id, instruction, input?} | {id, prompt}, each with optional preset/parameters/template]; "
                 "JSONL: one case per line")
    add_model_arguments(p)
    add_param_arguments(p)
    what = p.add_argument_group("what to generate (one of)").add_mutually_exclusive_group(required=True)
    what.add_argument("--prompt", default=None, help="raw text to continue (no template; a base model's use)")
    what.add_argument("--instruction", default=None, help="an instruction, put into the prompt template")
    what.add_argument("--cases", default=None, help="a YAML/JSONL case file: prints a table of outputs marking "
                                                    "finished vs length-limited ones")
    what.add_argument("--interactive", action="store_true", help="read instructions from stdin, one per line")
    p.add_argument("--input", default=None, help="the input for --instruction (KnowLM's optional 'input' field)")
    p.add_argument("--template", default=TEMPLATE_AUTO,
                   help="prompt template for instructions: auto (by language), none (raw), zh, en, or a name "
                        "such as alpaca_en (default auto)")
    p.add_argument("--out", default=None, help="with --cases: write the table to .jsonl, .csv or .md")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object (no streaming)")
    p.set_defaults(func=_cli_generate)


__all__ = ["CASE_KEYS", "Case", "read_cases", "run_case", "run_cases", "format_table", "write_table", "finish_label",
           "interactive", "params_from_args", "generator_from_args", "add_model_arguments",
           "add_param_arguments", "add_cli"]
