"""Hostile inputs to ``knowlm index inspect|verify|merge|import-knowlm`` (issue 9).

Every bad input is generated here (small files written with the project's own writer, then
damaged with numpy/struct edits). Each must end with exit code 2 and ONE line on stderr that
names the file (and the position/value where there is one) — no traceback, no output files
left behind by a refused merge or import, the inputs untouched — while valid inputs still pass.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from conftest import assert_one_line_error as one_line_error
from conftest import run_cli
from knowlm_utils.index import MMapTokenIndexWriter, index_paths, verify_index
from knowlm_utils.index import format as index_format

VOCAB = 100


# ------------------------------------------------------------------ helpers -----------------
def write_good(prefix: Path, vocab: int = VOCAB, seed: int = 0) -> Path:
    """Two types (zh: 4 documents, en: 3), 2-3 samples each, ids in [0, vocab)."""
    rng = np.random.default_rng(seed)
    with MMapTokenIndexWriter(prefix, vocab) as w:
        for t, docs in (("zh", 4), ("en", 3)):
            for _ in range(docs):
                samples = [rng.integers(0, vocab, int(rng.integers(3, 9))) for _ in range(int(rng.integers(2, 4)))]
                w.add_document(samples, type=t)
    return prefix


def run(capsys, *argv: str) -> tuple[int, str, str]:
    return run_cli(capsys, *argv)


def assert_one_line_error(rc: int, err: str, *needles: str) -> str:
    return one_line_error(rc, err, *needles, command="index")


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _idx(prefix: Path) -> tuple[bytearray, int, int]:
    data = bytearray(index_paths(prefix)["idx"].read_bytes())
    n, d = struct.unpack_from("<QQ", data, 18)
    return data, n, d


def _edit_manifest(prefix: Path, edit) -> None:
    path = index_paths(prefix)["manifest"]
    m = json.loads(path.read_text())
    edit(m)
    path.write_text(json.dumps(m))


# ------------------------------------------------------------------ corruptions -------------
# each takes the index prefix and returns the strings the one-line error must contain
def bin_id_0xffff(prefix):
    tokens = np.fromfile(index_paths(prefix)["bin"], "<u2")
    tokens[17] = 0xFFFF
    tokens.tofile(index_paths(prefix)["bin"])
    return ["bad.bin", "token 17", "id 65535", f"[0, {VOCAB})"]


def vocab_edited_down(prefix):
    tokens = np.fromfile(index_paths(prefix)["bin"], "<u2")
    top = int(tokens.max())
    _edit_manifest(prefix, lambda m: m.update(vocab_size=top))
    return ["bad.bin", f"token {int(np.argmax(tokens >= top))}", f"id {top}", f"vocab_size {top}", "bad.manifest.json"]


def doc_entry_moved(prefix):
    data, n, d = _idx(prefix)
    off = 34 + 12 * n
    doc_idx = list(struct.unpack_from(f"<{d}q", data, off))
    doc_idx[2], doc_idx[3] = doc_idx[3], doc_idx[2]  # entry 3 moved before entry 2: not monotonic
    struct.pack_into(f"<{d}q", data, off, *doc_idx)
    index_paths(prefix)["idx"].write_bytes(bytes(data))
    return ["bad.idx", "document index decreases at entry 3"]


def doc_index_short_of_n(prefix):
    data, n, d = _idx(prefix)
    struct.pack_into("<q", data, 34 + 12 * n + 8 * (d - 1), n - 1)
    index_paths(prefix)["idx"].write_bytes(bytes(data))
    return ["bad.idx", f"end at N={n}", f"{n - 1}"]


def pointer_moved(prefix):
    data, n, d = _idx(prefix)
    off = 34 + 4 * n + 8 * 2
    struct.pack_into("<q", data, off, struct.unpack_from("<q", data, off)[0] + 2)
    index_paths(prefix)["idx"].write_bytes(bytes(data))
    return ["bad.idx", "sample 2 points to byte"]


def manifest_num_samples(prefix):
    _edit_manifest(prefix, lambda m: m.update(num_samples=m["num_samples"] + 1))
    return ["bad.manifest.json", "num_samples is"]


def manifest_num_tokens(prefix):
    _edit_manifest(prefix, lambda m: m.update(num_tokens=m["num_tokens"] - 1))
    return ["bad.manifest.json", "num_tokens is"]


def manifest_lacks_num_tokens(prefix):
    _edit_manifest(prefix, lambda m: m.pop("num_tokens"))
    return ["bad.manifest.json", "lacks ['num_tokens']"]


def types_overlap(prefix):
    _edit_manifest(prefix, lambda m: m["types"]["en"]["samples"].__setitem__(0, m["types"]["en"]["samples"][0] - 1))
    return ["bad.manifest.json", "type 'en' covers samples"]


def types_out_of_bounds(prefix):
    _edit_manifest(prefix, lambda m: m["types"]["en"]["samples"].__setitem__(1, m["num_samples"] + 5))
    return ["bad.manifest.json", "type 'en' covers samples"]


def type_tokens_wrong(prefix):
    _edit_manifest(prefix, lambda m: m["types"]["zh"].update(tokens=m["types"]["zh"]["tokens"] + 1))
    return ["bad.manifest.json", "type 'zh' says"]


def count_as_float(prefix):
    _edit_manifest(prefix, lambda m: m.update(num_documents=float(m["num_documents"])))
    return ["bad.manifest.json", "num_documents must be an integer", "7.0"]


def vocab_beyond_dtype(prefix):
    _edit_manifest(prefix, lambda m: m.update(vocab_size=70000))
    return ["bad.manifest.json", "vocab_size 70000", "uint16"]


def vocab_not_an_integer(prefix):
    _edit_manifest(prefix, lambda m: m.update(vocab_size="100"))
    return ["bad.manifest.json", "vocab_size must be a positive integer", "'100'"]


def manifest_deep_nesting(prefix):
    index_paths(prefix)["manifest"].write_text("[" * 100_000 + "]" * 100_000)
    return ["bad.manifest.json", "not valid JSON"]


def manifest_huge_integer(prefix):
    index_paths(prefix)["manifest"].write_text('{"num_samples": ' + "9" * 5000 + "}")
    return ["bad.manifest.json", "not valid JSON"]


def truncated_bin(prefix):
    path = index_paths(prefix)["bin"]
    path.write_bytes(path.read_bytes()[:-2])
    return ["bad.bin", "truncated"]


def truncated_idx(prefix):
    path = index_paths(prefix)["idx"]
    path.write_bytes(path.read_bytes()[:-8])
    return ["bad.idx", "truncated or corrupt"]


CORRUPTIONS = [bin_id_0xffff, vocab_edited_down, doc_entry_moved, doc_index_short_of_n, pointer_moved,
               manifest_num_samples, manifest_num_tokens, manifest_lacks_num_tokens, types_overlap,
               types_out_of_bounds, type_tokens_wrong, count_as_float, vocab_beyond_dtype, vocab_not_an_integer,
               manifest_deep_nesting, manifest_huge_integer, truncated_bin, truncated_idx]


@pytest.fixture
def small_chunks(monkeypatch):
    """Streaming chunks of 3 entries / 24 token ids: every chunk boundary runs on small data."""
    monkeypatch.setattr(index_format, "CHUNK_ITEMS", 3)


@pytest.mark.parametrize("command", ["verify", "inspect --verify", "merge"])
@pytest.mark.parametrize("corrupt", CORRUPTIONS, ids=lambda f: f.__name__)
def test_corrupt_index_is_refused_in_one_line(tmp_path, capsys, small_chunks, corrupt, command):
    good, bad = write_good(tmp_path / "good"), write_good(tmp_path / "bad", seed=1)
    needles = corrupt(bad)
    before = files(tmp_path)
    if command == "verify":
        rc, out, err = run(capsys, "index", "verify", bad, "--no-progress")
    elif command == "inspect --verify":
        rc, out, err = run(capsys, "index", "inspect", bad, "--verify", "--no-progress")
    else:
        rc, out, err = run(capsys, "index", "merge", tmp_path / "out", good, bad, "--typed", "--no-progress")
        needles = needles + ["refusing to merge: input 2 of 2"]
    assert_one_line_error(rc, err, *needles)
    assert out == ""
    assert files(tmp_path) == before  # nothing written (no merged files, no temps), inputs untouched


def test_valid_indexes_pass_verify_inspect_and_merge(tmp_path, capsys, small_chunks):
    good, other = write_good(tmp_path / "good"), write_good(tmp_path / "other", seed=1)
    rc, out, err = run(capsys, "index", "verify", good, "--no-progress")
    assert rc == 0 and err == "" and out.startswith(f"verified {good}: ok: ")
    rc, out, err = run(capsys, "index", "inspect", good, "--verify", "--no-progress")
    assert rc == 0 and err == "" and "\nverified  ok: " in out and "zh         samples" in out
    rc, out, err = run(capsys, "index", "merge", tmp_path / "m", good, other, "--typed", "--no-progress")
    assert rc == 0 and "merged 2 indexes" in out
    summary = verify_index(tmp_path / "m")
    assert summary["num_samples"] == verify_index(good)["num_samples"] + verify_index(other)["num_samples"]
    assert summary["vocab_size"] == VOCAB and summary["max_id"] < VOCAB


def test_plain_inspect_stays_cheap(tmp_path, capsys):
    """Without --verify, inspect does not read every id (the full scan is opt-in): a bad id
    deep in the .bin is found by --verify only."""
    bad = write_good(tmp_path / "bad")
    bin_id_0xffff(bad)
    assert run(capsys, "index", "inspect", bad, "-n", "0")[0] == 0
    assert_one_line_error(*run(capsys, "index", "inspect", bad, "-n", "0", "--verify", "--no-progress")[::2],
                          "bad.bin", "id 65535")


def test_merge_refuses_a_manifestless_input_with_ids_beyond_the_others_vocab(tmp_path, capsys):
    good = write_good(tmp_path / "good")
    with MMapTokenIndexWriter(tmp_path / "meg", None, dtype=np.uint16) as w:
        w.add_document([np.array([1, 2, 5000])])
    index_paths(tmp_path / "meg")["manifest"].unlink()  # as Megatron's own builder writes it
    before = files(tmp_path)
    rc, out, err = run(capsys, "index", "merge", tmp_path / "out", good, tmp_path / "meg", "--types", "zh,en",
                       "--typed", "--no-progress")
    assert_one_line_error(rc, err, "meg.bin", "token id 5000", f"vocab_size {VOCAB}")
    assert files(tmp_path) == before


def test_negative_id_in_a_signed_manifestless_index(tmp_path, capsys):
    with MMapTokenIndexWriter(tmp_path / "meg", 70000) as w:  # int32 ids
        w.add_document([np.array([1, 2, 3, 4])])
    index_paths(tmp_path / "meg")["manifest"].unlink()
    path = index_paths(tmp_path / "meg")["bin"]
    tokens = np.fromfile(path, "<i4")
    tokens[2] = -7
    tokens.tofile(path)
    assert_one_line_error(*run(capsys, "index", "verify", tmp_path / "meg", "--no-progress")[::2],
                          "meg.bin", "token 2", "id -7", "int32 range")
    idx = index_paths(tmp_path / "meg")["idx"]
    data = bytearray(idx.read_bytes())
    data[17] = 7  # float32: same item size, not token ids
    idx.write_bytes(bytes(data))
    assert_one_line_error(*run(capsys, "index", "verify", tmp_path / "meg", "--no-progress")[::2],
                          "meg.idx", "dtype float32 cannot hold token ids")


# ------------------------------------------------------------------ import-knowlm -----------
def write_knowlm(folder: Path, n: int = 50, seed: int = 0) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    """KnowLM's own layout: uint16 ids back to back; .idx = n uint64 starts (tokens) + n uint16
    lengths; sample lengths > 20 as its preprocess.py keeps them."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(21, 90, n).astype("<u2")
    starts = (np.cumsum(lengths, dtype=np.uint64) - lengths).astype("<u8")
    tokens = rng.integers(0, 32000, int(lengths.sum())).astype("<u2")
    (folder / "k.bin").write_bytes(tokens.tobytes())
    (folder / "k.idx").write_bytes(starts.tobytes() + lengths.tobytes())
    return folder / "k.bin", folder / "k.idx", starts, lengths


def _short_by_10(b, i, starts, lengths):
    i.write_bytes(i.read_bytes()[:-10])
    return ["k.idx", "490 bytes = 49 samples", "expected 500 bytes", f"{b.stat().st_size} bytes"]


def _padded_by_10(b, i, starts, lengths):
    i.write_bytes(i.read_bytes() + bytes(10))
    return ["k.idx", "510 bytes = 51 samples", "expected 500 bytes"]


def _not_multiple_of_10(b, i, starts, lengths):
    i.write_bytes(i.read_bytes()[:-3])
    return ["k.idx", "497 bytes is not a multiple of 10", "expected 500 bytes"]


def _span_beyond_bin(b, i, starts, lengths):
    lengths = lengths.copy()
    lengths[-1] += 5
    i.write_bytes(starts.tobytes() + lengths.tobytes())
    total = int(lengths.sum()) - 5
    return ["k.idx", "sample 49 spans tokens", f"{int(starts[-1]) + int(lengths[-1])})", f"{total} tokens"]


def _overlapping_samples(b, i, starts, lengths):
    starts = starts.copy()
    starts[7] -= 3
    i.write_bytes(starts.tobytes() + lengths.tobytes())
    return ["k.idx", f"sample 7 starts at token {int(starts[7])}", f"sample 6 ends at token {int(starts[7]) + 3}"]


def _bin_longer_than_samples(b, i, starts, lengths):
    b.write_bytes(b.read_bytes() + b"\x01\x00" * 4)
    return ["k.bin", f"end at token {int(lengths.sum())}", f"{2 * int(lengths.sum())}-byte .bin"]


def _bin_truncated(b, i, starts, lengths):
    b.write_bytes(b.read_bytes()[:-2])
    return ["k.idx", "sample 49 spans tokens", f"{int(lengths.sum()) - 1} tokens"]


def _bin_odd_size(b, i, starts, lengths):
    b.write_bytes(b.read_bytes() + b"\x00")
    return ["k.bin", "not a multiple of 2"]


@pytest.mark.parametrize("corrupt", [_short_by_10, _padded_by_10, _not_multiple_of_10, _span_beyond_bin,
                                     _overlapping_samples, _bin_longer_than_samples, _bin_truncated, _bin_odd_size],
                         ids=lambda f: f.__name__.strip("_"))
def test_import_knowlm_refuses_damaged_files(tmp_path, capsys, small_chunks, corrupt):
    b, i, starts, lengths = write_knowlm(tmp_path)
    needles = corrupt(b, i, starts, lengths)
    before = files(tmp_path)
    rc, out, err = run(capsys, "index", "import-knowlm", "--bin", b, "--idx", i, "--out", tmp_path / "imp",
                       "--no-progress")
    assert_one_line_error(rc, err, *needles)
    assert files(tmp_path) == before


def test_import_knowlm_id_beyond_vocab_and_output_onto_its_inputs(tmp_path, capsys, small_chunks):
    b, i, starts, lengths = write_knowlm(tmp_path)
    before = files(tmp_path)
    rc, out, err = run(capsys, "index", "import-knowlm", "--bin", b, "--idx", i, "--out", tmp_path / "imp",
                       "--vocab-size", "100", "--no-progress")
    assert_one_line_error(rc, err, "k.bin", "sample 0", ">= vocab_size 100")
    assert files(tmp_path) == before
    rc, out, err = run(capsys, "index", "import-knowlm", "--bin", b, "--idx", i, "--out", tmp_path / "k",
                       "--no-progress")
    assert_one_line_error(rc, err, "k.bin", "also an input")
    assert files(tmp_path) == before  # KnowLM's files are not replaced


def test_import_knowlm_valid_files_still_import(tmp_path, capsys, small_chunks):
    b, i, starts, lengths = write_knowlm(tmp_path)
    rc, out, err = run(capsys, "index", "import-knowlm", "--bin", b, "--idx", i, "--out", tmp_path / "imp",
                       "--no-progress")
    assert rc == 0 and "50 samples, 50 documents" in out
    tokens = np.fromfile(b, "<u2")
    from knowlm_utils.index import MMapTokenIndex
    imported = MMapTokenIndex(tmp_path / "imp")
    expected = [tokens[s:s + n].tolist() for s, n in zip(starts.tolist(), lengths.tolist())]
    assert [s.tolist() for s in imported] == expected
    assert verify_index(tmp_path / "imp")["num_tokens"] == int(lengths.sum())


# ------------------------------------------------------------------ tokenizer / CLI misc ----
def _random_model(tmp):
    (tmp / "random.model").write_bytes(np.random.default_rng(0).bytes(4096))
    return tmp / "random.model", ["random.model", "not a SentencePiece model"]


def _missing_model(tmp):
    return tmp / "missing.model", ["missing.model", "not found"]


def _empty_model(tmp):
    (tmp / "empty.model").write_bytes(b"")
    return tmp / "empty.model", ["empty.model", "not a SentencePiece model"]


@pytest.mark.parametrize("make", [_random_model, _missing_model, _empty_model], ids=lambda f: f.__name__.strip("_"))
def test_inspect_with_a_bad_tokenizer(tmp_path, capsys, make):
    good = write_good(tmp_path / "good")
    model, needles = make(tmp_path)
    assert_one_line_error(*run(capsys, "index", "inspect", good, "--tokenizer", model)[::2], *needles)


def test_inspect_with_a_tokenizer_smaller_than_the_ids(tmp_path, capsys, sp_model_path):
    with MMapTokenIndexWriter(tmp_path / "big", 6000) as w:
        w.add_document([np.array([1, 5999, 3])])
    assert_one_line_error(*run(capsys, "index", "inspect", tmp_path / "big", "--tokenizer", sp_model_path)[::2],
                          "sp.model", "sample 0", "token id 5999", "2000 pieces")


def test_inspect_with_another_tokenizer_says_so(tmp_path, capsys, sp_model_path):
    with MMapTokenIndexWriter(tmp_path / "x", 2000) as w:
        w.add_document([np.array([1, 5, 3])])
        w.finalize({"tokenizer": {"sha256": "0" * 64}})
    rc, out, err = run(capsys, "index", "inspect", tmp_path / "x", "--tokenizer", sp_model_path)
    assert rc == 0 and f"tokenizer {sp_model_path}: sha256 " in out and "differs from the manifest's 0000" in out


def test_cli_misuse_is_one_line(tmp_path, capsys):
    good = write_good(tmp_path / "good")
    before = files(tmp_path)
    assert_one_line_error(*run(capsys, "index", "inspect", good, "-n", "-1")[::2], "n (samples to show)", "-1")
    assert_one_line_error(*run(capsys, "index", "inspect", tmp_path / "nope")[::2], "nope.idx", "no such file")
    assert_one_line_error(*run(capsys, "index", "verify", tmp_path / "nope", "--no-progress")[::2], "nope.idx")
    # an output "folder" that is a file: mkdir fails with an OSError, reported in one line
    assert_one_line_error(*run(capsys, "index", "merge", tmp_path / "good.bin" / "out", good, "--no-progress")[::2],
                          "good.bin")
    assert_one_line_error(*run(capsys, "index", "merge", tmp_path / "m", good, good, "--types", "zh,",
                               "--no-progress")[::2], "types must be non-empty names")
    assert_one_line_error(*run(capsys, "index", "import-knowlm", "--bin", tmp_path / "none.bin", "--idx",
                               tmp_path / "none.idx", "--out", tmp_path / "imp", "--no-progress")[::2], "none.bin")
    assert files(tmp_path) == before


def test_verify_streams_with_its_positions_right_across_chunks(tmp_path, small_chunks):
    """A bad id far past the first chunk (24 ids) is reported at its exact token, sample and document."""
    prefix = write_good(tmp_path / "x")
    from knowlm_utils.index import MMapTokenIndex
    index = MMapTokenIndex(prefix)
    summary = verify_index(prefix)
    assert (summary["num_samples"], summary["num_documents"], summary["num_tokens"]) == \
        (len(index), index.num_documents, index.num_tokens)
    assert summary["max_id"] == int(index._tokens.max()) and summary["vocab_size"] == VOCAB
    assert summary["types"] == {"zh": list(index.type_ranges["zh"]), "en": list(index.type_ranges["en"])}
    last = len(index) - 1
    pos = int(index.pointers[last]) // 2 + 1
    del index
    tokens = np.fromfile(index_paths(prefix)["bin"], "<u2")
    tokens[pos] = VOCAB
    tokens.tofile(index_paths(prefix)["bin"])
    from knowlm_utils.index import IndexFormatError
    with pytest.raises(IndexFormatError, match=rf"x\.bin: token {pos} \(sample {last}, document 6\) is id {VOCAB}, "
                                               rf"outside \[0, {VOCAB}\)"):
        verify_index(prefix)
