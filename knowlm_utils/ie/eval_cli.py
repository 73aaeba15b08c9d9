"""``knowlm eval ie``: generate answers to stage-06 IE instruction records with a model and score
them (stage 08).

    knowlm eval ie --model RUN/final [--adapter RUN/final/adapter] --data IE/test.jsonl --out eval/report.json
                   [--max-records N [--per-language]] [--styles iepile] [--decoding greedy|beam] [--constrained]
                   [--batch-size 8] [--max-new-tokens 128]
                   [--tasks NER,RE] [--match set|multiset] [--tokenizer DIR] [--dtype float32] [--device auto]

Writes ``report.json`` (:meth:`~knowlm_utils.ie.evaluate.EvalReport.to_dict` plus a ``run``
section) and ``predictions.jsonl`` beside it (per record: id, prompt, raw generation, the answer
scored, parsed items, whether it was unparseable), both atomically. Prompts come from stage 07's
``knowlm_utils.sft.prompter.PromptSet``. The model is loaded from local safetensors only
(:func:`~knowlm_utils.generation.load_causal_lm`), an adapter with PEFT from a local folder holding
``adapter_model.safetensors``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..fileio import write_json_atomic, write_jsonl_atomic
from ..generation import load_model, load_tokenizer, quiet_loading  # shared with knowlm generate/serve
from .annotation import TASKS
from .predict import DECODING, PromptBuilder, predict_records

_KEYS = ("id", "task", "lang", "style", "format", "output")


def load_prompter(*folders: str | Path | None, templates: str | Path | None = None) -> PromptBuilder:
    """Stage 07's prompt builder: ``templates`` (a saved ``prompt_templates.json``) when given, else
    the templates saved with the run that produced the first of ``folders`` (an adapter, a checkpoint,
    a final/ folder; see ``PromptSet.for_run``), else the default templates."""
    try:
        from ..sft.prompter import PromptSet
    except ImportError as exc:
        raise ValueError(f"knowlm_utils.sft.prompter.PromptSet (stage 07's prompts) is not available: {exc}") from None
    if templates is not None:
        return PromptSet.load(templates)
    return PromptSet.for_run(*folders)


def read_records(path: str | Path, tasks: tuple[str, ...] = TASKS) -> list[dict[str, Any]]:
    """Records of a stage-06 JSONL file whose task is in ``tasks``, plus every GENERAL record (kept so
    the report counts them as skipped). Invalid lines raise a ValueError naming the line
    (:func:`knowlm_utils.sft.data.read_records`, with the keys scoring needs)."""
    from ..sft.data import read_records as read_stage06

    return [r for r in read_stage06(Path(path), required=_KEYS + ("instruction", "input"))
            if r["task"] == "GENERAL" or r["task"] in tasks]


def limit_records(records: list[dict[str, Any]], max_records: int | None) -> list[dict[str, Any]]:
    """The first ``max_records`` IE records, never cutting an IEPile sentence's chunks apart (the
    chunks of the last sentence taken come along), and the GENERAL records before the last one taken
    (they do not count towards ``max_records``)."""
    if max_records is None:
        return records
    from .evaluate import regroup

    ie = [r for r in records if r.get("task") != "GENERAL"]
    keep: set[str] = set()
    for group in regroup(ie):
        if len(keep) >= max_records:
            break
        keep.update(r["id"] for r in group.records)
    last = max((n for n, r in enumerate(records) if r.get("task") != "GENERAL" and r["id"] in keep), default=-1)
    return [r for n, r in enumerate(records) if (n < last if r.get("task") == "GENERAL" else r["id"] in keep)]


def limit_per_language(records: list[dict[str, Any]], max_records: int | None,
                       langs: tuple[str, ...] = ("zh", "en")) -> list[dict[str, Any]]:
    """:func:`limit_records` applied to each language of ``langs`` in turn (``max_records`` each), so
    a sample of a split written one language after the other holds both; other languages are left out."""
    return [r for lang in langs for r in limit_records([t for t in records if t.get("lang") == lang], max_records)]


def select_records(records: list[dict[str, Any]], styles: tuple[str, ...] | None, max_records: int | None,
                   per_language: bool = False) -> list[dict[str, Any]]:
    """The records ``knowlm eval ie`` scores: IE records of ``styles`` (all when None; GENERAL records
    stay, to be counted as skipped), then :func:`limit_records`, or with ``per_language``
    :func:`limit_per_language` over the languages in the order they first appear."""
    if styles is not None:
        records = [r for r in records if r.get("task") == "GENERAL" or r.get("style") in styles]
    if per_language:
        langs = tuple(dict.fromkeys(r.get("lang") for r in records))
        return limit_per_language(records, max_records, langs)
    return limit_records(records, max_records)


def _named(flag: str, what: str, text: str, allowed: tuple[str, ...], case=str.lower) -> tuple[str, ...]:
    """A comma-separated ``flag`` value checked against ``allowed`` (one-line ValueError naming the flag)."""
    names = tuple(case(t.strip()) for t in text.split(",") if t.strip())
    bad = [t for t in names if t not in allowed]
    if bad or not names:
        raise ValueError(f"{flag}: unknown {what}(s) {', '.join(bad) or '(none given)'}; allowed: {', '.join(allowed)}")
    return names


def _tasks(text: str) -> tuple[str, ...]:
    return _named("--tasks", "task", text, TASKS, str.upper)


def _styles(text: str | None) -> tuple[str, ...] | None:
    """``--styles``: None (every style) or the instruction styles named."""
    from ..kg2instruction.instructions import STYLES

    return None if text is None else _named("--styles", "style", text, STYLES)


def run(args) -> dict[str, Any]:
    from .evaluate import evaluate_predictions, is_unparseable, items_to_json, parse_prediction

    if args.max_records is not None and args.max_records < 1:
        raise ValueError(f"--max-records must be >= 1, got {args.max_records}")
    tasks = _tasks(args.tasks)
    out = Path(args.out)
    if out.is_dir():
        raise ValueError(f"--out {out}: is a folder; give the report's file name (e.g. {out / 'report.json'})")
    styles = _styles(args.styles)
    if args.per_language and args.max_records is None:
        raise ValueError("--per-language: give --max-records N (N records of each language)")
    records = select_records(read_records(args.data, tasks), styles, args.max_records, args.per_language)
    ie = [r for r in records if r.get("task") != "GENERAL"]
    if not ie:
        raise ValueError(f"--data {args.data}: no {'/'.join(tasks)} records"
                         f"{'' if styles is None else ' of style ' + '/'.join(styles)} to evaluate")
    prompter = load_prompter(args.adapter, args.model, templates=args.templates)
    t0 = time.perf_counter()
    quiet_loading()
    model = load_model(args.model, args.adapter, args.dtype, args.device)
    tokenizer = load_tokenizer(args.tokenizer or args.model)
    rows = predict_records(ie, model, tokenizer, prompter, max_new_tokens=args.max_new_tokens,
                           batch_size=args.batch_size, decoding=args.decoding, progress=args.progress,
                           constrained=args.constrained)
    predictions = {row["id"]: row["answer"] for row in rows}
    report = evaluate_predictions(records, predictions, match=args.match).to_dict()
    by_id = {r["id"]: r for r in ie}
    for row in rows:
        res = parse_prediction(by_id[row["id"]], row["answer"])
        row["items"] = items_to_json(res.items)
        row["unparseable"] = is_unparseable(row["answer"], res)
    report["run"] = {"model": str(args.model), "adapter": None if args.adapter is None else str(args.adapter),
                     "templates": dict(getattr(prompter, "mapping", {})),
                     "data": str(args.data), "tasks": list(tasks), "styles": None if styles is None else list(styles),
                     "max_records": args.max_records, "per_language": args.per_language,
                     "decoding": args.decoding, **DECODING[args.decoding], "constrained": args.constrained,
                     "constrained_records": sum(row["constrained"] for row in rows), "batch_size": args.batch_size,
                     "max_new_tokens": args.max_new_tokens, "wall_s": round(time.perf_counter() - t0, 2)}
    out.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl_atomic(out.parent / "predictions.jsonl", rows)
    write_json_atomic(out, report)
    return report


def _cli_ie(args) -> int:
    r = run(args)
    m = r["micro"]
    print(f"{r['records']} records ({r['groups']} scored units, {r['skipped_general']} GENERAL skipped): "
          f"P {m['p']:.4f}  R {m['r']:.4f}  F1 {m['f1']:.4f}  unparseable {r['unparseable']} → {args.out}")
    for task, c in r["by_task"].items():
        print(f"  {task:12s} P {c['p']:.4f}  R {c['r']:.4f}  F1 {c['f1']:.4f}  (tp {c['tp']}, fp {c['fp']}, fn {c['fn']})")
    return 0


def _positive(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def add_cli(subparsers) -> None:
    """``knowlm eval ie --model M --data TEST.jsonl --out report.json``."""
    p = subparsers.add_parser("eval", help="stage 08: evaluate a model (information extraction P/R/F1)")
    sub = p.add_subparsers(dest="eval_cmd", required=True)
    e = sub.add_parser("ie", help="generate answers to IE instruction records and score them (P/R/F1)",
                       description=__doc__.split("\n\n")[0])
    e.add_argument("--model", required=True, help="model folder (safetensors; e.g. a run's final/)")
    e.add_argument("--adapter", default=None, help="PEFT (LoRA) adapter folder to put on the model")
    e.add_argument("--tokenizer", default=None, help="tokenizer folder or .model file (default: the model folder)")
    e.add_argument("--templates", default=None,
                   help="prompt_templates.json of the SFT run (default: the one saved beside --adapter/--model, "
                        "else the default templates)")
    e.add_argument("--data", required=True, help="stage-06 JSONL records (e.g. test.jsonl)")
    e.add_argument("--out", required=True, help="report JSON file; predictions.jsonl is written beside it")
    e.add_argument("--max-records", type=_positive, default=None,
                   help="first N IE records (an IEPile sentence's chunks stay together)")
    e.add_argument("--per-language", action="store_true",
                   help="with --max-records: the first N records of each language (a split lists one language, then the next)")
    e.add_argument("--styles", default=None, help="comma-separated instruction styles to evaluate (text, iepile; default all)")
    e.add_argument("--decoding", choices=sorted(DECODING), default="greedy", help="decoding preset (default greedy)")
    e.add_argument("--constrained", action="store_true",
                   help="decode IEPile NER/RE answers under their grammar: schema keys in order, names that are spans "
                        "of the input, well-formed JSON (knowlm_utils.ie.constrained); other records as usual")
    e.add_argument("--batch-size", type=_positive, default=8)
    e.add_argument("--max-new-tokens", type=_positive, default=128)
    e.add_argument("--tasks", default=",".join(TASKS), help="comma-separated tasks to evaluate (default all)")
    e.add_argument("--match", choices=("set", "multiset"), default="set", help="unit matching (default set)")
    e.add_argument("--dtype", default="float32", help="torch dtype to load the model in (bfloat16 on GPUs)")
    e.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:1 …")
    e.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    e.set_defaults(func=_cli_ie)


__all__ = ["add_cli", "load_prompter", "load_model", "load_tokenizer", "read_records", "limit_records", "limit_per_language",
           "select_records", "run"]
