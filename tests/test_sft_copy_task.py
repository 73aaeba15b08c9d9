"""Copy records (knowlm_utils.sft.copy_task): built from the train sentences, grouped, one-line errors."""

from __future__ import annotations

import json

import pytest

from knowlm_utils.ie.formats import format_output, iepile_instruction
from knowlm_utils.sft.copy_task import COPY_TASK, copy_instructions, copy_records


def _rec(rid, lang, text, task="NER", style="iepile"):
    if style == "iepile":
        return {"id": rid, "task": task, "lang": lang, "style": "iepile", "format": "iepile", "schema": ["城市"],
                "instruction": iepile_instruction(task, lang, ["城市"], text), "input": "",
                "output": format_output(task, "iepile", [], lang, ["城市"])}
    return {"id": rid, "task": task, "lang": lang, "style": style, "format": "tuple", "schema": [],
            "instruction": "Extract.", "input": text, "output": "NAN"}


def test_sentences_deduplicated_grouped_and_joined_per_language():
    recs = [_rec("1", "zh", "秉坦拉位于土耳其。"), _rec("2", "zh", "秉坦拉位于土耳其。", task="RE"),  # same sentence
            _rec("3", "zh", "雅典是希腊的首都。"), _rec("4", "zh", "阿根廷在南美洲。"),
            _rec("5", "en", "Wuhan lies on the Yangtze.", style="text"), _rec("6", "en", "Paris is in France."),
            _rec("7", "fr", "Paris est en France.", style="text"), _rec("8", "en", "  ", style="text")]
    got = copy_records(recs, group=2)
    assert [(r["id"], r["input"]) for r in got] == [
        ("copy:zh:0", "秉坦拉位于土耳其。雅典是希腊的首都。"), ("copy:zh:1", "阿根廷在南美洲。"),
        ("copy:en:0", "Wuhan lies on the Yangtze. Paris is in France.")]  # no fr instruction: left out
    assert all(r["output"] == r["input"] and r["task"] == COPY_TASK and r["style"] == "alpaca" for r in got)
    assert got[0]["instruction"] == copy_instructions()["zh"] and got[2]["instruction"] == copy_instructions()["en"]
    assert len(copy_records(recs, group=1)) == 5 and copy_records([], group=3) == []


def test_bad_group_and_bad_instruction_file(tmp_path):
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="copy_group must be an integer >= 1"):
            copy_records([_rec("1", "zh", "雅典。")], group=bad)
    broken = tmp_path / "copy.json"
    broken.write_text(json.dumps({"description": "x", "zh": ""}), encoding="utf-8")
    with pytest.raises(ValueError, match=r"copy\.json: every language needs a non-empty instruction"):
        copy_instructions(broken)
    broken.write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match=r"copy\.json: cannot read the copy instructions"):
        copy_instructions(broken)
