"""Preprocessing by rank (issue 16.3): `knowlm preprocess CFG --rank r --world N` writes one
index per rank; `knowlm index merge OUT RANK_DIRS...` joins them into the same .bin/.idx bytes
(and the same manifest counts) as one run over the same documents."""

from __future__ import annotations

import filecmp
import json

import pytest

from conftest import assert_one_line_error, run_cli
from knowlm_utils.preprocess import PreprocessConfig, build, merge_ranks, preprocess_rank, rank_output_dir

TYPES = {"zh": ["zh_baike", "zh_wiki"], "en": ["en_wiki"], "code": ["code"], "mixed": ["web_mixed"]}


def _cfg(corpus, model, out, **kw):
    return PreprocessConfig(**{**dict(corpus_dir=str(corpus), tokenizer=str(model), output_dir=str(out), seq_length=64,
                                      types=TYPES, valid_percent=10.0, progress=False, max_docs_per_source=25), **kw})


def _same(a, b):
    for split in ("train", "valid"):
        for ext in (".bin", ".idx"):
            assert filecmp.cmp(a / f"{split}{ext}", b / f"{split}{ext}", shallow=False), split + ext
        ma, mb = (json.loads((d / f"{split}.manifest.json").read_text()) for d in (a, b))
        for m in (ma, mb):
            m.pop("created"), m.pop("merge", None)
        assert ma == mb


@pytest.fixture(scope="module")
def single(sample_corpus_80, sp_model_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("single") / "index"
    build(_cfg(sample_corpus_80, sp_model_path, out))
    return out


@pytest.mark.parametrize("world", [1, 2, 3])
def test_rank_shards_merge_to_the_single_run_bytes(single, sample_corpus_80, sp_model_path, tmp_path, world):
    dirs = []
    for rank in reversed(range(world)):  # any order
        res = preprocess_rank(_cfg(sample_corpus_80, sp_model_path, tmp_path / "index", workers=1 + rank % 2), rank,
                              world)
        assert res["output_dir"] == str(rank_output_dir(tmp_path / "index", rank, world))
        dirs.append(tmp_path / res["output_dir"])
    docs = [json.loads((d / "train.manifest.json").read_text())["bos_eos"]["documents"] for d in dirs]
    if world > 1:
        assert all(n > 0 for n in docs) and max(docs) - min(docs) <= 12, docs  # balanced shares
    merge_ranks(dirs, tmp_path / "merged")
    _same(single, tmp_path / "merged")


def test_type_missing_from_rank_0_keeps_the_config_order(sample_corpus_80, sp_model_path, tmp_path):
    """3 documents per source and 4 ranks: rank 0 holds no en/code/mixed document at all (only
    zh, which has two sources); the merge must still put the types in the config's order."""
    cfg = _cfg(sample_corpus_80, sp_model_path, tmp_path / "one", max_docs_per_source=3, valid_percent=0.0)
    build(cfg)
    dirs = [preprocess_rank(_cfg(sample_corpus_80, sp_model_path, tmp_path / "r", max_docs_per_source=3,
                                 valid_percent=0.0), r, 4)["output_dir"] for r in range(4)]
    merge_ranks(dirs, tmp_path / "merged")
    _same(tmp_path / "one", tmp_path / "merged")


def test_cli_rank_world_and_index_merge(sample_corpus_80, sp_model_path, tmp_path, capsys, single):
    cfg = tmp_path / "pre.yaml"
    cfg.write_text(json.dumps({"corpus_dir": str(sample_corpus_80), "tokenizer": str(sp_model_path), "seq_length": 64,
                               "types": TYPES, "valid_percent": 10.0, "max_docs_per_source": 25}))
    for rank in range(2):
        rc, out, err = run_cli(capsys, "preprocess", cfg, "--out", tmp_path / "idx", "--rank", rank, "--world", 2,
                               "--no-progress")
        assert rc == 0, err
        assert f"rank {rank} of 2" in out and "knowlm index merge" in out
    rc, out, err = run_cli(capsys, "index", "merge", tmp_path / "merged", tmp_path / "idx.rank-00001-of-00002",
                           tmp_path / "idx.rank-00000-of-00002", "--no-progress")
    assert rc == 0, err
    _same(single, tmp_path / "merged")
    rc, out, err = run_cli(capsys, "index", "merge", tmp_path / "m2", tmp_path / "idx.rank-00001-of-00002",
                           "--no-progress")
    assert_one_line_error(rc, err, "ranks [0] of world 2 are missing", command="index")
    rc, out, err = run_cli(capsys, "preprocess", cfg, "--rank", 2, "--world", 2, "--no-progress")
    assert_one_line_error(rc, err, "rank 2 is out of range for world 2", command="preprocess")
