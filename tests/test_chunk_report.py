"""Stage 03 as a command (knowlm_utils.chunk_report): `knowlm chunk CONFIG` over a real corpus
and a real SentencePiece model."""

import json
import pytest

from knowlm_utils import cli
from knowlm_utils.chunk_report import ChunkConfig, main
from knowlm_utils.chunking import DocumentChunker, chunking_report
from knowlm_utils.config import ConfigError
from knowlm_utils.corpus import iter_cleaned_documents


@pytest.fixture(scope="module")
def corpus_dir(sample_corpus_80):
    return sample_corpus_80


def test_report_matches_the_chunker_and_sweeps(corpus_dir, sp_model_path, tmp_path):
    cfg = ChunkConfig(corpus_dir=str(corpus_dir), tokenizer=str(sp_model_path), output_dir=str(tmp_path / "c"),
                      seq_length=64, sweep_seq_lengths=[32, 64], progress=False)
    report = main(cfg)
    assert json.loads((tmp_path / "c" / "report.json").read_text()) == report
    docs = list(iter_cleaned_documents(corpus_dir))
    assert report["documents"] == len(docs) > 0
    direct = chunking_report((DocumentChunker(sp_model_path, 64, "knowlm").chunk(d["text"], d["lang"])
                              for d in docs), 64)
    assert report["strategies"]["knowlm"] == direct
    k, d = report["strategies"]["knowlm"], report["strategies"]["disjoint"]
    assert k["samples"] == d["samples"] and k["packing_efficiency"] >= d["packing_efficiency"]
    assert d["overlap_tokens"] == 0 and report["verified"]
    assert [(r["seq_length"], r["strategy"]) for r in report["sweep"]] == [
        (32, "knowlm"), (32, "disjoint"), (64, "knowlm"), (64, "disjoint")]
    row64 = report["sweep"][2]
    assert row64["samples"] == k["samples"] and row64["packing_efficiency"] == k["packing_efficiency"]
    assert report["sweep"][0]["samples"] > k["samples"]  # a smaller budget needs more samples


def test_cli_runs_prints_and_validates(corpus_dir, sp_model_path, tmp_path, capsys):
    cfg = tmp_path / "chunk.yaml"
    cfg.write_text(f"corpus_dir: {corpus_dir}\ntokenizer: {sp_model_path}\nseq_length: 48\n")
    assert cli.main(["chunk", str(cfg), "--out", str(tmp_path / "out"), "--no-progress",
                     "-o", "strategies=[disjoint]", "-o", "verify=false"]) == 0
    out = capsys.readouterr().out
    assert "disjoint" in out and "knowlm" not in out.split("wrote")[0]
    assert set(json.loads((tmp_path / "out" / "report.json").read_text())["strategies"]) == {"disjoint"}
    assert cli.main(["chunk", str(cfg), "-o", "strategies=[best]"]) == 2
    assert "strategies[0]: must be one of ['knowlm', 'disjoint'], got 'best'" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="seq_length: must be >= 4, got 2"):
        ChunkConfig.from_yaml(cfg, ["seq_length=2"])
