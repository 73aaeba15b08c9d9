"""Instruction synthesis (knowlm_utils.kg2instruction.instructions): template files, the two
styles, round trips through the output parsers, hard negatives, determinism."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from knowlm_utils.config import ConfigError, from_dict
from knowlm_utils.ie.annotation import Annotation, Argument, Entity, Event, Relation
from knowlm_utils.ie.converters import read_annotations
from knowlm_utils.ie.formats import (TEXT_FORMATS, canonical_items, format_output, iepile_instruction, parse_output,
                                     split_schema)
from knowlm_utils.kg2instruction.instructions import (FORMATS_FILE, IEPILE_FILE, RECORD_KEYS, TEMPLATES_FILE,
                                                      InstructionOptions,
                                                      InstructionSynthesizer, confusable_labels, format_example,
                                                      label_sets_from_schema, load_templates)

ROOT = Path(__file__).resolve().parents[1]

IE_SCHEMA = {
    "entity_types": {"city": {"zh": "城市", "en": "city"}, "country": {"zh": "国家", "en": "country"},
                     "person": {"zh": "人物", "en": "person"}, "company": {"zh": "公司", "en": "company"},
                     "university": {"zh": "大学", "en": "university"}, "river": {"zh": "河流", "en": "river"}},
    "relations": {
        "capital_of": {"kg_relation": "capital_of", "reverse": False, "zh": "首都", "en": "capital of",
                       "head": ["city"], "tail": ["country"]},
        "located_in": {"kg_relation": "located_in", "reverse": False, "zh": "位于", "en": "located in",
                       "head": ["city", "university"], "tail": ["country", "city"]},
        "headquartered_in": {"kg_relation": "headquartered_in", "reverse": False, "zh": "总部位于",
                             "en": "headquartered in", "head": ["company"], "tail": ["city"]},
        "born_in": {"kg_relation": "born_in", "reverse": False, "zh": "出生地", "en": "born in",
                    "head": ["person"], "tail": ["city"]},
        "nationality": {"kg_relation": "nationality", "reverse": False, "zh": "国籍", "en": "nationality",
                        "head": ["person"], "tail": ["country"]},
        "founder": {"kg_relation": "founded_by", "reverse": False, "zh": "创始人", "en": "founded by",
                    "head": ["company", "university"], "tail": ["person"]},
        "flows_through": {"kg_relation": "flows_through", "reverse": False, "zh": "流经", "en": "flows through",
                          "head": ["river"], "tail": ["country", "city"]},
    },
    "events": {
        "birth": {"zh": "出生", "en": "Birth", "roles": {"person": {"zh": "人物", "en": "person"},
                                                       "place": {"zh": "地点", "en": "place"},
                                                       "time": {"zh": "时间", "en": "time"}}},
        "founding": {"zh": "成立", "en": "Founding", "roles": {"organization": {"zh": "组织", "en": "organization"},
                                                            "time": {"zh": "时间", "en": "time"}}},
        "award": {"zh": "获奖", "en": "Award", "roles": {"winner": {"zh": "获奖者", "en": "winner"}}},
    },
}

ANNOTATIONS = [
    Annotation("zh1", "北京是中国的首都，马云出生于杭州。", "zh",
               [Entity("北京", "城市"), Entity("中国", "国家"), Entity("马云", "人物"), Entity("杭州", "城市")],
               [Relation("北京", "首都", "中国"), Relation("马云", "出生地", "杭州"), Relation("北京", "位于", "中国")],
               [Event("出生", "出生", (Argument("人物", "马云"), Argument("地点", "杭州")))], "test:zh1"),
    Annotation("en1", "Jack Ma, born in Hangzhou in 1964, founded Alibaba in Hangzhou.", "en",
               [Entity("Jack Ma", "person"), Entity("Hangzhou", "city"), Entity("Alibaba", "company")],
               [Relation("Jack Ma", "born in", "Hangzhou"), Relation("Alibaba", "headquartered in", "Hangzhou"),
                Relation("Alibaba", "founded by", "Jack Ma")],
               [Event("born", "Birth", (Argument("person", "Jack Ma"), Argument("place", "Hangzhou"),
                                        Argument("time", "1964"))),
                Event("founded", "Founding", (Argument("organization", "Alibaba"),))], "test:en1"),
    Annotation("zh2", "长江流经武汉，武汉位于中国。", "zh",
               [Entity("长江", "河流"), Entity("武汉", "城市"), Entity("中国", "国家")],
               [Relation("长江", "流经", "武汉"), Relation("武汉", "位于", "中国")], [], "test:zh2"),
    Annotation("empty", "今天天气不错。", "zh", source="test:empty"),
]


def synth(**options) -> InstructionSynthesizer:
    return InstructionSynthesizer.from_schema(IE_SCHEMA, InstructionOptions(**options))


def items_of(ann: Annotation, task: str) -> list:
    return {"NER": ann.entities, "RE": ann.relations, "EE": ann.events}[task]


def label(task: str, item) -> str:
    return item.relation if task == "RE" else item.type


def all_annotations() -> list[Annotation]:
    duee = list(read_annotations(ROOT / "data_samples" / "ie_formats" / "duee_sample.jsonl", "duee"))
    return ANNOTATIONS + duee[:3]


# ------------------------------------------------------------------ template files --
def test_template_files_load_with_both_kinds():
    t = load_templates()
    assert set(t.instructions) == {(task, lang) for task in ("NER", "RE", "EE") for lang in ("zh", "en")}
    total = 0
    for key, counts in t.counts().items():
        n = counts["schema"] + counts["open"]
        total += n
        assert 18 <= n <= 24, key
        assert 0.15 <= counts["open"] / n <= 0.35, key
        for template in t.instructions[key]:
            assert "{format}" in template.text
            assert template.open == ("{schema}" not in template.text)
    assert total >= 110
    assert len({tpl.text for ts in t.instructions.values() for tpl in ts}) == total


def test_format_descriptions_quote_what_format_output_writes():
    t = load_templates()
    for (task, lang), descriptions in t.formats.items():
        assert set(descriptions) == set(TEXT_FORMATS)
        for fmt, text in descriptions.items():
            assert format_example(task, lang, fmt) in text, (task, lang, fmt)
            assert "NAN" in text
    # the shapes spelled out, independent of the placeholder table
    assert "(头实体,关系,尾实体)" in t.formats["RE", "zh"]["tuple"]
    assert "(触发词,事件类型,论元1#角色1;论元2#角色2)" in t.formats["EE", "zh"]["tuple"]
    assert "(trigger,event type,argument1#role1;argument2#role2)" in t.formats["EE", "en"]["tuple"]
    ee = format_output("EE", "tuple", [Event("T", "E", (Argument("R1", "A1"), Argument("R2", "A2")))], "zh")
    assert ee == "(T,E,A1#R1;A2#R2)"   # argument#role, as the descriptions say
    assert "头实体是…,关系是…,尾实体是…" in t.formats["RE", "zh"]["labeled"]
    assert "{'head':'…','relation':'…','tail':'…'}" in t.formats["RE", "en"]["dict"]


def _write_bad(tmp_path: Path, mutate) -> Path:
    import yaml

    data = yaml.safe_load(TEMPLATES_FILE.read_text(encoding="utf-8"))
    mutate(data)
    path = tmp_path / "templates.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


@pytest.mark.parametrize("mutate, key", [
    (lambda d: d["RE"].pop("en"), "RE.en"),
    (lambda d: d["NER"]["zh"].append("抽取{schema}中的实体，{input}"), "NER.zh[20]"),
    (lambda d: d["EE"].__setitem__("zh", [t for t in d["EE"]["zh"] if "{schema}" in t]), "EE.zh"),
    (lambda d: d["EE"].__setitem__("en", "not a list"), "EE.en"),
])
def test_malformed_template_file_names_file_and_key(tmp_path, mutate, key):
    path = _write_bad(tmp_path, mutate)
    with pytest.raises(ValueError) as exc:
        load_templates(path)
    message = str(exc.value)
    assert str(path) in message and key in message and "\n" not in message


def test_malformed_format_description_names_file_and_key(tmp_path):
    import yaml

    data = yaml.safe_load(FORMATS_FILE.read_text(encoding="utf-8"))
    data["RE"]["zh"]["tuple"] = "请按照(关系,头实体,尾实体)的格式回答；没有则回答NAN。"
    path = tmp_path / "formats.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ValueError, match=r"formats\.yaml: key RE\.zh\.tuple: must quote"):
        load_templates(formats_path=path)
    path.write_text("NER: [unclosed", encoding="utf-8")
    with pytest.raises(ValueError, match="invalid YAML"):
        load_templates(formats_path=path)


# ------------------------------------------------------------------ options --
def test_options_validate_and_embed_in_config():
    opts = from_dict(InstructionOptions, {"styles": ["iepile"], "text_formats": ["tuple", "dict"], "seed": 3})
    assert opts.styles == ["iepile"] and opts.split_num("RE") == 4
    with pytest.raises(ConfigError, match="styles"):
        from_dict(InstructionOptions, {"styles": ["json"]})
    with pytest.raises(ConfigError, match="empty_keep"):
        from_dict(InstructionOptions, {"empty_keep": 1.5})
    with pytest.raises(ValueError, match="text_formats"):
        InstructionOptions(text_formats=[])


# ------------------------------------------------------------------ label sets, hard negatives --
def test_label_sets_and_confusable_labels():
    sets = label_sets_from_schema(IE_SCHEMA)
    assert sets["RE", "zh"] == ["首都", "位于", "总部位于", "出生地", "国籍", "创始人", "流经"]
    assert sets["EE", "en"] == ["Birth", "Founding", "Award"]
    conf = confusable_labels(IE_SCHEMA)
    re_zh = conf["RE", "zh"]
    # same entity pair possible (city -> country) comes first, then a shared tail, then a shared head
    assert re_zh["首都"][0] == "位于"
    assert set(re_zh["出生地"]) >= {"位于", "总部位于", "流经", "国籍"}
    assert re_zh["出生地"].index("总部位于") < re_zh["出生地"].index("国籍")
    assert "创始人" not in re_zh["出生地"]
    assert conf["RE", "en"]["capital of"][0] == "located in"
    # NER: types sharing a relation slot
    assert "国家" in conf["NER", "zh"]["城市"] and "人物" not in conf["NER", "zh"]["城市"]
    assert "university" in conf["NER", "en"]["company"]
    # EE: event types sharing a role name
    assert conf["EE", "zh"]["出生"] == ["成立"] and conf["EE", "zh"]["获奖"] == []


# ------------------------------------------------------------------ records --
def test_records_have_exactly_the_keys_and_parse_back():
    s = synth(formats_per_sample=4, empty_keep=1.0)
    seen_formats = set()
    for ann in all_annotations():
        for task in ("NER", "RE", "EE"):
            recs = s.records(ann, task)
            assert recs, (ann.id, task)
            assert len({r["id"] for r in recs}) == len(recs)
            for rec in recs:
                assert tuple(rec) == RECORD_KEYS
                assert rec["task"] == task and rec["lang"] == ann.lang and rec["source"] == ann.source
                assert all(isinstance(x, str) for x in rec["schema"])
                seen_formats.add((rec["style"], rec["format"]))
                schema = rec["schema"] or None
                expected_items = [it for it in items_of(ann, task) if schema is None or label(task, it) in schema]
                parsed = parse_output(task, rec["format"], rec["output"], ann.lang, schema, strict=True)
                assert parsed.items == canonical_items(task, rec["format"], expected_items, schema), rec["id"]
                if rec["style"] == "text":
                    assert rec["input"] == ann.text and rec["format"] in TEXT_FORMATS
                    assert ann.text not in rec["instruction"]
                    assert s.templates.formats[task, ann.lang][rec["format"]] in rec["instruction"]
                    for lab in rec["schema"]:
                        assert lab in rec["instruction"]
                else:
                    assert rec["input"] == "" and rec["format"] == "iepile"
                    payload = json.loads(rec["instruction"])
                    assert payload["input"] == ann.text and payload["schema"] == rec["schema"]
                    assert list(json.loads(rec["output"])) == rec["schema"]
    assert seen_formats == {("text", f) for f in TEXT_FORMATS} | {("iepile", "iepile")}


def test_text_schema_holds_present_labels_and_negatives():
    s = synth(styles=["text"], open_fraction=0.0, schema_negatives=2)
    ann = ANNOTATIONS[0]
    for task in ("NER", "RE"):
        (rec,) = s.records(ann, task)
        present = {label(task, it) for it in items_of(ann, task)}
        assert present <= set(rec["schema"])
        assert len(set(rec["schema"]) - present) == 2
        assert len(rec["schema"]) == len(set(rec["schema"]))
    # RE: 首都/出生地/位于 present; the strongest confusable absent ones come first
    (rec,) = s.records(ann, "RE")
    hard = set(rec["schema"]) - {"首都", "出生地", "位于"}
    assert hard <= {"总部位于", "流经", "国籍"}


def test_open_templates_list_everything():
    s = synth(styles=["text"], open_fraction=1.0, formats_per_sample=4)
    ann = ANNOTATIONS[1]
    for rec in s.records(ann, "RE"):
        assert rec["schema"] == []
        assert "{schema}" not in rec["instruction"]
        parsed = parse_output("RE", rec["format"], rec["output"], "en")
        assert set(parsed.items) == set(ann.relations)


def test_iepile_chunks_follow_split_schema_and_hold_hard_negatives():
    s = synth(styles=["iepile"], hard_negatives=2, random_negatives=2, split_num_re=2, split_num_ner=2)
    for ann in ANNOTATIONS[:3]:
        for task in ("NER", "RE"):
            recs = s.records(ann, task)
            chunks = [r["schema"] for r in recs]
            full = [x for chunk in chunks for x in chunk]
            assert chunks == split_schema(full, 2)
            labels = label_sets_from_schema(IE_SCHEMA)[task, ann.lang]
            assert full == [x for x in labels if x in full]           # label-set order
            present = {label(task, it) for it in items_of(ann, task)}
            assert present <= set(full)
            hard = set()
            conf = confusable_labels(IE_SCHEMA)[task, ann.lang]
            for p in present:
                hard |= {c for c in conf.get(p, []) if c not in present}
            assert len(set(full) & hard) >= min(2, len(hard)), (ann.id, task, full)
            assert len(set(full) - present) <= 4
            assert [r["id"] for r in recs] == [f"{ann.id}:{task}:iepile:iepile:{k}" for k in range(len(recs))]


def test_iepile_full_schema_split_in_default_chunks():
    s = synth(styles=["iepile"], random_negatives=100)
    (rec1, rec2) = s.records(ANNOTATIONS[0], "RE")        # 7 relations, split_num 4 → 4 + 3
    assert rec1["schema"] == ["首都", "位于", "总部位于", "出生地"] and rec2["schema"] == ["国籍", "创始人", "流经"]
    assert json.loads(rec2["output"]) == {"国籍": [], "创始人": [], "流经": []}


def test_empty_annotations_follow_empty_keep():
    empty = [Annotation(f"e{i}", "今天天气不错。", "zh") for i in range(200)]
    assert all(synth(empty_keep=0.0).records(a, "RE") == [] for a in empty)
    kept = [a for a in empty if synth(empty_keep=0.3).records(a, "NER")]
    assert 30 <= len(kept) <= 90
    for rec in synth(empty_keep=1.0, formats_per_sample=4).records(empty[0], "EE"):
        if rec["style"] == "text":
            assert rec["output"] == "NAN"
        else:
            assert all(v == [] for v in json.loads(rec["output"]).values())


def test_records_are_deterministic_and_independent_of_order():
    anns = all_annotations()
    a = synth(seed=7, empty_keep=0.5).synthesize(anns)
    b = synth(seed=7, empty_keep=0.5).synthesize(list(reversed(anns)))
    assert sorted(a, key=lambda r: r["id"]) == sorted(b, key=lambda r: r["id"])
    assert a == synth(seed=7, empty_keep=0.5).synthesize(anns)
    c = synth(seed=8, empty_keep=0.5).synthesize(anns)
    assert a != c


def test_source_split_adds_split_key():
    recs = synth().records(ANNOTATIONS[0], "NER", source_split="valid")
    assert recs and all(tuple(r) == RECORD_KEYS + ("split",) and r["split"] == "valid" for r in recs)


def test_unknown_task_or_lang_is_refused():
    with pytest.raises(ValueError, match="unknown task"):
        synth().records(ANNOTATIONS[0], "SRL")
    with pytest.raises(ValueError, match="unknown lang"):
        synth().records(Annotation("x", "texte", "fr", [Entity("a", "b")]), "NER")


# ------------------------------------------------------------------ IEPile phrasings, held-out phrasings --
def test_iepile_phrasings_load_and_the_first_is_the_default():
    t = load_templates()
    assert set(t.iepile) == {(task, lang) for task in ("NER", "RE", "EE") for lang in ("zh", "en")}
    for (task, lang), phrasings in t.iepile.items():
        assert 3 <= len(phrasings) <= 5 and len(set(phrasings)) == len(phrasings)
        assert phrasings[0] == json.loads(iepile_instruction(task, lang, [], ""))["instruction"]
        assert all("schema" in p and "input" in p and "JSON" in p for p in phrasings)


@pytest.mark.parametrize("mutate, key", [
    (lambda d: d["NER"].pop("zh"), "NER.zh"),
    (lambda d: d["RE"]["en"].append("Extract the relations."), "RE.en[4]"),
    (lambda d: d["EE"]["zh"].append(d["EE"]["zh"][0]), "EE.zh[4]"),
    (lambda d: d["NER"].__setitem__("en", []), "NER.en"),
])
def test_malformed_iepile_file_names_file_and_key(tmp_path, mutate, key):
    import yaml

    data = yaml.safe_load(IEPILE_FILE.read_text(encoding="utf-8"))
    mutate(data)
    path = tmp_path / "iepile.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ValueError) as exc:
        load_templates(iepile_path=path)
    message = str(exc.value)
    assert str(path) in message and key in message and "\n" not in message


def _phrasing(rec: dict, s: InstructionSynthesizer):
    """The template (text style) or phrasing (iepile) a record was written with."""
    if rec["style"] == "iepile":
        return json.loads(rec["instruction"])["instruction"]
    schema_text = "、".join(rec["schema"]) if rec["lang"] == "zh" else ", ".join(rec["schema"])
    fmt = s.templates.formats[rec["task"], rec["lang"]][rec["format"]]
    (t,) = [t for t in s.templates.instructions[rec["task"], rec["lang"]]
            if t.fill(schema_text, fmt) == rec["instruction"]]
    return t.text


def test_held_out_phrasings_appear_only_in_paraphrase_records():
    anns = all_annotations() + [Annotation(f"x{i}", ann.text, ann.lang, ann.entities, ann.relations, ann.events,
                                           ann.source) for i in range(12) for ann in ANNOTATIONS[:3]]
    s = synth(formats_per_sample=2, empty_keep=1.0)
    held = s.held_out()
    assert set(held) == {"text", "iepile"}
    for key in held["iepile"]:
        assert len(held["iepile"][key]) == 1 and len(held["text"][key]) == 2   # text: one schema, one open
        assert held["iepile"][key][0] != s.templates.iepile[tuple(key.split("."))][0]  # the default stays
    held_all = {p for table in held.values() for ps in table.values() for p in ps}
    ordinary, para = s.synthesize(anns), s.synthesize(anns, paraphrase=True)
    used = {_phrasing(r, s) for r in ordinary}
    used_para = {_phrasing(r, s) for r in para}
    assert not used & held_all and used_para <= held_all
    assert len({p for p in used if p in {x for v in s.templates.iepile.values() for x in v}}) > 6  # several phrasings
    assert {r["id"] for r in para} == {r["id"] for r in ordinary}     # same records, other wording
    for rec in para:                                                  # and the answers still parse
        schema = rec["schema"] or None
        assert parse_output(rec["task"], rec["format"], rec["output"], rec["lang"], schema, strict=True)
    # deterministic for a seed, another seed holds out others
    assert synth(formats_per_sample=2, empty_keep=1.0).synthesize(anns, paraphrase=True) == para
    assert synth(seed=5).held_out() != held


def test_held_out_phrasings_zero_or_too_many(tmp_path):
    s = synth(held_out_phrasings=0)
    assert s.held_out() == {}
    recs = s.records(ANNOTATIONS[0], "RE", paraphrase=True)
    assert recs == s.records(ANNOTATIONS[0], "RE")                    # nothing held out: the same records
    most = synth(held_out_phrasings=3)        # every IEPile phrasing but the default
    assert all(len(v) == 3 for v in most.held_out()["iepile"].values())
    import yaml

    data = yaml.safe_load(IEPILE_FILE.read_text(encoding="utf-8"))
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump({t: {lang: v[:2] for lang, v in d.items()} for t, d in data.items()},
                                   allow_unicode=True), encoding="utf-8")
    two = load_templates(iepile_path=path)
    with pytest.raises(ValueError, match=r"held_out_phrasings: 2 needs more than 2 IEPile phrasings of NER\.zh"):
        InstructionSynthesizer.from_schema(IE_SCHEMA, InstructionOptions(held_out_phrasings=2), two)
    assert InstructionSynthesizer.from_schema(IE_SCHEMA, InstructionOptions(held_out_phrasings=2, styles=["text"]),
                                              two).held_out()["text"]
    with pytest.raises(ConfigError, match="held_out_phrasings"):
        from_dict(InstructionOptions, {"held_out_phrasings": 9})
