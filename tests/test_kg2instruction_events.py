"""KG-grounded event sentences (knowlm_utils.kg2instruction.events): exact gold from the sample KG."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
import yaml

from knowlm_utils.ie.formats import canonical_items, parse_output
from knowlm_utils.kg import load_kg
from knowlm_utils.kg2instruction.events import (EVENT_TEMPLATES_FILE, SOURCE, event_annotations, event_schema,
                                                load_event_templates)
from knowlm_utils.kg2instruction.instructions import (InstructionOptions, InstructionSynthesizer,
                                                      confusable_labels, label_sets_from_schema)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def kg():
    return load_kg(ROOT / "data_samples" / "kg")


@pytest.fixture(scope="module")
def annotations(kg):
    return list(event_annotations(kg, seed=0))


def kind(ann) -> str:
    return ann.id.split(":")[1]


def test_template_file_loads():
    t = load_event_templates()
    assert set(t.events) >= {"birth", "founding", "product_launch"}
    for spec in t.events.values():
        for lang in ("zh", "en"):
            assert len(spec.templates[lang]) >= 4
            assert all(len(tpl.triggers) == 1 for tpl in spec.templates[lang])
    assert t.events["birth"].labels == {"zh": "出生", "en": "Birth"}
    assert t.events["founding"].labels == {"zh": "成立", "en": "Founding"}
    assert t.events["product_launch"].labels == {"zh": "产品发布", "en": "Product launch"}
    triggers = {tpl.triggers[0] for spec in t.events.values() for ts in spec.templates.values() for tpl in ts}
    assert {"出生", "生于", "born", "创立", "创办", "founded", "established", "推出", "发布", "launched",
            "released"} <= triggers


def test_every_trigger_and_argument_is_a_span_of_the_text(annotations):
    assert annotations
    for ann in annotations:
        assert ann.source == SOURCE and ann.events and not ann.entities and not ann.relations
        for ev in ann.events:
            assert ev.trigger and ev.trigger in ann.text, ann.id
            assert ev.arguments
            for arg in ev.arguments:
                assert arg.text and arg.text in ann.text, (ann.id, arg)
        assert "[" not in ann.text and "{" not in ann.text


def test_counts_ids_and_languages(annotations, kg):
    ids = [a.id for a in annotations]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"kg_event:[a-z_+]+:[a-z_/+0-9]+:(zh|en):\d+", i) for i in ids)
    counts = Counter((kind(a), a.lang) for a in annotations)
    born = sum(1 for t in kg.triples if t["relation"] == "born_in" and "birth_year" in kg.entities[t["head"]]["attrs"])
    assert counts["birth", "zh"] == counts["birth", "en"] == 2 * born
    launched = sum(1 for t in kg.triples if t["relation"] == "developed_by"
                   and "launched" in kg.entities[t["head"]]["attrs"])
    assert counts["product_launch", "zh"] == 2 * launched
    assert counts["founding", "en"] > 0
    assert counts["birth+founding", "zh"] > 0 and counts["founding+product_launch", "en"] > 0
    assert all(len(a.events) == 2 for a in annotations if "+" in kind(a))


def test_gold_matches_the_kg(annotations):
    by_id = {a.id: a for a in annotations}
    zh = [a for i, a in by_id.items() if i.startswith("kg_event:birth:person/ma_yun:zh:")]
    en = [a for i, a in by_id.items() if i.startswith("kg_event:birth:person/ma_yun:en:")]
    assert len(zh) == len(en) == 2
    for a in zh:
        args = {arg.role: arg.text for arg in a.events[0].arguments}
        assert a.events[0].type == "出生" and args["人物"] == "马云"
        assert args.get("时间", "1964年") == "1964年" and args["地点"] == "杭州"
    for a in en:
        args = {arg.role: arg.text for arg in a.events[0].arguments}
        assert a.events[0].type == "Birth" and args["person"] == "Jack Ma" and args.get("time", "1964") == "1964"
    # several founders of one company are several arguments of one role
    apple = [a for i, a in by_id.items() if i.startswith("kg_event:founding:company/apple_inc:en:")]
    assert apple
    for a in apple:
        founders = [arg.text for arg in a.events[0].arguments if arg.role == "founder"]
        assert founders == ["Steve Jobs", "Steve Wozniak"]
        assert "Steve Jobs and Steve Wozniak" in a.text


def test_linked_events_share_the_entity(annotations):
    for a in annotations:
        if kind(a) == "birth+founding":
            birth, founding = a.events
            person = next(arg.text for arg in birth.arguments if arg.role in ("人物", "person"))
            founders = [arg.text for arg in founding.arguments if arg.role in ("创始人", "founder")]
            assert founders == [person]


def test_deterministic_and_seeded(kg, annotations):
    assert list(event_annotations(kg, seed=0)) == annotations
    other = list(event_annotations(kg, seed=1))
    assert [a.id for a in other] == [a.id for a in annotations]
    assert [a.text for a in other] != [a.text for a in annotations]
    zh_only = list(event_annotations(kg, seed=0, lang="zh", per_fact=1, combined=False))
    assert zh_only and all(a.lang == "zh" and a.id.endswith(":0") and "+" not in kind(a) for a in zh_only)


def test_event_schema_feeds_label_sets_and_instructions(annotations):
    schema = {"entity_types": {}, "relations": {}, "events": event_schema()}
    assert schema["events"]["birth"]["roles"]["time"] == {"zh": "时间", "en": "time"}
    sets = label_sets_from_schema(schema)
    assert sets["EE", "zh"] == ["出生", "成立", "产品发布"]
    assert sets["EE", "en"] == ["Birth", "Founding", "Product launch"]
    assert confusable_labels(schema)["EE", "zh"]["出生"] == ["成立", "产品发布"]    # all share 时间
    synth = InstructionSynthesizer.from_schema(schema, InstructionOptions(formats_per_sample=4))
    for ann in annotations[::7]:
        for rec in synth.records(ann, "EE"):
            schema_labels = rec["schema"] or None
            parsed = parse_output("EE", rec["format"], rec["output"], ann.lang, schema_labels, strict=True)
            expected = [ev for ev in ann.events if schema_labels is None or ev.type in schema_labels]
            assert parsed.items == canonical_items("EE", rec["format"], expected, schema_labels)


def _bad_file(tmp_path, mutate) -> Path:
    data = yaml.safe_load(EVENT_TEMPLATES_FILE.read_text(encoding="utf-8"))
    mutate(data)
    path = tmp_path / "events.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


@pytest.mark.parametrize("mutate, key", [
    (lambda d: d["events"]["birth"]["templates"]["zh"].append("{person}出生于{place}。"),
     "events.birth.templates.zh[6]"),
    (lambda d: d["events"]["founding"]["templates"]["en"].append("{company} was [founded]."),
     "events.founding.templates.en[6]"),
    (lambda d: d["events"]["birth"]["kg"].__setitem__("tail", "city"), "events.birth.kg.tail"),
    (lambda d: d["events"]["product_launch"].pop("en"), "events.product_launch.en"),
    (lambda d: d["combined"]["birth+founding"]["same"].__setitem__("birth.person", "founding.ceo"),
     "combined.birth+founding.same"),
])
def test_malformed_event_templates_name_file_and_key(tmp_path, mutate, key):
    path = _bad_file(tmp_path, mutate)
    with pytest.raises(ValueError) as exc:
        load_event_templates(path)
    assert str(path) in str(exc.value) and f"key {key}" in str(exc.value) and "\n" not in str(exc.value)


def test_relation_missing_from_kg_is_refused(tmp_path, kg):
    path = _bad_file(tmp_path, lambda d: d["events"]["birth"]["kg"].__setitem__("relation", "born_at"))
    with pytest.raises(ValueError, match="born_at"):
        list(event_annotations(kg, templates=path))
