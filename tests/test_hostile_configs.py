"""Hostile and careless configs and ``-o`` overrides (issue 9): every one is a one-line error
naming the file and key, exit code 2, no traceback, nothing written, nothing evaluated."""

import resource
import time
from pathlib import Path

import pytest

from knowlm_utils import cli
from knowlm_utils.config import ConfigError, read_yaml

CORPUS = "sources:\n  - {name: a, path: a.jsonl}\n"
PREPROCESS = "corpus_dir: c\ntokenizer: t\n"
PRETRAIN = "train_index: i/train\ntokenizer: t\noutput_dir: o\n"
TOKENIZER = ""
CHUNK = "corpus_dir: c\ntokenizer: t\n"
COMMANDS = {"corpus": ["corpus", "build"], "preprocess": ["preprocess"], "pretrain": ["pretrain"],
            "tokenizer": ["tokenizer", "train"], "chunk": ["chunk"]}
BASES = {"corpus": CORPUS, "preprocess": PREPROCESS, "pretrain": PRETRAIN, "tokenizer": TOKENIZER, "chunk": CHUNK}
LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi"))

CASES = [
    # (stage, YAML appended to the base, -o overrides, text the one-line error must contain)
    ("preprocess", "seq_length: 256.7\n", [], "seq_length: expected an integer, got float 256.7"),
    ("pretrain", "seq_length: 256.7\n", [], "seq_length: expected an integer, got float 256.7"),
    ("preprocess", "workers: 2.5\n", [], "workers: expected an integer, got float 2.5"),
    ("corpus", "workers: 2.5\n", [], "workers: expected an integer, got float 2.5"),
    ("preprocess", "types: [zh, en]\n", [], "types: expected a mapping, got list"),
    ("corpus", "filters: 5\n", [], "filters: expected a mapping of FilterConfig fields, got int 5"),
    ("corpus", "shard_max_docs: '100'\n", [], "shard_max_docs: expected an integer, got str '100'"),
    ("corpus", "", ["sources=[{name: 5, path: a.jsonl}]"], "name: expected a string, got int 5"),
    ("pretrain", "", ["model=5"], "model: expected a mapping of ModelSection fields, got int 5"),
    ("pretrain", "", ["model.preset=[1"], "override 'model.preset=[1': the value is not valid YAML"),
    ("pretrain", "", ["micro_batch=0"], "micro_batch: must be >= 1, got 0"),
    ("pretrain", "", ["lr=-1"], "lr: must be > 0, got -1"),
    ("pretrain", "", ["lr=.nan"], "lr: expected a finite number"),
    ("pretrain", "", ["betas=[0.9]"], "betas must be two numbers"),
    ("pretrain", "", ["stage=best"], "stage: must be one of"),
    ("pretrain", "", ["proportions={zh: -1}"], "proportions.zh: must be >= 0, got -1"),
    ("pretrain", "", ["deepspeed=5"], "deepspeed"),
    ("corpus", "max_line_bytes: -1\n", [], "max_line_bytes: must be >= 1, got -1"),
    ("corpus", "max_docs_per_source: -1\n", [], "max_docs_per_source: must be >= 0, got -1"),
    ("corpus", "bad_lines: maybe\n", [], "bad_lines: must be one of ['skip', 'fail'], got 'maybe'"),
    ("corpus", "dedup: {threshold: 1.5}\n", [], "threshold: must be <= 1, got 1.5"),
    ("corpus", "filterz: {}\n", [], "unknown key(s) ['filterz']"),
    ("preprocess", "valid_percent: 100\n", [], "valid_percent: must be < 100, got 100"),
    ("preprocess", "strategy: best\n", [], "strategy: must be one of ['knowlm', 'disjoint'], got 'best'"),
    ("tokenizer", "base: {vocab_size: 100}\n", [], "vocab_size 100 is too small"),
    ("tokenizer", "base: {vocab_size: 4000, languages: {zh: 1.5}}\n", [], "languages.zh: fraction must be in [0, 1]"),
    ("tokenizer", "heldout_percent: '5'\n", [], "heldout_percent: expected a number, got str '5'"),
    ("chunk", "strategies: [best]\n", [], "strategies[0]: must be one of ['knowlm', 'disjoint'], got 'best'"),
    ("chunk", "seq_length: true\n", [], "seq_length: expected an integer, got bool True"),
    ("preprocess", "", ["a..b=1"], "dotted field name"),
    ("preprocess", "", ["novalue"], "must look like key=value"),
    ("preprocess", "", ["seq_length=" + "9" * 5000], "override 'seq_length=9999"),  # a 5000-digit int
    ("preprocess", "seq_length: " + "9" * 5000 + "\n", [], "invalid YAML: Exceeds the limit (4300 digits)"),
    ("preprocess", "", ["corpus_dir=" + "x" * 100_000, "workers=" + "y" * 100_000], "workers: expected an integer"),
    ("preprocess", LAUGHS, [], "YAML aliases (*a) are not allowed in configs"),
    ("preprocess", "", ["types=&x {a: [*x]}"], "YAML aliases (*x) are not allowed"),
    ("preprocess", "seq_length: [unclosed\n", [], "invalid YAML"),
]


def _run(stage, tmp_path, text, overrides, capsys):
    cfg = tmp_path / f"{stage}.yaml"
    cfg.write_text(BASES[stage] + text, encoding="utf-8")
    argv = [*COMMANDS[stage], str(cfg)] + [x for o in overrides for x in ("-o", o)]
    before = sorted(p.name for p in tmp_path.iterdir())
    t0 = time.perf_counter()
    rc = cli.main(argv)
    seconds = time.perf_counter() - t0
    err = capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == before, "nothing may be written"
    return rc, err, seconds


@pytest.mark.parametrize("stage, text, overrides, message", CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_bad_config_is_one_line_naming_the_key(stage, text, overrides, message, tmp_path, capsys):
    rc, err, seconds = _run(stage, tmp_path, text, overrides, capsys)
    assert rc == 2
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert message in err, err
    assert len(err) < 1200  # a huge value is never echoed whole
    assert seconds < 5


def test_billion_laughs_is_refused_without_expanding(tmp_path):
    path = tmp_path / "laughs.yaml"
    path.write_text(LAUGHS, encoding="utf-8")
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ConfigError, match=r"laughs\.yaml: invalid YAML: .*aliases"):
        read_yaml(path)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0 < 50_000  # KiB: nothing was expanded


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_bytes(b"seq_length: 1\n\xff\xfe\n"), "not UTF-8 text"),
    (lambda p: p.write_text("- a\n- b\n"), "top level must be a mapping, got list"),
    (lambda p: p.mkdir(), "config file not found"),
    (lambda p: p.write_bytes(b"#" * (2 << 20)), "too large for a config"),
    (lambda p: None, "config file not found"),
])
def test_unreadable_config_files(make, message, tmp_path, capsys):
    path = tmp_path / "c.yaml"
    make(path)
    assert cli.main(["preprocess", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


def test_override_values_are_data_never_code(tmp_path, capsys):
    marker = tmp_path / "pwned"
    cfg = tmp_path / "p.yaml"
    cfg.write_text(PREPROCESS, encoding="utf-8")
    code = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    assert cli.main(["preprocess", str(cfg), "-o", f"tokenizer={code}", "--print-config"]) == 0
    assert code in capsys.readouterr().out and not marker.exists()
    assert cli.main(["preprocess", str(cfg), "-o", "seq_length=!!python/object/apply:os.system ['touch x']"]) == 2
    assert "could not determine a constructor" in capsys.readouterr().err and not Path("x").exists()
