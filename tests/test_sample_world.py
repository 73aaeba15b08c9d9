"""The sample world: KG validity, deterministic generation, planted noise and its manifest."""

import gzip
import json
from collections import Counter
from pathlib import Path

import pytest

from knowlm_utils.dedup import Deduplicator, DedupConfig, jaccard, normalize
from knowlm_utils.kg import KGError, load_kg
from knowlm_utils.sample_world import FIELDS, SOURCE_ORDER, SampleWorldConfig, build_files, compare, template_ids

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data_samples"


@pytest.fixture(scope="module")
def generated():
    return build_files(SampleWorldConfig(data_root=str(DATA)))


def _lines(fname: str) -> list[bytes]:
    raw = (DATA / "corpus" / fname).read_bytes()
    if fname.endswith(".gz"):
        raw = gzip.decompress(raw)
    return raw.split(b"\n")[:-1]


def _render(fname: str, raw: bytes) -> str:
    if fname.endswith(".txt"):
        return raw.decode()
    f1, f2 = FIELDS[fname]
    obj = json.loads(raw)
    return f"{obj[f1]}\n{obj[f2]}"


def test_kg_is_valid_and_big_enough():
    kg = load_kg(DATA / "kg")
    assert len(kg.entities) >= 200
    assert len({t["relation"] for t in kg.triples}) >= 12
    assert all(e["name_zh"] and e["name_en"] and e["desc_zh"] and e["desc_en"] for e in kg.entities.values())
    names = Counter(a for e in kg.entities.values() for a in [e["name_zh"], *e["aliases_zh"]])
    assert names["苹果"] >= 2, "the course needs ambiguous aliases (苹果: fruit and company)"


def test_kg_errors_name_file_and_line(tmp_path):
    (tmp_path / "entities").mkdir()
    (tmp_path / "triples").mkdir()
    (tmp_path / "schema.yaml").write_text((DATA / "kg" / "schema.yaml").read_text("utf-8"), encoding="utf-8")
    ent = {"id": "city/x", "type": "city", "name_zh": "X", "name_en": "X", "aliases_zh": [], "aliases_en": [],
           "desc_zh": "", "desc_en": "", "attrs": {}}
    (tmp_path / "entities" / "a.jsonl").write_text(json.dumps(ent) + "\n" + json.dumps(ent) + "\n")
    (tmp_path / "triples" / "a.jsonl").write_text('{"head": "city/x", "relation": "born_in", "tail": "city/y"}\n')
    with pytest.raises(KGError, match=r"a\.jsonl:2: duplicate id 'city/x'(.|\n)*a\.jsonl:1: unknown entity id"):
        load_kg(tmp_path)


def test_committed_files_equal_a_fresh_generation(generated):
    assert compare(SampleWorldConfig(data_root=str(DATA))) == []
    assert generated == build_files(SampleWorldConfig(data_root=str(DATA))), "generation must be deterministic"


def test_corpus_size_and_formats():
    total = sum((DATA / "corpus" / f).stat().st_size for f in SOURCE_ORDER)
    assert 2_000_000 <= total <= 5_000_000
    with gzip.open(DATA / "corpus" / "zh_wiki.jsonl.gz") as fh:
        assert "content" in json.loads(fh.readline())
    assert len(_lines("web_mixed.txt")) >= 300


def test_manifest_lines_are_what_they_claim():
    manifest = [json.loads(x) for x in (DATA / "corpus" / "noise_manifest.jsonl").read_text("utf-8").splitlines()]
    kinds = Counter(m["kind"] for m in manifest)
    for kind in ("exact_dup", "near_dup", "boilerplate", "blocklist", "mojibake", "empty", "invalid_json",
                 "invalid_utf8", "too_long"):
        assert kinds[kind] >= 1, kind
    cache = {f: _lines(f) for f in SOURCE_ORDER}
    for m in manifest:
        fname = Path(m["file"]).name
        raw = cache[fname][m["line"] - 1]
        where = f"{m['file']}:{m['line']}"
        if m["kind"] == "invalid_utf8":
            with pytest.raises(UnicodeDecodeError):
                raw.decode("utf-8")
        elif m["kind"] == "invalid_json":
            with pytest.raises(json.JSONDecodeError):
                json.loads(raw)
        elif m["kind"] == "too_long":
            assert len(raw) > 100_000, where
        elif m["kind"] in ("exact_dup", "near_dup"):
            orig_f = Path(m["of"]["file"]).name
            assert SOURCE_ORDER.index(orig_f) < SOURCE_ORDER.index(fname) or m["of"]["line"] < m["line"], where
            a = _render(fname, raw)
            b = _render(orig_f, cache[orig_f][m["of"]["line"] - 1])
            if m["kind"] == "exact_dup":
                assert normalize(a) == normalize(b), where
            else:
                assert normalize(a) != normalize(b) and jaccard(a, b) >= 0.85, where


def test_clean_documents_are_not_near_duplicates_of_each_other():
    planted = {(Path(m["file"]).name, m["line"]) for m in
               map(json.loads, (DATA / "corpus" / "noise_manifest.jsonl").read_text("utf-8").splitlines())}
    dedup = Deduplicator(DedupConfig(threshold=0.5))
    texts, worst = {}, 0.0
    for fname in SOURCE_ORDER:
        for i, raw in enumerate(_lines(fname), 1):
            if (fname, i) in planted:
                continue
            text = _render(fname, raw)
            found = dedup.check(f"{fname}:{i}", text)
            if found:
                worst = max(worst, jaccard(text, texts[found[1]]))
            texts[f"{fname}:{i}"] = text
    assert len(texts) > 1000
    assert worst < 0.7, f"two clean documents are too similar ({worst:.2f}); dedup would remove one"


def test_instructions_are_alpaca_in_both_languages():
    items = json.loads((DATA / "instructions" / "alpaca_general.json").read_text("utf-8"))
    assert len(items) >= 300
    assert all(set(x) == {"instruction", "input", "output"} and x["instruction"] and x["output"] for x in items)
    zh = sum(any("\u4e00" <= c <= "\u9fff" for c in x["instruction"]) for x in items)
    assert 0.3 <= zh / len(items) <= 0.7
    assert any(x["output"] == "The capital of France is Paris." for x in items)


def test_gold_statements_name_their_sentence_template(generated):
    import yaml

    tpl = yaml.safe_load((DATA / "templates" / "documents.yaml").read_text("utf-8"))
    ids = template_ids(tpl)
    for key, by_lang in tpl["relations"].items():  # every entry has an id; an id names one wording
        for lang, sides in by_lang.items():
            for persp in ("head", "tail"):
                assert all((lang, key, persp, i) in ids for i in range(len(sides[persp])))
    wording: dict[str, set[str]] = {}
    for (lang, key, persp, i), tid in ids.items():
        text = tpl["aliases"][lang][i] if key == "aliases" else tpl["relations"][key][lang][persp][i]
        wording.setdefault(tid, set()).add(text)
        assert tid.startswith(f"{lang}:{key.split('@')[0]}")
    assert all(len(w) == 1 for w in wording.values())
    assert len(wording) == len({(t.split(":")[0], next(iter(w))) for t, w in wording.items()})  # and vice versa
    assert ids["en", "flows_through", "tail", 0] == ids["en", "flows_through", "head", 0] == "en:flows_through:head:0"
    rows = [json.loads(x) for x in gzip.decompress(generated["corpus/gold_facts.jsonl.gz"]).decode().splitlines()]
    used = Counter(st["template"] for r in rows for st in r["statements"])
    assert set(used) - {None} <= set(ids.values()) and len(set(used) - {None}) > 120
    assert all(r["file"].endswith("zh_wiki.jsonl.gz") for r in rows for st in r["statements"] if st["template"] is None)
