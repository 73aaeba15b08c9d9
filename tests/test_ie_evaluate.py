"""knowlm_utils.ie.evaluate: hand-made cases whose P/R/F1 are worked out in the comments, and
stage-06 records scored against themselves."""

from __future__ import annotations

import json

import pytest

from knowlm_utils.ie.annotation import Argument, Entity, Event, Relation
from knowlm_utils.ie.evaluate import (Counts, error_table, evaluate_predictions, normalize_text, regroup,
                                      score_items)

from conftest import ROOT


def rec(rid, task, fmt, output, schema=(), lang="zh", style=None):
    return {"id": rid, "task": task, "lang": lang, "style": style or ("iepile" if fmt == "iepile" else "text"),
            "format": fmt, "schema": list(schema), "instruction": "…", "input": "…", "output": output,
            "source": "test"}


# ------------------------------------------------------------------ counts --
def test_counts_f1_comes_from_unrounded_counts():
    c = Counts(1, 2, 0)  # P = 1/3, R = 1, F1 = 2·1/(2·1+2+0) = 1/2 exactly
    assert c.precision == 1 / 3 and c.recall == 1.0 and c.f1 == 0.5
    rounded_p = round(c.precision, 3)  # 0.333 → 2·0.333·1/1.333 = 0.4996…, not what we report
    assert 2 * rounded_p / (rounded_p + 1) != c.f1
    c2 = Counts(2, 1, 3)  # P = 2/3, R = 2/5, F1 = 4/(4+1+3) = 1/2
    assert (c2.precision, c2.recall, c2.f1) == (2 / 3, 2 / 5, 0.5)
    assert c + c2 == Counts(3, 3, 3) == sum([c, c2])
    assert Counts().to_dict() == {"p": 0.0, "r": 0.0, "f1": 0.0, "tp": 0, "fp": 0, "fn": 0}  # 0/0 → 0.0
    assert Counts(0, 0, 4).f1 == 0.0 and Counts(0, 3, 0).precision == 0.0


def test_set_versus_multiset():
    gold = [Entity("北京", "城市"), Entity("中国", "国家")]
    pred = [Entity("北京", "城市"), Entity("北京", "城市"), Entity("上海", "城市")]
    # set: tp {北京}, fp {上海}, fn {中国} → P = R = F1 = 1/2
    s = score_items("NER", gold, pred, match="set")
    assert s == Counts(1, 1, 1) and s.f1 == 0.5
    # multiset: the second 北京 is a false positive too → tp 1, fp 2, fn 1: P 1/3, R 1/2, F1 2/(2+2+1) = 2/5
    m = score_items("NER", gold, pred, match="multiset")
    assert m == Counts(1, 2, 1) and m.precision == 1 / 3 and m.f1 == 2 / 5
    with pytest.raises(ValueError, match="unknown match"):
        score_items("NER", gold, pred, match="bag")


def test_relation_and_event_levels():
    gold = [Relation("北京", "位于", "中国"), Relation("上海", "位于", "中国")]
    pred = [Relation("北京", "位于", "中国"), Relation("中国", "位于", "北京")]  # direction matters
    assert score_items("RE", gold, pred) == Counts(1, 1, 1)
    g = [Event("生于", "出生", (Argument("时间", "1990年"), Argument("地点", "北京")))]
    p = [Event("出生于", "出生", (Argument("时间", "1990年"),))]
    # trigger (trigger, type): 出生于 ≠ 生于 → tp 0, fp 1, fn 1
    assert score_items("EE", g, p) == score_items("EE", g, p, level="trigger") == Counts(0, 1, 1)
    # argument (type, role, text): 时间/1990年 matches despite the trigger; 地点 missed → P 1, R 1/2, F1 2/3
    a = score_items("EE", g, p, level="argument")
    assert a == Counts(1, 0, 1) and a.f1 == 2 / 3
    with pytest.raises(ValueError, match="unknown level"):
        score_items("NER", [], [], level="argument")


def test_normalisation_of_surface_text():
    assert normalize_text("  Ｎｅｗ\u3000  York（市） ") == "New York(市)"
    gold = [Entity("New York", "城市"), Entity("A1", "道路")]
    pred = [Entity("Ｎｅｗ  York ", "城市"), Entity("Ａ１", "道路")]
    assert score_items("NER", gold, pred) == Counts(2, 0, 0)
    assert score_items("NER", gold, pred, normalize=False) == Counts(0, 2, 2)
    # normalised duplicates collapse under set matching, count twice under multiset
    assert score_items("NER", gold[:1], [Entity("New York", "城市"), Entity("New  York", "城市")],
                       match="multiset") == Counts(1, 1, 0)


# ------------------------------------------------------------------ records --
def iepile_pair(ann="a1"):
    """One sentence's NER schema split over two IEPile chunk records."""
    return [rec(f"{ann}:NER:iepile:iepile:0", "NER", "iepile", '{"人物": ["张三"], "地点": []}', ["人物", "地点"]),
            rec(f"{ann}:NER:iepile:iepile:1", "NER", "iepile", '{"组织": [], "国家": ["中国"]}', ["组织", "国家"])]


def test_regroup_merges_iepile_chunks_only():
    text = rec("a1:NER:text:tuple:0", "NER", "tuple", "(张三,人物)")
    groups = regroup(iepile_pair() + [text] + iepile_pair("a2")[:1])
    assert [g.key for g in groups] == ["a1:NER:iepile", "a1:NER:text:tuple:0", "a2:NER:iepile"]
    assert [len(g.records) for g in groups] == [2, 1, 1]
    with pytest.raises(ValueError, match="occurs twice"):
        regroup([text, text])


def test_iepile_chunks_count_once_and_predictions_stay_in_their_chunk():
    records = iepile_pair()
    predictions = {  # chunk 0 also names 国家, which is chunk 1's type: ignored there (IEPile's rule)
        "a1:NER:iepile:iepile:0": '{"人物": ["张三"], "地点": [], "国家": ["中国"]}',
        "a1:NER:iepile:iepile:1": '{"组织": ["清华"], "国家": []}',
    }
    rep = evaluate_predictions(records, predictions)
    # gold {张三/人物, 中国/国家}; pred {张三/人物, 清华/组织} → tp 1, fp 1, fn 1: P = R = F1 = 1/2
    assert rep.micro == Counts(1, 1, 1) and rep.micro.f1 == 0.5
    assert (rep.records, rep.groups, rep.unparseable) == (2, 1, 0)
    d = rep.to_dict()
    assert d["by_style"] == {"iepile": Counts(1, 1, 1).to_dict()}
    assert d["by_entity_type"]["人物"]["tp"] == 1 and d["by_entity_type"]["组织"]["fp"] == 1
    assert d["by_entity_type"]["国家"]["fn"] == 1 and "地点" not in d["by_entity_type"]
    # the sentence once: a perfect answer spread over both chunks is 2/2, not 4/4
    perfect = evaluate_predictions(records, {r["id"]: r["output"] for r in records})
    assert perfect.micro == Counts(2, 0, 0) and perfect.groups == 1


def test_unparseable_answers_are_counted_per_task_and_format():
    records = [rec("n1", "NER", "tuple", "(北京,城市)"), rec("n2", "NER", "tuple", "(北京,城市)"),
               rec("n3", "NER", "tuple", "NAN"), rec("n4", "NER", "tuple", "NAN"),
               rec("r1", "RE", "iepile", '{"位于": []}', ["位于"]), rec("r2", "RE", "iepile", '{"位于": []}', ["位于"]),
               rec("r3", "RE", "dict", "NAN")]
    predictions = {"n1": "(北京,城市)\n(上海", "n2": "我不知道", "n3": "NAN", "n4": "",
                   "r1": '{"位于": []}', "r2": '{"位于": [', "r3": "nan"}
    rep = evaluate_predictions(records, predictions)
    # n1: an unclosed tuple (its 北京 still counts); n2: text, no item; r2: broken JSON. NAN, "", an
    # empty IEPile object are answers
    assert rep.unparseable == 3
    assert rep.unparseable_by_task == {"NER": 2, "RE": 1}
    assert rep.unparseable_by_format == {"NER/tuple": 2, "RE/iepile": 1}
    # n1 tp 1; n2 fn 1 → NER tp 1, fp 0, fn 1
    assert rep.by_task["NER"] == Counts(1, 0, 1) and rep.micro == Counts(1, 0, 1)
    # n3, n4, r1, r2, r3 have empty gold and no predicted item → 5 of 5 correctly empty
    assert rep.empty_gold == {"groups": 5, "predicted_empty": 5}
    assert rep.to_dict()["unparseable_by_task"] == {"NER": 2, "RE": 1}


def test_breakdowns_by_relation_type_lang_and_event():
    records = [
        rec("r1", "RE", "tuple", "(北京,位于,中国)\n(北京,首都,中国)"),
        rec("r2", "RE", "labeled", "head is Paris, relation is capital, tail is France", lang="en"),
        rec("e1", "EE", "tuple", "(生于,出生,1990年#时间;北京#地点)"),
        rec("g1", "GENERAL", "text", "随便写点什么", style="alpaca"),
    ]
    predictions = {"r1": "(北京,位于,中国)", "r2": "(Paris,capital,France)\n(Paris,located in,France)",
                   "e1": "(出生于,出生,1990年#时间)"}
    rep = evaluate_predictions(records, predictions)
    d = rep.to_dict()
    # r1: 位于 tp, 首都 fn
    assert d["by_relation"]["位于"] == Counts(1, 0, 0).to_dict()
    assert d["by_relation"]["首都"] == Counts(0, 0, 1).to_dict()
    # r2 was answered in the wrong format: nothing labeled in it → fn 1 and unparseable
    assert d["by_relation"]["capital"] == Counts(0, 0, 1).to_dict() and d["unparseable_by_task"] == {"RE": 1}
    assert d["by_task_lang"]["RE/zh"]["tp"] == 1 and d["by_task_lang"]["RE/en"]["fn"] == 1
    # EE: trigger 出生于 vs 生于 → fp 1, fn 1; arguments: 时间 tp, 地点 fn → P 1, R 1/2, F1 2/3
    assert d["by_task"]["EE"] == Counts(0, 1, 1).to_dict()
    assert d["by_task"]["EE-argument"]["f1"] == 2 / 3
    assert d["by_event"]["出生"]["roles"] == {"时间": Counts(1, 0, 0).to_dict(), "地点": Counts(0, 0, 1).to_dict()}
    assert d["by_event"]["出生"]["trigger"]["fp"] == 1
    # micro pools entities, triples, triggers: RE tp 1, fn 2 + EE fp 1, fn 1 → tp 1, fp 1, fn 3
    assert rep.micro == Counts(1, 1, 3) and rep.micro.f1 == 2 / (2 + 1 + 3)
    assert (d["records"], d["skipped_general"]) == (3, 1)  # GENERAL needs no prediction
    assert d["by_format"]["tuple"]["tp"] == 1 and set(d["by_style"]) == {"text"}
    json.dumps(d)  # JSON-able


def test_gold_that_does_not_parse_is_a_bug_naming_the_record():
    records = [rec("ok", "NER", "tuple", "(北京,城市)"), rec("broken:NER:text:tuple:0", "NER", "tuple", "(北京,城市")]
    with pytest.raises(ValueError, match=r"record 'broken:NER:text:tuple:0': gold output does not parse"):
        evaluate_predictions(records, {"ok": "NAN", "broken:NER:text:tuple:0": "NAN"})
    with pytest.raises(ValueError, match="no prediction for record 'ok'"):
        evaluate_predictions(records[:1], {})


def test_error_table_categories():
    records = [
        rec("r1", "RE", "tuple", "(北京,位于,中国)\n(上海,位于,中国)\n(巴西利亚,首都,巴西)\n(黄河,流经,青海)"),
        rec("n1", "NER", "tuple", "(北京,城市)\n(中国,国家)\n(长江,河流)"),
    ]
    predictions = {
        # wrong relation, wrong boundary (上海市 ⊃ 上海), right, spurious; 黄河 missed
        "r1": "(北京,首都,中国)\n(上海市,位于,中国)\n(巴西利亚,首都,巴西)\n(长江,流经,上海)",
        # wrong type, wrong boundary (中国人 ⊃ 中国), spurious; 长江 missed
        "n1": "(北京,国家)\n(中国人,国家)\n(黄山,山峰)",
    }
    table = error_table(records, predictions, max_examples=3)
    count = {task: {k: v["count"] for k, v in kinds.items()} for task, kinds in table.items()}
    assert count["RE"] == {"wrong relation": 1, "wrong boundary": 1, "missed": 1, "spurious": 1}
    assert count["NER"] == {"wrong type": 1, "wrong boundary": 1, "missed": 1, "spurious": 1}
    assert table["RE"]["wrong relation"]["examples"] == [
        {"id": "r1", "gold": "(北京,位于,中国)", "predicted": "(北京,首都,中国)"}]
    assert table["RE"]["wrong boundary"]["examples"][0]["predicted"] == "(上海市,位于,中国)"
    assert table["RE"]["missed"]["examples"] == [{"id": "r1", "gold": "(黄河,流经,青海)", "predicted": None}]
    assert table["NER"]["spurious"]["examples"] == [{"id": "n1", "gold": None, "predicted": "(黄山,山峰)"}]
    # fp = spurious + paired, fn = missed + paired (RE: tp 1, fp 3, fn 3)
    rep = evaluate_predictions(records, predictions, max_examples=0)
    assert rep.by_task["RE"] == Counts(1, 3, 3) and rep.by_task["NER"] == Counts(0, 3, 3)
    assert rep.errors["RE"]["missed"] == {"count": 1, "examples": []}


def test_overlap_needs_half_of_the_shorter_text():
    records = [rec("n", "NER", "tuple", "(巴西利亚,城市)\n(New York,城市)")]
    table = error_table(records, {"n": "(利亚城,城市)\n(kingdom,城市)"})
    # 巴西利亚 / 利亚城 share "利亚" (2 ≥ ⌈3/2⌉): boundary; New York / kingdom share only "k": no pair
    assert table["NER"]["wrong boundary"]["count"] == 1
    assert table["NER"]["missed"]["count"] == 1 and table["NER"]["spurious"]["count"] == 1


# ------------------------------------------------------------------ real stage-06 records --
@pytest.fixture(scope="module")
def stage06_records(tmp_path_factory):
    """About 50 test records of a small stage-06 build: the first groups of each task × style, whole
    IEPile sentences, a few GENERAL records."""
    from conftest import build_sample_corpus
    from knowlm_utils.kg2instruction import pipeline

    d = tmp_path_factory.mktemp("ie_eval")
    corpus = build_sample_corpus(d / "corpus", 10)
    pipeline.main(ROOT / "configs" / "ie" / "sample.yaml",
                  [f"corpus_dir={corpus}", f"output_dir={d / 'ie'}", "progress=false", "max_docs_per_source=10",
                   "hf_dataset=false"])
    rows = [json.loads(line) for line in open(d / "ie" / "test.jsonl", encoding="utf-8")]
    picked, per_kind = [], {}
    for group in regroup([r for r in rows if r["task"] != "GENERAL"]):
        kind = (group.task, group.style)
        if per_kind.get(kind, 0) < 6:
            per_kind[kind] = per_kind.get(kind, 0) + 1
            picked += group.records
    picked += [r for r in rows if r["task"] == "GENERAL"][:3]
    assert {k for k, n in per_kind.items() if n} >= {(t, s) for t in ("NER", "RE", "EE") for s in ("text", "iepile")}
    return picked


def test_stage06_gold_answers_score_perfectly(stage06_records):
    ie = [r for r in stage06_records if r["task"] != "GENERAL"]
    assert 40 <= len(ie) <= 80
    rep = evaluate_predictions(stage06_records, {r["id"]: r["output"] for r in ie})
    assert rep.micro.f1 == 1.0 and rep.micro.fp == rep.micro.fn == 0 and rep.micro.tp > 0
    assert rep.unparseable == 0 and rep.skipped_general == 3 and rep.records == len(ie)
    d = rep.to_dict()
    assert all(c["f1"] == 1.0 for c in d["by_task"].values()) and set(d["by_task"]) == {"NER", "RE", "EE",
                                                                                          "EE-argument"}
    assert all(v["count"] == 0 for kinds in d["errors"].values() for v in kinds.values())
    assert rep.groups < rep.records  # IEPile chunks regrouped


def test_stage06_nan_answers_recall_nothing(stage06_records):
    ie = [r for r in stage06_records if r["task"] != "GENERAL"]
    rep = evaluate_predictions(stage06_records, {r["id"]: "NAN" for r in ie})
    assert rep.micro.recall == 0.0 and rep.micro.tp == rep.micro.fp == 0 and rep.micro.fn > 0
    assert rep.unparseable == 0
    missed = sum(kinds["missed"]["count"] for kinds in rep.errors.values())
    assert missed == rep.micro.fn
