"""Schema-order shuffling of IEPile SFT records (knowlm_utils.sft.schema_order): every record stays
true (same gold items, canonical JSON in the new order), the choice is seeded, the rest is counted;
and stage 07 applies it to the IEPile records of the real sample pipeline."""

from __future__ import annotations

import json
import random

import pytest

from knowlm_utils.ie.annotation import Argument, Entity, Event, Relation
from knowlm_utils.ie.evaluate import parse_gold
from knowlm_utils.ie.formats import format_output, iepile_instruction
from knowlm_utils.sft.schema_order import shuffle_record, shuffle_schemas, ShuffleStats


def rec(task, schema, text, items, rid="r", lang="zh"):
    return {"id": rid, "task": task, "lang": lang, "style": "iepile", "format": "iepile", "schema": list(schema),
            "instruction": iepile_instruction(task, lang, list(schema), text), "input": "",
            "output": format_output(task, "iepile", list(items), lang, list(schema)), "source": "t"}


RECORDS = [
    rec("NER", ["国家", "省级行政区", "城市", "河流"], "巴西利亚是巴西的首都。", [Entity("巴西", "国家"), Entity("巴西利亚", "城市")], "n"),
    rec("RE", ["首都", "位于", "接壤"], "巴西利亚是巴西的首都。", [Relation("巴西", "首都", "巴西利亚")], "r"),
    rec("EE", ["出生", "成立"], "刘强东于1973年出生在宿迁。",
        [Event("出生", "出生", (Argument("人物", "刘强东"), Argument("时间", "1973年")))], "e"),
]


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: r["task"])
def test_a_shuffled_record_stays_true(record):
    for seed in range(5):
        stats = ShuffleStats()
        new = shuffle_record(record, random.Random(seed), stats)
        assert stats.shuffled == 1 and new["schema"] != record["schema"]
        assert sorted(new["schema"]) == sorted(record["schema"])
        inst, old_inst = json.loads(new["instruction"]), json.loads(record["instruction"])
        assert inst["schema"] == new["schema"] and {**inst, "schema": None} == {**old_inst, "schema": None}
        assert list(json.loads(new["output"])) == new["schema"]  # the answer follows the new order
        assert set(parse_gold(new)) == set(parse_gold(record))
        assert new["output"] == format_output(record["task"], "iepile", parse_gold(record), "zh", new["schema"])
        assert {k: v for k, v in new.items() if k not in ("schema", "instruction", "output")} == \
            {k: v for k, v in record.items() if k not in ("schema", "instruction", "output")}


def test_what_is_left_as_it_was_is_counted():
    stats = ShuffleStats()
    one = rec("NER", ["城市"], "北京", [Entity("北京", "城市")])
    text = {**one, "style": "text", "format": "tuple", "instruction": "找实体", "input": "北京", "output": "(北京,城市)"}
    wrong = {**RECORDS[0], "output": json.dumps({"城市": [], "国家": []}, ensure_ascii=False)}
    broken = {**RECORDS[0], "output": '{"国家": ['}
    assert [shuffle_record(r, random.Random(0), stats) for r in (one, text, wrong, broken)] == [None] * 4
    assert stats.to_dict() == {"considered": 3, "shuffled": 0,
                               "skipped": {"answer_not_keyed_by_schema": 1, "not_iepile": 1, "one_key": 1}}
    two = rec("NER", ["国家", "城市"], "北京", [Entity("北京", "城市")])
    assert shuffle_record(two, random.Random(0))["schema"] == ["城市", "国家"]  # two keys: always the swap


def test_share_seed_and_errors():
    many = [{**RECORDS[i % 3], "id": f"x{i}"} for i in range(300)]
    same, st0 = shuffle_schemas(many, 0.0)
    assert same == many and st0.considered == 0
    half, st = shuffle_schemas(many, 0.5, seed=3)
    assert 100 < st.shuffled < 200 and st.shuffled == sum(a != b for a, b in zip(half, many))
    assert shuffle_schemas(many, 0.5, seed=3)[0] == half and shuffle_schemas(many, 0.5, seed=4)[0] != half
    assert shuffle_schemas(many, 1.0)[1].shuffled == 300
    for bad in (1.5, -0.1, True, "0.5"):
        with pytest.raises(ValueError, match=r"schema_shuffle: must be a number in \[0, 1\]"):
            shuffle_schemas(many, bad)
