"""Mixing, export and statistics (knowlm_utils.kg2instruction.export)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from knowlm_utils.fileio import OUTPUT_MARKER, OutputDirError, read_jsonl
from knowlm_utils.ie.annotation import Annotation, Entity, Relation
from knowlm_utils.kg2instruction.export import (detect_lang, instruction_stats, mix_general, plot_instruction_stats,
                                                save_hf_dataset, stats_table, write_jsonl)
from knowlm_utils.kg2instruction.instructions import RECORD_KEYS, InstructionOptions, InstructionSynthesizer

ROOT = Path(__file__).resolve().parents[1]
GENERAL = ROOT / "data_samples" / "instructions" / "alpaca_general.json"
SCHEMA = {"entity_types": {"city": {"zh": "城市", "en": "city"}, "country": {"zh": "国家", "en": "country"}},
          "relations": {"capital_of": {"kg_relation": "capital_of", "reverse": False, "zh": "首都", "en": "capital of",
                                       "head": ["city"], "tail": ["country"]},
                        "located_in": {"kg_relation": "located_in", "reverse": False, "zh": "位于", "en": "located in",
                                       "head": ["city"], "tail": ["country"]}},
          "events": {}}


def ie_records(n: int = 10, paraphrase: bool = False) -> list[dict]:
    synth = InstructionSynthesizer.from_schema(SCHEMA, InstructionOptions(seed=1))
    anns = []
    for i in range(n):
        if i % 2:
            anns.append(Annotation(f"en{i}", "Paris is the capital of France.", "en",
                                   [Entity("Paris", "city"), Entity("France", "country")],
                                   [Relation("Paris", "capital of", "France")], source=f"t:{i}"))
        else:
            anns.append(Annotation(f"zh{i}", "巴黎是法国的首都。", "zh", [Entity("巴黎", "城市"), Entity("法国", "国家")],
                                   [Relation("巴黎", "首都", "法国")], source=f"t:{i}"))
    return synth.synthesize(anns, ("NER", "RE"), paraphrase=paraphrase)


def test_detect_lang():
    assert detect_lang("解答下面的应用题") == "zh" and detect_lang("Name three colors.") == "en"
    assert detect_lang("Translate: 你好") == "zh"


def test_mix_general_ratio_keys_and_cap(caplog):
    records = ie_records()
    n = len(records)
    mixed = mix_general(records, GENERAL, ratio=0.5, seed=3)
    general = [r for r in mixed if r["task"] == "GENERAL"]
    assert len(general) == round(0.5 * n) and len(mixed) == n + len(general)
    assert sorted(map(json.dumps, [r for r in mixed if r["task"] != "GENERAL"])) == sorted(map(json.dumps, records))
    source = json.loads(GENERAL.read_text(encoding="utf-8"))
    for rec in general:
        assert tuple(rec) == RECORD_KEYS
        assert rec["style"] == "alpaca" and rec["format"] == "text" and rec["schema"] == []
        index = int(rec["source"].split(":")[1])
        assert rec["source"] == f"alpaca_general:{index}"
        assert (rec["instruction"], rec["input"], rec["output"]) == (source[index]["instruction"],
                                                                      source[index]["input"], source[index]["output"])
        assert rec["lang"] == detect_lang(rec["instruction"] + rec["input"] + rec["output"])
    assert len({r["source"] for r in general}) == len(general)               # without replacement
    assert mix_general(records, GENERAL, 0.5, seed=3) == mixed               # deterministic
    assert mix_general(records, GENERAL, 0.0, seed=3, shuffle=False) == records
    small = [{"instruction": "Say hi.", "input": "", "output": "Hi!"}, {"instruction": "说你好", "output": "你好"}]
    with caplog.at_level("WARNING"):
        capped = mix_general(records, small, ratio=1.0, seed=0)
    assert sum(r["task"] == "GENERAL" for r in capped) == 2 and "only 2 exist" in caplog.text
    with pytest.raises(ValueError, match=r"\[1\]"):
        mix_general(records, [small[0], {"instruction": 3}], 1.0)


def test_mix_general_keeps_a_common_split():
    records = [dict(r, split="valid") for r in ie_records(4)]
    mixed = mix_general(records, GENERAL, 1.0, seed=0)
    assert all(r["split"] == "valid" for r in mixed)


def test_write_jsonl(tmp_path):
    records = ie_records(4)
    path = tmp_path / "out" / "train.jsonl"
    assert write_jsonl(records, path) == len(records)
    assert read_jsonl(path) == records
    assert "巴黎" in path.read_text(encoding="utf-8")
    assert [p.name for p in path.parent.iterdir()] == ["train.jsonl"]        # no temp file left


def test_hf_dataset_round_trip(tmp_path):
    import datasets

    train = mix_general(ie_records(6), GENERAL, 0.5, seed=0)
    splits = {"train": train, "valid": ie_records(2), "test": [], "paraphrase": ie_records(2, paraphrase=True)}
    out = save_hf_dataset(splits, tmp_path / "hf")
    assert (out / OUTPUT_MARKER).is_file()
    ds = datasets.load_from_disk(str(out))
    assert set(ds) == {"train", "valid", "test", "paraphrase"}
    assert [dict(row) for row in ds["paraphrase"]] == splits["paraphrase"] != splits["valid"]
    assert len(ds["test"]) == 0 and ds["test"].column_names == list(RECORD_KEYS)
    assert ds["train"].features["schema"].feature.dtype == "string"
    assert [dict(row) for row in ds["train"]] == train
    assert [dict(row) for row in ds["valid"]] == splits["valid"]
    # a second save replaces the folder whole
    save_hf_dataset({"train": splits["valid"]}, out)
    assert set(datasets.load_from_disk(str(out))) == {"train"}
    assert [p.name for p in tmp_path.iterdir()] == ["hf"]                   # no temp folder left
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(OutputDirError):
        save_hf_dataset(splits, foreign)
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_hf_dataset_refuses_inconsistent_records(tmp_path):
    records = ie_records(2)
    bad = records[:1] + [dict(records[1], extra="x")]
    with pytest.raises(ValueError, match="extra"):
        save_hf_dataset({"train": bad}, tmp_path / "hf")
    assert not (tmp_path / "hf").exists()


def test_stats_and_plot(tmp_path):
    records = [dict(r, split="train") for r in ie_records(6)] + [dict(r, split="test") for r in ie_records(2)]
    rows = instruction_stats(records)
    assert set(rows[0]) == {"split", "task", "lang", "style", "format", "count"}
    assert sum(r["count"] for r in rows) == len(records)
    table = stats_table(records)
    assert table.index.names == ["split", "task", "lang"]
    assert int(table["total"].sum()) == len(records)
    assert int(table.loc[("test", "NER", "zh"), "total"]) == sum(
        1 for r in records if (r["split"], r["task"], r["lang"]) == ("test", "NER", "zh"))
    no_split = stats_table(ie_records(2), columns=("style",))
    assert no_split.index.names == ["task", "lang"] and "iepile" in no_split.columns

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plot_instruction_stats(records)
    try:
        ax = fig.axes[0]
        assert sum(p.get_height() for p in ax.patches) == len(records)
        assert {t.get_text() for t in ax.get_legend().get_texts()} == {"text", "iepile"}
        fig.savefig(tmp_path / "stats.png")
    finally:
        plt.close(fig)
