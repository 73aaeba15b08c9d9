#!/usr/bin/env python
"""Preprocessing and reading throughput: this project vs a KnowLM-style baseline, in one run.

Part 1 — preprocess (corpus shards → chunked token index) on LONG CHINESE DOCUMENTS (the case of
KnowLM's Chinese pretraining: ``--chars`` characters in ``--docs`` documents, default 80 M chars
in 15,840 documents, built from the sample world's Chinese paragraphs), same tokenizer, same
sentence splitter, same greedy strategy (``knowlm``), ``--seq-length`` 1024:

* **this project** — ``knowlm_utils.preprocess.build``: each document is encoded ONCE with
  sentencepiece, sentence boundaries and token ends are matched with array operations on the
  offset arrays, samples stream to disk; the main process only reads lines and writes arrays.
* **baseline** (written here, what KnowLM's ``pretrain/preprocess.py`` does): encode sentence by
  sentence with sentencepiece, hold every sample of the corpus in Python lists
  (``list(pool.imap(...))``), write ``.bin``/``.idx`` at the end.

Printed: the ratio to the baseline at 1 worker, a scaling table of this project over
``--workers`` (default 1,2; e.g. 1,2,4,8,16 on a 16-core machine) with a same-bytes check (the
sha256 of train/valid .bin/.idx must be equal for every worker count), and peak RSS (largest sum
of RSS over the child and its workers, polled every 20 ms) at full size and at 1/``--growth``
of the corpus (flat memory: independent of corpus size).

Part 2 (``--reader-samples N``, 0 skips it) — reading: random samples/s and memory of
``MMapTokenIndex`` on a synthetic index vs a reader that converts the index to Python lists (as
KnowLM's ``MyDataset`` does).

Usage: python benchmarks/bench_preprocess.py --tokenizer PATH/tokenizer.model [--chars 80e6]
       [--docs 15840] [--workers 1,2] [--baseline-workers 1] [--growth 4] [--reader-samples 0]
       (without --tokenizer: a 4000-piece model trained on the sample world)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


# --------------------------------------------------------------------------- setup ---------
def build_sample_corpus(tmp: Path) -> Path:
    from knowlm_utils.corpus import build, load_corpus_config

    out = tmp / "corpus-1x"
    build(load_corpus_config(ROOT / "configs" / "corpus" / "sample.yaml", ["progress=false"]), out)
    return out


def long_chinese_corpus(src: Path, dst: Path, chars: int, docs: int, seed: int = 0) -> int:
    """A cleaned-corpus folder of ``docs`` long Chinese documents of ``chars // docs`` characters
    each, made of random paragraphs of ``src``'s Chinese documents (deterministic for a seed);
    returns the characters written."""
    import random

    from knowlm_utils.corpus import cleaned_sources, iter_cleaned_documents

    sources = cleaned_sources(src)
    paras = [p for d in iter_cleaned_documents(src) if sources[d["source"]]["language"] == "zh"
             for p in d["text"].split("\n") if p.strip()]
    rng = random.Random(seed)
    per, written = chars // docs, 0
    (dst / "zh_long").mkdir(parents=True, exist_ok=True)
    with open(dst / "zh_long" / "part-00000.jsonl", "w", encoding="utf-8") as fh:
        for i in range(docs):
            parts, n = [], 0
            while n < per:
                parts.append(paras[rng.randrange(len(paras))])
                n += len(parts[-1]) + 1
            text = "\n".join(parts)[:per]
            written += len(text)
            fh.write(json.dumps({"id": f"zh-long-{i}", "text": text, "source": "zh_long"}, ensure_ascii=False) + "\n")
    stats = {"sources": {"zh_long": {"language": "zh", "shards": ["part-00000.jsonl"], "kept": docs}}}
    (dst / "stats.json").write_text(json.dumps(stats), encoding="utf-8")
    return written


def train_tokenizer(corpus: Path, tmp: Path, vocab_size: int = 4000) -> Path:
    import sentencepiece as spm

    from knowlm_utils.corpus import iter_cleaned_documents

    text = tmp / "tok-train.txt"
    with open(text, "w", encoding="utf-8") as fh:
        for d in iter_cleaned_documents(corpus):
            fh.write(d["text"].replace("\n", " ") + "\n")
    spm.SentencePieceTrainer.train(
        input=str(text), model_prefix=str(tmp / "bench-sp"), vocab_size=vocab_size, model_type="bpe",
        character_coverage=0.9995, byte_fallback=True, normalization_rule_name="identity",
        remove_extra_whitespaces=False, split_digits=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        max_sentence_length=1 << 20, num_threads=2, minloglevel=2)
    return tmp / "bench-sp.model"


# ------------------------------------------------------------------ KnowLM baseline --------
_SP = None


def _baseline_init(model_file: str) -> None:
    global _SP
    from knowlm_utils.spm import load_processor

    _SP = load_processor(model_file)


def _baseline_encode(item: tuple[str, str, int]) -> list[list[int]]:
    """KnowLM's dsmt_encode (``chunking.encode_per_sentence``): split, encode each sentence
    separately, cut over-long sentences, greedy-merge with backward extension, Python lists."""
    from knowlm_utils.chunking import encode_per_sentence

    text, lang, seq_length = item
    return encode_per_sentence(_SP, text, lang, seq_length)


def run_baseline(corpus: Path, model_file: Path, out_prefix: Path, seq_length: int, workers: int) -> dict:
    import multiprocessing

    from knowlm_utils.corpus import cleaned_sources, iter_cleaned_documents

    langs = {n: info["language"] for n, info in cleaned_sources(corpus).items()}
    items = ((d["text"], langs[d["source"]], seq_length) for d in iter_cleaned_documents(corpus))
    if workers > 1:
        with multiprocessing.get_context("spawn").Pool(workers, _baseline_init, (str(model_file),)) as pool:
            docs = list(pool.imap(_baseline_encode, items, 25))
    else:
        _baseline_init(str(model_file))
        docs = [_baseline_encode(it) for it in items]
    starts, lengths, pos = [], [], 0
    with open(f"{out_prefix}.bin", "wb") as fh:
        for doc in docs:
            for sample in doc:
                fh.write(np.array(sample, dtype=np.uint16).tobytes())
                starts.append(pos)
                lengths.append(len(sample))
                pos += len(sample)
    with open(f"{out_prefix}.idx", "wb") as fh:
        fh.write(np.array(starts, dtype=np.uint64).tobytes())
        fh.write(np.array(lengths, dtype=np.uint16).tobytes())
    return {"samples": len(lengths), "tokens": pos}


def run_ours(corpus: Path, model_file: Path, out_dir: Path, seq_length: int, workers: int) -> dict:
    from knowlm_utils.preprocess import PreprocessConfig, build

    cfg = PreprocessConfig(corpus_dir=str(corpus), tokenizer=str(model_file), output_dir=str(out_dir),
                           seq_length=seq_length, strategy="knowlm", valid_percent=0.0, workers=workers,
                           progress=False)
    m = build(cfg)["train"]
    import hashlib

    digest = hashlib.sha256()
    for name in ("train.bin", "train.idx", "valid.bin", "valid.idx"):
        with open(out_dir / name, "rb") as fh:
            while block := fh.read(1 << 20):  # 1 MB blocks: the hash must not add to the measured peak RSS
                digest.update(block)
    return {"samples": m["num_samples"], "tokens": m["num_tokens"], "sha256": digest.hexdigest()[:16]}


# ------------------------------------------------------------------------- reading ---------
def build_big_index(prefix: Path, n_samples: int, seed: int = 0) -> None:
    """A synthetic index of ``n_samples`` samples (8-64 tokens, 10 per document) written with
    the project's streaming writer."""
    from knowlm_utils.index import MMapTokenIndexWriter

    rng = np.random.default_rng(seed)
    per_doc, step = 10, 500_000
    with MMapTokenIndexWriter(prefix, vocab_size=32000) as w:
        for start in range(0, n_samples, step):
            lens = rng.integers(8, 65, min(step, n_samples - start))
            flat = rng.integers(0, 32000, int(lens.sum()), dtype=np.uint16)
            w.add_documents_flat(flat, lens, np.full(len(lens) // per_doc, per_doc), type="synthetic")
        w.finalize()


def _mem() -> dict:
    out = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(("RssAnon", "RssFile", "VmRSS")):
                k, v = line.split(":")
                out[k] = int(v.split()[0]) / 1024  # MiB
    return out


def run_reader(prefix: Path, kind: str, n_reads: int) -> dict:
    from knowlm_utils.index import MMapTokenIndex  # imported before the first reading

    rng = np.random.default_rng(1)
    before = _mem()
    t0 = time.perf_counter()
    if kind == "mmap":
        ds = MMapTokenIndex(prefix)
        n = len(ds)
        get = ds.__getitem__
    else:  # KnowLM's MyDataset: index arrays converted to Python lists, .bin memory-mapped
        ref = MMapTokenIndex(prefix)
        bin_buf = np.memmap(f"{prefix}.bin", dtype=ref.dtype, mode="r")
        starts = (ref.pointers // ref.dtype.itemsize).tolist()
        sizes = ref.sizes.tolist()
        del ref
        n = len(sizes)

        def get(i):
            return bin_buf[starts[i]:starts[i] + sizes[i]]
    open_s = time.perf_counter() - t0
    order = rng.integers(0, n, n_reads)
    t1 = time.perf_counter()
    checksum = 0
    for i in order:
        checksum += int(get(int(i))[0])
    read_s = time.perf_counter() - t1
    after = _mem()
    return {"samples": n, "open_s": open_s, "reads_per_s": n_reads / read_s,
            "anon_mib": after["RssAnon"] - before["RssAnon"], "file_mib": after["RssFile"] - before["RssFile"],
            "checksum": checksum}


# ----------------------------------------------------------------------- harness -----------
def child(args) -> None:
    spec = json.loads(args.child)
    import sentencepiece  # noqa: F401  (imports are not part of the measured time)

    import knowlm_utils.chunking, knowlm_utils.index, knowlm_utils.preprocess, knowlm_utils.tokenizer  # noqa: F401,E401
    t0 = time.perf_counter()
    if spec["what"] == "ours":
        res = run_ours(Path(spec["corpus"]), Path(spec["model"]), Path(spec["out"]), spec["seq"], spec["workers"])
    elif spec["what"] == "baseline":
        res = run_baseline(Path(spec["corpus"]), Path(spec["model"]), Path(spec["out"]), spec["seq"], spec["workers"])
    else:
        res = run_reader(Path(spec["prefix"]), spec["kind"], spec["reads"])
    res["wall_s"] = time.perf_counter() - t0
    print("RESULT " + json.dumps(res))


def measure(spec: dict) -> dict:
    """Run one variant in a fresh interpreter; poll the peak RSS of it and its children."""
    import psutil

    proc = subprocess.Popen([sys.executable, __file__, "--child", json.dumps(spec)], stdout=subprocess.PIPE,
                            text=True, cwd=ROOT)
    ps, peak = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        try:
            rss = ps.memory_info().rss + sum(c.memory_info().rss for c in ps.children(recursive=True))
            peak = max(peak, rss)
        except psutil.Error:
            pass
        time.sleep(0.02)
    out = proc.stdout.read()
    if proc.returncode != 0:
        raise SystemExit(f"benchmark child failed ({spec}):\n{out}")
    res = json.loads(out.split("RESULT ", 1)[1])
    res["peak_rss_mb"] = peak / 1e6
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--chars", type=float, default=80e6, help="corpus size in characters (default 80e6)")
    p.add_argument("--docs", type=int, default=None, help="documents (default: chars / 5050.5, i.e. 15,840 at 80 M)")
    p.add_argument("--seq-length", type=int, default=1024)
    p.add_argument("--tokenizer", help="a SentencePiece .model, e.g. LLaMA's tokenizer.model (default: train "
                                       "4000 pieces on the sample world)")
    p.add_argument("--workers", default="1,2", help="worker counts of the scaling table (comma-separated)")
    p.add_argument("--baseline-workers", default="1", help="worker counts for the baseline (comma-separated)")
    p.add_argument("--growth", type=int, default=4, help="the RSS check also runs on 1/growth of the corpus")
    p.add_argument("--reader-samples", type=int, default=0, help="synthetic index size for part 2 (0: skip)")
    p.add_argument("--reads", type=int, default=200_000)
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)
    docs = args.docs or max(1, round(args.chars / 5050.5))
    ours_workers = [int(w) for w in args.workers.split(",")]
    base_workers = [int(w) for w in args.baseline_workers.split(",") if w]

    with tempfile.TemporaryDirectory(prefix="bench-preprocess-") as tmp_s:
        tmp = Path(tmp_s)
        sample = build_sample_corpus(tmp)
        model = Path(args.tokenizer) if args.tokenizer else train_tokenizer(sample, tmp)
        big, small = tmp / "zh-long", tmp / "zh-long-small"
        chars = long_chinese_corpus(sample, big, int(args.chars), docs)
        chars_small = long_chinese_corpus(sample, small, int(args.chars) // args.growth, max(1, docs // args.growth))
        print(f"corpus: {chars / 1e6:.1f} M chars in {docs:,} long Chinese documents; tokenizer {model}; "
              f"seq_length {args.seq_length}\n", flush=True)

        def run(what: str, workers: int, corpus: Path) -> dict:
            return measure({"what": what, "corpus": str(corpus), "model": str(model), "seq": args.seq_length,
                            "workers": workers, "out": str(tmp / f"{what}-{workers}-{corpus.name}")})

        base = {w: run("baseline", w, big) for w in base_workers}
        ours = {w: run("ours", w, big) for w in ours_workers}
        ours_small = run("ours", 1, small)
        print(f"{'variant':10} {'workers':>7} {'samples':>9} {'wall s':>7} {'Mchar/s':>8} {'peak RSS MB':>11} "
              f"{'vs baseline 1w':>14} {'vs ours 1w':>10} {'sha256 (train+valid)':>20}")
        rows = [("baseline", w, r) for w, r in base.items()] + [("ours", w, r) for w, r in ours.items()]
        for what, w, r in rows:
            vs_base = f"{base[1]['wall_s'] / r['wall_s']:.2f}x" if 1 in base else "-"
            vs_ours = f"{ours[1]['wall_s'] / r['wall_s']:.2f}x" if what == "ours" and 1 in ours else "-"
            print(f"{what:10} {w:>7} {r['samples']:>9} {r['wall_s']:7.2f} {chars / 1e6 / r['wall_s']:8.2f} "
                  f"{r['peak_rss_mb']:11.0f} {vs_base:>14} {vs_ours:>10} {r.get('sha256', '-'):>20}")
        hashes = {r["sha256"] for r in ours.values()}
        print(f"\nsame bytes for workers {ours_workers}: {'yes' if len(hashes) == 1 else 'NO: ' + str(hashes)}")
        if 1 in base and 1 in ours:
            print(f"ratio at 1 worker: {base[1]['wall_s'] / ours[1]['wall_s']:.2f}x the KnowLM-style baseline "
                  f"({base[1]['wall_s']:.1f} s vs {ours[1]['wall_s']:.1f} s)")
        if 1 in ours:
            print(f"peak RSS, ours, 1 worker: {ours_small['peak_rss_mb']:.0f} MB at {chars_small / 1e6:.1f} M chars "
                  f"-> {ours[1]['peak_rss_mb']:.0f} MB at {chars / 1e6:.1f} M chars"
                  + (f"; baseline {base[1]['peak_rss_mb']:.0f} MB" if 1 in base else ""))
        if len(hashes) != 1:
            raise SystemExit("worker counts gave different bytes")

        if args.reader_samples:
            prefix = tmp / "big"
            t0 = time.perf_counter()
            build_big_index(prefix, args.reader_samples)
            size = os.path.getsize(f"{prefix}.bin") + os.path.getsize(f"{prefix}.idx")
            print(f"\nreader: synthetic index of {args.reader_samples:,} samples ({size / 1e6:.0f} MB on disk), "
                  f"written in {time.perf_counter() - t0:.1f} s; {args.reads:,} random reads each")
            print(f"{'reader':12} {'open s':>7} {'reads/s':>10} {'RssAnon MiB':>12} {'MiB/M samples':>14} "
                  f"{'RssFile MiB':>12}")
            for kind in ("mmap", "python-lists"):
                r = measure({"what": "reader", "prefix": str(prefix), "kind": kind, "reads": args.reads})
                print(f"{kind:12} {r['open_s']:7.2f} {r['reads_per_s']:10.0f} {r['anon_mib']:12.1f} "
                      f"{r['anon_mib'] / (r['samples'] / 1e6):14.2f} {r['file_mib']:12.1f}")


if __name__ == "__main__":
    main()
