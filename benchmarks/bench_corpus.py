#!/usr/bin/env python
"""Speed of corpus cleaning (stage 01) on generated long Chinese documents, measured in one run:

1. the filters alone: the original regex implementation (tests/cleaning_reference.py, frozen
   before the speed-up) against knowlm_utils/cleaning.py on the same documents, with the ratio;
   the two must decide every document alike (checked: same rule per document, same counts);
2. dedup alone on the documents the filters keep: exact (BLAKE2b of the normalised text) and
   near (MinHash LSH), each fingerprint + in-order check;
3. ``knowlm corpus build`` end to end (read JSONL, filter, dedup, write shards) with 1 and 2
   workers for: filters only (dedup off; also with the original filters as the baseline, one
   worker), filters + exact dedup, filters + exact + near dedup; the outputs of every worker
   count must be identical (checked).

Documents come from tests/corpus_gen.py (seeded: same documents every run): 85 % Chinese, the
rest English, code and mixed, ``--noise`` of them with planted noise, plus ``--dup`` exact and
near (1 % edited) copies. Usage:

    python benchmarks/bench_corpus.py                    # 8 M chars, ≈5,000 chars per document
    python benchmarks/bench_corpus.py --chars 80000000   # the issue's size (80 M chars, ≈16 k docs)
    python benchmarks/bench_corpus.py --profile          # + where the new filters spend their time

Figures are wall-clock seconds on whatever else the machine is doing; compare ratios from one run.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import json
import pstats
import random
import sys
import tempfile
import time
import zlib
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # corpus_gen and the frozen reference filters

import cleaning_reference  # noqa: E402
import corpus_gen  # noqa: E402

from knowlm_utils import corpus as corpus_mod  # noqa: E402
from knowlm_utils.cleaning import DocumentFilter  # noqa: E402
from knowlm_utils.config import from_dict  # noqa: E402
from knowlm_utils.corpus import CorpusConfig, build  # noqa: E402
from knowlm_utils.dedup import DedupConfig, Deduplicator  # noqa: E402


def plant_duplicates(docs: list[str], share: float, seed: int) -> list[str]:
    """``docs`` with ``share`` more documents: half exact copies of earlier ones, half copies with
    1 % of the characters replaced (near duplicates), at random places."""
    rng = random.Random(seed)
    out = list(docs)
    for _ in range(round(len(docs) * share)):
        d = rng.choice(docs)
        if rng.random() < 0.5:
            chars = list(d)
            for _ in range(max(1, len(chars) // 100)):
                chars[rng.randrange(len(chars))] = rng.choice("的一是在不了有和人这")
            d = "".join(chars)
        out.insert(rng.randrange(len(out) + 1), d)
    return out


def timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def mcs(chars: int, seconds: float) -> str:
    return f"{chars / seconds / 1e6:8.2f}"


def run_filters(docs: list[str]) -> tuple[float, float, Counter]:
    old, new = cleaning_reference.DocumentFilter(), DocumentFilter()
    new.check("warm up: the code-point tables are built once per process")
    old_rules, t_old = timed(lambda: [old.check(d) for d in docs])
    new_rules, t_new = timed(lambda: [new.check(d) for d in docs])
    if old_rules != new_rules:
        bad = sum(a != b for a, b in zip(old_rules, new_rules))
        raise SystemExit(f"the new filters decide {bad} documents differently from the reference")
    return t_old, t_new, Counter(new_rules)


def run_dedup(docs: list[str]) -> dict[str, float]:
    out = {}
    for kind, cfg in (("exact", DedupConfig(exact=True, near=False)), ("near", DedupConfig(exact=False, near=True))):
        dd = Deduplicator(cfg)

        def go():
            n = 0
            for i, d in enumerate(docs):
                n += dd.check_fingerprint(str(i), *dd.fingerprint(d)) is not None
            return n
        dups, t = timed(go)
        out[kind] = (t, dups)
    return out


def write_jsonl(docs: list[str], path: Path) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for d in docs:
            fh.write(json.dumps({"text": d}, ensure_ascii=False) + "\n")


def output_digest(out: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(out.rglob("*")):
        if p.is_file() and p.name not in ("stats.json", ".knowlm-output.json"):
            h.update(p.relative_to(out).as_posix().encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:16]


def run_build(src: Path, tmp: Path, workers: int, exact: bool, near: bool, reference: bool = False) -> tuple[float, str, dict]:
    cfg = from_dict(CorpusConfig, {
        "sources": [{"name": "zh_gen", "path": str(src), "template": "{text}", "language": "zh"}],
        "output_dir": str(tmp / "out"), "progress": False, "workers": workers, "overwrite": True,
        "dedup": {"exact": exact, "near": near}}, where="bench_corpus")
    saved = corpus_mod.DocumentFilter
    if reference:
        corpus_mod.DocumentFilter = cleaning_reference.DocumentFilter  # one process: the pool would not see it
    try:
        stats, t = timed(build, cfg)
    finally:
        corpus_mod.DocumentFilter = saved
    return t, output_digest(tmp / "out"), stats["totals"]


def profile_new(docs: list[str], top: int = 10) -> str:
    f = DocumentFilter()
    f.check("warm up")
    prof = cProfile.Profile()
    prof.enable()
    for d in docs:
        f.check(d)
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(top)
    return buf.getvalue()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--chars", type=int, default=8_000_000, help="characters of generated text (default 8 M)")
    p.add_argument("--mean-doc-chars", type=int, default=5000, help="mean document length (default 5,000)")
    p.add_argument("--noise", type=float, default=0.05, help="share of documents with planted noise")
    p.add_argument("--dup", type=float, default=0.04, help="share of planted duplicates (half exact, half 1 %% "
                                                          "edits; default 0.04)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", default="1,2", help="worker counts for the build table (default 1,2)")
    p.add_argument("--sections", default="filters,dedup,build", help="which of filters,dedup,build to run "
                                                                     "(default: all)")
    p.add_argument("--profile", action="store_true", help="also print a cProfile of the new filters")
    args = p.parse_args(argv)
    workers = [int(w) for w in args.workers.split(",")]

    docs, t_gen = timed(corpus_gen.documents, args.seed, args.chars, args.mean_doc_chars, args.noise, 0.85, False)
    docs = plant_duplicates(docs, args.dup, args.seed)
    chars = sum(map(len, docs))
    print(f"generated {len(docs):,} documents, {chars / 1e6:.1f} M chars (seed {args.seed}, noise {args.noise}, "
          f"planted duplicates {args.dup}) in {t_gen:.1f} s\n")

    sections = set(args.sections.split(","))
    if sections - {"filters", "dedup", "build"}:
        raise SystemExit(f"--sections: unknown {sorted(sections - {'filters', 'dedup', 'build'})}")
    if "filters" in sections:
        filters_section(docs, chars)
    if "dedup" in sections:
        dedup_section(docs)
    if "build" in sections:
        build_section(docs, workers)
    if args.profile:
        print("\nprofile of the new filters (cProfile, tottime):")
        print(profile_new(docs))


def filters_section(docs: list[str], chars: int) -> None:
    t_old, t_new, rules = run_filters(docs)
    removed = ", ".join(f"{k} {v}" for k, v in sorted(rules.items(), key=lambda kv: -kv[1]) if k)
    print("filters alone (DocumentFilter.check, one process); identical decisions: yes")
    print(f"  kept {rules[None]:,} / {len(docs):,}; removed: {removed}")
    print(f"  {'implementation':<34} {'s':>8} {'Mchars/s':>8}")
    print(f"  {'original regexes (reference)':<34} {t_old:8.2f} {mcs(chars, t_old)}")
    print(f"  {'knowlm_utils.cleaning (new)':<34} {t_new:8.2f} {mcs(chars, t_new)}")
    print(f"  speed-up: {t_old / t_new:.2f}x")
    reach = [d.encode("utf-8") for d in docs if len(d) <= 100_000]
    _, t_zlib = timed(lambda: [zlib.compress(r, 6) for r in reach if len(r) >= 500])
    print(f"  zlib.compress(level 6), which both must run for the repetition rule, alone: ≤ {t_zlib:.2f} s "
          f"({t_zlib / t_new:.0%} of the new time; measured on every document ≤ max_chars)\n")


def dedup_section(docs: list[str]) -> None:
    f = DocumentFilter()
    kept = [d for d in docs if f.check(d) is None]
    kept_chars = sum(map(len, kept))
    dd = run_dedup(kept)
    print(f"dedup alone on the {len(kept):,} kept documents ({kept_chars / 1e6:.1f} M chars; fingerprint + check, "
          "one process)")
    for kind, (t, dups) in dd.items():
        print(f"  {kind:<6} {t:8.2f} s {mcs(kept_chars, t)} Mchars/s  ({dups} duplicates)")
    print()


def build_section(docs: list[str], workers: list[int]) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-corpus-") as tmp_s:
        tmp = Path(tmp_s)
        src = tmp / "zh_gen.jsonl"
        write_jsonl(docs, src)
        print(f"knowlm corpus build end to end ({src.stat().st_size / 1e6:.0f} MB JSONL; read, filter, dedup, write)")
        print(f"  {'setting':<44} {'workers':>7} {'s':>8} {'Mchars/s':>8} {'kept':>7}  output")
        modes = [("filters only (dedup off)", False, False), ("filters + exact dedup", True, False),
                 ("filters + exact + near dedup", True, True)]
        for label, exact, near in modes:
            digests, base = set(), None
            runs = ([("original filters", 1, True)] if not exact else []) + [("", w, False) for w in workers]
            for tag, w, reference in runs:
                t, digest, totals = run_build(src, tmp, w, exact, near, reference)
                digests.add(digest)
                base = t if reference else base
                note = f"  {base / t:.2f}x the original filters" if base is not None and not reference else ""
                name = f"{label}, {tag}" if tag else label
                print(f"  {name:<44} {w:>7} {t:8.2f} {mcs(totals['chars_in'], t)} {totals['kept']:>7}  "
                      f"{digest}{note}")
            if len(digests) != 1:
                raise SystemExit(f"{label}: the output differs between runs (worker counts {workers})")
        print("  (same output digest = identical shards, removed.jsonl and skipped.jsonl)")


if __name__ == "__main__":
    main()
