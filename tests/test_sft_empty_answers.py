"""The cap on empty-answer IE train records (knowlm_utils.sft.empty_answers)."""

import json

import pytest

from knowlm_utils.sft.empty_answers import cap_empty_answers

SCHEMA = ["capital", "located in"]


def _re(i: int, lang: str, triples: int, style: str = "iepile") -> dict:
    answer = {"capital": [{"subject": f"C{i}", "object": f"K{i}"}] * triples, "located in": []}
    return {"id": f"{lang}:{i}", "task": "RE", "lang": lang, "style": style, "format": "iepile", "schema": SCHEMA,
            "instruction": json.dumps({"instruction": "x", "schema": SCHEMA, "input": f"C{i} is the capital of K{i}."}),
            "input": "", "output": json.dumps(answer)}


def _ner(i: int, names: list[str]) -> dict:
    return {"id": f"ner:{i}", "task": "NER", "lang": "en", "style": "text", "format": "tuple",
            "schema": ["person"], "instruction": "Find persons.", "input": " ".join(names) or "nothing",
            "output": "\n".join(f"({n},person)" for n in names) or "NAN"}


def test_empty_answers_are_capped_per_group_evenly_and_counted():
    rows = [_re(i, "en", triples=int(i % 4 == 0)) for i in range(40)]  # 10 answered, 30 empty
    rows += [_re(100 + i, "zh", triples=1) for i in range(6)] + [_re(200 + i, "zh", triples=0) for i in range(2)]
    out, st = cap_empty_answers(rows, 0.25)
    en_empty = [r for r in out if r["lang"] == "en" and '"subject"' not in r["output"]]
    assert len(en_empty) == 3  # 0.25 / 0.75 × 10 answered
    idx = sorted(int(r["id"].split(":")[1]) for r in en_empty)
    assert idx[-1] - idx[0] >= 20  # spread over the file, not the first three
    assert sum(1 for r in out if '"subject"' in r["output"]) == 16  # no answered record is touched
    assert [r for r in out if r["lang"] == "zh"] == rows[40:]  # 2 of 8 is under the cap: all kept
    assert st.dropped == 27 and len(out) == len(rows) - 27
    d = st.to_dict()
    assert d["by_group"]["RE/en/iepile"] == {"answered": 10, "empty": 30, "kept_empty": 3}
    assert d["by_group"]["RE/zh/iepile"] == {"answered": 6, "empty": 2, "kept_empty": 2}
    assert st.summary() == "kept RE/en/iepile 3 of 30, RE/zh/iepile 2 of 2 (dropped 27)"
    assert [r["id"] for r in out] == [r["id"] for r in rows if r in out]  # order kept


def test_other_formats_none_and_zero_and_bad_shares():
    rows = [_ner(0, ["Ann"]), _ner(1, []), _ner(2, []), _ner(3, ["Bo", "Cy"])]
    kept, st = cap_empty_answers(rows, None)
    assert kept == rows and st.dropped == 0 and st.to_dict()["by_group"]["NER/en/text"]["empty"] == 2
    kept, st = cap_empty_answers(rows, 0.0)
    assert [r["id"] for r in kept] == ["ner:0", "ner:3"] and st.dropped == 2
    kept, _ = cap_empty_answers(rows, 0.5)  # one empty per answered record: both kept
    assert kept == rows
    for bad in (1.0, -0.1, True, "0.2"):
        with pytest.raises(ValueError, match="empty_answer_share"):
            cap_empty_answers(rows, bad)
    broken = dict(_ner(4, ["Di"]), output="{not json", format="iepile")
    with pytest.raises(ValueError, match="ner:4"):
        cap_empty_answers([broken], 0.2)
