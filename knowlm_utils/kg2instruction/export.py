"""Mixing, export and statistics of instruction records.

* :func:`mix_general` adds general (Alpaca) instructions at a ratio, as the same record keys, so
  the IE-tuned model keeps following ordinary instructions (KnowLM mixes general and IE data).
* :func:`write_jsonl` and :func:`save_hf_dataset` write the records atomically: the JSONL through
  a temp file, the Hugging Face ``datasets`` folder assembled beside its destination and swapped in
  with :func:`knowlm_utils.fileio.replace_dir`.
* :func:`instruction_stats`, :func:`stats_table` and :func:`plot_instruction_stats` count records by
  split, task, language, style and format (pandas and matplotlib are imported only there).
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..fileio import check_output_dir, replace_dir, temp_dir_beside, write_jsonl_atomic
from .instructions import RECORD_KEYS

log = logging.getLogger(__name__)

GENERAL_TASK = "GENERAL"
_CJK_RE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
STAT_KEYS = ("split", "task", "lang", "style", "format")


def detect_lang(text: str) -> str:
    """``zh`` when the text holds a CJK ideograph, else ``en``."""
    return "zh" if _CJK_RE.search(text) else "en"


def read_general(general: Sequence[Mapping[str, Any]] | str | os.PathLike) -> list[Mapping[str, Any]]:
    if isinstance(general, (str, os.PathLike)):
        with open(general, encoding="utf-8") as fh:
            data = json.load(fh)
        where = str(general)
    else:
        data, where = general, "general instructions"
    if not isinstance(data, list):
        raise ValueError(f"{where}: expected a JSON list of {{instruction, input, output}} objects")
    for i, row in enumerate(data):
        if not isinstance(row, Mapping) or not isinstance(row.get("instruction"), str) or \
                not isinstance(row.get("output"), str) or not isinstance(row.get("input", ""), str):
            raise ValueError(f"{where}[{i}]: expected an object with string instruction, input and output")
    return data


def general_record(row: Mapping[str, Any], index: int) -> dict[str, Any]:
    """One Alpaca instruction ``{instruction, input, output}`` as an instruction record."""
    instruction, input_text, output = row["instruction"], row.get("input", "") or "", row["output"]
    return {"id": f"alpaca_general:{index}", "task": GENERAL_TASK,
            "lang": detect_lang(instruction + input_text + output), "style": "alpaca", "format": "text",
            "schema": [], "instruction": instruction, "input": input_text, "output": output,
            "source": f"alpaca_general:{index}"}


def mix_general(records: Sequence[dict[str, Any]], general: Sequence[Mapping[str, Any]] | str | os.PathLike,
                ratio: float, seed: int = 0, shuffle: bool = True) -> list[dict[str, Any]]:
    """``records`` plus ``round(ratio × len(records))`` general instructions (a JSON list of
    ``{instruction, input, output}`` or its path), drawn without replacement and capped at what
    exists; the count is logged (and is the number of ``task == "GENERAL"`` records). Mixed
    records get ``split`` when all IE records share one. With ``shuffle`` the result is shuffled
    with ``seed``, else the general records follow the IE ones."""
    if ratio < 0:
        raise ValueError(f"ratio must be >= 0, got {ratio}")
    rows = read_general(general)
    wanted = round(ratio * len(records))
    count = min(wanted, len(rows))
    rng = random.Random(f"{seed}:mix_general")
    picked = sorted(rng.sample(range(len(rows)), count))
    extra = [general_record(rows[i], i) for i in picked]
    splits = {r.get("split") for r in records}
    if len(splits) == 1 and None not in splits:
        (split,) = splits
        for rec in extra:
            rec["split"] = split
    if count < wanted:
        log.warning("mix_general: %d general instructions wanted (ratio %s × %d records), only %d exist",
                    wanted, ratio, len(records), len(rows))
    log.info("mix_general: added %d general instructions to %d records", count, len(records))
    out = list(records) + extra
    if shuffle:
        rng.shuffle(out)
    return out


def write_jsonl(records: Iterable[Mapping[str, Any]], path: str | os.PathLike) -> int:
    """Write the records as JSON Lines (UTF-8, not ASCII-escaped) atomically; returns the count."""
    return write_jsonl_atomic(path, records)


# ====================================================================== datasets ====
def record_features(columns: Sequence[str]):
    from datasets import Features, Sequence as DSequence, Value

    return Features({name: DSequence(Value("string")) if name == "schema" else Value("string") for name in columns})


def _columns(name: str, rows: Sequence[Mapping[str, Any]]) -> list[str]:
    if not rows:
        return list(RECORD_KEYS)
    first = list(rows[0])
    for i, row in enumerate(rows):
        if set(row) != set(first):
            diff = sorted(set(row) ^ set(first))
            raise ValueError(f"split {name!r}, record {i} ({row.get('id')}): keys differ from the first record's "
                             f"(key {diff[0]!r})")
    return [k for k in RECORD_KEYS if k in first] + [k for k in first if k not in RECORD_KEYS]


def to_dataset_dict(splits: Mapping[str, Sequence[Mapping[str, Any]]]):
    """A ``datasets.DatasetDict`` of the splits: every column a string, ``schema`` a list of strings."""
    from datasets import Dataset, DatasetDict

    out = {}
    for name, rows in splits.items():
        columns = _columns(name, rows)
        data: dict[str, list[Any]] = {c: [] for c in columns}
        for i, row in enumerate(rows):
            for c in columns:
                value = row[c]
                if c == "schema":
                    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
                        raise ValueError(f"split {name!r}, record {i}: schema must be a list of strings")
                    value = list(value)
                elif not isinstance(value, str):
                    value = json.dumps(value, ensure_ascii=False)
                data[c].append(value)
        out[name] = Dataset.from_dict(data, features=record_features(columns))
    return DatasetDict(out)


def save_hf_dataset(splits: Mapping[str, Sequence[Mapping[str, Any]]], out_dir: str | os.PathLike,
                    overwrite: bool = False) -> Path:
    """Save the splits as a ``datasets.DatasetDict`` folder (``datasets.load_from_disk(out_dir)``
    reads it back). The folder is assembled beside ``out_dir`` and swapped in whole; an existing
    ``out_dir`` that knowlm did not write is refused unless ``overwrite``. Returns the path."""
    out = check_output_dir(out_dir, overwrite=overwrite)
    dataset = to_dataset_dict(splits)
    tmp = temp_dir_beside(out)
    try:
        import datasets

        bars = datasets.is_progress_bar_enabled()
        datasets.disable_progress_bars()
        try:  # an empty split needs one (empty) shard, else load_from_disk fails on it
            dataset.save_to_disk(str(tmp), num_shards={name: 1 if len(ds) == 0 else None for name, ds in dataset.items()})
        finally:
            if bars:
                datasets.enable_progress_bars()
        replace_dir(tmp, out, producer="knowlm_utils.kg2instruction.export.save_hf_dataset")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


# ====================================================================== statistics ====
def instruction_stats(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows ``{split?, task, lang, style, format, count}`` (``split`` only when some record has it),
    sorted by those keys."""
    records = list(records)
    keys = [k for k in STAT_KEYS if k != "split" or any("split" in r for r in records)]
    counts = Counter(tuple(str(r.get(k, "")) for k in keys) for r in records)
    return [dict(zip(keys, combo), count=n) for combo, n in sorted(counts.items())]


def stats_table(records: Iterable[Mapping[str, Any]], index: Sequence[str] = ("split", "task", "lang"),
                columns: Sequence[str] = ("style", "format")):
    """A pandas pivot of record counts: rows by ``index``, columns by ``columns`` (keys missing
    from every record are dropped), zeros filled, a ``total`` column last."""
    import pandas as pd

    rows = instruction_stats(records)
    if not rows:
        return pd.DataFrame()
    present = set(rows[0])
    index = [k for k in index if k in present]
    columns = [k for k in columns if k in present]
    df = pd.DataFrame(rows)
    if not columns:
        table = df.groupby(index)["count"].sum().to_frame("total")
        return table
    table = df.pivot_table(index=index, columns=columns, values="count", aggfunc="sum", fill_value=0)
    total_key = "total" if len(columns) == 1 else ("total",) + ("",) * (len(columns) - 1)
    table[total_key] = table.sum(axis=1)
    return table


def plot_instruction_stats(records: Iterable[Mapping[str, Any]], ax=None):
    """Grouped bar chart: records per task × language, one bar per style. Returns the figure
    (nothing is shown)."""
    import matplotlib.pyplot as plt
    import numpy as np

    records = list(records)
    groups = sorted({(str(r["task"]), str(r["lang"])) for r in records})
    styles = sorted({str(r["style"]) for r in records})
    counts = Counter((str(r["task"]), str(r["lang"]), str(r["style"])) for r in records)
    if ax is None:
        fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(groups) + 1), 3.2))
    else:
        fig = ax.figure
    x = np.arange(len(groups))
    width = 0.8 / max(len(styles), 1)
    for n, style in enumerate(styles):
        heights = [counts[task, lang, style] for task, lang in groups]
        ax.bar(x + (n - (len(styles) - 1) / 2) * width, heights, width, label=style)
    ax.set_xticks(x, [f"{task}\n{lang}" for task, lang in groups])
    ax.set_ylabel("records")
    ax.set_title("instruction records by task × language and style")
    if styles:
        ax.legend(fontsize=8)
    return fig


__all__ = ["GENERAL_TASK", "detect_lang", "read_general", "record_features", "general_record", "mix_general", "write_jsonl", "to_dataset_dict",
           "save_hf_dataset", "instruction_stats", "stats_table", "plot_instruction_stats"]
