"""Entity-name substitution of SFT records (knowlm_utils.sft.names): answers and inputs change
together, the answer still parses and every new name occurs in the new input, nothing else in the
record changes, and records that cannot be changed safely are counted, not broken."""

from __future__ import annotations

import json
import random

import pytest

from knowlm_utils.ie.annotation import Entity, Relation
from knowlm_utils.ie.formats import format_output, iepile_instruction, parse_output
from knowlm_utils.sft.names import NamePool, answer_names, substitute_names, substitute_record

ZH_NAMES = ["北京大学", "清华大学", "复旦大学", "南京大学", "武汉大学", "北京市", "上海市", "杭州市", "南京市",
            "阿里巴巴公司", "腾讯公司", "华为公司", "长江", "黄河", "钱锺书", "鲁迅", "李白", "杜甫", "王安石"]
EN_NAMES = ["Peking University", "Tsinghua University", "Fudan University", "Yellow River", "Pearl River",
            "Yangtze River", "Hangzhou", "Shanghai", "Nanjing", "Wuhan", "Alibaba Group", "Tencent Holdings",
            "Lu Xun", "Li Bai", "Du Fu", "Wang Anshi", "Bank of China", "University of Oxford", "New York"]


@pytest.fixture(scope="module")
def pool():
    return NamePool.from_names(ZH_NAMES * 2 + EN_NAMES * 2)


def ner_iepile(text, items, schema, lang="zh", rid="r1"):
    return {"id": rid, "task": "NER", "lang": lang, "style": "iepile", "format": "iepile", "schema": schema,
            "instruction": iepile_instruction("NER", lang, schema, text), "input": "",
            "output": format_output("NER", "iepile", items, lang, schema)}


def re_text(text, items, fmt="tuple", lang="en", rid="r2"):
    return {"id": rid, "task": "RE", "lang": lang, "style": "text", "format": fmt, "schema": [],
            "instruction": "Extract triples.", "input": text, "output": format_output("RE", fmt, items, lang)}


def test_pool_learns_suffixes_and_pieces(pool):
    assert {"大学", "公司", "市"} <= pool.zh_suffixes
    assert {"University", "River"} <= pool.en_keep
    assert "Hangzhou" not in pool.en_keep
    rng = random.Random(0)
    for name in ("北京大学", "华为公司", "长江"):
        new = pool.fake(name, rng)
        assert new and len(new) == len(name) and new != name
        assert all(ch in pool.zh_chars for ch in new[:2])
    assert pool.fake("北京大学", rng).endswith("大学")
    new = pool.fake("Yellow River", rng)
    assert new.endswith(" River") and new.split()[0] != "Yellow" and new[0].isupper()
    assert pool.fake("1990年", rng) is None and pool.fake("2021", rng) is None
    # a new word begins with a syllable that begins a real word: never with a word-internal cluster
    assert "ngzhou" in pool.en_syllables and "ngzhou" not in pool.en_onsets
    firsts = {pool.fake(n, rng).split()[0].lower() for n in ("Hangzhou", "Nanjing", "Wuhan") for _ in range(60)}
    assert all(any(w.startswith(o) for o in pool.en_onsets) for w in firsts) and len(firsts) > 30


def test_iepile_ner_record_changes_answer_and_input_together(pool):
    schema = ["大学", "城市"]
    text = "北京大学位于北京市，北京大学的校园很大。"
    items = [Entity("北京大学", "大学"), Entity("北京市", "城市")]
    rec = ner_iepile(text, items, schema)
    new = substitute_record(rec, pool, random.Random(1))
    assert new is not None and new["names_substituted"] == 2
    inst = json.loads(new["instruction"])
    assert inst["schema"] == schema and inst["instruction"] == json.loads(rec["instruction"])["instruction"]
    got = parse_output("NER", "iepile", new["output"], "zh", schema)
    assert got.ok and len(got.items) == 2 and [e.type for e in got.items] == ["大学", "城市"]
    for e in got.items:
        assert e.text in inst["input"] and e.text not in text
    # the replacement is consistent: both mentions of the university became the same new name
    uni = got.items[0].text
    assert inst["input"].count(uni) == 2 and "北京" not in inst["input"]
    assert inst["input"].endswith("位于" + got.items[1].text + "，" + uni + "的校园很大。")
    # everything else in the record is unchanged
    assert {k: v for k, v in new.items() if k not in ("instruction", "output", "names_substituted")} == \
        {k: v for k, v in rec.items() if k not in ("instruction", "output")}


def test_text_re_record_whole_words_only(pool):
    text = "Wuhan lies on the Yangtze River; Wuhanese food is famous."
    items = [Relation("Wuhan", "located on", "Yangtze River")]
    new = substitute_record(re_text(text, items), pool, random.Random(3))
    assert new is not None
    (rel,) = parse_output("RE", "tuple", new["output"], "en").items
    assert rel.relation == "located on" and rel.tail.endswith(" River")
    assert new["input"].startswith(rel.head + " lies on the " + rel.tail)
    assert "Wuhanese food" in new["input"]  # a longer word that contains the name is not touched


def test_records_that_cannot_change_are_counted(pool):
    rec_missing = re_text("Somewhere else entirely.", [Relation("Wuhan", "located on", "Yangtze River")], rid="a")
    rec_bad = dict(re_text("Wuhan.", [Relation("Wuhan", "in", "China")], rid="b"), output="(Wuhan, in")
    rec_empty = ner_iepile("今天下雨。", [], ["城市"], rid="c")
    rec_digits = ner_iepile("1990年很冷。", [Entity("1990年", "时间")], ["时间"], rid="d")
    general = {"id": "g", "task": "GENERAL", "lang": "en", "style": "alpaca", "instruction": "Hi", "input": "",
               "output": "Hello"}
    records = [rec_missing, rec_bad, rec_empty, rec_digits, general]
    out, stats = substitute_names(records, 1.0, seed=0, pool=pool)
    assert out == records  # nothing lost, nothing changed
    assert stats.substituted == 0 and stats.considered == 4
    assert stats.skipped == {"name_not_in_input": 1, "unparseable_output": 1, "no_names": 1,
                             "unsupported_name": 1}


def test_fraction_seed_and_default_pool():
    records = []
    for i, (zh, en) in enumerate(zip(ZH_NAMES, EN_NAMES)):
        records.append(ner_iepile(f"{zh}很有名。", [Entity(zh, "名称")], ["名称"], rid=f"zh{i}"))
        records.append(re_text(f"{en} is in China.", [Relation(en, "in", "China")], rid=f"en{i}"))
    records *= 3  # the default pool learns from these answers
    out_a, st_a = substitute_names(records, 0.5, seed=7)
    out_b, _ = substitute_names(records, 0.5, seed=7)
    out_c, _ = substitute_names(records, 0.5, seed=8)
    assert out_a == out_b and out_a != out_c
    changed = sum(a != r for a, r in zip(out_a, records))
    assert changed == st_a.substituted and 0.25 * len(records) < changed < 0.75 * len(records)
    assert substitute_names(records, 0.0)[0] == records
    names_before, names_after = set(answer_names(records)), set(answer_names(out_a))
    assert len(names_after - names_before) >= changed // 2
    with pytest.raises(ValueError, match="name_substitution"):
        substitute_names(records, 1.5)
