"""Library chatter kept out of a command's output (knowlm_utils.quiet), and stage commands
using it unless --verbose. Run in child processes: it changes process-wide logging state."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBE = """
import json, logging, os, sys, warnings
sys.path.insert(0, {root!r})
import transformers
from transformers.utils import logging as tlog

def state():
    with warnings.catch_warnings(record=True) as caught:  # a FutureWarning issued from a transformers module
        exec(compile("import warnings; warnings.warn('old api', FutureWarning)", "x.py", "exec"),
             {{"__name__": "transformers.modeling_utils"}})
    return {{"verbosity": tlog.get_verbosity(), "bars": tlog.is_progress_bar_enabled(),
            "bnb": logging.getLogger("bitsandbytes.backends.cpu.ops").getEffectiveLevel(),
            "future_warnings": len(caught), "ds_accelerator": os.environ.get("DS_ACCELERATOR")}}
{body}
"""


def _probe(body: str, *args: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "DS_ACCELERATOR"}
    code = textwrap.dedent(PROBE).format(root=str(ROOT), body=textwrap.dedent(body))
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=180, env=env,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_quiet_library_notices_silences_what_it_says_and_only_that():
    got = _probe("""
        before = state()
        from knowlm_utils.quiet import quiet_library_notices
        quiet_library_notices(); quiet_library_notices()  # idempotent
        after = state()
        logging.getLogger("knowlm_utils.x").warning("ours")  # the project's own loggers are untouched
        print(json.dumps({"before": before, "after": after,
                          "ours": logging.getLogger("knowlm_utils.x").getEffectiveLevel()}))
    """)
    before, after = got["before"], got["after"]
    assert before["verbosity"] < 40 and before["bars"] and before["bnb"] < 40 and before["future_warnings"] == 1
    assert after["verbosity"] == 40 and not after["bars"] and after["bnb"] == 40 and after["future_warnings"] == 0
    assert after["ds_accelerator"] == "cpu"  # this machine has no CUDA: DeepSpeed's no-GPU warning is avoided
    assert got["ours"] == 30


def test_stage_commands_are_quiet_unless_verbose(tmp_path):
    """The handler every config-driven command shares (config.stage_command) quiets libraries
    just before running, and not with --verbose (nor for --print-config, which runs nothing)."""
    (tmp_path / "c.yaml").write_text("corpus_dir: c\ntokenizer: t\n", encoding="utf-8")
    body = """
        import argparse
        from knowlm_utils.chunk_report import ChunkConfig
        from knowlm_utils.config import stage_command
        seen = []
        parser = stage_command(argparse.ArgumentParser(), ChunkConfig, "x.yaml", "seq_length=8",
                               lambda cfg: seen.append(state()) or 0, out=False)
        args = parser.parse_args(sys.argv[1:])
        rc = args.func(args)
        print(json.dumps({"rc": rc, "seen": seen}))
    """
    quiet = _probe(body, str(tmp_path / "c.yaml"))
    verbose = _probe(body, str(tmp_path / "c.yaml"), "--verbose")
    assert quiet["rc"] == verbose["rc"] == 0
    assert quiet["seen"][0]["verbosity"] == 40 and not quiet["seen"][0]["bars"] and quiet["seen"][0]["future_warnings"] == 0
    assert verbose["seen"][0]["verbosity"] < 40 and verbose["seen"][0]["bars"] and verbose["seen"][0]["future_warnings"] == 1
