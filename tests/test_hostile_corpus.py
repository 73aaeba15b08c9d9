"""Hostile inputs to stage 01 (`knowlm corpus build`), issue 9: every case is generated here and
run through the real command line (`knowlm_utils.cli.main`). Each asserts the exit code, a
one-line error naming the file/line/key where it is an error, no traceback, no user file
deleted, no valid document lost, and no code executed."""

from __future__ import annotations

import gzip
import json
import os
import random
import signal
import string
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from knowlm_utils import cli
from knowlm_utils.fileio import OUTPUT_MARKER

ROOT = Path(__file__).resolve().parents[1]
ZH = "长江是中国第一长河，全长约6300公里，发源于青藏高原的唐古拉山脉各拉丹冬峰西南侧。"
BOM = b"\xef\xbb\xbf"
# filters reduced to `empty` and no near-dedup: every valid document of a case must be kept
BASE = {"progress": False, "dedup": {"near": False}, "filters": {"rules": ["empty"]}}


def text(i: int) -> str:
    return f"第{i}篇：{ZH}（编号{i}）"


def doc(i: int) -> bytes:
    return json.dumps({"text": text(i)}, ensure_ascii=False).encode("utf-8")


def write_config(folder: Path, sources: list[dict] | None = None, name: str = "c.yaml", **extra) -> Path:
    data = {**BASE, "sources": sources or [{"name": "s", "path": "s.jsonl"}], **extra}
    path = folder / name
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")  # JSON is YAML
    return path


def run(capsys, *args: str) -> tuple[int, str, str]:
    """``knowlm corpus build ARGS``; a failure must be exactly one ``knowlm corpus: error:`` line
    (an exception escaping ``main`` would fail the test with its traceback)."""
    rc = cli.main(["corpus", "build", *map(str, args), "--no-progress"])
    out, err = capsys.readouterr()
    assert "Traceback" not in err + out
    if rc:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("knowlm corpus: error: "), err
    return rc, out, err


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` (relative path → bytes), to prove nothing was deleted or changed."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def built(out: Path, source: str = "s") -> tuple[dict, list[dict], list[dict]]:
    """(stats of ``source``, kept rows, skipped rows) of a finished build."""
    stats = json.loads((out / "stats.json").read_text("utf-8"))["sources"][source]
    rows = [json.loads(line) for shard in sorted((out / source).glob("part-*.jsonl"))
            for line in shard.read_text("utf-8").splitlines()]
    skipped = [json.loads(line) for line in (out / "skipped.jsonl").read_text("utf-8").splitlines()]
    return stats, rows, skipped


# ------------------------------------------------------------------ bad bytes in the input ----
def _padded_doc(size: int) -> bytes:
    head, tail = b'{"text": "', b'"}'
    return head + b"p" * (size - len(head) - len(tail)) + tail


FIVE = [doc(i) for i in range(5)]
FIVE_TXT = [text(i).encode("utf-8") for i in range(5)]
DEEP = 100_000

# id: (file name, content, expected kept line numbers, expected skips [(line, reason)], overrides)
INPUT_CASES = {
    "bom_jsonl": ("s.jsonl", BOM + b"\n".join(FIVE) + b"\n", [1, 2, 3, 4, 5], [], []),
    "bom_jsonl_gz": ("s.jsonl.gz", gzip.compress(BOM + b"\n".join(FIVE) + b"\n"), [1, 2, 3, 4, 5], [], []),
    "bom_txt": ("s.txt", BOM + b"\n".join(FIVE_TXT) + b"\n", [1, 2, 3, 4, 5], [], []),
    "bom_txt_gz": ("s.txt.gz", gzip.compress(BOM + b"\n".join(FIVE_TXT)), [1, 2, 3, 4, 5], [], []),
    "bom_on_every_line_concatenated_jsonl": ("s.jsonl", b"".join(BOM + d + b"\n" for d in FIVE),
                                             [1, 2, 3, 4, 5], [], []),
    "cr_only_jsonl": ("s.jsonl", b"\r".join(FIVE) + b"\r", [1, 2, 3, 4, 5], [], []),
    "cr_only_txt": ("s.txt", b"\r".join(FIVE_TXT), [1, 2, 3, 4, 5], [], []),
    "crlf_jsonl_gz": ("s.jsonl.gz", gzip.compress(b"\r\n".join(FIVE) + b"\r\n"), [1, 2, 3, 4, 5], [], []),
    "mixed_line_ends": ("s.jsonl",
                        FIVE[0] + b"\r\n" + FIVE[1] + b"\r" + FIVE[2] + b"\n" + FIVE[3] + b"\r\r\n" + FIVE[4],
                        [1, 2, 3, 4, 6], [(5, "invalid_json")], []),
    "crlf_split_across_read_blocks": ("s.jsonl", _padded_doc(65535) + b"\r\n" + FIVE[0] + b"\r\n", [1, 2], [], []),
    "lone_surrogate": ("s.jsonl", b"\n".join(FIVE[:2] + [b'{"text": "\\ud800 x"}'] + FIVE[2:]),
                       [1, 2, 4, 5, 6], [(3, "invalid_text")], []),
    "lone_low_surrogate_mid_text": ("s.jsonl", b"\n".join(FIVE[:4] + [b'{"text": "ok \\udfff ok"}'] + FIVE[4:]),
                                    [1, 2, 3, 4, 6], [(5, "invalid_text")], []),
    "surrogate_in_unused_field": ("s.jsonl", b"\n".join([b'{"text": "fine", "meta": "\\ud800"}'] + FIVE),
                                  [1, 2, 3, 4, 5, 6], [], []),
    "valid_surrogate_pair": ("s.jsonl", b"\n".join(FIVE + [b'{"text": "emoji \\ud83d\\ude00 ok"}']),
                             [1, 2, 3, 4, 5, 6], [], []),
    "huge_integer": ("s.jsonl", b"\n".join(FIVE[:1] + [b'{"text": "x", "n": ' + b"7" * 5000 + b"}"] + FIVE[1:]),
                     [1, 3, 4, 5, 6], [(2, "invalid_json")], []),
    "deep_array": ("s.jsonl", b"\n".join(FIVE[:3] + [b"[" * DEEP + b"]" * DEEP] + FIVE[3:]),
                   [1, 2, 3, 5, 6], [(4, "invalid_json")], []),
    "deep_object_in_unused_field": ("s.jsonl",
                                    b"\n".join([b'{"text": "x", "a": ' + b'{"a": ' * DEEP + b"1" + b"}" * (DEEP + 1)]
                                                + FIVE), [2, 3, 4, 5, 6], [(1, "invalid_json")], []),
    "encoded_surrogate_bytes_txt": ("s.txt", b"\n".join(FIVE_TXT[:2] + [b"\xed\xa0\x80 cesu"] + FIVE_TXT[2:]),
                                    [1, 2, 4, 5, 6], [(3, "invalid_utf8")], []),
    "nul_and_bad_utf8_txt": ("s.txt", b"\n".join([b"a\x00b"] + FIVE_TXT + [b"\xff\xfe"]),
                             [2, 3, 4, 5, 6], [(1, "nul_byte"), (7, "invalid_utf8")], []),
    "empty_file": ("s.jsonl", b"", [], [], []),
    "long_line_between_cr_lines": ("s.jsonl", FIVE[0] + b"\r" + b"x" * 3000 + b"\r" + FIVE[1] + b"\r" + FIVE[2],
                                   [1, 3, 4], [(2, "line_too_long")], ["max_line_bytes=1000"]),
    "format_strings_in_text_not_run": ("s.jsonl", b"\n".join(FIVE[:1] + [json.dumps(
        {"text": "{__import__('os').system('touch PWNED')} {text} {0.__class__} %(x)s"}).encode()]),
        [1, 2], [], []),
}


@pytest.mark.parametrize("case", list(INPUT_CASES))
def test_bad_input_lines_are_counted_skips_and_keep_every_valid_document(case, tmp_path, capsys, monkeypatch):
    name, content, kept_lines, skips, overrides = INPUT_CASES[case]
    monkeypatch.chdir(tmp_path)
    (tmp_path / name).write_bytes(content)
    cfg = write_config(tmp_path, [{"name": "s", "path": name}])
    before = snapshot(tmp_path)
    args = [cfg, "--out", tmp_path / "out"] + [a for o in overrides for a in ("-o", o)]
    rc, out, _ = run(capsys, *args)
    assert rc == 0
    stats, rows, skipped = built(tmp_path / "out")
    assert [r["line"] for r in rows] == kept_lines
    assert [(r["line"], r["reason"]) for r in skipped] == skips
    assert all(r["file"] == str(tmp_path / name) and r["detail"] for r in skipped)
    assert stats["records"] == len(kept_lines) + len(skips) == stats["kept"] + stats["skipped"]
    assert f"kept {len(kept_lines)}/{stats['records']}" in out
    assert not any(r["text"].startswith("\ufeff") for r in rows)
    if case.startswith(("bom", "cr_only", "mixed")):  # the texts come through exactly
        assert {r["text"] for r in rows} <= {text(i) for i in range(5)}
    if case == "valid_surrogate_pair":
        assert rows[-1]["text"] == "emoji \U0001F600 ok"
    if case == "format_strings_in_text_not_run":
        assert rows[-1]["text"].startswith("{__import__('os')") and not (tmp_path / "PWNED").exists()
    assert {k: v for k, v in snapshot(tmp_path).items() if not k.startswith("out")} == before


def test_bad_line_with_fail_policy_is_one_line_naming_file_and_line(tmp_path, capsys):
    (tmp_path / "s.jsonl").write_bytes(b"\n".join(FIVE[:2] + [b'{"text": "\\ud800"}'] + FIVE[2:]))
    rc, _, err = run(capsys, write_config(tmp_path, bad_lines="fail"), "--out", tmp_path / "out")
    assert rc == 2 and f"{tmp_path / 's.jsonl'}:3: invalid_text" in err
    assert not (tmp_path / "out").exists()


def test_truncated_gzip_keeps_the_documents_before_the_cut(tmp_path, capsys):
    data = gzip.compress(b"".join(doc(i) + b"\n" for i in range(200)))
    (tmp_path / "s.jsonl.gz").write_bytes(data[: len(data) // 2])
    rc, _, _ = run(capsys, write_config(tmp_path, [{"name": "s", "path": "s.jsonl.gz"}]), "--out", tmp_path / "out")
    stats, rows, skipped = built(tmp_path / "out")
    assert rc == 0 and [r["reason"] for r in skipped] == ["corrupt_compressed_stream"]
    assert [r["line"] for r in rows] == list(range(1, len(rows) + 1)) and len(rows) > 10


# ------------------------------------------------------------------------- bad configs ------
def _source(**kw) -> list[dict]:
    return [{"name": "s", "path": "s.jsonl", **kw}]


# id: (config text or a dict of top-level keys, -o overrides, substrings the one-line error must hold)
CONFIG_CASES = {
    "name_parent_traversal": ({"sources": _source(name="../../x")}, [], ["name:", "../../x", "plain source name"]),
    "name_absolute": ({"sources": _source(name="/tmp/knowlm-evil")}, [], ["name:", "/tmp/knowlm-evil"]),
    "name_dotdot": ({"sources": _source(name="..")}, [], ["name:", "'..'"]),
    "name_hidden": ({"sources": _source(name=".hidden")}, [], ["name:", ".hidden"]),
    "name_with_slash": ({"sources": _source(name="a/b")}, [], ["name:", "a/b"]),
    "name_with_backslash": ({"sources": _source(name="a\\b")}, [], ["name:"]),
    "name_output_file": ({"sources": _source(name="stats.json")}, [], ["name:", "stats.json"]),
    "name_empty": ({"sources": _source(name="")}, [], ["name:", "''"]),
    "name_too_long": ({"sources": _source(name="x" * 101)}, [], ["name:", "at most 100"]),
    "name_not_a_string": ({}, ["sources=[{name: 5, path: s.jsonl}]"], ["name: expected a string, got int 5"]),
    "names_duplicate": ({"sources": _source() + _source()}, [], ["duplicate source name"]),
    "workers_float": ({"workers": 2.5}, [], ["workers: expected an integer, got float 2.5"]),
    "workers_zero": ({}, ["workers=0"], ["workers: must be >= 1, got 0"]),
    "filters_int": ({"filters": 5}, [], ["filters: expected a mapping"]),
    "shard_max_docs_string": ({"shard_max_docs": "100"}, [], ["shard_max_docs: expected an integer, got str '100'"]),
    "max_line_bytes_negative": ({"max_line_bytes": -1}, [], ["max_line_bytes: must be >= 1, got -1"]),
    "max_docs_per_source_negative": ({}, ["max_docs_per_source=-1"], ["max_docs_per_source: must be >= 0, got -1"]),
    "overwrite_not_bool": ({}, ["overwrite=please"], ["overwrite: expected true or false"]),
    "language_lone_surrogate": ('sources: [{name: s, path: s.jsonl, language: "zh\\ud800"}]\n', [],
                                ["language:", "lone surrogate"]),
    "template_attribute_access": ({"sources": _source(template="{text.__class__}")}, [], ["plain field name"]),
    "package_list_traversal": ({"filters": {"blocklist_files": ["package:../../../etc/passwd"]}}, [],
                               ["blocklist_files[0]", "plain file name"]),
    "yaml_python_tag": ("sources: !!python/object/apply:os.system ['touch PWNED']\n", [], ["invalid YAML"]),
    "override_python_tag": ({}, ["workers=!!python/object/apply:os.system [touch PWNED]"], ["not valid YAML"]),
}


@pytest.mark.parametrize("case", list(CONFIG_CASES))
def test_bad_config_is_one_line_naming_the_key(case, tmp_path, capsys, monkeypatch):
    config, overrides, expected = CONFIG_CASES[case]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.jsonl").write_bytes(b"\n".join(FIVE))
    if isinstance(config, str):
        cfg = tmp_path / "c.yaml"
        cfg.write_text(config, encoding="utf-8")
    else:
        cfg = write_config(tmp_path, **config)
    before = snapshot(tmp_path)
    rc, _, err = run(capsys, cfg, "--out", tmp_path / "out", *[a for o in overrides for a in ("-o", o)])
    assert rc == 2
    for part in expected:
        assert part in err, (part, err)
    assert not (tmp_path / "out").exists() and not (tmp_path / "PWNED").exists()
    assert not Path("/tmp/knowlm-evil").exists()
    assert snapshot(tmp_path) == before


# ------------------------------------------------------------------------ output folder -----
def _project(folder: Path) -> Path:
    """A user's folder with an input and a config in it; returns the config."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "s.jsonl").write_bytes(b"\n".join(FIVE) + b"\n")
    (folder / "notes.txt").write_text("my notes\n")
    return write_config(folder)


@pytest.mark.parametrize("out", [".", "..", "", "~"])
@pytest.mark.parametrize("overwrite", [False, True])
def test_out_current_folder_parents_or_home_is_refused(out, overwrite, tmp_path, capsys, monkeypatch):
    work = tmp_path / "work"
    cfg = _project(work)
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(tmp_path))  # `~` = the user's home, here a parent of the project
    before = snapshot(tmp_path)
    args = [cfg.name] + (["--out", out] if out else ["-o", "output_dir=."]) + (["--overwrite"] if overwrite else [])
    rc, _, err = run(capsys, *args)
    assert rc == 2 and "replaced whole" in err
    assert snapshot(tmp_path) == before


def test_out_existing_file_is_refused(tmp_path, capsys):
    cfg = _project(tmp_path / "p")
    rc, _, err = run(capsys, cfg, "--out", tmp_path / "p" / "notes.txt", "--overwrite")
    assert rc == 2 and "is a file" in err
    assert (tmp_path / "p" / "notes.txt").read_text() == "my notes\n"


def test_out_below_a_file_is_one_line(tmp_path, capsys):
    cfg = _project(tmp_path / "p")
    before = snapshot(tmp_path)
    rc, _, err = run(capsys, cfg, "--out", tmp_path / "p" / "notes.txt" / "corpus")
    assert rc == 2 and "notes.txt" in err
    assert snapshot(tmp_path) == before


def test_foreign_folder_needs_overwrite(tmp_path, capsys):
    cfg = _project(tmp_path / "p")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    rc, _, err = run(capsys, cfg, "--out", mine)
    assert rc == 2 and "not written by knowlm" in err and "--overwrite" in err
    assert (mine / "thesis.tex").read_text() == "years of work"
    rc, _, _ = run(capsys, cfg, "--out", mine, "--overwrite")  # explicitly asked: replaced
    assert rc == 0 and (mine / OUTPUT_MARKER).is_file() and not (mine / "thesis.tex").exists()
    assert json.loads((mine / OUTPUT_MARKER).read_text())["producer"] == "knowlm corpus build"
    assert run(capsys, cfg, "--out", mine)[0] == 0  # now it is knowlm's: rebuilt without --overwrite


def test_folder_holding_the_inputs_or_config_is_refused_even_with_overwrite(tmp_path, capsys):
    data, conf = tmp_path / "data", tmp_path / "conf"
    data.mkdir()
    conf.mkdir()
    (data / "s.jsonl").write_bytes(b"\n".join(FIVE))
    cfg = write_config(conf, [{"name": "s", "path": str(data / "s.jsonl")}])
    before = snapshot(tmp_path)
    for out in (data, conf, tmp_path):
        rc, _, err = run(capsys, cfg, "--out", out, "--overwrite")
        assert rc == 2 and "holds this run's input" in err, out
    assert snapshot(tmp_path) == before


def test_symlink_to_a_foreign_folder_is_refused(tmp_path, capsys):
    cfg = _project(tmp_path / "p")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("keep")
    (tmp_path / "link").symlink_to(tmp_path / "mine")
    rc, _, err = run(capsys, cfg, "--out", tmp_path / "link")
    assert rc == 2 and str(tmp_path / "mine") in err
    assert (tmp_path / "mine" / "keep.txt").read_text() == "keep"


def test_unmarked_corpus_from_before_the_marker_is_replaced_but_not_with_user_files(tmp_path, capsys):
    cfg = _project(tmp_path / "p")
    old = tmp_path / "old"
    (old / "s").mkdir(parents=True)
    (old / "s" / "part-00000.jsonl").write_bytes(FIVE[0] + b"\n")
    (old / "stats.json").write_text('{"sources": {"s": {}}}')
    (old / "removed.jsonl").write_text("")
    (old / "skipped.jsonl").write_text("")
    (old / "s" / "mine.txt").write_text("mine")  # not a file the corpus stage writes: refused
    rc, _, err = run(capsys, cfg, "--out", old)
    assert rc == 2 and "not written by knowlm" in err and (old / "s" / "mine.txt").exists()
    (old / "s" / "mine.txt").unlink()
    rc, _, _ = run(capsys, cfg, "--out", old)  # only what an earlier build wrote: replaced
    assert rc == 0 and (old / OUTPUT_MARKER).is_file() and len(built(old)[1]) == 5


# --------------------------------------------------------------------------- source files ---
def test_unreadable_source_is_one_line_naming_it_and_keeps_the_old_output(tmp_path, capsys, monkeypatch):
    cfg = _project(tmp_path / "p")
    out = tmp_path / "out"
    assert run(capsys, cfg, "--out", out)[0] == 0
    before = snapshot(out)
    src = tmp_path / "p" / "s.jsonl"
    src.chmod(0)
    try:
        if os.geteuid() == 0:  # root reads any file: make the open fail as it would for a user
            import builtins

            from knowlm_utils import corpus

            def deny(path, *a, **kw):
                if Path(path) == src:
                    raise PermissionError(13, "Permission denied", str(path))
                return builtins.open(path, *a, **kw)
            monkeypatch.setattr(corpus, "open", deny, raising=False)
        rc, _, err = run(capsys, cfg, "--out", out)
    finally:
        src.chmod(0o644)
    assert rc == 2 and f"cannot read {src}: Permission denied" in err
    assert snapshot(out) == before


def test_source_file_name_not_utf8_is_one_line(tmp_path, capsys):
    cfg = _project(tmp_path / "p")
    with open(os.path.join(os.fsencode(tmp_path / "p"), b"bad-\xff.jsonl"), "wb") as fh:
        fh.write(FIVE[0])
    rc, _, err = run(capsys, cfg, "--out", tmp_path / "out", "-o", "sources=[{name: s, path: '*.jsonl'}]")
    assert rc == 2 and "not valid UTF-8" in err
    assert not (tmp_path / "out").exists()


def test_source_path_that_is_a_folder_matches_no_file(tmp_path, capsys):
    cfg = _project(tmp_path / "p")
    (tmp_path / "p" / "dir.jsonl").mkdir()
    rc, _, err = run(capsys, cfg, "--out", tmp_path / "out", "-o", "sources=[{name: s, path: dir.jsonl}]")
    assert rc == 2 and "no file matches" in err


def test_same_file_name_in_two_folders_keeps_every_document_with_unique_ids(tmp_path, capsys):
    rng = random.Random(9)  # unrelated texts: no near-duplicates, so every one is kept and indexed
    docs = [json.dumps({"text": "".join(rng.choice(string.ascii_lowercase + " ") for _ in range(400))}).encode()
            for _ in range(5)]
    for sub, part in (("a", docs[:3]), ("b", docs[3:])):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "part.jsonl").write_bytes(b"\n".join(part))
    cfg = write_config(tmp_path, [{"name": "s", "path": "**/part.jsonl"}], dedup={"near": True})
    rc, _, _ = run(capsys, cfg, "--out", tmp_path / "out")
    ids = [r["id"] for r in built(tmp_path / "out")[1]]
    assert rc == 0 and len(ids) == 5 == len(set(ids)) and ids[0] == "s:a/part.jsonl:1"


@pytest.mark.parametrize("spec", ["/dev/zero", "missing.txt", "."])
def test_filter_list_that_is_not_a_readable_file_is_one_line(spec, tmp_path, capsys):
    cfg = _project(tmp_path / "p")
    rc, _, err = run(capsys, cfg, "--out", tmp_path / "out", "-o", f"filters.boilerplate_files=[{spec}]")
    assert rc == 2 and "filter list" in err
    assert not (tmp_path / "out").exists()


# -------------------------------------------------------------------------------- workers ---
def test_workers_beyond_the_cpus_are_lowered(tmp_path, capsys):
    cfg = _project(tmp_path / "p")
    rc, out, _ = run(capsys, cfg, "--out", tmp_path / "out", "-o", "workers=999999")
    assert rc == 0 and "workers: 999999 requested" in out
    assert len(built(tmp_path / "out")[1]) == 5


def test_killed_build_leaves_no_worker_processes_and_the_next_run_cleans_up(tmp_path):
    """SIGKILL the parent while a worker is busy: the first document meets a backtracking
    boilerplate regex, so a worker spins on it and the build can never finish by itself (with a
    plain multiprocessing pool that worker and its idle sibling outlive the parent)."""
    (tmp_path / "s.jsonl").write_bytes(b"\n".join([json.dumps({"text": "a" * 40 + "!"}).encode()] + FIVE))
    (tmp_path / "slow.txt").write_text("(a+)+$\n")
    cfg = write_config(tmp_path, workers=2, allow_oversubscribe=True,
                       filters={"rules": ["boilerplate"], "boilerplate_files": ["slow.txt"]})
    out = tmp_path / "out"
    code = ("import sys; from knowlm_utils.cli import main; "
            f"sys.exit(main({['corpus', 'build', str(cfg), '--out', str(out)]!r}))")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    children: list[psutil.Process] = []
    try:
        parent = psutil.Process(proc.pid)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            workers = [c for c in parent.children(recursive=True) if "spawn_main" in " ".join(c.cmdline())]
            if len(workers) >= 2:
                break
            time.sleep(0.1)
        time.sleep(1.5)  # the workers have started and one is stuck in the first document
        assert proc.poll() is None, "the build ended before it was killed"
        children = parent.children(recursive=True)
        assert len([c for c in children if "spawn_main" in " ".join(c.cmdline())]) >= 2
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        _, alive = psutil.wait_procs(children, timeout=10)
        alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        assert not alive, f"orphans left behind: {[(p.pid, p.cmdline()) for p in alive]}"
    finally:
        for p in [*children, psutil.Process(proc.pid) if proc.poll() is None else None]:
            if p is not None and p.is_running():
                p.kill()
        proc.wait(10)
    assert list(tmp_path.glob(".out.building-*")), "the killed run should have left its temp folder"
    write_config(tmp_path)  # a normal config: the next run removes the stale temp folder
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert not list(tmp_path.glob(".out.*")) and len(built(out)[1]) == 6


# ---------------------------------------------------------- reading a corpus (stages 02-04) ---
@pytest.mark.parametrize("stats", [
    {"sources": {"../../etc": {"language": "zh", "shards": ["part-00000.jsonl"]}}},
    {"sources": {"s": {"language": "zh", "shards": ["../../../etc/passwd"]}}},
    {"sources": {"s": {"language": "zh", "shards": "part-00000.jsonl"}}},
    {"sources": ["s"]},
    "[" * 100_000,
])
def test_tampered_stats_never_point_outside_the_corpus(stats, tmp_path):
    from knowlm_utils.corpus import iter_cleaned_documents

    (tmp_path / "stats.json").write_text(stats if isinstance(stats, str) else json.dumps(stats))
    with pytest.raises(ValueError, match="stats.json: not the stats of a corpus") as info:
        list(iter_cleaned_documents(tmp_path))
    assert "\n" not in str(info.value)


def test_stats_json_symlink_in_the_output_folder_is_not_taken_for_a_corpus(tmp_path, capsys):
    cfg = _project(tmp_path / "p")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "stats.json").symlink_to("/dev/zero")
    rc, _, err = run(capsys, cfg, "--out", tmp_path / "out")
    assert rc == 2 and "not written by knowlm" in err and (tmp_path / "out" / "stats.json").is_symlink()
