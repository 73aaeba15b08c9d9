"""Stage 04 storage (knowlm_utils.index): the Megatron-layout memory-mapped token index.

The files written by the project are read back here by an INDEPENDENT reader built only from
the documented byte layout (struct + numpy), so the test would catch a writer and reader that
agree with each other but not with Megatron-LM.
"""

import json
import os
import signal
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from knowlm_utils import cli
from knowlm_utils.index import (
    IndexFormatError,
    MMapTokenIndex,
    MMapTokenIndexWriter,
    dtype_for_vocab,
    import_knowlm_legacy,
    merge_indexes,
    read_manifest,
)
from knowlm_utils.index import format as index_format
from knowlm_utils.index import merge as index_merge

ROOT = Path(__file__).resolve().parents[1]
MEGATRON_DTYPES = {1: "u1", 2: "i1", 3: "<i2", 4: "<i4", 5: "<i8", 6: "<f8", 7: "<f4", 8: "<u2"}


# ------------------------------------------------------------------ independent reader -----
def read_megatron(prefix) -> dict:
    """Parse PREFIX.idx / PREFIX.bin from the documented MMIDIDX layout (no project code)."""
    idx = Path(f"{prefix}.idx").read_bytes()
    magic, version, code, n, d = struct.unpack_from("<9sQBQQ", idx, 0)
    assert magic == b"MMIDIDX\x00\x00" and version == 1
    off = 34
    sizes = list(struct.unpack_from(f"<{n}i", idx, off))
    off += 4 * n
    pointers = list(struct.unpack_from(f"<{n}q", idx, off))
    off += 8 * n
    doc_idx = list(struct.unpack_from(f"<{d}q", idx, off))
    off += 8 * d
    assert off == len(idx), "trailing bytes in .idx"
    data = Path(f"{prefix}.bin").read_bytes()
    dt = np.dtype(MEGATRON_DTYPES[code])
    samples = [np.frombuffer(data, dt, count=sizes[i], offset=pointers[i]).tolist() for i in range(n)]
    return {"code": code, "sizes": sizes, "pointers": pointers, "doc_idx": doc_idx, "samples": samples,
            "bin_len": len(data)}


def write_megatron(prefix, samples, doc_idx, code=8):
    """Write an index by hand from the layout (what Megatron's builder produces)."""
    dt = np.dtype(MEGATRON_DTYPES[code])
    sizes = [len(s) for s in samples]
    pointers = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(int) * dt.itemsize if samples else []
    with open(f"{prefix}.idx", "wb") as fh:
        fh.write(struct.pack("<9sQBQQ", b"MMIDIDX\x00\x00", 1, code, len(samples), len(doc_idx)))
        fh.write(struct.pack(f"<{len(sizes)}i", *sizes))
        fh.write(struct.pack(f"<{len(sizes)}q", *[int(p) for p in pointers]))
        fh.write(struct.pack(f"<{len(doc_idx)}q", *doc_idx))
    with open(f"{prefix}.bin", "wb") as fh:
        for s in samples:
            fh.write(np.asarray(s, dt).tobytes())


def random_docs(rng, n_docs, vocab, max_samples=4, max_len=50):
    return [[rng.integers(0, vocab, int(rng.integers(1, max_len + 1))) for _ in range(int(rng.integers(1, max_samples + 1)))]
            for _ in range(n_docs)]


def write_docs(prefix, typed_docs, vocab=32000, **kw):
    with MMapTokenIndexWriter(prefix, vocab, **kw) as w:
        for t, docs in typed_docs.items():
            for d in docs:
                w.add_document(d, type=t)
    return read_manifest(prefix)


def flat_samples(typed_docs):
    return [s.tolist() for docs in typed_docs.values() for d in docs for s in d]


def doc_index_of(typed_docs):
    out = [0]
    for docs in typed_docs.values():
        for d in docs:
            out.append(out[-1] + len(d))
    return out


@pytest.fixture
def small_chunks(monkeypatch):
    """Tiny streaming chunks so every chunk boundary / carry path runs on small data."""
    monkeypatch.setattr(index_format, "CHUNK_ITEMS", 3)
    monkeypatch.setattr(index_merge, "COPY_BYTES", 10)


# ------------------------------------------------------------------ writer / layout -------
def test_written_files_follow_megatron_layout(tmp_path, small_chunks):
    rng = np.random.default_rng(1)
    typed = {"zh": random_docs(rng, 7, 32000), "en": random_docs(rng, 5, 32000), "code": random_docs(rng, 4, 32000)}
    manifest = write_docs(tmp_path / "x", typed)
    raw = read_megatron(tmp_path / "x")
    assert raw["code"] == 8  # uint16 for a 32000 vocabulary
    assert raw["samples"] == flat_samples(typed)
    assert raw["doc_idx"] == doc_index_of(typed)
    assert raw["pointers"] == [2 * sum(raw["sizes"][:i]) for i in range(len(raw["sizes"]))]
    n_zh = sum(len(d) for d in typed["zh"])
    n_en = sum(len(d) for d in typed["en"])
    assert manifest["types"]["zh"]["samples"] == [0, n_zh]
    assert manifest["types"]["en"]["samples"] == [n_zh, n_zh + n_en]
    assert manifest["types"]["en"]["documents"] == [7, 12]
    assert manifest["types"]["code"]["tokens"] == sum(len(s) for d in typed["code"] for s in d)
    assert manifest["num_samples"] == len(raw["samples"]) and manifest["num_documents"] == 16
    assert manifest["num_tokens"] * 2 == raw["bin_len"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.bin", "x.idx", "x.manifest.json"]  # no temps left


def test_reader_round_trip_zero_copy_and_errors(tmp_path):
    rng = np.random.default_rng(2)
    typed = {"default": random_docs(rng, 20, 1000)}
    write_docs(tmp_path / "x", typed, vocab=1000)
    index = MMapTokenIndex(tmp_path / "x")
    expected = flat_samples(typed)
    assert len(index) == len(expected) and index.num_documents == 20
    assert [index[i].tolist() for i in range(len(index))] == expected
    assert index[-1].tolist() == expected[-1] and index[np.int64(3)].tolist() == expected[3]
    view = index[0]
    assert not view.flags.writeable and not view.flags.owndata  # a view of the read-only map
    with pytest.raises(IndexError, match=rf"sample {len(index)} out of range .*x .*{len(index)} samples"):
        index[len(index)]
    with pytest.raises(IndexError):
        index[-len(index) - 1]
    for j, doc in enumerate(typed["default"]):
        assert [s.tolist() for s in index.document(j)] == [s.tolist() for s in doc]
        assert index.document_of(int(index.doc_idx[j])) == j
    assert index.type_ranges == {"default": (0, len(expected))}
    assert MMapTokenIndex(str(tmp_path / "x") + ".bin").num_tokens == index.num_tokens  # PREFIX.bin accepted


def test_reads_a_megatron_built_index_without_manifest(tmp_path):
    samples = [[5, 6, 7], [8], [9, 10], [11, 12, 13, 14]]
    write_megatron(tmp_path / "m", samples, [0, 2, 4], code=4)
    index = MMapTokenIndex(tmp_path / "m")
    assert index.dtype == np.int32 and index.manifest is None
    assert [s.tolist() for s in index] == samples
    assert [s.tolist() for s in index.document(1)] == samples[2:]
    assert index.type_ranges == {"default": (0, 4)}


def test_pointers_beyond_4_gb_use_int64(tmp_path):
    """Three samples of 2^30 uint16 tokens (6 GiB .bin, sparse on disk): pointers past 2^32."""
    n = 1 << 30
    with open(tmp_path / "big.idx", "wb") as fh:
        fh.write(struct.pack("<9sQBQQ", b"MMIDIDX\x00\x00", 1, 8, 3, 2))
        fh.write(struct.pack("<3i", n, n, n) + struct.pack("<3q", 0, 2 * n, 4 * n) + struct.pack("<2q", 0, 3))
    with open(tmp_path / "big.bin", "wb") as fh:
        fh.truncate(6 * n)
        fh.seek(4 * n)
        fh.write(np.array([7, 8], "<u2").tobytes())
    index = MMapTokenIndex(tmp_path / "big")
    assert index.num_tokens == 3 * n
    assert len(index[2]) == n and index[2][:2].tolist() == [7, 8]


def test_dtype_choice_at_the_65536_boundary(tmp_path):
    assert dtype_for_vocab(65536) == np.uint16 and dtype_for_vocab(65537) == np.int32
    assert dtype_for_vocab(32000) == np.uint16
    write_docs(tmp_path / "u16", {"default": [[np.array([0, 65535])]]}, vocab=65536)
    write_docs(tmp_path / "i32", {"default": [[np.array([0, 65536, 69999])]]}, vocab=70000)
    assert read_megatron(tmp_path / "u16")["code"] == 8
    big = read_megatron(tmp_path / "i32")
    assert big["code"] == 4 and big["samples"] == [[0, 65536, 69999]]
    assert MMapTokenIndex(tmp_path / "i32")[0].tolist() == [0, 65536, 69999]
    with pytest.raises(ValueError, match="ids up to 65536, which do not fit uint16"):
        MMapTokenIndexWriter(tmp_path / "bad", 65537, dtype=np.uint16)


def test_bad_documents_are_rejected_with_their_position(tmp_path):
    with MMapTokenIndexWriter(tmp_path / "x", 100) as w:
        w.add_document([np.array([1, 2])], type="zh")
        with pytest.raises(ValueError, match=r"document 1, sample 2: token id 100 is out of range \[0, 100\)"):
            w.add_document([np.array([1]), np.array([2, 3]), np.array([4, 100])], type="zh")
        with pytest.raises(ValueError, match=r"document 1, sample 0: token id -1"):
            w.add_document([np.array([-1])], type="zh")
        with pytest.raises(ValueError, match="document 1 has no samples"):
            w.add_document([], type="zh")
        with pytest.raises(ValueError, match="document 1, sample 1 has 0 tokens"):
            w.add_document([np.array([1]), np.array([], np.int64)], type="zh")
        with pytest.raises(ValueError, match="1-D integer"):
            w.add_document([np.array([1.5])], type="zh")
        w.add_document([np.array([3])], type="en")
        with pytest.raises(ValueError, match="type 'zh' reappears at document 2 after type 'en'"):
            w.add_document([np.array([4])], type="zh")
    raw = read_megatron(tmp_path / "x")  # rejected documents left no trace
    assert raw["samples"] == [[1, 2], [3]] and raw["doc_idx"] == [0, 1, 2]


def test_add_documents_flat_equals_add_document(tmp_path, small_chunks):
    rng = np.random.default_rng(3)
    docs = random_docs(rng, 9, 500)
    write_docs(tmp_path / "a", {"t": docs}, vocab=500)
    with MMapTokenIndexWriter(tmp_path / "b", 500) as w:
        w.add_documents_flat(np.concatenate([s for d in docs for s in d]), [len(s) for d in docs for s in d],
                             [len(d) for d in docs], type="t")
    for suffix in (".bin", ".idx"):
        assert Path(f"{tmp_path / 'a'}{suffix}").read_bytes() == Path(f"{tmp_path / 'b'}{suffix}").read_bytes()


def test_empty_index_is_valid(tmp_path):
    manifest = MMapTokenIndexWriter(tmp_path / "e", 10).finalize({"split": "valid"})
    assert manifest["num_samples"] == 0 and manifest["types"] == {} and manifest["split"] == "valid"
    raw = read_megatron(tmp_path / "e")
    assert raw["doc_idx"] == [0] and raw["bin_len"] == 0
    index = MMapTokenIndex(tmp_path / "e")
    assert len(index) == 0 and index.num_documents == 0 and index.type_ranges == {}


def test_manifest_extra_is_merged_and_reserved_keys_protected(tmp_path):
    w = MMapTokenIndexWriter(tmp_path / "x", 10)
    w.add_document([np.array([1, 2, 3])])
    with pytest.raises(ValueError, match=r"writer's own keys \['num_samples'\]"):
        w.finalize({"num_samples": 5})
    w.abort()
    assert list(tmp_path.iterdir()) == []
    w = MMapTokenIndexWriter(tmp_path / "x", 10)
    w.add_document([np.array([1, 2, 3])])
    with pytest.raises(TypeError, match="manifest value of type object"):
        w.finalize({"bad": object()})
    assert list(tmp_path.iterdir()) == []  # failed before committing anything
    w = MMapTokenIndexWriter(tmp_path / "x", 10)
    w.add_document([np.array([1, 2, 3])])
    m = w.finalize({"seq_length": np.int64(64), "tokenizer": {"sha256": "ab"}, "lengths": np.array([3])})
    assert read_manifest(tmp_path / "x") == m and m["seq_length"] == 64 and m["lengths"] == [3]
    assert m["vocab_size"] == 10


# ------------------------------------------------------------------ validation ------------
def _corrupt(prefix: Path, what: str) -> str:
    """Damage one file; return the file name the error must name."""
    idx, bin_, man = (Path(f"{prefix}{s}") for s in (".idx", ".bin", ".manifest.json"))
    data = bytearray(idx.read_bytes())
    if what == "magic":
        data[0:3] = b"XXX"
    elif what == "version":
        data[9:17] = struct.pack("<Q", 2)
    elif what == "dtype_code":
        data[17] = 9
    elif what == "truncated_idx":
        data = data[:-5]
    elif what == "short_idx":
        data = data[:20]
    elif what == "pointer":
        n = struct.unpack_from("<Q", data, 18)[0]
        struct.pack_into("<q", data, 34 + 4 * n + 8, 2)  # sample 1 points at byte 2
    elif what == "doc_idx":
        n, d = struct.unpack_from("<QQ", data, 18)
        struct.pack_into("<q", data, 34 + 12 * n + 8 * 2, 1)  # third entry goes backwards
    elif what == "truncated_bin":
        bin_.write_bytes(bin_.read_bytes()[:-2])
        return bin_.name
    elif what == "manifest_count":
        m = json.loads(man.read_text())
        m["num_samples"] += 1
        man.write_text(json.dumps(m))
        return man.name
    elif what == "manifest_types":
        m = json.loads(man.read_text())
        m["types"]["en"]["samples"][0] += 1
        man.write_text(json.dumps(m))
        return man.name
    elif what == "manifest_json":
        man.write_text("{not json")
        return man.name
    idx.write_bytes(bytes(data))
    return idx.name


@pytest.mark.parametrize("what, message", [
    ("magic", "bad magic"), ("version", "unsupported version 2"), ("dtype_code", "unknown dtype code 9"),
    ("truncated_idx", "truncated or corrupt"), ("short_idx", "shorter than the 34-byte header"),
    ("pointer", "sample 1 points to byte 2"), ("doc_idx", "document index decreases at entry 2"),
    ("truncated_bin", "the .bin is truncated"), ("manifest_count", "num_samples is"),
    ("manifest_types", "type 'en' covers samples"), ("manifest_json", "not valid JSON"),
])
def test_corrupt_files_give_errors_naming_the_file(tmp_path, what, message):
    rng = np.random.default_rng(4)
    write_docs(tmp_path / "x", {"zh": random_docs(rng, 3, 100, max_samples=2), "en": random_docs(rng, 3, 100)}, vocab=100)
    MMapTokenIndex(tmp_path / "x")  # valid before
    name = _corrupt(tmp_path / "x", what)
    with pytest.raises(IndexFormatError) as info:
        MMapTokenIndex(tmp_path / "x")
    assert name in str(info.value) and message in str(info.value)


def test_missing_idx_is_a_clear_error(tmp_path):
    write_docs(tmp_path / "x", {"t": [[np.array([1])]]}, vocab=10)
    os.unlink(tmp_path / "x.idx")
    with pytest.raises(FileNotFoundError, match=r"x\.idx: no such file .*interrupted write"):
        MMapTokenIndex(tmp_path / "x")


# ------------------------------------------------------------------ atomicity -------------
def test_exception_inside_with_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError, match="boom"):
        with MMapTokenIndexWriter(tmp_path / "out" / "x", 100) as w:
            w.add_document([np.array([1, 2, 3])])
            raise RuntimeError("boom")
    assert list((tmp_path / "out").iterdir()) == []


CHILD = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    from knowlm_utils.index import MMapTokenIndexWriter
    prefix, mode = sys.argv[1], sys.argv[2]
    if mode == "commit":  # die between committing the .bin/manifest and the .idx
        real_replace = os.replace
        def dying_replace(src, dst):
            if str(dst).endswith(".idx"):
                os.kill(os.getpid(), signal.SIGKILL)
            return real_replace(src, dst)
        os.replace = dying_replace
    w = MMapTokenIndexWriter(prefix, 1000)
    for j in range(10 ** 9):
        w.add_document([np.arange(100) % 1000], type="t")
        if j == 200:
            print("writing", flush=True)
            if mode == "commit":
                w.finalize()
""")


@pytest.mark.parametrize("mode", ["streaming", "commit"])
def test_killed_writer_leaves_no_valid_index(tmp_path, mode):
    """SIGKILL mid-write (or mid-commit, over an existing valid index): nothing opens."""
    prefix = tmp_path / "x"
    write_docs(prefix, {"t": [[np.array([1, 2])]]}, vocab=1000)  # an older, valid index at the same prefix
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(prefix), mode], stdout=subprocess.PIPE, env=env)
    assert proc.stdout.readline().strip() == b"writing"
    if mode == "streaming":
        os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    if mode == "streaming":  # the old index is untouched; the new one never appeared
        assert [s.tolist() for s in MMapTokenIndex(prefix)] == [[1, 2]]
    else:  # the new .bin replaced the old one, but without its .idx nothing opens
        assert not (tmp_path / "x.idx").exists() and (tmp_path / "x.bin").exists()
        with pytest.raises(FileNotFoundError, match="x.idx"):
            MMapTokenIndex(prefix)


# ------------------------------------------------------------------ merge -----------------
def test_typed_merge_groups_types_and_keeps_documents(tmp_path, small_chunks):
    rng = np.random.default_rng(5)
    a = {"zh": random_docs(rng, 4, 300), "en": random_docs(rng, 3, 300)}
    b = {"zh": random_docs(rng, 5, 300)}
    c = {"default": random_docs(rng, 2, 300)}
    write_docs(tmp_path / "a", a, vocab=300)
    write_docs(tmp_path / "b", b, vocab=300)
    write_docs(tmp_path / "c", c, vocab=300)
    os.unlink(tmp_path / "c.manifest.json")  # like a Megatron-built index
    manifest = merge_indexes([tmp_path / "a", tmp_path / "b", tmp_path / "c"], tmp_path / "m", typed=True,
                             types=None)
    expected = {"zh": a["zh"] + b["zh"], "en": a["en"], "default": c["default"]}
    raw = read_megatron(tmp_path / "m")
    assert raw["samples"] == flat_samples(expected)
    assert raw["doc_idx"] == doc_index_of(expected)  # every document boundary survived
    index = MMapTokenIndex(tmp_path / "m")
    docs = [d for ds in expected.values() for d in ds]
    for j, d in enumerate(docs):
        assert [s.tolist() for s in index.document(j)] == [s.tolist() for s in d]
    n_zh = sum(len(d) for d in expected["zh"])
    assert index.type_ranges["zh"] == (0, n_zh)
    assert manifest["types"]["en"]["documents"] == [9, 12] and manifest["merge"]["typed"] is True
    # renaming inputs with `types`: the manifest-less input becomes "code"
    m2 = merge_indexes([tmp_path / "b", tmp_path / "c"], tmp_path / "m2", types=["zh", "code"])
    assert list(m2["types"]) == ["zh", "code"]
    with pytest.raises(ValueError, match="holds several types"):
        merge_indexes([tmp_path / "a"], tmp_path / "m3", types=["x"])


def test_concat_merge_and_its_refusals(tmp_path):
    rng = np.random.default_rng(6)
    s1, s2 = {"zh": random_docs(rng, 3, 300)}, {"zh": random_docs(rng, 4, 300)}
    write_docs(tmp_path / "s1", s1, vocab=300)
    write_docs(tmp_path / "s2", s2, vocab=300)
    m = merge_indexes([tmp_path / "s1", tmp_path / "s2"], tmp_path / "all")
    expected = {"zh": s1["zh"] + s2["zh"]}
    raw = read_megatron(tmp_path / "all")
    assert raw["samples"] == flat_samples(expected) and raw["doc_idx"] == doc_index_of(expected)
    assert m["types"] == {"zh": {"samples": [0, len(raw["samples"])], "documents": [0, 7],
                                 "tokens": sum(raw["sizes"])}}
    write_docs(tmp_path / "mix", {"zh": s1["zh"], "en": s2["zh"]}, vocab=300)
    with pytest.raises(ValueError, match="would split type 'zh'.*typed=True"):
        merge_indexes([tmp_path / "mix", tmp_path / "s1"], tmp_path / "bad")
    write_docs(tmp_path / "wide", {"zh": [[np.array([69999])]]}, vocab=70000)
    with pytest.raises(ValueError, match="different dtypes .*uint16.*int32"):
        merge_indexes([tmp_path / "s1", tmp_path / "wide"], tmp_path / "bad")
    write_docs(tmp_path / "v", {"zh": [[np.array([1])]]}, vocab=400)
    with pytest.raises(ValueError, match="different vocab_size"):
        merge_indexes([tmp_path / "s1", tmp_path / "v"], tmp_path / "bad")
    with pytest.raises(ValueError, match="also an input"):
        merge_indexes([tmp_path / "s1"], tmp_path / "s1")
    assert not any(p.name.startswith("bad") for p in tmp_path.iterdir())


# ------------------------------------------------------------------ legacy import ---------
def test_import_knowlm_legacy(tmp_path, small_chunks):
    rng = np.random.default_rng(7)
    tokens = rng.integers(0, 32000, 500).astype("<u2")
    lengths = np.array([50, 20, 30, 0, 1, 399], "<u2")   # one empty sample
    starts = (np.cumsum(lengths, dtype=np.uint64) - lengths).astype("<u8")  # back to back, as KnowLM writes them
    tokens.tofile(tmp_path / "k.bin")
    with open(tmp_path / "k.idx", "wb") as fh:
        fh.write(starts.tobytes() + lengths.tobytes())
    manifest = import_knowlm_legacy(tmp_path / "k.bin", tmp_path / "k.idx", tmp_path / "out", type="zh")
    expected = [tokens[s:s + n].tolist() for s, n in zip(starts.tolist(), lengths.tolist()) if n]
    raw = read_megatron(tmp_path / "out")
    assert raw["samples"] == expected and raw["doc_idx"] == list(range(len(expected) + 1))
    assert manifest["source"]["skipped_empty_samples"] == 1 and "own document" in manifest["source"]["documents"]
    assert MMapTokenIndex(tmp_path / "out").type_ranges == {"zh": (0, 5)}

    (tmp_path / "odd.idx").write_bytes(b"\0" * 15)
    with pytest.raises(IndexFormatError, match=r"odd\.idx: 15 bytes is not a multiple of 10"):
        import_knowlm_legacy(tmp_path / "k.bin", tmp_path / "odd.idx", tmp_path / "o2")
    with open(tmp_path / "far.idx", "wb") as fh:
        fh.write(np.array([0, 495], "<u8").tobytes() + np.array([5, 10], "<u2").tobytes())
    with pytest.raises(IndexFormatError, match=r"far\.idx: .*sample 1 spans tokens \[495, 505\) .*500 tokens"):
        import_knowlm_legacy(tmp_path / "k.bin", tmp_path / "far.idx", tmp_path / "o3")
    with open(tmp_path / "overlap.idx", "wb") as fh:  # KnowLM never writes overlapping spans: not its file
        fh.write(np.array([0, 40], "<u8").tobytes() + np.array([50, 460], "<u2").tobytes())
    with pytest.raises(IndexFormatError, match=r"overlap\.idx: .*sample 1 starts at token 40, but sample 0 ends at "
                                               r"token 50 .*back to back"):
        import_knowlm_legacy(tmp_path / "k.bin", tmp_path / "overlap.idx", tmp_path / "o3")
    with pytest.raises(IndexFormatError, match=r"k\.bin: sample 0 .*>= vocab_size 100"):
        import_knowlm_legacy(tmp_path / "k.bin", tmp_path / "k.idx", tmp_path / "o4", vocab_size=100)
    assert not any(p.name.startswith(("o2", "o3", "o4", ".o")) for p in tmp_path.iterdir())


# ------------------------------------------------------------------ CLI -------------------
def test_cli_inspect_merge_import(tmp_path, capsys, sp_model_path):
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(sp_model_path))
    texts = {"zh": "北京是中国的首都。", "en": "Paris is the capital of France."}
    with MMapTokenIndexWriter(tmp_path / "x", sp.vocab_size()) as w:
        for t, text in texts.items():
            w.add_document([np.array([sp.bos_id()] + sp.encode(text))], type=t)
    assert cli.main(["index", "inspect", str(tmp_path / "x"), "-n", "2", "--tokenizer", str(sp_model_path)]) == 0
    out = capsys.readouterr().out
    assert "samples   2   documents 2" in out and "dtype uint16" in out
    assert "zh         samples [0, 1)" in out and "en         samples [1, 2)" in out
    assert texts["zh"] in out and texts["en"] in out

    assert cli.main(["index", "inspect", str(tmp_path / "x"), "-n", "1"]) == 0
    out = capsys.readouterr().out
    assert " ".join(map(str, [sp.bos_id()] + sp.encode(texts["zh"]))) in out

    assert cli.main(["index", "merge", str(tmp_path / "m"), str(tmp_path / "x"), str(tmp_path / "x"), "--typed",
                     "--no-progress"]) == 0
    assert "merged 2 indexes" in capsys.readouterr().out
    assert MMapTokenIndex(tmp_path / "m").type_ranges == {"zh": (0, 2), "en": (2, 4)}

    np.arange(10, dtype="<u2").tofile(tmp_path / "k.bin")
    (tmp_path / "k.idx").write_bytes(np.array([0, 3], "<u8").tobytes() + np.array([3, 7], "<u2").tobytes())
    assert cli.main(["index", "import-knowlm", "--bin", str(tmp_path / "k.bin"), "--idx", str(tmp_path / "k.idx"),
                     "--out", str(tmp_path / "imp"), "--no-progress"]) == 0
    assert "2 samples, 2 documents, 10 tokens" in capsys.readouterr().out
    assert [s.tolist() for s in MMapTokenIndex(tmp_path / "imp")] == [[0, 1, 2], [3, 4, 5, 6, 7, 8, 9]]

    (tmp_path / "x.idx").write_bytes(b"garbage" * 10)
    assert cli.main(["index", "inspect", str(tmp_path / "x")]) == 2
    assert "x.idx" in capsys.readouterr().err


def test_reading_and_writing_do_not_import_torch():
    """torch (~1.5 s, ~200 MB) loads only when TokenIndexDataset / ProportionalBatchSampler are used."""
    code = ("import sys, knowlm_utils.index, knowlm_utils.train.dataset as d, knowlm_utils.train.sampling as s; "
            "assert 'torch' not in sys.modules; import torch; "
            "assert issubclass(s.ProportionalBatchSampler, torch.utils.data.Sampler); "
            "assert issubclass(d.TokenIndexDataset, torch.utils.data.Dataset)")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["zh", "en", "code"]),
                          st.lists(st.lists(st.integers(0, 65535), min_size=1, max_size=20), min_size=1, max_size=4)),
                min_size=0, max_size=12))
def test_round_trip_property(docs):
    """Any documents (grouped by type) come back identical through the independent reader."""
    import tempfile

    order = list(dict.fromkeys(t for t, _ in docs))
    typed = {t: [[np.array(s) for s in d] for tt, d in docs if tt == t] for t in order}
    with tempfile.TemporaryDirectory() as d:
        write_docs(Path(d) / "x", typed, vocab=65536)
        raw = read_megatron(Path(d) / "x")
        assert raw["samples"] == flat_samples(typed) and raw["doc_idx"] == doc_index_of(typed)
        assert list(MMapTokenIndex(Path(d) / "x").type_ranges) == order


