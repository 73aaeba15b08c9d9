"""Stage 06 measurement: triple precision/recall on hand-made gold (sentence and document level),
the funnel and its plot, linking scores (hand-made and on the sample world, > 0.95) and the
conversion to IE annotations."""

from __future__ import annotations

import dataclasses

import pytest

from knowlm_utils.ie.annotation import Entity, Relation
from knowlm_utils.ie.linking import AMBIGUOUS_ALIASES
from knowlm_utils.kg import load_kg
from knowlm_utils.kg2instruction import evaluation as E
from knowlm_utils.kg2instruction import supervision as S
from test_kg2instruction_supervision import IE_SCHEMA, KG_DIR, make_doc, sample_documents, tiny_kg

CAP = ("city/beijing", "capital_of", "country/china")
LOC = ("city/beijing", "located_in", "country/china")
CS_HN = ("city/changsha", "located_in", "province/hunan")
HN_CN = ("province/hunan", "located_in", "country/china")
CS_CN = ("city/changsha", "located_in", "country/china")


@pytest.fixture(scope="module")
def world():
    kg = tiny_kg()
    ie = S.load_ie_schema(IE_SCHEMA)
    # sentence 0 states the capital only; 1 states two facts (the third is implied); 2 is not annotated
    doc = make_doc(kg, "中国的首都是北京。长沙位于湖南省，湖南省位于中国。北京大学位于北京。长沙在中国。",
                   gold={0: {CAP}, 1: {CS_HN, HN_CN}, 3: {CS_CN}}, doc_id="d")
    doc.subject = "city/beijing"
    return kg, ie, doc


def test_triple_scores_sentence_and_document_level(world):
    kg, ie, doc = world
    cands = S.distant_supervision(doc, kg)
    assert len(cands) == 7  # CAP, LOC | CS_HN, CS_CN, HN_CN | (北京大学, 北京): not annotated | CS_CN
    sc = E.triple_scores(cands, [doc])
    # sentence 3 (长沙在中国) yields CS_CN too
    assert (sc.tp, sc.fp, sc.fn) == (4, 2, 0)
    assert sc.precision == pytest.approx(4 / 6) and sc.recall == 1.0 and sc.f1 == pytest.approx(0.8)
    # per document: distinct triples of annotated sentences against the union of their gold
    doc_sc = E.triple_scores(cands, {doc.id: doc}, level="document")
    assert (doc_sc.tp, doc_sc.fp, doc_sc.fn) == (4, 1, 0)
    # dropped candidates do not count unless asked
    dropped = [dataclasses.replace(c, dropped_by="x") if c.kg_triple == LOC else c for c in cands]
    assert E.triple_scores(dropped, [doc]).fp == 1 and E.triple_scores(dropped, [doc], include_dropped=True).fp == 2
    assert (E.Scores(1, 2, 3) + E.Scores(1, 0, 0)).as_dict()["tp"] == 2
    assert E.Scores().precision == E.Scores().recall == E.Scores().f1 == 0.0
    with pytest.raises(ValueError, match="level"):
        E.triple_scores(cands, [doc], level="corpus")


def test_gold_filter_restricts_gold_to_what_the_schema_can_say(world):
    kg, ie, doc = world
    doc2 = make_doc(kg, "北京大学位于北京。", gold={0: {("university/pku", "located_in", "city/beijing")}}, doc_id="u")
    cands = S.distant_supervision(doc2, kg)
    assert E.triple_scores(cands, [doc2]).recall == 1.0
    keep = E.schema_gold_filter(ie, kg)
    assert not keep(("university/pku", "located_in", "city/beijing")) and keep(CAP)
    sc = E.triple_scores(cands, [doc2], gold_filter=keep)
    assert (sc.tp, sc.fp, sc.fn) == (0, 1, 0)


def test_funnel_counts_each_rules_drops_and_their_cost(world):
    kg, ie, doc = world
    cands = S.distant_supervision(doc, kg)
    rep = S.run_filters(cands, {doc.id: doc}, kg, ie, S.FilterOptions())
    rows = E.funnel(rep, [doc])
    assert [r["stage"] for r in rows] == ["distant_supervision", "schema", "transitive", "evidence_cues"]
    by = {r["stage"]: r for r in rows}
    assert by["distant_supervision"]["candidates"] == 7 and by["distant_supervision"]["dropped"] == 0
    assert (by["schema"]["dropped"], by["schema"]["dropped_true"]) == (1, 0)  # 北京大学: unannotated sentence
    assert (by["transitive"]["dropped"], by["transitive"]["dropped_true"]) == (1, 0)  # CS_CN in sentence 1
    assert (by["evidence_cues"]["dropped"], by["evidence_cues"]["dropped_true"]) == (2, 1)  # LOC, and 长沙在中国
    assert by["evidence_cues"]["precision"] == 1.0 and by["evidence_cues"]["recall"] == 0.75
    human = [dataclasses.replace(c, dropped_by="human") if c.kg_triple == HN_CN else c for c in rep.candidates]
    rows_h = E.funnel(rep, [doc], human=human)
    assert rows_h[-1]["stage"] == "human" and rows_h[-1]["dropped"] == 1 and rows_h[-1]["dropped_true"] == 1
    assert rows_h[-1]["fixed"] == 0
    total = E.sum_funnels([rows, rows])
    assert total[-1]["tp"] == 2 * rows[-1]["tp"] and total[-1]["precision"] == rows[-1]["precision"]
    with pytest.raises(ValueError, match="different stages"):
        E.sum_funnels([rows, rows_h])


def test_plot_funnel_returns_a_figure(world):
    kg, ie, doc = world
    rep = S.run_filters(S.distant_supervision(doc, kg), {doc.id: doc}, kg, ie, S.FilterOptions())
    fig = E.plot_funnel(E.funnel(rep, [doc]))
    from matplotlib.figure import Figure

    assert isinstance(fig, Figure) and len(fig.axes) == 2
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["distant_supervision", "schema", "transitive",
                                                                     "evidence_cues"]


def test_linking_scores_on_hand_made_gold_mentions():
    kg = tiny_kg()
    kg.entities["city/hangzhou"]["aliases_zh"] = ["北京"]  # make 北京 ambiguous
    doc = make_doc(kg, "北京是中国的首都。长沙很美。", doc_id="l", gold={0: set(), 1: set()})
    s0, s1 = doc.sentences
    s0.gold_mentions = ((0, 2, "city/beijing"), (3, 5, "country/china"))
    s1.gold_mentions = ((9, 11, "province/hunan"), (10, 12, "city/changsha"))  # wrong entity, then a missed span
    ls = E.linking_scores([doc], ambiguous_surfaces={"zh": ["北京"]})
    assert (ls.total, ls.correct, ls.wrong, ls.missed) == (4, 2, 1, 1)
    assert (ls.ambiguous_total, ls.ambiguous_correct) == (1, 1) and ls.by_surface == {"北京": [1, 1]}
    assert ls.as_dict()["accuracy"] == 0.5


def test_to_annotations_entities_relations_and_subjects(world):
    kg, ie, doc = world
    rep = S.run_filters(S.distant_supervision(doc, kg), {doc.id: doc}, kg, ie, S.FilterOptions())
    pairs = list(E.annotations_with_subjects([doc], rep.candidates, ie))
    anns = {a.id: a for a, _ in pairs}
    assert list(anns) == ["d:0", "d:1", "d:2", "d:3"] and {s for _, s in pairs} == {"city/beijing"}
    a0 = anns["d:0"]
    assert a0.text == "中国的首都是北京。" and a0.lang == "zh" and a0.source == "kg2instruction:hand:1"
    assert a0.entities == [Entity("中国", "国家"), Entity("北京", "城市")]
    assert a0.relations == [Relation("中国", "首都", "北京")]
    assert anns["d:1"].relations == [Relation("长沙", "位于", "湖南省"), Relation("湖南省", "位于", "中国")]
    assert anns["d:2"].relations == [] and Entity("北京大学", "大学") in anns["d:2"].entities
    assert [a.id for a in E.to_annotations([doc], rep.candidates, ie)] == list(anns)
    # a document-scope candidate whose entity is named in another sentence is left out by default
    c = dataclasses.replace(rep.kept[0], id="d:3:9", sentence_index=3, scope="document")
    assert next(a for a in E.to_annotations([doc], [c], ie) if a.id == "d:3").relations == []
    got = next(a for a in E.to_annotations([doc], [c], ie, require_in_text=False) if a.id == "d:3")
    assert got.relations == [Relation("中国", "首都", "北京")]
    with pytest.raises(ValueError, match="no IE relation"):
        list(E.to_annotations([doc], S.distant_supervision(doc, kg), ie))


def test_linking_and_annotations_on_the_sample_corpus(sample_corpus_80):
    docs = sample_documents(sample_corpus_80)
    ls = E.linking_scores(docs)
    # measured on the full corpus: 0.993 overall, 0.819 on mentions with several candidates
    assert ls.total > 10000 and ls.accuracy > 0.95
    assert ls.ambiguous_total > 0 and 0.5 < ls.ambiguous_accuracy <= 1.0
    assert set(ls.by_surface) <= set(AMBIGUOUS_ALIASES["zh"]) | set(AMBIGUOUS_ALIASES["en"]) and ls.by_surface
    kg, ie = load_kg(KG_DIR), S.load_ie_schema(IE_SCHEMA)
    by_id = {d.id: d for d in docs}
    rep = S.run_filters([c for d in docs for c in S.distant_supervision(d, kg)], by_id, kg, ie)
    anns = list(E.to_annotations(docs, rep.candidates, ie))
    n_rel = sum(len(a.relations) for a in anns)
    assert n_rel >= 0.98 * len(rep.kept)  # one relation per kept candidate (sentence scope: texts are in the text)
    labels = {r.relation for a in anns for r in a.relations}
    assert labels <= {spec[lang] for spec in ie["relations"].values() for lang in ("zh", "en")}
    assert all(r.head in a.text and r.tail in a.text for a in anns for r in a.relations)
    assert all(e.text in a.text for a in anns for e in a.entities)
