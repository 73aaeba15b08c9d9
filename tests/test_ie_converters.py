"""Converters from CoNLL-2003, People's Daily, DuIE, DuEE and IEPile into annotations: the
sample files convert exactly, every malformed case is a one-line error naming file:line or a
counted skip (valid records around it still converted), and reading streams."""

from __future__ import annotations

import io
import json
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from knowlm_utils.ie.annotation import Annotation, Argument, Entity, Event, Relation
from knowlm_utils.ie.converters import (CONLL2003_TYPES, FORMATS, PEOPLES_DAILY_TYPES, ConversionError,
                                        ConversionStats, read_annotations, read_conll2003, read_duee,
                                        read_duie, read_iepile, read_peoples_daily)

SAMPLES = Path(__file__).resolve().parents[1] / "data_samples" / "ie_formats"
SAMPLE_FILES = {"conll2003": "conll2003_sample.txt", "peoples_daily": "peoples_daily_sample.txt",
                "duie": "duie_sample.jsonl", "duee": "duee_sample.jsonl", "iepile": "iepile_sample.jsonl"}


def convert(path, fmt, **kw):
    return list(read_annotations(path, fmt, **kw))


def by_id(anns):
    return {a.id: a for a in anns}


def write(tmp_path, name, content: str | bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return p


def jl(*rows) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows)


# ------------------------------------------------------------------------------ the samples ---
@pytest.mark.parametrize("fmt", sorted(SAMPLE_FILES))
def test_every_sample_converts_cleanly_with_ids_sources_and_round_trip(fmt):
    stats = ConversionStats()
    anns = convert(SAMPLES / SAMPLE_FILES[fmt], fmt, stats=stats)
    assert 5 <= len(anns) <= 10
    assert stats.records == stats.converted == len(anns) and stats.total_skipped == 0
    name = SAMPLE_FILES[fmt]
    for a in anns:
        stem, line = a.id.split(":")
        assert stem == Path(name).stem and a.source == f"{fmt}:{name}:{line}"
        assert a.lang in ("zh", "en") and a.text
        for e in a.entities:
            assert e.text in a.text
        for r in a.relations:
            assert r.head in a.text and r.tail in a.text
        for ev in a.events:
            assert ev.trigger in a.text and all(arg.text in a.text for arg in ev.arguments)
        assert Annotation.from_dict(a.to_dict()) == a
        assert Annotation.from_dict(json.loads(json.dumps(a.to_dict(), ensure_ascii=False))) == a
    assert len({a.id for a in anns}) == len(anns)


def test_conll2003_sample_exact():
    anns = by_id(convert(SAMPLES / "conll2003_sample.txt", "conll2003"))
    assert len(anns) == 8
    assert anns["conll2003_sample:3"] == Annotation(
        "conll2003_sample:3", "Tsinghua University is located in Beijing .", "en",
        [Entity("Tsinghua University", "organization"), Entity("Beijing", "location")],
        source="conll2003:conll2003_sample.txt:3")
    assert anns["conll2003_sample:19"].entities == [Entity("Robin Li", "person"), Entity("Baidu", "organization"),
                                                    Entity("Peking University", "organization")]
    assert anns["conll2003_sample:19"].text == "Robin Li , the chief executive of Baidu , studied at Peking University ."
    # IOB1: B-ORG splits two adjacent ORG entities; MISC mapped
    assert anns["conll2003_sample:64"].entities == [
        Entity("Tencent", "organization"), Entity("Baidu", "organization"), Entity("Alibaba", "organization"),
        Entity("Chinese", "miscellaneous")]
    # a second -DOCSTART- ends nothing but starts a new document; sentence ids keep file lines
    assert anns["conll2003_sample:36"].entities == [Entity("Jack Ma", "person"), Entity("Hangzhou", "location"),
                                                    Entity("China", "location")]
    raw = by_id(convert(SAMPLES / "conll2003_sample.txt", "conll2003", type_map=None))
    assert raw["conll2003_sample:74"].entities == [Entity("Pony Ma", "PER"), Entity("Tencent", "ORG")]


def test_peoples_daily_sample_exact():
    anns = by_id(convert(SAMPLES / "peoples_daily_sample.txt", "peoples_daily"))
    assert len(anns) == 7
    assert anns["peoples_daily_sample:1"] == Annotation(
        "peoples_daily_sample:1", "马云出生于杭州。", "zh", [Entity("马云", "人物"), Entity("杭州", "地点")],
        source="peoples_daily:peoples_daily_sample.txt:1")
    assert anns["peoples_daily_sample:10"].entities == [Entity("阿里巴巴集团", "机构"), Entity("浙江省", "地点"),
                                                        Entity("杭州市", "地点")]
    assert anns["peoples_daily_sample:64"].entities == []  # a sentence without entities
    # the same mention twice is kept once
    assert anns["peoples_daily_sample:83"].entities == [Entity("马化腾", "人物"), Entity("腾讯", "机构"),
                                                        Entity("深圳", "地点")]


def test_duie_sample_exact():
    anns = by_id(convert(SAMPLES / "duie_sample.jsonl", "duie"))
    assert anns["duie_sample:1"] == Annotation(
        "duie_sample:1", "马云出生于浙江省杭州市，毕业于杭州师范大学。", "zh",
        [Entity("马云", "人物"), Entity("杭州市", "地点"), Entity("杭州师范大学", "学校")],
        [Relation("马云", "出生地", "杭州市"), Relation("马云", "毕业院校", "杭州师范大学")],
        source="duie:duie_sample.jsonl:1")
    # DuIE 1.0 plain strings
    assert anns["duie_sample:4"].relations == [Relation("雷军", "毕业院校", "武汉大学")]
    assert anns["duie_sample:4"].entities == [Entity("雷军", "人物"), Entity("武汉大学", "学校")]
    # an n-ary DuIE 2.0 object: one relation per slot
    assert anns["duie_sample:6"].relations == [Relation("唐国强", "饰演", "诸葛亮"),
                                               Relation("唐国强", "饰演@inWork", "三国演义")]
    assert Entity("三国演义", "影视作品") in anns["duie_sample:6"].entities
    assert anns["duie_sample:5"].relations == [] and anns["duie_sample:5"].entities == []


def test_duee_sample_exact():
    anns = by_id(convert(SAMPLES / "duee_sample.jsonl", "duee"))
    assert anns["duee_sample:1"] == Annotation(
        "duee_sample:1", "2019年9月10日，马云在杭州正式卸任阿里巴巴集团董事局主席。", "zh",
        events=[Event("卸任", "组织关系-辞/离职", (Argument("时间", "2019年9月10日"), Argument("离职者", "马云"),
                                                   Argument("原所属组织", "阿里巴巴集团")))],
        source="duee:duee_sample.jsonl:1")
    assert anns["duee_sample:4"].events == [Event("停课", "灾害/意外-其他", ())]
    assert [e.type for e in anns["duee_sample:6"].events] == ["组织关系-裁员", "组织关系-辞/离职"]
    assert anns["duee_sample:6"].events[1].arguments == (Argument("离职者", "创始人"),)


def test_iepile_sample_exact():
    anns = by_id(convert(SAMPLES / "iepile_sample.jsonl", "iepile"))
    assert anns["iepile_sample:1"].entities == [Entity("马云", "人物"), Entity("杭州", "地理位置"),
                                                Entity("阿里巴巴", "组织机构")]
    assert anns["iepile_sample:2"].lang == "en" and anns["iepile_sample:1"].lang == "zh"
    assert anns["iepile_sample:5"].relations == [Relation("Alibaba Group", "headquartered in", "Hangzhou"),
                                                 Relation("Tencent", "headquartered in", "Shenzhen")]
    assert anns["iepile_sample:6"].entities == [Entity("狂人日记", "图书作品"), Entity("鲁迅", "人物")]
    assert anns["iepile_sample:8"] == Annotation(
        "iepile_sample:8", "Baidu acquired 91 Wireless for 1.9 billion dollars in 2013.", "en",
        events=[Event("acquired", "acquisition", (Argument("acquirer", "Baidu"), Argument("target", "91 Wireless"),
                                                   Argument("price", "1.9 billion dollars"), Argument("time", "2013")))],
        source="iepile:iepile_sample.jsonl:8")
    langs = {a.lang for a in anns.values()}
    assert langs == {"zh", "en"}
    forced = convert(SAMPLES / "iepile_sample.jsonl", "iepile", lang="zh")
    assert {a.lang for a in forced} == {"zh"}


def test_mapping_tables_and_entry_point():
    assert CONLL2003_TYPES == {"PER": "person", "LOC": "location", "ORG": "organization", "MISC": "miscellaneous"}
    assert PEOPLES_DAILY_TYPES == {"PER": "人物", "LOC": "地点", "ORG": "机构"}
    assert set(FORMATS) == {"conll2003", "peoples_daily", "duie", "duee", "iepile"}
    with pytest.raises(ValueError, match="unknown IE format 'csv'; known formats: conll2003"):
        read_annotations("x", "csv")
    with pytest.raises(ValueError, match="errors must be one of raise, skip"):
        read_annotations("x", "duie", errors="ignore")
    with pytest.raises(ValueError, match="scheme must be"):
        read_conll2003("x", scheme="bioes")


def test_readers_work_without_stats_and_on_text_streams():
    anns = list(read_duee(SAMPLES / "duee_sample.jsonl"))
    assert len(anns) == 6
    text = io.StringIO((SAMPLES / "duee_sample.jsonl").read_text(encoding="utf-8"))
    assert list(read_duee(text)) == [Annotation(a.id.replace("duee_sample", "<stream>"), a.text, a.lang, a.entities,
                                                a.relations, a.events, a.source.replace("duee_sample.jsonl", "<stream>"))
                                     for a in anns]


def test_missing_file_is_one_line_error(tmp_path):
    with pytest.raises(ConversionError) as exc:
        list(read_duie(tmp_path / "nope.jsonl"))
    assert "nope.jsonl: unreadable_file:" in str(exc.value) and "\n" not in str(exc.value)


# ------------------------------------------------------------------------ malformed input ---
GOOD_DUIE = {"text": "马云出生于杭州。", "spo_list": [{"predicate": "出生地", "subject": "马云", "subject_type": "人物",
                                                     "object": {"@value": "杭州"}, "object_type": {"@value": "地点"}}]}
GOOD_DUEE = {"id": "a", "text": "百度收购了91无线。", "event_list": [
    {"event_type": "财经/交易-收购", "trigger": "收购", "trigger_start_index": 2,
     "arguments": [{"role": "收购方", "argument": "百度", "argument_start_index": 0}]}]}
GOOD_IEPILE = {"text": "马云出生于杭州。", "entity": [{"entity": "马云", "entity_type": "人物"}]}


def _bad_spo(**change):
    spo = dict(GOOD_DUIE["spo_list"][0], **change)
    return {"text": GOOD_DUIE["text"], "spo_list": [spo]}


def _bad_arg(index=0, argument="百度", trigger_index=2):
    ev = json.loads(json.dumps(GOOD_DUEE))
    ev["event_list"][0]["trigger_start_index"] = trigger_index
    ev["event_list"][0]["arguments"][0].update(argument=argument, argument_start_index=index)
    return ev


# (format, bad line, reason); each bad line is put between two valid records
JSON_CASES = [
    ("duie", '{"text": "马云", "spo_list": [', "invalid_json"),
    ("duie", '["马云出生于杭州。"]', "not_an_object"),
    ("duie", '"just a string"', "not_an_object"),
    ("duie", {"spo_list": []}, "missing_field"),
    ("duie", {"text": 5, "spo_list": []}, "wrong_type"),
    ("duie", _bad_spo(subject="李彦宏"), "span_not_in_text"),
    ("duie", _bad_spo(object={"@value": "北京"}), "span_not_in_text"),
    ("duie", _bad_spo(object={"inWork": "杭州"}), "missing_field"),
    ("duie", _bad_spo(object={"@value": "杭州", "inWork": "马云"}), "missing_field"),  # no type for inWork
    ("duie", {"text": "马云", "spo_list": {"a": 1}}, "wrong_type"),
    ("duie", {"text": "马云", "spo_list": ["x"]}, "wrong_type"),
    ("duie", '{"text": "\\ud800", "spo_list": []}', "invalid_text"),
    ("duie", "[" * 100_000, "invalid_json"),
    ("duee", _bad_arg(argument="阿里巴巴"), "span_not_in_text"),
    ("duee", _bad_arg(index=3), "span_mismatch"),
    ("duee", _bad_arg(index=99), "span_mismatch"),
    ("duee", _bad_arg(index="0"), "wrong_type"),
    ("duee", _bad_arg(trigger_index=0), "span_mismatch"),
    ("duee", {"id": "x", "text": "百度", "event_list": [{"event_type": "a", "trigger": "百度", "arguments": [{"role": "r"}]}]},
     "missing_field"),
    ("iepile", {"text": "马云出生于杭州。", "entity": [{"entity": "李彦宏", "entity_type": "人物"}]}, "span_not_in_text"),
    ("iepile", {"text": "马云出生于杭州。", "relation": [{"head": "马云", "relation": "出生地"}]}, "missing_field"),
    ("iepile", {"text": "马云出生于杭州。", "event": [{"event_type": "出生", "event_trigger": "出生",
                                                   "arguments": [{"argument": "北京", "role": "地点"}]}]},
     "span_not_in_text"),
    ("iepile", {"entity": []}, "missing_field"),
]
GOOD = {"duie": GOOD_DUIE, "duee": GOOD_DUEE, "iepile": GOOD_IEPILE}


@pytest.mark.parametrize("fmt,bad,reason", JSON_CASES, ids=[f"{c[0]}-{i}-{c[2]}" for i, c in enumerate(JSON_CASES)])
def test_json_malformed_raises_one_line_or_is_counted(tmp_path, fmt, bad, reason):
    path = write(tmp_path, f"in_{fmt}.jsonl", jl(GOOD[fmt], bad, GOOD[fmt]))
    with pytest.raises(ConversionError) as exc:
        list(read_annotations(path, fmt))
    msg = str(exc.value)
    assert msg.startswith(f"{path}:2: {reason}: ") and "\n" not in msg and len(msg) < 400
    assert isinstance(exc.value, ValueError) and exc.value.reason == reason
    stats = ConversionStats()
    anns = list(read_annotations(path, fmt, errors="skip", stats=stats))
    assert [a.id for a in anns] == [f"in_{fmt}:1", f"in_{fmt}:3"]
    assert stats.records == 3 and stats.converted == 2 and stats.skipped == {reason: 1}
    assert stats.examples == {reason: [f"{path}:2"]}
    assert reason in str(stats) and f"{path}:2" in str(stats)


def test_utf8_bom_crlf_blank_lines_and_invalid_utf8_in_jsonl(tmp_path):
    body = jl(GOOD_DUIE, "", GOOD_DUIE).replace("\n", "\r\n").encode()
    path = write(tmp_path, "bom.jsonl", b"\xef\xbb\xbf" + body + b'{"text": "\xff"}\r\n' + jl(GOOD_DUIE).encode())
    stats = ConversionStats()
    anns = list(read_duie(path, errors="skip", stats=stats))
    assert [a.id for a in anns] == ["bom:1", "bom:3", "bom:5"]
    assert anns[0].text == "马云出生于杭州。" and anns[0].relations == [Relation("马云", "出生地", "杭州")]
    assert stats.skipped == {"invalid_utf8": 1} and stats.examples["invalid_utf8"] == [f"{path}:4"]
    with pytest.raises(ConversionError, match=r"bom.jsonl:4: invalid_utf8: byte 0xff"):
        list(read_duie(path))


def test_over_long_line_is_counted_not_held(tmp_path):
    path = write(tmp_path, "long.jsonl", jl(GOOD_DUIE, {"text": "x" * 5000}, GOOD_DUIE))
    stats = ConversionStats()
    anns = list(read_duie(path, errors="skip", stats=stats, max_line_bytes=1000))
    assert [a.id for a in anns] == ["long:1", "long:3"] and stats.skipped == {"line_too_long": 1}


def test_unlabeled_records_are_converted_and_counted(tmp_path):
    path = write(tmp_path, "test.jsonl", jl({"text": "马云出生于杭州。"}, GOOD_IEPILE))
    stats = ConversionStats()
    anns = list(read_iepile(path, stats=stats))
    assert anns[0].entities == [] and stats.unlabeled == 1 and stats.converted == 2
    assert "1 unlabeled" in str(stats)


CONLL_OK = "-DOCSTART- -X- -X- O\n\nJack NNP I-NP I-PER\nMa NNP I-NP I-PER\nspoke VBD I-VP O\n\n"
CONLL_TAIL = "Beijing NNP I-NP I-LOC\n. . O O\n\n"
# (bad sentence, reason, offending line within the file)
CONLL_CASES = [
    ("Robin NNP I-PER\nLi NNP I-NP I-PER\n\n", "wrong_column_count", 7),
    ("Robin NNP I-NP I-PER\nLi NNP I-NP I-PER extra\n\n", "wrong_column_count", 8),
    ("Robin NNP I-NP S-PER\n\n", "unknown_tag_prefix", 7),
    ("Robin NNP I-NP E-PER\n\n", "unknown_tag_prefix", 7),
    ("Robin NNP I-NP PER\n\n", "bad_tag", 7),
    ("Robin NNP I-NP B-\n\n", "bad_tag", 7),
    ("Robin NNP I-NP B-DATE\n\n", "unknown_entity_type", 7),
]


@pytest.mark.parametrize("bad,reason,line", CONLL_CASES, ids=[c[1] + str(i) for i, c in enumerate(CONLL_CASES)])
def test_conll_malformed_sentence(tmp_path, bad, reason, line):
    path = write(tmp_path, "c.txt", CONLL_OK + bad + CONLL_TAIL)
    with pytest.raises(ConversionError) as exc:
        list(read_conll2003(path))
    assert str(exc.value).startswith(f"{path}:{line}: {reason}: ") and "\n" not in str(exc.value)
    stats = ConversionStats()
    anns = list(read_conll2003(path, errors="skip", stats=stats))
    assert [a.text for a in anns] == ["Jack Ma spoke", "Beijing ."]
    assert anns[1].entities == [Entity("Beijing", "location")]
    assert stats.records == 3 and stats.converted == 2 and stats.skipped == {reason: 1}
    assert stats.examples[reason] == [f"{path}:{line}"]


def test_conll_iob1_vs_strict_bio(tmp_path):
    text = ("Tencent NNP I-NP I-ORG\nShenzhen NNP I-NP I-LOC\nsays VBZ I-VP O\n\n"
            "Baidu NNP I-NP B-ORG\nBeijing NNP I-NP I-LOC\n\n")
    path = write(tmp_path, "iob.txt", text)
    anns = list(read_conll2003(path))  # IOB1: I- after another type or after O starts an entity
    assert anns[0].entities == [Entity("Tencent", "organization"), Entity("Shenzhen", "location")]
    assert anns[1].entities == [Entity("Baidu", "organization"), Entity("Beijing", "location")]
    with pytest.raises(ConversionError, match=rf"^{path}:1: i_tag_without_begin: "):
        list(read_conll2003(path, scheme="bio"))
    stats = ConversionStats()
    assert list(read_conll2003(path, scheme="bio", errors="skip", stats=stats)) == []
    assert stats.skipped == {"i_tag_without_begin": 1, "i_tag_type_mismatch": 1}
    assert stats.examples["i_tag_type_mismatch"] == [f"{path}:6"]


PD_OK = "马 B-PER\n云 I-PER\n说 O\n\n"
PD_CASES = [
    ("北 B-LOC\n京 I-ORG\n\n", "i_tag_type_mismatch", 6),
    ("北 O\n京 I-LOC\n\n", "i_tag_without_begin", 6),
    ("北 B-LOC O\n京 I-LOC\n\n", "wrong_column_count", 5),
    ("北\n京 I-LOC\n\n", "wrong_column_count", 5),
    ("北 M-LOC\n\n", "unknown_tag_prefix", 5),
    ("北 B-GPE\n\n", "unknown_entity_type", 5),
]


@pytest.mark.parametrize("bad,reason,line", PD_CASES, ids=[c[1] + str(i) for i, c in enumerate(PD_CASES)])
def test_peoples_daily_malformed_sentence(tmp_path, bad, reason, line):
    path = write(tmp_path, "pd.txt", PD_OK + bad + PD_OK)
    with pytest.raises(ConversionError) as exc:
        list(read_peoples_daily(path))
    assert str(exc.value).startswith(f"{path}:{line}: {reason}: ") and "\n" not in str(exc.value)
    stats = ConversionStats()
    anns = list(read_peoples_daily(path, errors="skip", stats=stats))
    assert [a.id for a in anns] == ["pd:1", f"pd:{5 + bad.count(chr(10))}"]
    assert all(a.entities == [Entity("马云", "人物")] for a in anns)
    assert stats.skipped == {reason: 1} and stats.converted == 2


def test_bio_bom_crlf_truncated_last_sentence_and_raw_types(tmp_path):
    data = b"\xef\xbb\xbf" + "杭 B-LOC\r\n州 I-LOC\r\n\r\n\r\n马 B-PER\r\n云 I-PER".encode()
    path = write(tmp_path, "pd.txt", data)
    anns = list(read_peoples_daily(path))
    assert [(a.id, a.text, a.entities) for a in anns] == [("pd:1", "杭州", [Entity("杭州", "地点")]),
                                                         ("pd:5", "马云", [Entity("马云", "人物")])]
    assert list(read_peoples_daily(path, type_map=None))[1].entities == [Entity("马云", "PER")]
    conll = write(tmp_path, "c.txt", b"\xef\xbb\xbf-DOCSTART- -X- -X- O\r\n\r\nJack NNP I-NP B-PER\r\nMa NNP I-NP I-PER")
    assert list(read_conll2003(conll))[0].entities == [Entity("Jack Ma", "person")]


def test_docstart_without_blank_line_ends_the_sentence(tmp_path):
    path = write(tmp_path, "c.txt", "Jack NNP I-NP I-PER\n-DOCSTART- -X- -X- O\nMa NNP I-NP I-PER\n")
    assert [a.id for a in read_conll2003(path)] == ["c:1", "c:3"]


def test_bio_invalid_utf8_and_long_lines_skip_their_sentence(tmp_path):
    path = write(tmp_path, "pd.txt", PD_OK.encode() + b"\xff\xfe B-LOC\n\xe4\xba\xac I-LOC\n\n" + PD_OK.encode())
    stats = ConversionStats()
    assert len(list(read_peoples_daily(path, errors="skip", stats=stats))) == 2
    assert stats.skipped == {"invalid_utf8": 1} and stats.examples["invalid_utf8"] == [f"{path}:5"]
    long = write(tmp_path, "long.txt", PD_OK + "x" * 3000 + " O\n\n" + PD_OK)
    stats = ConversionStats()
    assert len(list(read_peoples_daily(long, errors="skip", stats=stats, max_line_bytes=100))) == 2
    assert stats.skipped == {"line_too_long": 1}


def test_many_errors_keep_first_few_examples(tmp_path):
    path = write(tmp_path, "many.jsonl", jl(*(["{bad"] * 20), GOOD_DUIE))
    stats = ConversionStats()
    anns = list(read_duie(path, errors="skip", stats=stats))
    assert len(anns) == 1 and stats.skipped == {"invalid_json": 20}
    assert stats.examples["invalid_json"] == [f"{path}:{i}" for i in range(1, 6)]
    assert stats.to_dict()["skipped"] == {"invalid_json": 20}


# ------------------------------------------------------------------------------- streaming ---
class CountingStream(io.BytesIO):
    """A binary stream that records how many bytes the reader has pulled."""

    def __init__(self, data: bytes, name: str):
        super().__init__(data)
        self.name, self.pulled = name, 0

    def readline(self, size=-1):
        line = super().readline(size)
        self.pulled += len(line)
        return line


@pytest.mark.parametrize("fmt", ["conll2003", "peoples_daily", "duie", "duee", "iepile"])
def test_readers_yield_before_reading_the_whole_file(fmt):
    one = (SAMPLES / SAMPLE_FILES[fmt]).read_bytes()
    data = one * 2000
    stream = CountingStream(data, f"/data/{SAMPLE_FILES[fmt]}")
    it = read_annotations(stream, fmt)
    first = next(it)
    assert first.source == f"{fmt}:{SAMPLE_FILES[fmt]}:" + first.id.split(":")[1]
    assert stream.pulled < 2000 < len(data) // 100
    rest = sum(1 for _ in it)
    assert rest + 1 == 2000 * len(list(read_annotations(SAMPLES / SAMPLE_FILES[fmt], fmt)))


def test_memory_stays_flat_on_a_100k_line_file(tmp_path):
    path = tmp_path / "big.txt"
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(25_000):  # 4 lines a sentence = 100k lines
            fh.write(f"Person{i} NNP I-NP B-PER\nvisited VBD I-VP O\nBeijing NNP I-NP I-LOC\n\n")
    tracemalloc.start()
    try:
        n = 0
        for ann in read_conll2003(path):
            n += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert n == 25_000 and ann.entities == [Entity("Person24999", "person"), Entity("Beijing", "location")]
    assert peak < 1_000_000, peak  # a list of 25k annotations alone would take several MB


# ------------------------------------------------------------------------ property check ---
_segments = st.lists(st.tuples(st.text("甲乙丙丁戊己", min_size=1, max_size=4), st.sampled_from([None, "PER", "LOC", "ORG"])),
                     min_size=1, max_size=8)


@settings(max_examples=60, deadline=None)
@given(st.lists(_segments, min_size=1, max_size=4))
def test_bio_written_from_spans_reads_back_the_spans(sentences):
    lines, expected = [], []
    for segs in sentences:
        ents = []
        for chunk, typ in segs:
            for k, ch in enumerate(chunk):
                lines.append(f"{ch} {'O' if typ is None else ('B-' if k == 0 else 'I-') + typ}")
            if typ is not None:
                ents.append(Entity(chunk, PEOPLES_DAILY_TYPES[typ]))
        lines.append("")
        expected.append(("".join(c for c, _ in segs), list(dict.fromkeys(ents))))
    stream = io.BytesIO("\n".join(lines).encode())
    assert [(a.text, a.entities) for a in read_peoples_daily(stream)] == expected
