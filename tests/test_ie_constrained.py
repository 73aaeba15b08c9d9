"""Span-constrained decoding of IEPile answers (knowlm_utils.ie.constrained): the grammar on gold answers of
the real-format samples and on hand-made wrong ones, the token constraint over the session's real
SentencePiece model (byte fallback included) and its Hugging Face tokenizer, and generation with a
real tiny LLaMA through predict_records and ``knowlm eval ie --constrained``."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from knowlm_utils.generation import Codec
from knowlm_utils.ie.converters import read_annotations
from knowlm_utils.ie.constrained import (AnswerConstraint, AnswerGrammar, TokenVocabulary, answer_grammar,
                                         record_constraints)
from knowlm_utils.ie.formats import format_output, iepile_instruction, parse_output
from knowlm_utils.ie.predict import predict_records

from conftest import run_cli

SAMPLES = Path(__file__).resolve().parents[1] / "data_samples" / "ie_formats"
READERS = {"iepile_sample.jsonl": "iepile", "duie_sample.jsonl": "duie", "conll2003_sample.txt": "conll2003",
           "peoples_daily_sample.txt": "peoples_daily"}


def record(task, lang, schema, text, items=(), rid="r"):
    return {"id": rid, "task": task, "lang": lang, "style": "iepile", "format": "iepile", "schema": list(schema),
            "instruction": iepile_instruction(task, lang, list(schema), text), "input": "",
            "output": format_output(task, "iepile", list(items), lang, list(schema))}


def sample_records():
    """IEPile records of every NER/RE annotation in the real-format samples; the schema of a language is
    every type of that language in the samples, so most keys of a record are empty (negatives)."""
    anns = []
    for name, fmt in READERS.items():
        anns += list(read_annotations(SAMPLES / name, fmt))
    out = []
    for lang in ("zh", "en"):
        mine = [a for a in anns if a.lang == lang]
        types = sorted({e.type for a in mine for e in a.entities})
        relations = sorted({r.relation for a in mine for r in a.relations})
        for a in mine:
            if a.entities:
                out.append(record("NER", lang, types, a.text, a.entities, f"{a.id}:NER"))
            if a.relations:
                out.append(record("RE", lang, relations, a.text, a.relations, f"{a.id}:RE"))
    return out


def test_every_gold_answer_of_the_real_samples_is_allowed():
    recs = sample_records()
    assert len(recs) >= 20 and {r["lang"] for r in recs} == {"zh", "en"} and {r["task"] for r in recs} == {"NER", "RE"}
    for r in recs:
        g = answer_grammar(r)
        assert g is not None and g.accepts(r["output"]), r["id"]
        assert g.accepts_prefix(r["output"][:len(r["output"]) // 2])


PARIS = "Paris is the capital of France, not Parisville."


@pytest.mark.parametrize("answer,ok", [
    ('{"city": ["Paris"], "country": ["France"]}', True),
    ('{"city": ["Paris", "Parisville"], "country": []}', True),
    ('{"city": [], "country": []}', True),
    ('{"country": ["France"], "city": ["Paris"]}', False),         # keys out of the schema's order
    ('{"city": ["Paris"]}', False),                                # a key missing
    ('{"city": ["Paris"], "country": [], "river": []}', False),    # a key outside the schema
    ('{"city": ["London"], "country": []}', False),                # not in the input
    ('{"city": ["Pari"], "country": []}', False),                  # cut inside a word
    ('{"city": ["aris"], "country": []}', False),                  # starts inside a word
    ('{"city": [" Paris"], "country": []}', False),                # a space at the start
    ('{"city": ["Paris "], "country": []}', False),                # ... at the end
    ('{"city": [""], "country": []}', False),                      # empty
    ('{"city":["Paris"], "country": []}', False),                  # not the canonical spacing
    ('{"city": ["Paris"], "country": []}\n', False),               # text after the answer
    ('{"city": ["capital of France"], "country": []}', True),      # any span at word boundaries
])
def test_ner_grammar(answer, ok):
    g = AnswerGrammar("NER", ["city", "country"], PARIS)
    assert g.accepts(answer) is ok


def test_re_grammar_cjk_and_word_boundaries():
    g = AnswerGrammar("RE", ["首都", "位于"], "巴黎是法国的首都。")
    assert g.accepts('{"首都": [{"subject": "法国", "object": "巴黎"}], "位于": []}')
    assert g.accepts('{"首都": [], "位于": [{"subject": "黎是法", "object": "国"}]}')  # CJK: every character a word
    assert not g.accepts('{"首都": [{"object": "巴黎", "subject": "法国"}], "位于": []}')
    assert not g.accepts('{"首都": [{"subject": "法国"}], "位于": []}')
    loose = AnswerGrammar("NER", ["city"], PARIS, word_boundaries=False)
    assert loose.accepts('{"city": ["Pari"]}') and not loose.accepts('{"city": [" Paris"]}')
    assert AnswerGrammar("NER", [], PARIS).accepts("{}")
    with pytest.raises(ValueError, match="covers NER, RE"):
        AnswerGrammar("EE", ["出生"], "x")


def test_names_with_quotes_and_escapes():
    text = 'He wrote "Blue River" in Oslo\\Bergen.\nThe end'
    g = AnswerGrammar("NER", ["work", "city"], text)
    assert g.accepts(format_output("NER", "iepile", parse_output("NER", "iepile", json.dumps(
        {"work": ['"Blue River"'], "city": ["Oslo\\Bergen"]}, ensure_ascii=False)).items, "en", ["work", "city"]))
    assert g.accepts(json.dumps({"work": ["Blue River"], "city": ["Oslo"]}, ensure_ascii=False))
    assert not g.accepts('{"work": ["\\"Blue"], "city": ["n"]}')       # no cut inside the escape \n
    assert not g.accepts('{"work": ["Blue River\\"], "city": []}')     # nor inside \"


def test_which_records_get_a_grammar():
    ner = record("NER", "en", ["city"], PARIS)
    assert isinstance(answer_grammar(ner), AnswerGrammar)
    assert answer_grammar({**ner, "format": "tuple", "style": "text"}) is None
    assert answer_grammar({**record("EE", "zh", ["出生"], "他出生了。")}) is None
    # an instruction that is not JSON: the record's own schema and input
    plain = {**ner, "instruction": "List the cities.", "input": PARIS}
    assert answer_grammar(plain).accepts('{"city": ["Paris"]}')
    assert answer_grammar({**plain, "input": ""}) is None
    assert answer_grammar({**ner, "instruction": "x", "schema": [1, 2], "input": PARIS}) is None


def random_walk(constraint: AnswerConstraint, rng: random.Random, limit: int = 400) -> list[int]:
    ids: list[int] = []
    for _ in range(limit):
        allowed = constraint.allowed(ids)
        assert allowed, "a state with nothing allowed"
        tok = rng.choice(allowed)
        if tok == constraint.vocab.eos:
            return ids
        ids.append(tok)
    raise AssertionError(f"no end after {limit} tokens")


@pytest.mark.parametrize("which", ["sp", "hf"])
def test_every_walk_through_the_allowed_tokens_ends_in_an_allowed_answer(which, sp, hf_tokenizer_dir):
    from transformers import AutoTokenizer

    tok = sp if which == "sp" else AutoTokenizer.from_pretrained(hf_tokenizer_dir)
    vocab = TokenVocabulary.from_tokenizer(tok)
    assert vocab.eos == sp.eos_id() and isinstance(vocab.surfaces[sp.piece_to_id("<0xE9>")], bytes)
    codec = Codec(tok)
    rare = "龘城与𝔸镇"  # characters outside the vocabulary: byte pieces
    assert sp.piece_to_id("<0xE9>") in sp.encode(rare)
    recs = [record("NER", "zh", ["城市", "国家"], rare), record("RE", "en", ["capital of"], PARIS),
            record("NER", "en", ["city", "country", "work"], 'He wrote "Blue" in Paris.')]
    rng = random.Random(0)
    seen_bytes = 0
    for r in recs:
        c = AnswerConstraint(answer_grammar(r), vocab)
        for _ in range(25):
            ids = random_walk(c, rng)
            seen_bytes += any(isinstance(vocab.surfaces[i], bytes) for i in ids)
            text = codec.decode(ids)
            assert c.grammar.accepts(text), text
            res = parse_output(r["task"], "iepile", text, r["lang"], r["schema"])
            assert res.ok
            names = [it.text for it in res.items] if r["task"] == "NER" else \
                [n for it in res.items for n in (it.head, it.tail)]
            assert all(n in json.loads(r["instruction"])["input"] for n in names)
    assert seen_bytes > 0
    assert c.allowed([]) == sorted(c.allowed([]))
    assert c.allowed([vocab.eos]) == [vocab.eos]  # ids that left the grammar: stop


def test_a_vocabulary_that_is_not_sentencepiece_is_refused():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE(vocab={"a": 0, "b": 1, "</s>": 2}, merges=[]))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel()
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="</s>")
    with pytest.raises(ValueError, match="not a SentencePiece vocabulary") as e:
        TokenVocabulary.from_tokenizer(tok)
    assert "\n" not in str(e.value)



def prompt(record):
    return record["instruction"] + "\n" + record["input"] + "\n答案："


def test_generation_under_constraints(model, sp):
    recs = [record("NER", "zh", ["城市", "国家"], "巴黎是法国的首都。", rid="a"),
            record("RE", "en", ["capital of", "located in"], PARIS, rid="b"),
            {**record("NER", "en", ["city"], PARIS, rid="c"), "style": "text", "format": "tuple"}]
    free = predict_records(recs, model, sp, prompt, max_new_tokens=24, batch_size=3, progress=False)
    got = predict_records(recs, model, sp, prompt, max_new_tokens=24, batch_size=3, progress=False,
                          constrained=True)
    assert [r["constrained"] for r in got] == [True, True, False] and not any(r["constrained"] for r in free)
    for r, row in zip(recs[:2], got[:2]):
        assert answer_grammar(r).accepts_prefix(row["generation"]), row["generation"]
        assert row["generation"].startswith('{"')
    assert got[2]["generation"] == free[2]["generation"]  # a record without a grammar decodes as before
    assert all(not answer_grammar(r).accepts_prefix(row["generation"]) for r, row in zip(recs[:2], free[:2]))
    assert [c is not None for c in record_constraints(recs, sp)] == [True, True, False]
    assert record_constraints(recs[2:], sp) == [None]
    long = predict_records(recs[:1], model, sp, prompt, max_new_tokens=200, progress=False, constrained=True,
                           decoding="beam")
    assert answer_grammar(recs[0]).accepts_prefix(long[0]["generation"])


def test_eval_cli_constrained(capsys, tmp_path, model_dir):
    data = tmp_path / "test.jsonl"
    recs = [record("NER", "zh", ["城市", "国家"], "巴黎是法国的首都。", [], rid="a"),
            {**record("NER", "en", ["city"], PARIS, rid="c"), "style": "text", "format": "tuple", "output": "NAN"}]
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs), encoding="utf-8")
    out = tmp_path / "ev" / "report.json"
    rc, stdout, err = run_cli(capsys, "eval", "ie", "--model", str(model_dir), "--data", str(data), "--out", str(out),
                              "--constrained", "--max-new-tokens", "64", "--no-progress")
    assert rc == 0, err
    rep = json.loads(out.read_text(encoding="utf-8"))
    assert rep["run"]["constrained"] is True and rep["run"]["constrained_records"] == 1
    rows = [json.loads(x) for x in (out.parent / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["constrained"] for r in rows] == [True, False]
    assert answer_grammar(recs[0]).accepts_prefix(rows[0]["generation"])
