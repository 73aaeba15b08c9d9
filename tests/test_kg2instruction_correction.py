"""Stage 06 step 5: the human-correction CSV round trip (export → edit with the csv module →
apply), every error's one-line ``path:line:`` message, and the simulated reviewer on the sample
world's corpus."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from knowlm_utils.kg import load_kg
from knowlm_utils.kg2instruction import correction as C
from knowlm_utils.kg2instruction import evaluation as E
from knowlm_utils.kg2instruction import supervision as S
from test_kg2instruction_supervision import IE_SCHEMA, KG_DIR, make_doc, sample_documents, tiny_kg


@pytest.fixture(scope="module")
def world():
    kg = tiny_kg()
    ie = S.load_ie_schema(IE_SCHEMA)
    zh = make_doc(kg, "中国的首都是北京。长沙位于湖南省。爱丽丝执掌艾克米。", doc_id="zh:1")
    en = make_doc(kg, "Beijing, the capital, lies within China.", lang="en", doc_id="en:1")
    docs = {d.id: d for d in (zh, en)}
    cands = [c for d in docs.values() for c in S.distant_supervision(d, kg)]
    # schema only: both facts between 北京 and 中国 stay, so there is something to correct
    rep = S.run_filters(cands, docs, kg, ie, S.FilterOptions(transitive=False, evidence_cues=False))
    return kg, ie, docs, rep.candidates


def read(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, encoding="utf-8-sig", newline="") as fh:
        r = csv.DictReader(fh)
        return list(r.fieldnames), list(r)


def write(path: Path, header: list[str], rows: list[dict[str, str]]) -> None:
    with open(path, "w", encoding="utf-8-sig", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=header)
        w.writeheader()
        w.writerows(rows)


def exported(world, tmp_path) -> tuple[Path, list[str], dict[str, dict[str, str]]]:
    kg, ie, docs, cands = world
    path = tmp_path / "review.csv"
    assert C.export_corrections(cands, docs, path, ie) == len(cands)
    header, rows = read(path)
    return path, header, {r["id"]: r for r in rows}


def test_export_writes_excel_friendly_utf8_csv(world, tmp_path):
    path, header, rows = exported(world, tmp_path)
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    assert header == list(C.COLUMNS)
    assert [p.name for p in tmp_path.iterdir()] == ["review.csv"]  # no temp file left behind
    cap = rows["zh:1:0:0"]
    assert (cap["sentence"], cap["head_text"], cap["relation"], cap["tail_text"], cap["head_id"], cap["tail_id"],
            cap["action"]) == ("中国的首都是北京。", "中国", "首都", "北京", "country/china", "city/beijing", "keep")
    assert rows["en:1:0:0"]["relation"] == "capital"  # the IE name in the document's language
    assert rows["zh:1:2:0"]["relation"] == "首席执行官" and rows["zh:1:2:0"]["head_text"] == "艾克米"


def test_round_trip_keep_drop_fix(world, tmp_path):
    kg, ie, docs, cands = world
    path, header, rows = exported(world, tmp_path)
    rows["zh:1:0:1"]["action"] = " Drop "                   # 北京 located_in 中国: the sentence does not say so
    rows["zh:1:0:1"]["note"] = "not stated"
    rows["en:1:0:0"].update(action="FIX", fixed_relation="Located In", fixed_head_text="Beijing",
                            fixed_tail_text="China")         # capital → located in, head/tail swapped back
    rows["zh:1:1:0"].update(action="fix", fixed_tail_text="湖南省")  # the same text: nothing changes
    del rows["zh:1:2:0"]                                     # a missing row keeps its candidate
    write(path, header, list(rows.values()))
    out, st = C.apply_corrections(cands, path, ie, {d: docs[d].lang for d in docs}, docs, kg)
    assert [c.id for c in out] == [c.id for c in cands]
    by = {c.id: c for c in out}
    assert (by["zh:1:0:1"].dropped_by, by["zh:1:0:1"].drop_reason) == ("human", "not stated")
    fixed = by["en:1:0:0"]
    assert (fixed.ie_relation, fixed.relation, fixed.head, fixed.tail, fixed.head_text, fixed.tail_text,
            fixed.reversed) == ("located_in", "located_in", "city/beijing", "country/china", "Beijing", "China", False)
    assert fixed.kg_triple == ("city/beijing", "located_in", "country/china") and fixed.kept
    assert by["zh:1:2:0"] == next(c for c in cands if c.id == "zh:1:2:0")
    assert st.as_dict() | {"changes": None} == {"rows": 5, "kept": 2, "dropped": 1, "fixed": 1, "unchanged_rows": 1,
                                                "missing": 1, "already_dropped": 0, "changes": None}
    assert st.changes == ["en:1:0:0: (China, capital, Beijing) → (Beijing, located in, China)"]
    assert all(c.kept for c in cands)  # the input is untouched


def test_fix_relation_by_zh_name_swaps_when_the_text_is_swapped(world, tmp_path):
    kg, ie, docs, cands = world
    path, header, rows = exported(world, tmp_path)
    rows["zh:1:0:1"].update(action="fix", fixed_relation="首都", fixed_head_text="中国", fixed_tail_text="北京")
    write(path, header, list(rows.values()))
    out, st = C.apply_corrections(cands, path, ie)
    c = next(c for c in out if c.id == "zh:1:0:1")
    assert (c.ie_relation, c.head, c.tail, c.reversed, c.kg_triple) == \
        ("capital", "country/china", "city/beijing", True, ("city/beijing", "capital_of", "country/china"))
    assert st.fixed == 1


@pytest.mark.parametrize("edit, line, what", [
    (lambda rows, h: rows.__setitem__(0, {**rows[0], "id": "zh:1:9:9"}), 2, "unknown id 'zh:1:9:9'"),
    (lambda rows, h: rows[1].update(action="delete"), 3, "unknown action 'delete'"),
    (lambda rows, h: rows[1].update(action="  "), 3, "empty action"),
    (lambda rows, h: rows[0].update(action="fix", fixed_relation="capital city"), 2, "unknown relation 'capital city'"),
    (lambda rows, h: rows[0].update(action="fix", fixed_head_text="上海"), 2, "fixed_head_text '上海' does not occur"),
    (lambda rows, h: rows[0].update(action="fix"), 2, "fixed_relation, fixed_head_text and fixed_tail_text are empty"),
    (lambda rows, h: rows[0].update(fixed_relation="位于"), 2, "filled in but the action is 'keep'"),
    (lambda rows, h: rows[0].update(action="fix", fixed_relation="母公司"), 2, "does not allow country → city"),
    (lambda rows, h: rows.append(dict(rows[0])), 8, "duplicate id 'zh:1:0:0' (first on line 2)"),
    (lambda rows, h: rows[2].update(id=""), 4, "empty id"),
    (lambda rows, h: [r.pop("action") for r in rows] and h.remove("action"), 1, "missing column(s) ['action']"),
])
def test_every_error_is_one_line_naming_path_and_line(world, tmp_path, edit, line, what):
    kg, ie, docs, cands = world
    path, header, rows = exported(world, tmp_path)
    rows = list(rows.values())
    edit(rows, header)
    write(path, header, rows)
    with pytest.raises(ValueError) as exc:
        C.apply_corrections(cands, path, ie, None, docs)
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith(f"{path}:{line}: ") and what in msg, msg


def test_malformed_rows_and_files(world, tmp_path):
    kg, ie, docs, cands = world
    path, header, rows = exported(world, tmp_path)
    lines = path.read_text("utf-8-sig").splitlines()
    path.write_text("\n".join(lines[:3] + ["only,three,fields"] + lines[3:]) + "\n", "utf-8")
    with pytest.raises(ValueError, match=rf"^{path}:4: expected 12 fields, got 3$"):
        C.apply_corrections(cands, path, ie)
    path.write_text("", "utf-8")
    with pytest.raises(ValueError, match=rf"^{path}:1: empty file"):
        C.apply_corrections(cands, path, ie)
    with pytest.raises(ValueError, match=rf"^{tmp_path / 'none.csv'}:0: cannot read"):
        C.apply_corrections(cands, tmp_path / "none.csv", ie)
    # blank lines and a quoted multi-line note are fine; line numbers count physical lines
    path2, header, rows = exported(world, tmp_path)
    rows = list(rows.values())
    rows[0]["note"] = "two\nlines"
    rows[1]["action"] = "bogus"
    write(path2, header, rows)
    with pytest.raises(ValueError, match=rf"^{path2}:4: unknown action"):
        C.apply_corrections(cands, path2, ie)


def test_already_dropped_candidates_pass_through(world, tmp_path):
    kg, ie, docs, cands = world
    path, header, rows = exported(world, tmp_path)
    import dataclasses

    gone = [dataclasses.replace(c, dropped_by="evidence_cues") if c.id == "zh:1:1:0" else c for c in cands]
    out, st = C.apply_corrections(gone, path, ie)
    assert st.already_dropped == 1 and next(c for c in out if c.id == "zh:1:1:0").dropped_by == "evidence_cues"
    # streaming use: parse once, apply per document, then see which rows were never used
    corr = C.load_corrections(path, ie)
    out1, _ = corr.apply([c for c in cands if c.doc_id == "zh:1"])
    assert {r.values["id"] for r in corr.unused()} == {c.id for c in cands if c.doc_id == "en:1"}


def test_simulated_reviewer_on_the_sample_corpus(sample_corpus_80, tmp_path):
    docs = sample_documents(sample_corpus_80)
    by_id = {d.id: d for d in docs}
    kg, ie = load_kg(KG_DIR), S.load_ie_schema(IE_SCHEMA)
    cands = [c for d in docs for c in S.distant_supervision(d, kg)]
    rep = S.run_filters(cands, by_id, kg, ie, S.FilterOptions(evidence_cues=False))
    path = tmp_path / "c.csv"
    n = C.export_corrections(rep.candidates, by_id, path, ie)
    assert n == len(rep.kept)
    twin = tmp_path / "twin.csv"
    twin.write_bytes(path.read_bytes())
    changed = C.simulate_corrections(path, by_id, n_drop=40, n_fix=10, seed=3, ie_schema=ie)
    assert sum(c["action"] == "drop" for c in changed) == 40 and sum(c["action"] == "fix" for c in changed) == 10
    assert C.simulate_corrections(twin, by_id, 40, 10, 3, ie) == changed and twin.read_bytes() == path.read_bytes()
    human, st = C.apply_corrections(rep.candidates, path, ie, {d.id: d.lang for d in docs}, by_id, kg)
    assert st.dropped == 40 and st.fixed + st.unchanged_rows == 10
    rows = E.funnel(rep, by_id, human=human)
    assert rows[-1]["stage"] == "human" and rows[-1]["dropped_true"] == 0
    assert rows[-1]["precision"] > rows[-2]["precision"] and rows[-1]["recall"] >= rows[-2]["recall"]
