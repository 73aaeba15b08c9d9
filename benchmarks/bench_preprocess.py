#!/usr/bin/env python
"""Preprocessing and reading throughput: this project vs a KnowLM-style baseline, in one run.

Part 1 — preprocess (corpus shards → chunked token index), same corpus, same tokenizer, same
sentence splitters, same greedy strategy (``knowlm``), 1 and 2 worker processes:

* **this project** — ``knowlm_utils.preprocess.build``: each document is encoded ONCE with
  sentencepiece and cut at sentence boundaries by character offsets; samples stream to disk
  with a bounded number of batches in flight.
* **baseline** (written here, what KnowLM's ``pretrain/preprocess.py`` does): encode sentence by
  sentence with sentencepiece, hold every sample of the corpus in Python lists
  (``list(pool.imap(...))``), write ``.bin``/``.idx`` at the end.

Each variant runs in a fresh child process; peak RSS is the largest sum of RSS over the child
and its workers, polled every 20 ms. The corpus is the cleaned sample world, repeated (with new
document ids) to ``--mb`` million characters; the RSS check reruns this project's build on a
corpus ``--growth`` times larger.

Part 2 — reading: random samples/s and memory of ``MMapTokenIndex`` on a synthetic index of
``--reader-samples`` samples vs a reader that converts the index to Python lists (as KnowLM's
``MyDataset`` does). Memory is reported as anonymous resident memory (RssAnon: what the
reader allocates) and file-backed resident pages (RssFile: page cache the kernel may drop).

Usage: python benchmarks/bench_preprocess.py [--mb 4] [--growth 10] [--reader-samples 5000000]
       [--tokenizer PATH/tokenizer.model]   (default: trains a 4000-piece model on the sample world)
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


def scaled_corpus(src: Path, dst: Path, target_chars: int) -> int:
    """Write a cleaned-corpus folder (stats.json + shards) repeating ``src``'s documents with
    new ids until ``target_chars``; returns the characters written."""
    from knowlm_utils.corpus import cleaned_sources, iter_cleaned_documents

    sources = cleaned_sources(src)
    per_source_docs = {n: list(iter_cleaned_documents(src, [n])) for n in sources}
    base_chars = sum(len(d["text"]) for docs in per_source_docs.values() for d in docs)
    repeats = max(1, round(target_chars / base_chars))
    stats, written = {"sources": {}}, 0
    for name, info in sources.items():
        (dst / name).mkdir(parents=True, exist_ok=True)
        with open(dst / name / "part-00000.jsonl", "w", encoding="utf-8") as fh:
            for r in range(repeats):
                for d in per_source_docs[name]:
                    fh.write(json.dumps({**d, "id": f"{d['id']}#{r}"}, ensure_ascii=False) + "\n")
                    written += len(d["text"])
        stats["sources"][name] = {"language": info["language"], "shards": ["part-00000.jsonl"]}
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
    return {"samples": m["num_samples"], "tokens": m["num_tokens"]}


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
    p.add_argument("--mb", type=float, default=4.0, help="corpus size in million characters (1x)")
    p.add_argument("--growth", type=int, default=10, help="corpus growth factor for the RSS check")
    p.add_argument("--seq-length", type=int, default=256)
    p.add_argument("--tokenizer", help="a SentencePiece .model (default: train 4000 pieces on the sample world)")
    p.add_argument("--reader-samples", type=int, default=5_000_000)
    p.add_argument("--reads", type=int, default=200_000)
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)

    with tempfile.TemporaryDirectory(prefix="bench-preprocess-") as tmp_s:
        tmp = Path(tmp_s)
        sample = build_sample_corpus(tmp)
        model = Path(args.tokenizer) if args.tokenizer else train_tokenizer(sample, tmp)
        c1, c10 = tmp / "corpus-a", tmp / "corpus-b"
        chars1 = scaled_corpus(sample, c1, int(args.mb * 1e6))
        chars10 = scaled_corpus(sample, c10, int(args.mb * 1e6 * args.growth))
        print(f"corpus: {chars1 / 1e6:.1f} M chars (and {chars10 / 1e6:.1f} M for the growth check); "
              f"tokenizer {model.name}; seq_length {args.seq_length}\n")

        rows = []
        for what in ("baseline", "ours"):
            for workers in (1, 2):
                spec = {"what": what, "corpus": str(c1), "model": str(model), "seq": args.seq_length,
                        "workers": workers, "out": str(tmp / f"{what}-{workers}")}
                r = measure(spec)
                rows.append((what, workers, chars1, r))
        for what in ("baseline", "ours"):  # the same corpus, `--growth` times larger: memory must stay flat
            grown = measure({"what": what, "corpus": str(c10), "model": str(model), "seq": args.seq_length,
                             "workers": 1, "out": str(tmp / f"{what}-grown")})
            rows.append((what, 1, chars10, grown))

        base = {w: r["wall_s"] for what, w, c, r in rows if what == "baseline" and c == chars1}
        print(f"{'variant':10} {'workers':>7} {'M chars':>8} {'samples':>9} {'wall s':>7} {'Mchar/s':>8} "
              f"{'peak RSS MB':>11} {'vs baseline':>11}")
        for what, w, c, r in rows:
            ratio = f"{base[w] / r['wall_s']:.2f}x" if c == chars1 else "-"
            print(f"{what:10} {w:>7} {c / 1e6:8.1f} {r['samples']:>9} {r['wall_s']:7.2f} "
                  f"{c / 1e6 / r['wall_s']:8.2f} {r['peak_rss_mb']:11.0f} {ratio:>11}")
        print()
        for name in ("ours", "baseline"):
            small = next(r for what, w, c, r in rows if what == name and w == 1 and c == chars1)
            big = next(r for what, w, c, r in rows if what == name and w == 1 and c == chars10)
            print(f"peak RSS, {name}, 1 worker: {small['peak_rss_mb']:.0f} MB at {chars1 / 1e6:.1f} M chars -> "
                  f"{big['peak_rss_mb']:.0f} MB at {chars10 / 1e6:.1f} M chars "
                  f"({big['peak_rss_mb'] / small['peak_rss_mb']:.2f}x for {args.growth}x the corpus)")

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
