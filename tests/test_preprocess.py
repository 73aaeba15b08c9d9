"""Stage 04 preprocessing (knowlm_utils.preprocess): corpus shards → chunked mmap token index."""

import filecmp
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm

from knowlm_utils import cli
from knowlm_utils.corpus import is_heldout, iter_cleaned_documents
from knowlm_utils.index import MMapTokenIndex
from knowlm_utils.preprocess import PreprocessConfig, build, load_preprocess_config

ROOT = Path(__file__).resolve().parents[1]
TYPES = {"zh": ["zh_baike", "zh_wiki"], "en": ["en_wiki"], "code": ["code"], "mixed": ["web_mixed"]}


@pytest.fixture(scope="module")
def corpus_dir(sample_corpus_80):
    return sample_corpus_80


def _cfg(corpus_dir, sp_model_path, out, **kw):
    base = dict(corpus_dir=str(corpus_dir), tokenizer=str(sp_model_path), output_dir=str(out), seq_length=64,
                types=TYPES, valid_percent=10.0, progress=False)
    return PreprocessConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def built(corpus_dir, sp_model_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("index")
    result = build(_cfg(corpus_dir, sp_model_path, out, strategy="disjoint"))
    return out, result


def test_disjoint_samples_tile_each_document_encoding(built, corpus_dir, sp_model_path):
    """With `disjoint`, a document's samples are exactly [BOS] + encode(text) + [EOS] cut in
    order, so the text was encoded once and nothing was lost or duplicated."""
    out, result = built
    sp = spm.SentencePieceProcessor(model_file=str(sp_model_path))
    docs = {"train": [], "valid": []}
    for t, names in TYPES.items():
        for d in iter_cleaned_documents(corpus_dir, names):
            docs["valid" if is_heldout(d["id"], 10.0) else "train"].append(d["text"])
    for split in ("train", "valid"):
        index = MMapTokenIndex(out / split)
        assert index.num_documents == len(docs[split]) > 0
        for j, text in enumerate(docs[split]):
            samples = index.document(j)
            assert all(len(s) <= 64 for s in samples)
            joined = np.concatenate(samples).tolist()
            assert joined == [sp.bos_id()] + sp.encode(text) + [sp.eos_id()], f"{split} document {j}"


def test_manifest_counts_types_and_bos_eos(built, corpus_dir):
    out, result = built
    m = result["train"]
    index = MMapTokenIndex(out / "train")
    assert m["num_samples"] == len(index) and m["num_tokens"] == int(index.sizes.sum())
    assert list(index.type_ranges) == list(TYPES)            # contiguous, in config order
    ranges = list(index.type_ranges.values())
    assert ranges[0][0] == 0 and ranges[-1][1] == len(index)
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    src = m["sources"]
    assert sum(s["samples"] for s in src.values()) == len(index)
    assert sum(s["documents"] for s in src.values()) == index.num_documents + m["bos_eos"]["empty_documents"]
    assert m["bos_eos"]["samples_with_bos"] == m["bos_eos"]["samples_with_eos"] == index.num_documents
    assert len(m["tokenizer"]["sha256"]) == 64 and m["seq_length"] == 64 and m["strategy"] == "disjoint"
    assert m["created"]["args"]["valid_percent"] == 10.0


def test_knowlm_strategy_samples_are_slices_and_fewer_or_equal_tokens_missing(corpus_dir, sp_model_path, tmp_path):
    out = tmp_path / "k"
    result = build(_cfg(corpus_dir, sp_model_path, out, strategy="knowlm", valid_percent=0.0, verify=True,
                        max_docs_per_source=30))
    sp = spm.SentencePieceProcessor(model_file=str(sp_model_path))
    index = MMapTokenIndex(out / "train")
    texts = [d["text"] for names in TYPES.values() for d in iter_cleaned_documents(corpus_dir, names,
                                                                                  max_docs_per_source=30)]
    for j, text in enumerate(texts):
        full = [sp.bos_id()] + sp.encode(text) + [sp.eos_id()]
        covered = np.zeros(len(full), bool)
        for s in index.document(j):
            s = s.tolist()
            starts = [i for i in range(len(full) - len(s) + 1) if full[i:i + len(s)] == s]
            assert starts, f"document {j}: a sample is not a contiguous slice of its encoding"
            covered[starts[0]:starts[0] + len(s)] = True
        assert covered.all(), f"document {j}: tokens not covered by any sample"
    assert result["valid"]["num_samples"] == 0


def test_workers_give_identical_files(corpus_dir, sp_model_path, tmp_path, built):
    out1, _ = built
    out2 = tmp_path / "w2"
    build(_cfg(corpus_dir, sp_model_path, out2, strategy="disjoint", workers=2, batch_docs=7))
    for split in ("train", "valid"):
        for ext in (".bin", ".idx"):
            assert filecmp.cmp(f"{out1 / split}{ext}", f"{out2 / split}{ext}", shallow=False), split + ext


def test_bad_configuration_errors(corpus_dir, sp_model_path, tmp_path):
    with pytest.raises(ValueError, match="does not have"):
        build(_cfg(corpus_dir, sp_model_path, tmp_path, types={"zh": ["zh_baike", "nope"]}))
    with pytest.raises(ValueError, match=r"web_mixed.*in no type"):
        build(_cfg(corpus_dir, sp_model_path, tmp_path, types={k: v for k, v in TYPES.items() if k != "mixed"}))
    with pytest.raises(ValueError, match="two types"):
        _cfg(corpus_dir, sp_model_path, tmp_path, types={"a": ["code"], "b": ["code"]})
    with pytest.raises(ValueError, match="strategy"):
        _cfg(corpus_dir, sp_model_path, tmp_path, strategy="best")
    with pytest.raises(FileNotFoundError):
        build(_cfg(corpus_dir, tmp_path / "missing.model", tmp_path))


def test_damaged_shard_is_named_and_leaves_no_index(corpus_dir, sp_model_path, tmp_path):
    broken = tmp_path / "corpus"
    shutil.copytree(corpus_dir, broken)
    shard = next((broken / "en_wiki").glob("part-*.jsonl"))
    lines = shard.read_text(encoding="utf-8").splitlines(keepends=True)
    lines.insert(3, "{not json\n")
    shard.write_text("".join(lines), encoding="utf-8")
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=rf"{shard.name}:4"):
        build(_cfg(broken, sp_model_path, out))
    assert not out.exists() and not list(tmp_path.glob(".out.*")), "nothing committed, no temp folder left"


def test_cli_and_yaml(corpus_dir, sp_model_path, tmp_path, capsys):
    cfg_path = tmp_path / "pre.yaml"
    cfg_path.write_text(json.dumps({"corpus_dir": str(corpus_dir), "tokenizer": str(sp_model_path),
                                    "seq_length": 128, "types": TYPES, "valid_percent": 5.0}))
    assert load_preprocess_config(cfg_path).seq_length == 128
    assert cli.main(["preprocess", str(cfg_path), "--out", str(tmp_path / "idx"), "--no-progress",
                     "-o", "max_docs_per_source=10", "--workers", "2"]) == 0
    printed = capsys.readouterr().out
    assert "train:" in printed and "valid:" in printed
    index = MMapTokenIndex(tmp_path / "idx" / "train")
    assert index.manifest["seq_length"] == 128 and index.manifest["created"]["args"]["workers"] == 2
    assert cli.main(["preprocess", str(tmp_path / "missing.yaml")]) == 2
