"""Issue 9, output folders: `knowlm tokenizer train|extend`, `knowlm preprocess` and `knowlm chunk`
given hostile output paths, killed at every point of preprocess's commit, and asked for 999999
workers. Every hostile setup is generated here in tmp_path.

Each refused case asserts: exit code 2, one line on stderr naming the path, no traceback, and
every user file still there with its bytes. A folder knowlm wrote (``.knowlm-output.json``
inside) is replaced without ``--overwrite``; any other non-empty folder only with it; a file,
the current folder, home, or a folder holding the run's inputs never.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from conftest import assert_one_line_error, run_cli
from knowlm_utils import spm
from knowlm_utils.fileio import OUTPUT_MARKER, restore_interrupted_replace
from knowlm_utils.index import MMapTokenIndex
from knowlm_utils.preprocess import PreprocessConfig, build

TYPES = {"zh": ["zh_baike", "zh_wiki"], "en": ["en_wiki"], "code": ["code"], "mixed": ["web_mixed"]}
SPLITS = ("train", "valid")


# ------------------------------------------------------------------------------ helpers ----
def assert_refused(rc: int, err: str, *names: str) -> None:
    assert_one_line_error(rc, err, *names)


def user_files(folder: Path) -> dict[str, bytes]:
    """The folder's files (relative path -> bytes), to compare before/after."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def leftovers(out: Path) -> list[str]:
    """Hidden temp/old folders and files a run left beside ``out``."""
    return sorted(p.name for p in out.parent.glob(f".{out.name}.*"))


# ----------------------------------------------------------------------- tokenizer extend ----
@pytest.fixture(scope="module")
def add_model(sp_model_path, tmp_path_factory) -> Path:
    """A model with pieces the base (sp_model_path) lacks, so extension appends something."""
    from sentencepiece import sentencepiece_model_pb2 as pb

    proto = spm.load_proto(sp_model_path)
    low = min(p.score for p in proto.pieces)
    for k in range(40):
        piece = proto.pieces.add()
        piece.piece, piece.score, piece.type = f"\ue000{k:03d}", low - 1 - k, pb.ModelProto.SentencePiece.NORMAL
    path = tmp_path_factory.mktemp("add") / "add.model"
    path.write_bytes(proto.SerializeToString())
    return path


def extend(capsys, base, add, out, *flags):
    return run_cli(capsys, "tokenizer", "extend", "--base", base, "--add", add, "--out", out, *flags)


def test_extend_refuses_a_folder_it_did_not_write_and_overwrite_replaces_it(sp_model_path, add_model, tmp_path,
                                                                            capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("my notes\n")
    (out / "sub").mkdir()
    (out / "sub" / "data.bin").write_bytes(b"\x00\x01")
    before = user_files(out)
    rc, _, err = extend(capsys, sp_model_path, add_model, out)
    assert_refused(rc, err, str(out), "--overwrite", OUTPUT_MARKER)
    assert user_files(out) == before and leftovers(out) == []
    rc, printed, err = extend(capsys, sp_model_path, add_model, out, "--overwrite")
    assert rc == 0, err
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(("notes", "sub"))) == []
    assert (out / OUTPUT_MARKER).is_file() and spm.load_processor(out).get_piece_size() == 2040
    assert json.loads((out / OUTPUT_MARKER).read_text())["producer"] == "knowlm tokenizer extend"
    assert leftovers(out) == []


def test_extend_reruns_into_its_own_folder_and_into_an_empty_one(sp_model_path, add_model, tmp_path, capsys):
    out = tmp_path / "ext"
    out.mkdir()  # empty: allowed
    assert extend(capsys, sp_model_path, add_model, out)[0] == 0
    first = (out / "tokenizer.model").read_bytes()
    rc, _, err = extend(capsys, sp_model_path, add_model, out, "--add-pad")  # marked: no --overwrite needed
    assert rc == 0, err
    assert (out / "tokenizer.model").read_bytes() != first and spm.load_processor(out).pad_id() == 2040


@pytest.mark.parametrize("overwrite", [False, True])
def test_extend_out_is_an_existing_file(sp_model_path, add_model, tmp_path, capsys, overwrite):
    out = tmp_path / "tokenizer.model"
    out.write_bytes(b"not yours to replace")
    rc, _, err = extend(capsys, sp_model_path, add_model, out, *(["--overwrite"] if overwrite else []))
    assert_refused(rc, err, str(out), "is a file")
    assert out.read_bytes() == b"not yours to replace" and leftovers(out) == []


@pytest.mark.parametrize("where", [".", "..", "HOME"])
def test_extend_into_the_current_folder_a_parent_or_home_is_refused_even_with_overwrite(
        sp_model_path, add_model, tmp_path, capsys, monkeypatch, where):
    work = tmp_path / "home" / "work"
    work.mkdir(parents=True)
    (work / "input.jsonl").write_text('{"text": "keep me"}\n')
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere" if where == "HOME" else work)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    target = str(tmp_path / "home") if where == "HOME" else where
    before = user_files(tmp_path / "home")
    rc, _, err = extend(capsys, sp_model_path, add_model, target, "--overwrite")
    assert_refused(rc, err, str(Path(target).resolve()), "current folder")
    assert user_files(tmp_path / "home") == before


@pytest.mark.parametrize("which", ["--base", "--add"])
def test_extend_into_the_folder_holding_an_input_model_is_refused(sp_model_path, add_model, tmp_path, capsys, which):
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy(sp_model_path, folder / "tokenizer.model")  # the folder form of --base/--add
    (folder / OUTPUT_MARKER).write_text("{}")  # even a folder knowlm wrote
    base, add = (folder, add_model) if which == "--base" else (sp_model_path, folder)
    before = user_files(folder)
    rc, _, err = extend(capsys, base, add, folder, "--overwrite")
    assert_refused(rc, err, str(folder), "input")
    assert user_files(folder) == before


def test_extend_python_api_checks_too_and_build_internal_calls_still_work(sp_model_path, add_model, tmp_path):
    """`extend_vocabulary` checks its output; `tokenizer.build` writes into its own fresh temp
    folder through the unchecked path (exercised by test_tokenizer's stage fixture and below)."""
    from knowlm_utils import tokenizer as tk
    from knowlm_utils.fileio import OutputDirError

    out = tmp_path / "o"
    out.mkdir()
    (out / "notes.txt").write_text("x")
    with pytest.raises(OutputDirError, match="not written by knowlm"):
        tk.extend_vocabulary(sp_model_path, add_model, out, hf_files=False)
    rep = tk._extend(sp_model_path, add_model, tmp_path / "fresh", False, "after_base", False, check=False)
    assert rep.added == 40 and not (tmp_path / "fresh" / OUTPUT_MARKER).exists()


def test_extend_cleans_stale_leftovers_of_a_killed_run(sp_model_path, add_model, tmp_path, capsys):
    out = tmp_path / "ext"
    dead = 2 ** 22 + 12345  # above any pid_max: no such process
    (tmp_path / f".ext.building-{dead}-abc").mkdir()
    (tmp_path / f".ext.building-{dead}-abc" / "tokenizer.model").write_bytes(b"half")
    (tmp_path / f".ext.old-{dead}").mkdir()
    assert extend(capsys, sp_model_path, add_model, out)[0] == 0
    assert leftovers(out) == []


def test_extend_out_below_a_file(sp_model_path, add_model, tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    rc, _, err = extend(capsys, sp_model_path, add_model, tmp_path / "f" / "sub")
    assert_refused(rc, err, str(tmp_path / "f"))


# ------------------------------------------------------------------------ tokenizer train ----
def train_yaml(folder: Path, corpus_dir: Path) -> Path:
    cfg = folder / "tok.yaml"
    cfg.write_text(f"corpus_dir: {corpus_dir}\nheldout_percent: 10\nhf_check_docs: 2\neval_max_chars: 20000\n"
                   "base: {vocab_size: 600, languages: {en: 1.0, code: 1.0}, character_coverage: 0.98}\n"
                   "zh: {vocab_size: 900, languages: {zh: 1.0}, character_coverage: 0.98}\n", encoding="utf-8")
    return cfg


def test_train_refuses_before_any_work(sample_corpus_80, tmp_path, capsys):
    cfg = train_yaml(tmp_path, sample_corpus_80)
    out = tmp_path / "user"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    t0 = time.perf_counter()
    rc, _, err = run_cli(capsys, "tokenizer", "train", cfg, "--out", out, "--no-progress")
    assert_refused(rc, err, str(out), "--overwrite")
    assert time.perf_counter() - t0 < 5 and (out / "notes.txt").read_text() == "mine" and leftovers(out) == []


@pytest.mark.parametrize("target", ["corpus_parent", "config_folder"])
def test_train_into_a_folder_holding_its_corpus_or_config_is_refused(sample_corpus_80, tmp_path, capsys, target):
    corpus = tmp_path / "data" / "corpus"
    shutil.copytree(sample_corpus_80, corpus)
    cfg = train_yaml(tmp_path / "data", corpus) if target == "corpus_parent" else train_yaml(tmp_path, corpus)
    out = tmp_path / "data" if target == "corpus_parent" else tmp_path
    before = user_files(out)
    rc, _, err = run_cli(capsys, "tokenizer", "train", cfg, "--out", out, "--overwrite", "--no-progress")
    assert_refused(rc, err, str(out.resolve()), "input")
    assert user_files(out) == before


def test_train_overwrite_then_rerun_into_its_own_folder(sample_corpus_80, tmp_path, capsys):
    cfg = train_yaml(tmp_path, sample_corpus_80)
    out = tmp_path / "tok"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    rc, _, err = run_cli(capsys, "tokenizer", "train", cfg, "--out", out, "-o", "overwrite=true", "--no-progress")
    assert rc == 0, err
    assert not (out / "notes.txt").exists() and (out / OUTPUT_MARKER).is_file()
    assert json.loads((out / OUTPUT_MARKER).read_text())["producer"] == "knowlm tokenizer train"
    assert not (out / "extended" / OUTPUT_MARKER).exists()  # internal steps are not marked
    rc, _, err = run_cli(capsys, "tokenizer", "train", cfg, "--out", out, "--no-progress", "-o", "add_pad=true")
    assert rc == 0, err
    assert spm.load_processor(out / "extended").pad_id() >= 0 and leftovers(out) == []
    rc, _, err = run_cli(capsys, "tokenizer", "train", cfg, "--out", out, "-o", "overwrite=maybe")
    assert_refused(rc, err, "overwrite")
    rc, _, err = run_cli(capsys, "tokenizer", "train", cfg, "--out", out, "-o", "zh.character_coverage=0.9")
    assert_refused(rc, err, "character_coverage", "0.98")  # sentencepiece's own bound, checked at load


# ----------------------------------------------------------------------------- preprocess ----
def pre_yaml(folder: Path, corpus_dir: Path, model: Path, **extra) -> Path:
    data = {"corpus_dir": str(corpus_dir), "tokenizer": str(model), "seq_length": 64, "types": TYPES,
            "valid_percent": 10.0, "max_docs_per_source": 30, "batch_docs": 8, "progress": False, **extra}
    cfg = folder / ("pre" + "".join(f"-{k}{v}" for k, v in sorted(extra.items())) + ".yaml")
    cfg.write_text(json.dumps(data), encoding="utf-8")
    return cfg


def index_state(out: Path) -> dict[str, bytes]:
    return {f"{s}{ext}": (out / f"{s}{ext}").read_bytes() for s in SPLITS for ext in (".bin", ".idx")}


@pytest.fixture(scope="module")
def generations(sample_corpus_80, sp_model_path, tmp_path_factory):
    """Two complete indexes of the same corpus: ``old`` (seq_length 64) and ``new`` (128), with
    the config that builds ``new``."""
    root = tmp_path_factory.mktemp("gens")
    refs = {}
    for name, seq in (("old", 64), ("new", 128)):
        cfg = pre_yaml(root, sample_corpus_80, sp_model_path, seq_length=seq)
        build(PreprocessConfig.from_yaml(cfg), root / name)
        refs[name] = index_state(root / name)
    assert refs["old"] != refs["new"]
    return root, refs, pre_yaml(root, sample_corpus_80, sp_model_path, seq_length=128)


def assert_one_generation(out: Path, refs) -> str:
    """Train and valid both open and are both the old or both the new index; returns which."""
    for s in SPLITS:
        MMapTokenIndex(out / s)  # opens (magic, sizes, manifest)
    state = index_state(out)
    which = [name for name, ref in refs.items() if ref == state]
    assert which, "the index is a mix of old and new files (or neither)"
    seq = {json.loads((out / f"{s}.manifest.json").read_text())["seq_length"] for s in SPLITS}
    assert seq == {64 if which[0] == "old" else 128}
    return which[0]


def test_preprocess_refuses_a_user_folder_and_overwrite_replaces_it(sample_corpus_80, sp_model_path, tmp_path,
                                                                    capsys):
    cfg = pre_yaml(tmp_path, sample_corpus_80, sp_model_path)
    out = tmp_path / "index"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    rc, _, err = run_cli(capsys, "preprocess", cfg, "--out", out)
    assert_refused(rc, err, str(out), "--overwrite")
    assert (out / "notes.txt").read_text() == "mine" and leftovers(out) == []
    rc, printed, err = run_cli(capsys, "preprocess", cfg, "--out", out, "--overwrite")
    assert rc == 0, err
    assert sorted(p.name for p in out.iterdir()) == sorted([OUTPUT_MARKER] + [f"{s}.{e}" for s in SPLITS
                                                                             for e in ("bin", "idx", "manifest.json")])


def test_preprocess_out_is_a_file(sample_corpus_80, sp_model_path, tmp_path, capsys):
    cfg = pre_yaml(tmp_path, sample_corpus_80, sp_model_path)
    out = tmp_path / "index"
    out.write_text("a file")
    rc, _, err = run_cli(capsys, "preprocess", cfg, "--out", out, "--overwrite")
    assert_refused(rc, err, str(out), "is a file")
    assert out.read_text() == "a file"


@pytest.mark.parametrize("target", ["corpus", "corpus_parent", "tokenizer_folder", "cwd"])
def test_preprocess_into_its_inputs_or_cwd_is_refused_even_with_overwrite(sample_corpus_80, sp_model_path, tmp_path,
                                                                          capsys, monkeypatch, target):
    data = tmp_path / "data"
    shutil.copytree(sample_corpus_80, data / "corpus")
    (data / "tok").mkdir()
    shutil.copy(sp_model_path, data / "tok" / "tok.model")
    cfg = pre_yaml(tmp_path, data / "corpus", data / "tok" / "tok.model")
    monkeypatch.chdir(data / "tok" if target == "cwd" else tmp_path)
    out = {"corpus": data / "corpus", "corpus_parent": data, "tokenizer_folder": data / "tok", "cwd": Path(".")}[target]
    before = user_files(data)
    rc, _, err = run_cli(capsys, "preprocess", cfg, "--out", out, "--overwrite")
    assert_refused(rc, err, str(out.resolve()))
    assert user_files(data) == before


@pytest.mark.parametrize("bad, key", [("seq_length=256.7", "seq_length"), ("workers=2.5", "workers"),
                                      ("types=[zh, en]", "types"), ("overwrite=2", "overwrite"),
                                      ("allow_oversubscribe=lots", "allow_oversubscribe")])
def test_preprocess_wrong_types_are_one_line_errors(sample_corpus_80, sp_model_path, tmp_path, capsys, bad, key):
    cfg = pre_yaml(tmp_path, sample_corpus_80, sp_model_path)
    rc, _, err = run_cli(capsys, "preprocess", cfg, "--out", tmp_path / "index", "-o", bad)
    assert_refused(rc, err, key)
    assert not (tmp_path / "index").exists() and leftovers(tmp_path / "index") == []


def test_preprocess_reruns_into_its_own_folder_and_cleans_leftovers(generations, tmp_path, capsys):
    root, refs, cfg = generations
    out = tmp_path / "index"
    shutil.copytree(root / "old", out)
    (out / ".train.bin.abc.bin.tmp").write_bytes(b"old writer temp")  # left inside by a killed old-style run
    dead = 2 ** 22 + 4321
    (tmp_path / f".index.building-{dead}-xyz").mkdir()
    (tmp_path / f".index.building-{dead}-xyz" / "train.bin").write_bytes(b"half")
    (tmp_path / f".index.old-{dead}").mkdir()
    (tmp_path / ".index.123.tmp").write_bytes(b"")
    rc, _, err = run_cli(capsys, "preprocess", cfg, "--out", out)
    assert rc == 0, err
    assert assert_one_generation(out, refs) == "new"
    assert leftovers(out) == [] and not list(out.glob(".*.tmp"))


def test_preprocess_workers_are_bounded_by_the_cpus(sample_corpus_80, sp_model_path, tmp_path, capsys):
    from knowlm_utils.workers import cpu_count

    cfg = pre_yaml(tmp_path, sample_corpus_80, sp_model_path, max_docs_per_source=5)
    rc, printed, err = run_cli(capsys, "preprocess", cfg, "--out", tmp_path / "index", "-o", "workers=999999")
    assert rc == 0, err
    assert f"999999 requested but {cpu_count()} CPU(s) available" in printed
    assert MMapTokenIndex(tmp_path / "index" / "train").manifest["created"]["args"]["workers"] == 999999


# ------------------------------------------------------------------- killed preprocess runs ----
RUNNER = textwrap.dedent('''
    """Run preprocess on CONFIG into OUT and SIGKILL this process at POINT (test only; the
    worker processes import this file as __mp_main__, hence the guard)."""
    import os, pathlib, signal, sys, time


    def die():
        os.kill(os.getpid(), signal.SIGKILL)


    def main(point, config, out, flag, *overrides):
        from knowlm_utils import fileio, preprocess
        from knowlm_utils.index import writer as index_writer

        if point == "mid_write":                      # a few batches written into the temp folder
            write_batch, calls = preprocess._write_batch, []
            def patched(*a, **k):
                write_batch(*a, **k)
                calls.append(1)
                if len(calls) == 3:
                    die()
            preprocess._write_batch = patched
        elif point == "after_train_commit":           # the old code's window: train committed, valid not
            finalize = index_writer.MMapTokenIndexWriter.finalize
            def patched(self, *a, **k):
                manifest = finalize(self, *a, **k)
                if self.prefix.name == "train":
                    die()
                return manifest
            index_writer.MMapTokenIndexWriter.finalize = patched
        elif point == "before_commit":                # both complete in the temp folder, not swapped in
            preprocess.replace_dir = lambda *a, **k: die()
        elif point == "between_renames":              # replace_dir without the atomic swap (a file system
            fileio._exchange = lambda a, b: False     # that lacks it): old renamed aside, new not in place
            rename = pathlib.Path.rename
            def patched(self, target):
                result = rename(self, target)
                if ".old-" in pathlib.Path(target).name:
                    die()
                return result
            pathlib.Path.rename = patched
        elif point == "before_old_removed":           # replace_dir: new in place, old folder not yet removed
            fileio.fsync_dir = lambda path: die()
        elif point == "right_after_swap":             # the atomic swap done: the old content sits in the
            exchange = fileio._exchange                # temp folder, not yet removed
            def patched(a, b):
                assert exchange(a, b), "this file system cannot swap folders atomically"
                die()
            fileio._exchange = patched
        elif point == "slow":                         # 0.1 s per batch: a window to kill from outside
            write_batch = preprocess._write_batch
            def patched(*a, **k):
                time.sleep(0.1)
                write_batch(*a, **k)
            preprocess._write_batch = patched
        elif point == "workers_running":              # hold the run with its worker pool alive
            def patched(*a, **k):
                pathlib.Path(flag).write_text("ready")
                time.sleep(120)
            preprocess._write_batch = patched
        preprocess.main(config, [f"output_dir={out}", *overrides])


    if __name__ == "__main__":
        main(*sys.argv[1:])
''')


def start_runner(tmp_path: Path, point: str, cfg: Path, out: Path, *overrides: str) -> subprocess.Popen:
    script = tmp_path / "runner.py"
    script.write_text(RUNNER)
    return subprocess.Popen([sys.executable, str(script), point, str(cfg), str(out), str(tmp_path / "flag"),
                             *overrides], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wait_for(predicate, timeout: float = 120.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.mark.parametrize("point", ["at_start", "building_appears", "mid_write", "after_train_commit",
                                   "before_commit", "between_renames", "right_after_swap", "before_old_removed"])
def test_sigkill_leaves_the_old_or_the_new_index_never_a_mix(generations, tmp_path, point):
    root, refs, cfg = generations
    out = tmp_path / "index"
    shutil.copytree(root / "old", out)  # a folder knowlm wrote, holding a valid index
    timed = point in ("at_start", "building_appears")  # killed from outside, at a moment in time
    proc = start_runner(tmp_path, "slow" if timed else point, cfg, out)
    if point == "at_start":
        time.sleep(0.3)
        proc.kill()
    elif point == "building_appears":
        wait_for(lambda: any(tmp_path.glob(".index.building-*/.train.bin.*.tmp")) or proc.poll() is not None,
                 what="temp folder")
        time.sleep(0.5)
        proc.kill()
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == -signal.SIGKILL, f"the run was not killed at {point}: rc {proc.returncode} {err!r}"
    if point != "at_start":
        assert leftovers(out), "the kill left nothing to clean up: it did not land where intended"
    if point == "between_renames":
        # the one window replace_dir's two renames leave: no `index`, the old one complete beside it
        assert not out.exists()
        (old,) = tmp_path.glob(".index.old-*")
        assert assert_one_generation(old, refs) == "old"
        assert restore_interrupted_replace(out) == old  # what the next run does first
    which = assert_one_generation(out, refs)
    assert which == ("new" if point in ("before_old_removed", "right_after_swap") else "old")
    # the next run cleans every leftover and commits the new index
    build(PreprocessConfig.from_yaml(cfg), out)
    assert assert_one_generation(out, refs) == "new" and leftovers(out) == []


def test_a_failing_run_after_a_kill_between_renames_restores_the_old_index(generations, tmp_path):
    root, refs, cfg = generations
    out = tmp_path / "index"
    shutil.copytree(root / "old", out)
    proc = start_runner(tmp_path, "between_renames", cfg, out)
    proc.communicate(timeout=180)
    assert proc.returncode == -signal.SIGKILL and not out.exists()
    with pytest.raises(ValueError, match="does not have"):
        build(PreprocessConfig.from_yaml(cfg, ["types={zh: [nope]}"]), out)
    assert assert_one_generation(out, refs) == "old"


def test_killing_the_parent_leaves_no_worker_processes(generations, tmp_path):
    root, refs, cfg = generations
    out = tmp_path / "index"
    proc = start_runner(tmp_path, "workers_running", cfg, out, "workers=2", "allow_oversubscribe=true")
    children: list[psutil.Process] = []
    try:
        wait_for(lambda: (tmp_path / "flag").exists() or proc.poll() is not None, what="the worker pool")
        assert proc.poll() is None, proc.communicate()[1]
        children = psutil.Process(proc.pid).children(recursive=True)
        workers = [c for c in children if "spawn_main" in " ".join(c.cmdline())]
        assert len(workers) >= 2, [c.cmdline() for c in children]
    finally:
        proc.kill()
    proc.communicate(timeout=60)
    gone, alive = psutil.wait_procs(children, timeout=20)
    assert not alive, f"orphans left: {[(p.pid, p.cmdline()) for p in alive]}"
    build(PreprocessConfig.from_yaml(cfg), out)  # the next run cleans the killed run's temp folder
    assert leftovers(out) == []


# ---------------------------------------------------------------------------------- chunk ----
def chunk_yaml(folder: Path, corpus_dir: Path, model: Path) -> Path:
    cfg = folder / "chunk.yaml"
    cfg.write_text(f"corpus_dir: {corpus_dir}\ntokenizer: {model}\nseq_length: 64\nmax_docs_per_source: 5\n"
                   "verify: false\n", encoding="utf-8")
    return cfg


def test_chunk_writes_one_file_and_leaves_the_rest_of_the_folder(sample_corpus_80, sp_model_path, tmp_path, capsys):
    cfg = chunk_yaml(tmp_path, sample_corpus_80, sp_model_path)
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    rc, _, err = run_cli(capsys, "chunk", cfg, "--out", out, "--no-progress")
    assert rc == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "report.json"]
    assert (out / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("case", ["out_is_file", "out_below_file", "report_is_folder"])
def test_chunk_unwritable_report_is_a_one_line_error_before_the_work(sample_corpus_80, sp_model_path, tmp_path,
                                                                    capsys, case):
    cfg = chunk_yaml(tmp_path, sample_corpus_80, sp_model_path)
    f = tmp_path / "f"
    if case == "report_is_folder":
        (f / "report.json").mkdir(parents=True)
        out, named = f, str(f / "report.json")
    else:
        f.write_text("a file")
        out, named = (f if case == "out_is_file" else f / "sub"), str(f)
    rc, _, err = run_cli(capsys, "chunk", cfg, "--out", out, "--no-progress")
    assert_refused(rc, err, named)
    assert f.is_dir() or f.read_text() == "a file"
