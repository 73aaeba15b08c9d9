"""The fast cleaning filters (knowlm_utils/cleaning.py) decide exactly as the original regex
implementation, frozen in tests/cleaning_reference.py: same rule for every document, same
per-rule counts, same ratios, on the sample world, on generated documents (Chinese, English,
code, mixed, planted noise, unicode edge cases) and on random texts (hypothesis), with the
default lists and with user lists that exercise the regex analysis behind the shortcuts."""

from __future__ import annotations

import re
import zlib
from collections import Counter
from dataclasses import replace

import cleaning_reference as ref
import corpus_gen
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from knowlm_utils import cleaning
from knowlm_utils.cleaning import RULES, DocumentFilter, FilterConfig
from knowlm_utils.corpus import iter_records, load_corpus_config, source_files
from knowlm_utils.workdir import repo_root

RATIOS = ("nonspace_len", "symbol_ratio", "mojibake_ratio", "duplicate_sentence_fraction")


def assert_same(new: DocumentFilter, old: ref.DocumentFilter, texts: list[str], skip=frozenset()) -> Counter:
    """Same rule for every text (and the same per-rule counts); returns the counts."""
    got, want = [new.check(t, skip) for t in texts], [old.check(t, skip) for t in texts]
    diff = [(i, g, w, texts[i][:60]) for i, (g, w) in enumerate(zip(got, want)) if g != w]
    assert not diff, f"{len(diff)} decisions differ, first: {diff[:3]}"
    assert Counter(got) == Counter(want)
    return Counter(got)


def assert_same_ratios(texts: list[str]) -> None:
    for name in RATIOS:
        got = [getattr(cleaning, name)(t) for t in texts]
        want = [getattr(ref, name)(t) for t in texts]
        assert got == want, name  # exactly the same floats


def assert_same_rules(new: DocumentFilter, old: ref.DocumentFilter, texts: list[str]) -> None:
    """Every rule on its own (not only the first that fires)."""
    for rule in RULES:
        got = [getattr(new, f"_is_{rule}")(t) for t in texts]
        assert got == [getattr(old, f"_is_{rule}")(t) for t in texts], rule


# ------------------------------------------------------------------ code-point tables -------
def test_code_point_tables_match_the_regexes_for_every_code_point():
    tables = cleaning._tables()
    everything = cleaning._all_codepoints()
    assert len(everything) == 0x110000
    space = np.zeros(0x110000, bool)
    space[[m.start() for m in re.finditer(r"\s", everything)]] = True
    assert np.array_equal((tables.cls & cleaning._SPACE_BIT) != 0, space)
    assert all(chr(c).isspace() for c in np.flatnonzero(space))  # str.split agrees with \s
    symbol = np.zeros(0x110000, bool)
    symbol[[m.start() for m in ref._SYMBOL.finditer(everything)]] = True
    assert np.array_equal((tables.cls & cleaning._SYMBOL_BIT) != 0, symbol)
    # case folding: no cased code point past the table's limit, and folding keeps every
    # whitespace and line-end character (so folded lines align with the text's lines)
    import _sre
    assert not any(_sre.unicode_iscased(c) for c in range(cleaning._CASED_LIMIT, 0x110000))
    fold = tables.fold
    assert np.array_equal(space[fold], space)
    breaks = np.zeros(0x110000, bool)
    breaks[[ord(c) for c in "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"]] = True
    assert np.array_equal(breaks[fold], breaks)
    assert "a\u2028b\rc".splitlines() == ["a", "b", "c"]
    for lo, others in cleaning._EXTRA_CASES.items():  # re's extra case classes are cliques
        cls = {lo, *others}
        assert all({o, *cleaning._EXTRA_CASES[o]} == cls for o in others)
        assert len({int(fold[c]) for c in cls}) == 1


def test_folding_equals_ignorecase_for_every_cased_character():
    """Two characters that IGNORECASE takes as equal fold to the same character."""
    import _sre
    fold = cleaning._tables().fold
    cased = [c for c in range(cleaning._CASED_LIMIT) if _sre.unicode_iscased(c)]
    for c in cased:
        pat = re.compile(re.escape(chr(c)), re.IGNORECASE)
        # candidates: the characters with the same fold, plus the simple upper/lower forms
        for d in {c, ord(chr(c).lower()[0]), ord(chr(c).upper()[0]), int(fold[c])}:
            if pat.fullmatch(chr(d)):
                assert fold[c] == fold[d], (hex(c), hex(d))
    assert fold[ord("ſ")] == fold[ord("S")] == ord("s") and fold[0x212A] == ord("k")  # ſ, Kelvin sign


# ------------------------------------------------------------------ corpora -------------------
def test_sample_world_decisions_and_counts_are_unchanged():
    cfg = load_corpus_config(repo_root() / "configs" / "corpus" / "sample.yaml")
    new, old = DocumentFilter(cfg.filters, cfg.base_dir), ref.DocumentFilter(cfg.filters, cfg.base_dir)
    total, everything = Counter(), []
    for src in cfg.sources:
        texts = [r.text for path in source_files(src, cfg.base_dir) for r in iter_records(src, path)
                 if r.skip is None]
        total += assert_same(new, old, texts, frozenset(src.skip_filters))
        everything += texts
    assert sum(v for k, v in total.items() if k) >= 60  # the planted noise is there, every rule fires
    assert set(total) - {None} == set(RULES)
    assert_same_ratios(everything[::4])
    fix_new = DocumentFilter(replace(cfg.filters, mojibake_action="fix"), cfg.base_dir)
    fix_old = ref.DocumentFilter(replace(cfg.filters, mojibake_action="fix"), cfg.base_dir)
    mojibake = [t for t in everything if old._is_mojibake(t)]
    assert len(mojibake) >= 10
    assert [fix_new.repair(t) for t in mojibake] == [fix_old.repair(t) for t in mojibake]


@pytest.fixture(scope="module")
def generated() -> list[str]:
    return corpus_gen.documents(seed=7, n_chars=600_000, mean_doc_chars=2500, noise=0.35)


def test_generated_corpus_decisions_counts_and_ratios_are_unchanged(generated):
    new, old = DocumentFilter(), ref.DocumentFilter()
    counts = assert_same(new, old, generated)
    assert set(counts) - {None} == set(RULES) and counts[None] > len(generated) / 3
    assert_same(new, old, generated, frozenset({"symbol_ratio", "repetition"}))
    assert_same_ratios(generated)
    assert_same_rules(new, old, generated)


def test_every_threshold_setting_gives_the_same_decisions(generated):
    texts = generated[::3]
    for cfg in (FilterConfig(min_chars=0, max_chars=10**9, mojibake_max_ratio=0.0, symbol_max_ratio=0.05),
                FilterConfig(boilerplate_max_line_fraction=0.01, boilerplate_max_line_chars=5,
                             repetition_max_dup_fraction=0.0, repetition_min_compress_ratio=0.5),
                FilterConfig(rules=["symbol_ratio", "boilerplate", "blocklist", "mojibake"]),
                FilterConfig(blocklist_files=[], boilerplate_files=[])):
        assert_same(DocumentFilter(cfg), ref.DocumentFilter(cfg), texts)


# user lists: case folds (ſ, Kelvin sign, İ/ı), whitespace-only separators, anchors, look-arounds,
# back-references, classes, patterns that match the empty string, inline flags
USER_BLOCKLIST = ["Straße", "kelvin scale", "casino", "İstanbul bazaar", "a b", "x", "网络 赌博", "ǅemal", "ΣΟΦΙΑ"]
USER_BOILERPLATE = [r"^menu$", r"(?<=\s)login", r"end of page$", r"(ab)\1", r"[0-9]{3}-[0-9]{4}", r"foo|bar",
                    r"\bhome\b", r"(?i:sıgn)\s*up", r"colou?r (red|blue)", r"q*", r"[^\W\d]{20,}",
                    r"(?=\w)share", r"\d+ comments?", r"点(击|我)"]


def user_lists(tmp_path):
    (tmp_path / "block.txt").write_text("\n".join(USER_BLOCKLIST), encoding="utf-8")
    (tmp_path / "boiler.txt").write_text("\n".join(USER_BOILERPLATE), encoding="utf-8")
    return FilterConfig(blocklist_files=[str(tmp_path / "block.txt")], boilerplate_files=[str(tmp_path / "boiler.txt")],
                        boilerplate_max_line_chars=40)


def test_user_lists_with_hard_regexes_give_the_same_decisions(tmp_path, generated):
    cfg = user_lists(tmp_path)
    lines = ["menu", "  login here", "the end of page", "abab", "call 555-1234", "foo bar", "go home",
             "SIGN up", "ſıgn up", "color blue", "qqq", "averyveryverylongwordwithoutanydigits", "share it",
             "12 comments", "点击", "STRASSE", "straſſe", "STRAẞE", "KELVIN  scale", "\u212aelvin scale", "İSTANBUL bazaar",
             "istanbul\u3000bazaar", "A\nb", "网络\t赌博", "ǄEMAL", "ǆemal", "σοφια", "σοφιας"]
    texts = [*generated[:40], *lines, *("\n".join(lines[i:i + 3]) for i in range(len(lines))),
             *(ln + "\n" + "正常的内容。" * 3 for ln in lines)]
    counts = assert_same(DocumentFilter(cfg), ref.DocumentFilter(cfg), texts)
    assert counts["boilerplate"] and counts["blocklist"]
    # a pattern that can match the empty string leaves no shortcut: the regex always runs
    assert DocumentFilter(cfg)._boilerplate_gate.keys is None


def test_regex_analysis_finds_strings_every_match_contains():
    def must(pattern, flags=re.IGNORECASE):
        return cleaning._must_contain(cleaning._parser.parse(pattern, flags))

    assert must("点(这里|此处|下方)") == {"点这里", "点此处", "点下方"}
    assert must(r"copyright ©?\s*\d{4}") == {"copyright ", "copyright ©"}
    assert must(r"\bbuy\s+cocaine\b") == {"cocaine"}
    assert must(r"(?:a|b)+xyz") == {"xyz"}
    for never in (r"q*", r"\w+", r"(a|)", r"a?b?", r"(x)\1?"):  # can match "" or nothing fixed
        m = must(never)
        assert m is None or all(len(s) == 1 for s in m)
    assert must(r"q*") is None and must(r"\w+") is None


# ------------------------------------------------------------------ random texts --------------
PIECES = ["黄河", "是中国第二长河", "。", "，", "！", "？", "；", ";", ".", ". ", "!", "?", "\n", "\r\n", "\r", " ", "\t",
          "\u3000", "\xa0", "\u2028", "\x1c", "\x85", "  ", "a", "The", "river", "casino", "Online Casino Bonus",
          "buy  cocaine", "网络赌博", "点击这里", "版权所有", "read more", "Click Here", "all rights reserved", "上一篇",
          "锟斤拷", "烫烫烫", "屯屯", "\ufffd", "Ã©", "â€œ", "Ã", "Â ", "°", "×²", "├", "█", "ð", "é", "€", "_", "@", "#",
          "😀", "𠀀", "\u200b", "ſ", "İ", "ı", "\u212a", "0", "2024", "(", ")", "“", "”", "…", "—", "\\", "-", "'",
          "今天天气很好，我们去爬山吧。", "Hello world. ", "x = 1\n", "\x00", "\ud800"]


def outcome(fn, *args):
    """The value, or the exception type when the call raises (both must raise alike)."""
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001 — compared, not hidden
        return type(exc)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(parts=st.lists(st.sampled_from(PIECES), max_size=60), repeat=st.integers(1, 4))
def test_random_texts_decide_and_measure_the_same(parts, repeat):
    text = "".join(parts) * repeat
    new, old = _filters()
    for n, o in zip(new, old):
        for skip in (frozenset(), frozenset({"too_short", "mojibake"})):
            assert outcome(n.check, text, skip) == outcome(o.check, text, skip)
    for name in RATIOS:
        assert outcome(getattr(cleaning, name), text) == outcome(getattr(ref, name), text), name
    for rule in RULES:
        assert outcome(getattr(new[1], f"_is_{rule}"), text) == outcome(getattr(old[1], f"_is_{rule}"), text), rule


_FILTERS = None


def _filters():
    global _FILTERS
    if _FILTERS is None:
        cfgs = [FilterConfig(), FilterConfig(min_chars=0, mojibake_max_ratio=0.0, boilerplate_max_line_fraction=0.01,
                                              repetition_max_dup_fraction=0.0, symbol_max_ratio=0.0,
                                              rules=[r for r in RULES if r != "repetition"])]
        _FILTERS = ([DocumentFilter(c) for c in cfgs], [ref.DocumentFilter(c) for c in cfgs])
    return _FILTERS


def test_sentence_cutting_matches_the_lookbehind_regex():
    texts = ["a. b. c.", "a.b. c", "。。！！", ".\n.\n", "x. \n y", "3.14 is pi. Yes", "end.", ".", "", "\n\n",
             "a.\u3000b", "问？答！完；", "a\x00b. c"]
    for t in texts:
        got = [s.strip() for s in cleaning._sentences(t) if s.strip()]
        assert got == [s.strip() for s in ref._SENTENCE_SPLIT.split(t) if s.strip()], t


def test_zlib_rule_unchanged_on_repetitive_and_random_text():
    new, old = DocumentFilter(), ref.DocumentFilter()
    for text in ("好" * 600, "ab" * 400, "".join(chr(0x4E00 + (i * 7919) % 20000) for i in range(800))):
        raw = text.encode()
        assert new._is_repetition(text) == old._is_repetition(text) == (len(zlib.compress(raw, 6)) / len(raw) < 0.12)


def test_filter_survives_pickling_for_worker_processes(generated):
    """Executors (the corpus worker pool, datatrove) ship the filter to other processes."""
    import pickle
    f = DocumentFilter()
    g = pickle.loads(pickle.dumps(f))
    assert [g.check(t) for t in generated[:60]] == [f.check(t) for t in generated[:60]]
    assert g._blocklist_phrases.keys.table is g._boilerplate_gate.keys.table  # still one shared table
