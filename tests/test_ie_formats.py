"""IE output formats: golden strings of every format, parse(format(x)) round trips property-tested
over CJK, ASCII punctuation, full-width punctuation and whitespace, tolerant parsing of what models
emit, strict mode, the IEPile instruction side and schema splitting."""

from __future__ import annotations

import json
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from knowlm_utils.ie.annotation import Argument, Entity, Event, Relation
from knowlm_utils.ie.formats import (FORMATS, ParseResult, canonical_items, format_output, iepile_instruction,
                                     parse_output, read_iepile_instruction, schema_key, split_schema)

NER = [Entity("黄河", "河流"), Entity("长江", "河流"), Entity("北京", "城市")]
RE = [Relation("北京", "位于", "中国"), Relation("上海", "位于", "中国"), Relation("姚明", "出生地", "上海")]
EE = [Event("生于", "出生", (Argument("时间", "1990年"), Argument("地点", "北京"))), Event("去世", "死亡")]
ITEMS = {"NER": NER, "RE": RE, "EE": EE}

GOLDEN = {
    ("NER", "tuple", "zh"): "(黄河,河流)\n(长江,河流)\n(北京,城市)",
    ("NER", "labeled", "zh"): "实体是黄河,实体类型是河流\n实体是长江,实体类型是河流\n实体是北京,实体类型是城市",
    ("NER", "labeled", "en"): "entity is 黄河, entity type is 河流\nentity is 长江, entity type is 河流\n"
                              "entity is 北京, entity type is 城市",
    ("NER", "grouped", "zh"): "河流：黄河,长江\n城市：北京",
    ("NER", "grouped", "en"): "河流: 黄河,长江\n城市: 北京",
    ("NER", "dict", "zh"): "{'entity':'黄河','type':'河流'}\n{'entity':'长江','type':'河流'}\n"
                           "{'entity':'北京','type':'城市'}",
    ("NER", "iepile", "zh"): '{"河流": ["黄河", "长江"], "城市": ["北京"]}',
    ("RE", "tuple", "zh"): "(北京,位于,中国)\n(上海,位于,中国)\n(姚明,出生地,上海)",
    ("RE", "labeled", "zh"): "头实体是北京,关系是位于,尾实体是中国\n头实体是上海,关系是位于,尾实体是中国\n"
                             "头实体是姚明,关系是出生地,尾实体是上海",
    ("RE", "labeled", "en"): "head is 北京, relation is 位于, tail is 中国\nhead is 上海, relation is 位于, "
                             "tail is 中国\nhead is 姚明, relation is 出生地, tail is 上海",
    ("RE", "grouped", "zh"): "位于：北京,中国;上海,中国\n出生地：姚明,上海",
    ("RE", "dict", "zh"): "{'head':'北京','relation':'位于','tail':'中国'}\n"
                          "{'head':'上海','relation':'位于','tail':'中国'}\n"
                          "{'head':'姚明','relation':'出生地','tail':'上海'}",
    ("RE", "iepile", "zh"): '{"位于": [{"subject": "北京", "object": "中国"}, {"subject": "上海", "object": "中国"}], '
                            '"出生地": [{"subject": "姚明", "object": "上海"}]}',
    ("EE", "tuple", "zh"): "(生于,出生,1990年#时间;北京#地点)\n(去世,死亡,NAN)",
    ("EE", "labeled", "zh"): "事件触发词是生于,事件类型是出生,论元1是1990年,论元角色1是时间,论元2是北京,论元角色2是地点\n"
                             "事件触发词是去世,事件类型是死亡",
    ("EE", "labeled", "en"): "event trigger is 生于, event type is 出生, argument1 is 1990年, role1 is 时间, "
                             "argument2 is 北京, role2 is 地点\nevent trigger is 去世, event type is 死亡",
    ("EE", "grouped", "zh"): "出生：生于;时间：1990年;地点：北京\n死亡：去世",
    ("EE", "dict", "zh"): "{'trigger':'生于','type':'出生','arguments':[{'argument':'1990年','role':'时间'},"
                          "{'argument':'北京','role':'地点'}]}\n{'trigger':'去世','type':'死亡','arguments':[]}",
    ("EE", "iepile", "zh"): '{"出生": [{"trigger": "生于", "arguments": {"时间": "1990年", "地点": "北京"}}], '
                            '"死亡": [{"trigger": "去世", "arguments": {}}]}',
}


@pytest.mark.parametrize("key", sorted(GOLDEN), ids="-".join)
def test_golden_strings(key):
    task, fmt, lang = key
    text = format_output(task, fmt, ITEMS[task], lang=lang)
    assert text == GOLDEN[key]
    assert parse_output(task, fmt, text, lang=lang, strict=True).items == canonical_items(task, fmt, ITEMS[task])


@pytest.mark.parametrize("task", ["NER", "RE", "EE"])
@pytest.mark.parametrize("fmt", ["tuple", "labeled", "grouped", "dict"])
def test_empty_answer_is_nan(task, fmt):
    assert format_output(task, fmt, []) == "NAN"
    for empty in ("NAN", "nan", "无", "None", " NAN \n", ""):
        result = parse_output(task, fmt, empty, strict=True)
        assert result.items == [] and result.ok


def test_iepile_lists_every_schema_type_in_schema_order():
    assert format_output("NER", "iepile", [Entity("张三", "人物")], schema=["地点", "人物", "组织"]) == \
        '{"地点": [], "人物": ["张三"], "组织": []}'
    schema = [{"event_type": "出生", "arguments": ["时间"]}, {"event_type": "结婚", "arguments": []}]
    assert format_output("EE", "iepile", [], schema=schema) == '{"出生": [], "结婚": []}'
    assert format_output("NER", "iepile", []) == "{}"
    repeated = Event("会见", "会见", (Argument("参与者", "甲"), Argument("时间", "周一"), Argument("参与者", "乙")))
    text = format_output("EE", "iepile", [repeated])
    assert json.loads(text) == {"会见": [{"trigger": "会见", "arguments": {"参与者": ["甲", "乙"], "时间": "周一"}}]}
    assert parse_output("EE", "iepile", text).items == [
        Event("会见", "会见", (Argument("参与者", "甲"), Argument("参与者", "乙"), Argument("时间", "周一")))]


# ------------------------------------------------------------------ round trips --
ALPHABET = st.one_of(
    st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF),
    st.sampled_from(string.printable + "（）【】［］｛｝，；：＃、。“”‘’　\u2028\x85·é"),
)
VALUE = st.text(ALPHABET, min_size=0, max_size=10)
SHORT = st.lists(VALUE.filter(bool) | st.sampled_from(["人物", "地点", "NAN", "Washington, D.C."]),
                 min_size=1, max_size=3, unique=True)


@st.composite
def items_of(draw, task):
    types = draw(SHORT)
    kind = st.sampled_from(types)
    if task == "NER":
        return draw(st.lists(st.builds(Entity, VALUE, kind), max_size=5))
    if task == "RE":
        return draw(st.lists(st.builds(Relation, VALUE, kind, VALUE), max_size=5))
    args = st.lists(st.builds(Argument, VALUE, VALUE), max_size=3).map(tuple)
    return draw(st.lists(st.builds(Event, VALUE, kind, args), max_size=4))


def _iepile_blank(value: str) -> bool:
    return value.strip().lower() in {"", "nan", "none", "null", "无"}


def _check_round_trip(task, fmt, lang, items):
    try:
        text = format_output(task, fmt, items, lang=lang)
    except ValueError as err:  # only iepile refuses values, and only empty-looking ones
        assert fmt == "iepile" and "cannot represent" in str(err)
        return
    result = parse_output(task, fmt, text, lang=lang, strict=True)
    assert result.items == canonical_items(task, fmt, items), text
    assert result.ok and not result.ignored


@pytest.mark.parametrize("lang", ["zh", "en"])
@pytest.mark.parametrize("fmt", FORMATS["NER"])
@pytest.mark.parametrize("task", ["NER", "RE", "EE"])
def test_round_trip(task, fmt, lang):
    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(items_of(task))
    def check(items):
        _check_round_trip(task, fmt, lang, items)

    check()


def test_canonical_items_is_dedup_then_regroup():
    items = [Entity("a", "X"), Entity("b", "Y"), Entity("a", "X"), Entity("c", "X")]
    assert canonical_items("NER", "tuple", items) == [Entity("a", "X"), Entity("b", "Y"), Entity("c", "X")]
    assert canonical_items("NER", "grouped", items) == [Entity("a", "X"), Entity("c", "X"), Entity("b", "Y")]
    assert canonical_items("NER", "iepile", items, schema=["Y", "X"]) == \
        [Entity("b", "Y"), Entity("a", "X"), Entity("c", "X")]


@pytest.mark.parametrize("task,item,value", [
    ("NER", Entity("NAN", "人物"), "NAN"), ("NER", Entity(" ", "人物"), " "),
    ("RE", Relation("北京", "位于", "None"), "None"), ("EE", Event("nan", "出生"), "nan"),
    ("EE", Event("生于", "出生", (Argument("时间", "无"),)), "无"), ("EE", Event("生于", "出生", (Argument("", "x"),)), ""),
])
def test_iepile_refuses_values_that_read_as_empty(task, item, value):
    with pytest.raises(ValueError, match="cannot represent") as err:
        format_output(task, "iepile", [item])
    assert repr(value) in str(err.value)


def test_quoting_examples():
    assert format_output("NER", "tuple", [Entity("Washington, D.C.", "城市")]) == '("Washington, D.C.",城市)'
    assert format_output("NER", "tuple", [Entity("NAN", "x")]) == '("NAN",x)'
    assert format_output("EE", "tuple", [Event("t", "T", (Argument("r#1", 'a;"b"'),))]) == r'(t,T,"a;\"b\""#"r#1")'
    assert format_output("NER", "grouped", [Entity("x", "答案")]) == '"答案"：x'
    assert format_output("NER", "dict", [Entity("O'Brien", "人物")]) == r"{'entity':'O\'Brien','type':'人物'}"


def test_unknown_task_format_or_item_is_a_value_error():
    with pytest.raises(ValueError, match="allowed: NER, RE, EE"):
        format_output("SPO", "tuple", [])
    with pytest.raises(ValueError, match="allowed: tuple, labeled, grouped, dict, iepile"):
        parse_output("NER", "xml", "")
    with pytest.raises(ValueError, match="allowed: zh, en"):
        format_output("NER", "tuple", [], lang="fr")
    with pytest.raises(ValueError, match="Entity"):
        format_output("NER", "tuple", [Relation("a", "b", "c")])
    with pytest.raises(ValueError, match="not in the schema"):
        format_output("NER", "iepile", [Entity("a", "X")], schema=["Y"])


# ------------------------------------------------------------------ tolerant parsing --
TOLERANT = [
    # trailing explanation, leading answer prefix
    ("RE", "tuple", "答案：(北京,位于,中国)\n以上是抽取结果。", [Relation("北京", "位于", "中国")], 0, 1),
    ("RE", "tuple", "Answer: (北京,位于,中国)", [Relation("北京", "位于", "中国")], 0, 0),
    # full-width punctuation, mixed brackets, extra spaces
    ("RE", "tuple", "（北京，位于，中国)\n( 上海 , 位于 ,中国 ）", [Relation("北京", "位于", "中国"), Relation("上海", "位于", "中国")], 0, 0),
    ("EE", "tuple", "（生于，出生，1990年＃时间；北京#地点）", EE[:1], 0, 0),
    # several items on one line, duplicates, NAN lines
    ("NER", "tuple", "(黄河,河流),(长江,河流);(黄河,河流)\nNAN", NER[:2], 0, 0),
    ("NER", "tuple", "(黄河,河流)\n(NAN,NAN)", NER[:1], 0, 0),
    # apostrophes of a bare value from a model are plain characters
    ("NER", "tuple", "(O'Brien,人物)\n(Bob's car,物品)", [Entity("O'Brien", "人物"), Entity("Bob's car", "物品")], 0, 0),
    # malformed items are counted, good ones kept
    ("RE", "tuple", "(北京,位于,中国)\n(上海,位于)\n(天津,位于,中国", [Relation("北京", "位于", "中国")], 2, 0),
    ("EE", "tuple", "(生于,出生,1990年#时间;北京)", [Event("生于", "出生", (Argument("时间", "1990年"),))], 1, 0),
    ("EE", "tuple", "(生于,出生)\n(NAN,出生,北京#地点)", [Event("生于", "出生"), Event("", "出生", (Argument("地点", "北京"),))], 0, 0),
    # labeled: full-width, reordered fields, both languages, ';'-joined
    ("RE", "labeled", "头实体是北京，关系是位于，尾实体是中国；尾实体是中国,关系是位于,头实体是上海",
     [Relation("北京", "位于", "中国"), Relation("上海", "位于", "中国")], 0, 0),
    ("RE", "labeled", "Head is 北京, Relation is 位于, Tail is 中国\nSubject: 上海, relation: 位于, object: 中国\n这是解释",
     [Relation("北京", "位于", "中国"), Relation("上海", "位于", "中国")], 0, 1),
    ("RE", "labeled", "头实体是北京,关系是位于", [], 1, 0),
    ("EE", "labeled", "事件触发词是生于，事件类型是出生，论元1是1990年，论元角色1是时间",
     [Event("生于", "出生", (Argument("时间", "1990年"),))], 0, 0),
    # grouped: full-width colon, 、 between entities, NAN members
    ("NER", "grouped", "河流：黄河、长江\n城市:北京\n人物：NAN", NER, 0, 0),
    ("RE", "grouped", "位于：北京，中国；上海,中国,多余", [Relation("北京", "位于", "中国")], 1, 0),
    ("EE", "grouped", "出生：生于；时间：1990年；地点：北京\n说明", EE[:1], 0, 1),
    # dict: double quotes, spaces, a list around them, full-width braces, trailing text
    ("NER", "dict", '[{"entity": "黄河", "type": "河流"}, {\'entity\':\'长江\',\'type\':\'河流\'}]\n解释：……',
     NER[:2], 0, 1),
    ("RE", "dict", "｛'head'：'北京'，'relation'：'位于'，'tail'：'中国'｝", [Relation("北京", "位于", "中国")], 0, 0),
    ("NER", "dict", "{'entity':'黄河'}\n{'entity':'长江','type':'河流'}", [Entity("长江", "河流")], 1, 0),
    ("EE", "dict", "{'event_trigger':'生于','event_type':'出生','arguments':({'argument':'1990年','role':'时间'},)}",
     [Event("生于", "出生", (Argument("时间", "1990年"),))], 0, 0),
    # iepile: single quotes, trailing commas, prefix and trailing text, NAN values
    ("NER", "iepile", "答案：{'人物': ['张三', '李四',], '地点': [],}\n以上。", [Entity("张三", "人物"), Entity("李四", "人物")], 0, 1),
    ("RE", "iepile", '{"位于": [{"subject": "北京", "object": "中国"}, {"subject": "上海"}]}',
     [Relation("北京", "位于", "中国")], 1, 0),
    ("EE", "iepile", '{"出生": [{"trigger": "生于", "arguments": {"时间": "1990年", "地点": "NAN"}}]}',
     [Event("生于", "出生", (Argument("时间", "1990年"),))], 0, 0),
    ("NER", "iepile", '{"人物": ["张三"', [], 1, 0),
    ("NER", "iepile", "NAN", [], 0, 0),
]


@pytest.mark.parametrize("task,fmt,text,expected,n_unparsed,n_ignored", TOLERANT)
def test_tolerant_parsing(task, fmt, text, expected, n_unparsed, n_ignored):
    result = parse_output(task, fmt, text)
    assert result.items == expected
    assert len(result.unparsed) == n_unparsed, result.unparsed
    assert len(result.ignored) == n_ignored, result.ignored
    assert result.ok == (n_unparsed == 0)
    if n_unparsed or n_ignored:
        first = (result.unparsed or result.ignored)[0]
        with pytest.raises(ValueError, match="cannot parse") as err:
            parse_output(task, fmt, text, strict=True)
        assert repr(first[:200]) in str(err.value)
    else:
        assert parse_output(task, fmt, text, strict=True).items == expected


def test_schema_filters_grouped_lines_and_iepile_keys():
    text = "人物：张三\n说明：这是解释"
    assert parse_output("NER", "grouped", text).items == [Entity("张三", "人物"), Entity("这是解释", "说明")]
    result = parse_output("NER", "grouped", text, schema=["人物", "地点"])
    assert result.items == [Entity("张三", "人物")] and result.ignored == ["说明：这是解释"]
    result = parse_output("NER", "iepile", '{"人物": ["张三"], "组织": ["浙大"]}', schema=["人物"])
    assert result.items == [Entity("张三", "人物")] and len(result.ignored) == 1


def test_parse_result_ok():
    assert ParseResult().ok
    assert not ParseResult(unparsed=["(x"]).ok


def test_literal_parser_is_bounded_and_never_evaluates():
    deep = "{'人物': " + "[" * 200 + "]" * 200 + "}"
    assert not parse_output("NER", "iepile", deep).ok
    evil = "{'人物': [__import__('os').system('true')]}"
    assert not parse_output("NER", "iepile", evil).ok


# ------------------------------------------------------------------ IEPile instructions --
def test_iepile_instruction_is_json_of_instruction_schema_input():
    text = iepile_instruction("RE", "zh", ["位于", "出生地"], "北京位于中国。", "抽取关系")
    assert json.loads(text) == {"instruction": "抽取关系", "schema": ["位于", "出生地"], "input": "北京位于中国。"}
    assert list(json.loads(text)) == ["instruction", "schema", "input"]
    default = json.loads(iepile_instruction("NER", "en", ["person"], "x"))
    assert default["instruction"] and default["schema"] == ["person"]
    with pytest.raises(ValueError):
        iepile_instruction("NER", "fr", [], "x")


@pytest.mark.parametrize("n,k,sizes", [
    (0, 4, []), (1, 4, [1]), (3, 4, [3]), (4, 4, [4]), (5, 4, [5]), (6, 4, [4, 2]), (7, 4, [4, 3]),
    (9, 4, [4, 5]), (12, 6, [6, 6]), (14, 6, [6, 8]), (15, 6, [6, 6, 3]), (7, 5, [7]), (8, 5, [5, 3]),
    (3, 1, [1, 1, 1]),
])
def test_split_schema_sizes_and_remainder_rule(n, k, sizes):
    schema = [f"t{i}" for i in range(n)]
    chunks = split_schema(schema, k)
    assert [len(c) for c in chunks] == sizes
    assert [t for c in chunks for t in c] == schema  # order kept, nothing lost
    assert split_schema(schema, k) == chunks  # deterministic


def test_split_schema_defaults_by_task_and_validates():
    schema = [f"t{i}" for i in range(13)]
    assert [len(c) for c in split_schema(schema, task="NER")] == [6, 7]
    assert [len(c) for c in split_schema(schema, task="RE")] == [4, 4, 5]
    assert [len(c) for c in split_schema(schema, task="EE")] == [4, 4, 5]
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError):
            split_schema(schema, bad)
    with pytest.raises(ValueError):
        split_schema(schema)


@pytest.mark.parametrize("fmt", FORMATS["RE"])
def test_hostile_long_lines_parse_in_linear_time(fmt):
    import time
    for line in ("(" + "'" * 100_000 + ")", "(" + "a'b," * 30_000 + ")", "{" + "'x" * 50_000, "头实体是" + '"' * 100_000):
        start = time.perf_counter()
        parse_output("RE", fmt, line)
        assert time.perf_counter() - start < 2.0


def test_read_iepile_instruction_reads_what_iepile_instruction_writes():
    inst = iepile_instruction("RE", "en", ["capital of", "located in"], 'Paris is "the" capital.')
    got = read_iepile_instruction({"instruction": inst})
    assert got["schema"] == ["capital of", "located in"] and got["input"] == 'Paris is "the" capital.'
    for bad in ({"instruction": "List the cities."}, {"instruction": '{"schema": "city", "input": "x"}'},
                {"instruction": '{"schema": ["city"]}'}, {"instruction": None}, {}, {"instruction": "[1, 2]"}):
        assert read_iepile_instruction(bad) is None


def test_schema_key_names_the_answer_key_of_an_entry():
    assert schema_key("城市") == "城市" and schema_key({"event_type": "出生", "type": "x"}) == "出生"
    assert schema_key({"type": "人物"}) == "人物"
    assert schema_key({"role": "时间"}) is None and schema_key(3) is None
