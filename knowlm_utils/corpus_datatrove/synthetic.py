"""A generated corpus with planted duplicates (exact copies, 1 % and 3 % character edits) for
the tests and ``benchmarks/bench_corpus_datatrove.py``: Chinese and English-like documents
spread over several JSONL files, every planted copy listed with the document it copies."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from ..corpus import CorpusConfig, SourceConfig

EDIT_KINDS = {"exact": 0.0, "edit1": 0.01, "edit3": 0.03}
_ZH = [chr(c) for c in range(0x4E00, 0x4E00 + 3000)]  # common-range CJK characters
_EN_SYLL = ["ka", "to", "ri", "mu", "sen", "lo", "va", "di", "ne", "por", "tal", "ex", "bi", "qu", "ran", "fel"]


def _zh_doc(rng: random.Random, chars: int) -> str:
    out, n = [], 0
    while n < chars:
        s = "".join(rng.choices(_ZH, k=rng.randint(12, 30))) + "。"
        out.append(s)
        n += len(s)
    return "".join(out)


def _en_doc(rng: random.Random, chars: int) -> str:
    out, n = [], 0
    while n < chars:
        words = ["".join(rng.choices(_EN_SYLL, k=rng.randint(1, 4))) for _ in range(rng.randint(6, 14))]
        s = " ".join(words).capitalize() + ". "
        out.append(s)
        n += len(s)
    return "".join(out).strip()


def edit(text: str, fraction: float, rng: random.Random) -> str:
    """Replace ``fraction`` of the characters (at least one) at random positions."""
    if fraction <= 0:
        return text
    chars = list(text)
    alphabet = _ZH if any("\u4e00" <= c <= "\u9fff" for c in text[:20]) else list("abcdefghijklmnopqrstuvwxyz")
    for i in rng.sample(range(len(chars)), max(1, round(fraction * len(chars)))):
        chars[i] = rng.choice(alphabet)
    return "".join(chars)


def write_planted_corpus(folder: str | Path, docs: int = 400, doc_chars: int = 600, files: int = 4,
                         dup_fraction: float = 0.3, seed: int = 0) -> tuple[CorpusConfig, list[dict[str, Any]]]:
    """Write ``files`` JSONL files under ``folder/raw`` with ``docs`` originals plus planted copies
    (``dup_fraction`` × docs, spread evenly over the kinds of :data:`EDIT_KINDS`, each placed after
    its original, often in another file); returns a corpus config over them and the manifest
    ``[{"kind", "copy": doc id, "of": doc id}]`` (ids as the corpus build gives them)."""
    rng = random.Random(seed)
    folder = Path(folder)
    raw = folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    originals = [(_zh_doc if i % 2 == 0 else _en_doc)(rng, doc_chars) for i in range(docs)]
    kinds = list(EDIT_KINDS)
    keyed: list[tuple[float, str, str | None, int]] = [(float(i), t, None, i) for i, t in enumerate(originals)]
    for j in range(int(dup_fraction * docs)):
        kind = kinds[j % len(kinds)]
        src = rng.randrange(docs)
        # placed after its original, anywhere later (often in another file)
        keyed.append((rng.uniform(src + 0.01, docs), edit(originals[src], EDIT_KINDS[kind], rng), kind, src))
    keyed.sort(key=lambda x: x[0])
    rows = [(t, kind, src) for _, t, kind, src in keyed]
    per_file = -(-len(rows) // files)
    for f in range(files):
        with open(raw / f"part-{f:03d}.jsonl", "w", encoding="utf-8") as fh:
            for text, _kind, _src in rows[f * per_file:(f + 1) * per_file]:
                fh.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
    ids = [f"planted:part-{k // per_file:03d}.jsonl:{k % per_file + 1}" for k in range(len(rows))]
    first_id = {r[2]: ids[k] for k, r in enumerate(rows) if r[1] is None}
    manifest = [{"kind": r[1], "copy": ids[k], "of": first_id[r[2]]} for k, r in enumerate(rows) if r[1] is not None]
    config = CorpusConfig(sources=[SourceConfig(name="planted", path="raw/*.jsonl", language="mixed")],
                          output_dir=str(folder / "out"), base_dir=str(folder), progress=False,
                          shard_max_docs=max(1, docs // 3))
    return config, manifest


def recall(removed_rows: list[dict[str, Any]], manifest: list[dict[str, Any]]) -> dict[str, float]:
    """Share of the planted copies of each kind that were removed as duplicates."""
    dups = {r["id"] for r in removed_rows if r["rule"] in ("exact_duplicate", "near_duplicate")}
    out = {}
    for kind in EDIT_KINDS:
        planted = [m for m in manifest if m["kind"] == kind]
        out[kind] = sum(m["copy"] in dups for m in planted) / len(planted) if planted else float("nan")
    return out


__all__ = ["EDIT_KINDS", "edit", "write_planted_corpus", "recall"]
