"""The sample world's gold facts and the per-document preparation (mentions, links, sentences)."""

import gzip
import json
from pathlib import Path

import pytest

from knowlm_utils.corpus import iter_cleaned_documents
from knowlm_utils.ie.linking import EntityLinker
from knowlm_utils.kg import load_kg
from knowlm_utils.kg2instruction.documents import DocumentPreparer, detect_lang
from knowlm_utils.kg2instruction.gold import (GoldDocument, GoldStatement, check_alignment, gold_key, has_template_ids,
                                              load_gold)

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data_samples"
GOLD = DATA / "corpus" / "gold_facts.jsonl.gz"


@pytest.fixture(scope="module")
def kg():
    return load_kg(DATA / "kg")


@pytest.fixture(scope="module")
def gold():
    return load_gold(GOLD)


def _raw_text(file: str, line: int) -> str:
    """The document as the corpus stage renders it, read straight from the committed source."""
    path = DATA / file
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    text = data.split(b"\n")[line - 1].decode("utf-8")  # planted noise elsewhere is not UTF-8
    if path.name.endswith(".txt"):
        return text
    row = json.loads(text)
    title, body = list(row.values())
    return f"{title}\n{body}"


def test_every_gold_fact_is_in_the_kg_and_every_mention_reads_as_its_entity(kg, gold):
    facts = {(t["head"], t["relation"], t["tail"]) for t in kg.triples}
    names = {eid: {e["name_zh"], e["name_en"], *e["aliases_zh"], *e["aliases_en"]} for eid, e in kg.entities.items()}
    n_facts = n_explicit = 0
    for doc in list(gold.values())[::7]:  # every 7th document keeps the test fast
        text = _raw_text(doc.file, doc.line)
        assert check_alignment(doc, text, names), doc.key
        for st in doc.statements:
            assert 0 <= st.start < st.end <= len(text)
            named = {m[2] for m in st.mentions}
            for f in st.facts:
                assert f in facts
                assert {f[0], f[2]} & named  # an infobox row leaves the page's subject unnamed
                assert (f in st.explicit_facts) == ({f[0], f[2]} <= named)
                n_facts += 1
                n_explicit += f in st.explicit_facts
            assert all(st.start <= a < b <= st.end for a, b, _ in st.mentions)
    assert n_facts > 3000 and 0.8 * n_facts < n_explicit < n_facts


def test_every_templated_statement_names_its_template(gold):
    import re

    n = 0
    for doc in gold.values():
        for st in doc.statements:
            if doc.file.endswith("zh_wiki.jsonl.gz") and st.template is None:
                continue  # an infobox row: no sentence template
            assert st.template is not None, doc.key
            pattern = rf"{doc.lang}:(aliases:\d+|[a-z_]+(@[a-z_]+)?:(head|tail):\d+)"
            assert re.fullmatch(pattern, st.template), st.template
            assert st.template.startswith(f"{doc.lang}:aliases:") == (not st.facts)
            n += 1
    assert n > 40000 and has_template_ids(gold)


def test_gold_without_template_ids_still_loads_and_a_bad_one_is_named(tmp_path):
    row = {"file": "a.jsonl", "line": 1, "lang": "zh", "subject": None,
           "statements": [{"start": 0, "end": 5, "facts": [], "mentions": []}]}
    p = tmp_path / "old.jsonl"
    p.write_text(json.dumps(row) + "\n", "utf-8")
    old = load_gold(p)
    assert old["a.jsonl", 1].statements[0].template is None and not has_template_ids(old)
    row["statements"][0]["template"] = 3
    p.write_text(json.dumps(row) + "\n", "utf-8")
    with pytest.raises(ValueError, match=r"old\.jsonl:1: gold statement key template") as e:
        load_gold(p)
    assert "\n" not in str(e.value)


def test_gold_covers_every_clean_source_and_marks_handwritten_text(gold):
    files = {k[0] for k in gold}
    assert files == {"zh_baike.jsonl", "zh_wiki.jsonl.gz", "en_wiki.jsonl", "web_mixed.txt"}
    assert sum(bool(d.unannotated) for d in gold.values()) > 50
    assert all(d.subject for d in gold.values())


def test_load_gold_names_file_and_line_of_a_bad_row(tmp_path):
    p = tmp_path / "g.jsonl"
    p.write_text('{"file": "a.jsonl", "line": 1, "lang": "zh", "subject": null, "statements": []}\n'
                 '{"file": "a.jsonl", "line": 2, "lang": "zh", "statements": [{"start": 5}]}\n', "utf-8")
    with pytest.raises(ValueError, match=r"g\.jsonl:2: malformed gold statement") as e:
        load_gold(p)
    assert "\n" not in str(e.value)
    p.write_text("{not json\n", "utf-8")
    with pytest.raises(ValueError, match=r"g\.jsonl:1: not valid JSON"):
        load_gold(p)


def test_gold_key_ignores_folders():
    assert gold_key("/abs/checkout/data_samples/corpus/zh_baike.jsonl", "3") == ("zh_baike.jsonl", 3)


def test_detect_lang():
    assert detect_lang("北京是中国的首都。", None) == "zh"
    assert detect_lang("周末和家人聊起New York，我说纽约位于美国。", "mixed") == "zh"
    assert detect_lang("On a trip I learned that Paris is in France.", "mixed") == "en"
    assert detect_lang("def f(): pass", "code") is None


def test_preparer_on_the_built_corpus(kg, gold, sample_corpus_80):
    prep = DocumentPreparer(kg, EntityLinker(kg), gold)
    docs = [d for d in map(prep, iter_cleaned_documents(sample_corpus_80)) if d is not None]
    st = prep.stats
    assert st.documents == len(docs) > 100 and st.skipped_language > 0  # code is skipped, and counted
    # the first 80 lines of a source keep a few planted copies whose originals lie further on: no gold
    assert st.annotated >= 0.95 * st.documents and st.gold_misaligned == 0 and st.statements_split == 0
    graded = [s for d in docs for s in d.sentences if s.gold is not None]
    # a sentence knows the templates of its statements (all but a wiki infobox row have one)
    assert sum(bool(s.templates) for s in graded) > 0.5 * len(graded)
    assert all(s.templates for d in docs if "zh_wiki" not in d.file for s in d.sentences if s.gold)
    assert all(not s.templates for d in docs if d.gold is None for s in d.sentences)
    assert sum(len(s.gold) for s in graded) > 1000
    for d in docs:  # sentences tile the document; links sit inside their sentence
        assert "".join(s.text for s in d.sentences) == d.text
        for s in d.sentences:
            assert all(s.start <= ln.mention.start < ln.mention.end <= s.end for ln in s.links)
    # the preparer's gold mentions are linked right almost always
    spans = [(s, m) for s in graded for m in s.gold_mentions]
    ok = sum(any((ln.mention.start, ln.mention.end, ln.entity_id) == m for ln in s.links) for s, m in spans)
    assert ok / len(spans) > 0.97


def test_a_misaligned_gold_row_is_dropped_and_counted(kg):
    doc = GoldDocument("corpus/x.jsonl", 1, "zh", "city/beijing",
                       (GoldStatement(0, 5, (("city/beijing", "capital_of", "country/china"),),
                                      ((0, 2, "city/beijing"), (3, 5, "country/china"))),))
    prep = DocumentPreparer(kg, EntityLinker(kg), {doc.key: doc})
    out = prep({"id": "x", "text": "上海是中国的城市。", "source": "s", "lang": "zh", "file": "/x/x.jsonl", "line": 1})
    assert prep.stats.gold_misaligned == 1 and out.gold is None
    assert all(s.gold is None for s in out.sentences)
