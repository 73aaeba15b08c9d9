"""Stage 06 end to end: ``pipeline.main`` / ``knowlm ie build`` on the sample corpus."""

import csv
import json
from pathlib import Path

import pytest

from conftest import assert_one_line_error, run_cli
from knowlm_utils.ie.formats import parse_output
from knowlm_utils.kg2instruction import pipeline
from knowlm_utils.kg2instruction.instructions import RECORD_KEYS

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "configs" / "ie" / "sample.yaml"


def _overrides(corpus: Path, out: Path, *extra: str) -> list[str]:
    return [f"corpus_dir={corpus}", f"output_dir={out}", "progress=false", "max_docs_per_source=30", *extra]


@pytest.fixture(scope="module")
def built(sample_corpus_80, tmp_path_factory):
    out = tmp_path_factory.mktemp("ie") / "ie"
    report = pipeline.main(SAMPLE, _overrides(sample_corpus_80, out))
    return out, report


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text("utf-8").splitlines()]


def test_outputs_and_report(built):
    out, report = built
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [".knowlm-output.json", "annotations.jsonl", "candidates.csv", "hf_dataset", "report.json",
         "paraphrase.jsonl", "test.jsonl", "train.jsonl", "valid.jsonl"])
    assert json.loads((out / "report.json").read_text("utf-8")) == json.loads(json.dumps(report))
    records = {s: _jsonl(out / f"{s}.jsonl") for s in pipeline.OUTPUT_SPLITS}
    assert {s: len(r) for s, r in records.items()} == report["split_records"]
    assert sum(r["records"] for r in report["sizes"]) == sum(report["split_records"].values())
    everything = [r for rs in records.values() for r in rs]
    assert all(tuple(r) == RECORD_KEYS for r in everything)
    assert len({r["id"] for r in everything}) == len(everything)  # ids unique across splits
    seen = {(r["task"], r["lang"], r["style"]) for r in everything}
    for task in ("NER", "RE", "EE"):
        for lang in ("zh", "en"):
            for style in ("text", "iepile"):
                assert (task, lang, style) in seen
    assert {r["task"] for r in everything if r["style"] == "alpaca"} == {"GENERAL"}
    mix = report["general_mixing"]
    assert sum(mix["taken"].values()) == sum(r["task"] == "GENERAL" for r in everything) > 0


def test_every_answer_parses_back(built):
    out, _ = built
    for split in ("valid", "paraphrase"):
        for r in _jsonl(out / f"{split}.jsonl"):
            if r["task"] == "GENERAL":
                continue
            res = parse_output(r["task"], r["format"], r["output"], r["lang"], r["schema"] or None)
            assert res.unparsed == [] and res.ignored == [], r["id"]


def test_funnel_precision_rises_and_gold_is_used(built):
    _, report = built
    rows = report["funnel_sentence"]
    assert [r["stage"] for r in rows] == ["distant_supervision", "schema", "transitive", "evidence_cues"]
    assert rows[-1]["precision"] > rows[0]["precision"] + 0.1
    assert rows[-1]["recall"] > 0.85
    assert report["documents"]["annotated"] > 0.9 * report["documents"]["documents"]
    assert report["linking"]["accuracy"] > 0.95
    assert report["filters"]["evidence_cues"]["dropped"] > 0


def test_splits_are_by_entity(built):
    out, report = built
    assert report["subjects_shared_with_train"] == {"valid": 0, "test": 0, "paraphrase": 0}
    anns = _jsonl(out / "annotations.jsonl")
    # every annotation of a document sits in its subject's split (paraphrase: a test document's;
    # held out: a train or valid document's)
    by_doc = {}
    for a in anns:
        if a["source"].startswith("kg2instruction:") and not a["id"].startswith("kg_event"):
            doc = a["id"].rsplit(":", 1)[0]
            by_doc.setdefault(doc, set()).add(a["split"])
    assert by_doc and all(len(s - {"paraphrase", "held_out"}) <= 1 for s in by_doc.values())
    assert not any({"paraphrase", "held_out"} <= s or ("paraphrase" in s and s & {"train", "valid"})
                   for s in by_doc.values())
    assert {a["split"] for a in anns} == set(pipeline.OUTPUT_SPLITS) | {pipeline.HELD_OUT}


def test_hf_dataset_matches_the_jsonl(built):
    import datasets

    out, report = built
    ds = datasets.load_from_disk(str(out / "hf_dataset"))
    assert {s: ds[s].num_rows for s in pipeline.OUTPUT_SPLITS} == report["split_records"]
    first = _jsonl(out / "test.jsonl")[0]
    assert ds["test"][0] == first


def test_review_round_trip(built, sample_corpus_80, tmp_path):
    out, report = built
    with open(out / "candidates.csv", encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == report["funnel_sentence"][-1]["candidates"]
    for row in rows[:3]:
        row["action"] = "DROP "  # case and spaces are tolerated
    reviewed = tmp_path / "reviewed.csv"
    with open(reviewed, "w", encoding="utf-8-sig", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    out2 = tmp_path / "ie2"
    r2 = pipeline.main(SAMPLE, _overrides(sample_corpus_80, out2, f"corrections={reviewed}"))
    assert r2["corrections"]["dropped"] == 3 and r2["corrections"]["unused_rows"] == 0
    assert r2["funnel_sentence"][-1]["stage"] == "human"
    assert r2["funnel_sentence"][-1]["candidates"] == report["funnel_sentence"][-1]["candidates"] - 3
    with open(out2 / "candidates.csv", encoding="utf-8-sig", newline="") as fh:
        carried = {r["id"]: r["action"] for r in csv.DictReader(fh)}
    assert [carried[r["id"]] for r in rows[:3]] == ["DROP "] * 3  # the review state is carried over
    assert len(carried) == len(rows)


def test_cli_build_help_and_errors(sample_corpus_80, tmp_path, capsys):
    with pytest.raises(SystemExit):
        run_cli(capsys, "ie", "build", "--help")
    out = capsys.readouterr().out
    for name in ("corpus_dir", "ie_schema", "gold", "filters.evidence_cues", "instructions.split_num_re",
                 "general_ratio", "extra_datasets"):
        assert name in out, name
    rc, _, err = run_cli(capsys, "ie", "build", SAMPLE, "-o", f"corpus_dir={sample_corpus_80}",
                         "-o", "valid_fraction=0.6", "-o", "test_fraction=0.5", "--out", tmp_path / "x")
    assert_one_line_error(rc, err, "valid_fraction + test_fraction", command="ie")
    bad = tmp_path / "bad.csv"
    bad.write_text("id,sentence,head_text,relation,tail_text,head_id,tail_id,action,fixed_relation,"
                   "fixed_head_text,fixed_tail_text,note\nx:0:0,s,a,r,b,h,t,maybe,,,,\n", "utf-8")
    rc, _, err = run_cli(capsys, "ie", "build", SAMPLE, "-o", f"corpus_dir={sample_corpus_80}",
                         "-o", f"corrections={bad}", "--out", tmp_path / "y")
    assert_one_line_error(rc, err, f"{bad}:2", "unknown action", command="ie")
    assert not (tmp_path / "y").exists()


def test_cli_writes_and_refuses_foreign_folder(sample_corpus_80, tmp_path, capsys):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me", "utf-8")
    rc, _, err = run_cli(capsys, "ie", "build", SAMPLE, "-o", f"corpus_dir={sample_corpus_80}",
                         "-o", "max_docs_per_source=5", "--no-progress", "--out", foreign)
    assert_one_line_error(rc, err, str(foreign), command="ie")
    assert (foreign / "notes.txt").read_text("utf-8") == "keep me"
    rc, out, err = run_cli(capsys, "ie", "build", SAMPLE, "-o", f"corpus_dir={sample_corpus_80}",
                           "-o", "max_docs_per_source=5", "-o", "hf_dataset=false", "--no-progress",
                           "--out", tmp_path / "ok")
    assert rc == 0, err
    assert "records: train" in out and (tmp_path / "ok" / "train.jsonl").is_file()
    assert not (tmp_path / "ok" / "hf_dataset").exists()


def test_split_of_and_event_subject():
    cfg = pipeline.KG2InstructionConfig(corpus_dir="c", kg_dir="k", ie_schema="s", valid_fraction=0.2,
                                        test_fraction=0.2)
    splits = [pipeline.split_of(f"city/x{i}", cfg) for i in range(2000)]
    assert splits == [pipeline.split_of(f"city/x{i}", cfg) for i in range(2000)]  # stable
    assert 0.15 < splits.count("test") / 2000 < 0.25 and 0.15 < splits.count("valid") / 2000 < 0.25
    assert pipeline.split_of(None, cfg) == "train"
    assert pipeline.event_subject("kg_event:birth:person/ma_yun:zh:0") == "person/ma_yun"
    assert pipeline.event_subject("kg_event:birth+founding:person/ma_yun+company/alibaba:en:0") == "person/ma_yun"
    assert pipeline.event_subject("duee_sample:3") is None


def test_rule_reference_reproduces_the_labels_from_one_sentence(built):
    from knowlm_utils.ie.evaluate import evaluate_predictions
    from knowlm_utils.kg import load_kg
    from knowlm_utils.kg2instruction.reference import record_text, rule_answers
    from knowlm_utils.kg2instruction.supervision import FilterOptions, load_ie_schema

    out, _ = built
    records = [r for r in _jsonl(out / "valid.jsonl") if r["task"] in ("NER", "RE")][:300]
    kg = load_kg(ROOT / "data_samples" / "kg")
    schema = load_ie_schema(ROOT / "data_samples" / "kg" / "ie_schema.yaml", kg)
    answers = rule_answers(records, kg, schema)
    assert set(answers) == {r["id"] for r in records}
    rep = evaluate_predictions(records, answers).to_dict()
    assert rep["micro"]["f1"] > 0.95 and rep["unparseable"] == 0
    # without the cue filter the rules add triples the labels left out: precision drops
    loose = evaluate_predictions(records, rule_answers(records, kg, schema, filters=FilterOptions(
        evidence_cues=False))).to_dict()
    assert loose["by_task"]["RE"]["p"] < rep["by_task"]["RE"]["p"]
    iep = next(r for r in records if r["style"] == "iepile")
    assert record_text(iep) and record_text(iep) in iep["instruction"]


# ------------------------------------------------------------------ the paraphrase split --
def _template_regex(text: str):
    """A text-style template as a pattern over filled instructions (``{schema}``/``{format}`` → anything)."""
    import re

    return re.compile("^" + ".*".join(re.escape(p) for p in re.split(r"\{schema\}|\{format\}", text)) + "$", re.S)


def test_paraphrase_split_holds_out_templates_and_phrasings(built):
    out, report = built
    para = report["paraphrase"]
    assert para["enabled"] and para["reason"] is None
    assert para["sentences"] == report["split_sentences"]["paraphrase"] > 0
    assert para["records"] == report["split_records"]["paraphrase"] > 0
    assert para["dropped_sentences"]["train"] > 0 and para["held_out_templates"] > 0
    held = {t for g in para["template_groups"].values() for t in g["held_out"]}
    assert len(held) == para["held_out_templates"]
    # sentences: a held-out template never reaches train/valid/test; every paraphrase sentence uses one
    anns = {a["id"]: a for a in _jsonl(out / "annotations.jsonl")}
    corpus = [a for a in anns.values() if "templates" in a]
    assert corpus and all(a["split"] in pipeline.OUTPUT_SPLITS + (pipeline.HELD_OUT,) for a in corpus)
    for a in corpus:
        assert bool(held & set(a["templates"])) == (a["split"] in ("paraphrase", "held_out")), a["id"]
    assert sum(a["split"] == "held_out" for a in corpus) == sum(para["dropped_sentences"].values())
    # records: each sits in its sentence's split; instruction phrasings held out of every other split
    iepile_held = {p for ps in para["held_out_phrasings"]["iepile"].values() for p in ps}
    text_held = [_template_regex(t) for ts in para["held_out_phrasings"]["text"].values() for t in ts]
    assert len(iepile_held) == 6 and len(text_held) == 12   # one per task × language (text: schema + open)
    for split in pipeline.OUTPUT_SPLITS:
        for r in _jsonl(out / f"{split}.jsonl"):
            ann = anns.get(r["id"].rsplit(":", 4)[0])
            if r["task"] == "GENERAL" or ann is None or "templates" not in ann:
                assert split != "paraphrase"          # paraphrase: corpus sentences only
                continue
            assert ann["split"] == split, r["id"]
            if r["style"] == "iepile":
                used = json.loads(r["instruction"])["instruction"] in iepile_held
            else:
                used = any(rx.match(r["instruction"]) for rx in text_held)
            assert used == (split == "paraphrase"), r["id"]


def test_paraphrase_templates_are_seeded_by_split_seed(built):
    from knowlm_utils.kg2instruction.gold import load_gold

    _, report = built
    gold = load_gold(ROOT / "data_samples" / "corpus" / "gold_facts.jsonl.gz")
    held, table = pipeline.held_out_templates(gold, 0.2, 0)
    assert table == report["paraphrase"]["template_groups"]      # the build used exactly this choice
    assert (held, table) == pipeline.held_out_templates(gold, 0.2, 0)
    assert pipeline.held_out_templates(gold, 0.2, 1)[0] != held
    assert all(0 <= len(g["held_out"]) < g["templates"] for g in table.values())
    more = pipeline.held_out_templates(gold, 0.5, 0)[0]
    assert len(more) > len(held)
    assert pipeline.held_out_templates(gold, 0.0, 0)[0] == frozenset()


def test_no_paraphrase_split_at_fraction_zero_or_with_old_gold(sample_corpus_80, tmp_path, caplog):
    import gzip
    import re

    tiny = ["max_docs_per_source=5", "hf_dataset=false", "general_ratio=0"]
    off = pipeline.main(SAMPLE, _overrides(sample_corpus_80, tmp_path / "off", "paraphrase_fraction=0", *tiny))
    assert not off["paraphrase"]["enabled"] and "paraphrase_fraction" in off["paraphrase"]["reason"]
    assert off["split_records"]["paraphrase"] == 0 and off["paraphrase"]["held_out_phrasings"] == {}
    assert (tmp_path / "off" / "paraphrase.jsonl").read_text("utf-8") == ""
    assert {a["split"] for a in _jsonl(tmp_path / "off" / "annotations.jsonl")} <= set(pipeline.SPLITS)
    # a gold file written before template ids existed: loads, builds, one warning line, same data
    text = gzip.decompress((ROOT / "data_samples" / "corpus" / "gold_facts.jsonl.gz").read_bytes()).decode()
    old = tmp_path / "old_gold.jsonl"
    old.write_text(re.sub(r',"template":(?:null|"[^"]*")', "", text), "utf-8")
    with caplog.at_level("WARNING"):
        r = pipeline.main(SAMPLE, _overrides(sample_corpus_80, tmp_path / "old", f"gold={old}", *tiny))
    assert not r["paraphrase"]["enabled"] and "template ids" in r["paraphrase"]["reason"]
    warnings = [rec.getMessage() for rec in caplog.records if rec.levelname == "WARNING"]
    assert len(warnings) == 1 and "no paraphrase split" in warnings[0] and "\n" not in warnings[0]
    for split in pipeline.OUTPUT_SPLITS:
        assert (tmp_path / "old" / f"{split}.jsonl").read_bytes() == (tmp_path / "off" / f"{split}.jsonl").read_bytes()
