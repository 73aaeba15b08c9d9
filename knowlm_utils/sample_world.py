"""Deterministic generator of the sample world's pretraining sources and instructions.

Reads the knowledge graph (``data_samples/kg``), sentence/code/instruction templates
(``data_samples/templates``) and hand-written material (``data_samples/handwritten``), and
writes (``data_samples/corpus`` and ``data_samples/instructions``):

* clean documents in KnowLM's source formats (zh encyclopedia, zh wiki gzip, en wiki, code,
  one-document-per-line web text), several paragraphs each, with seeded template choices;
* planted noise for the cleaning stage, every planted line listed in ``noise_manifest.jsonl``
  with the rule that must catch it (and, for duplicates, the line it copies);
* Alpaca-format instructions: hand-written seeds plus questions answered from the KG.

Same seed → byte-identical files (sorted iteration, one seeded RNG, gzip mtime 0), so the
committed files are checked against a fresh run (``scripts/build_sample_world.py --check``).
"""

from __future__ import annotations

import gzip
import json
import random
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .cleaning import read_list_file
from .config import Section, field
from .dedup import jaccard, normalize
from .fileio import read_jsonl, write_bytes_atomic
from .kg import KnowledgeGraph, load_kg

SOURCE_ORDER = ["zh_baike.jsonl", "zh_wiki.jsonl.gz", "en_wiki.jsonl", "code.jsonl", "web_mixed.txt"]
FIELDS = {"zh_baike.jsonl": ("title", "content"), "zh_wiki.jsonl.gz": ("title", "content"),
          "en_wiki.jsonl": ("title", "text"), "code.jsonl": ("input", "output")}


@dataclass
class SampleWorldConfig(Section):
    data_root: str = field("data_samples", help="folder with kg/, templates/ and handwritten/")
    out_dir: str | None = field(None, help="where corpus/ and instructions/ go (default: data_root)")
    seed: int = field(20240601, help="the one RNG seed of the whole generation")
    wiki_fraction: float = field(0.8, ge=0, le=1, help="share of entities (with >= 3 facts) that also get a "
                                                       "zh_wiki article")
    web_docs: int = field(600, ge=0, help="clean one-line documents in web_mixed.txt")
    max_clean_jaccard: float = field(0.6, gt=0, le=1, help="a clean document this similar (character 5-gram "
                                     "Jaccard) to an earlier one is left out, so that only planted duplicates "
                                     "are duplicates")
    code_group_size: int = field(8, ge=1, help="entities per generated code item")


# ------------------------------------------------------------------------- text helpers --
def _join(sentences: list[str], lang: str) -> str:
    return ("" if lang == "zh" else " ").join(s for s in sentences if s)


def _names(kg: KnowledgeGraph, ids: list[str], lang: str) -> str:
    names = [kg.name(i, lang) for i in ids]
    if lang == "zh":
        return "、".join(names)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


_FUNCTION_WORDS = {"The", "An", "A", "As", "Among", "Within", "Geographically,", "Other", "Notable", "Notably,",
                   "Products", "From", "In", "On", "I", "Talking"}


def _fill(template: str, values: dict[str, tuple[str, str | None]]) -> tuple[str, list[list], dict[str, int]]:
    """``template.format(**names)`` plus where each named entity landed: ``values`` maps a
    placeholder to ``(text, entity id or None)``; returns the text, ``[start, end, id]``
    mentions (offsets in the filled text) and the start of every placeholder."""
    out, mentions, starts, pos = [], [], {}, 0
    for literal, name, _spec, _conv in string.Formatter().parse(template):
        out.append(literal)
        pos += len(literal)
        if name is not None:
            text, eid = values[name]
            starts[name] = pos
            if eid is not None:
                mentions.append([pos, pos + len(text), eid])
            out.append(text)
            pos += len(text)
    return "".join(out), mentions, starts


def template_ids(tpl: dict) -> dict[tuple[str, str, str, int], str]:
    """A stable id for every sentence template of ``documents.yaml`` that writes gold statements:
    ``(lang, relation key, "head"/"tail", index) → "lang:relation key:head|tail:index"`` for the
    relation templates (``relation key`` as in the file, e.g. ``capital_of@country``), and
    ``(lang, "aliases", "", index) → "lang:aliases:index"``. An entry whose wording repeats an
    earlier entry of the same language and relation (``{h} flows through {t}.`` as head and as
    tail template; ``capital_of`` and ``capital_of@country`` sharing a sentence) gets the earlier
    entry's id: an id names a wording, so holding an id out of training holds the wording out."""
    out: dict[tuple[str, str, str, int], str] = {}
    first: dict[tuple[str, str, str], str] = {}
    for key, by_lang in tpl["relations"].items():
        for lang in sorted(by_lang):
            for persp in ("head", "tail"):
                for i, text in enumerate(by_lang[lang][persp]):
                    tid = first.setdefault((lang, key.split("@")[0], text), f"{lang}:{key}:{persp}:{i}")
                    out[lang, key, persp, i] = tid
    for lang, texts in tpl["aliases"].items():
        for i, _text in enumerate(texts):
            out[lang, "aliases", "", i] = f"{lang}:aliases:{i}"
    return out


class _Writer:
    """Builds documents from the KG with one seeded RNG.

    While ``self.log`` is a list, every sentence that states KG facts (or names an entity by an
    alias) is recorded there as a gold *statement* ``{"text", "facts": [[head, relation, tail]],
    "mentions": [[start, end, entity id]], "template"}`` (offsets within the statement), so later
    stages can be measured against what each document really says; ``template`` is the id of the
    sentence template that wrote it (:func:`template_ids`), ``None`` for an infobox row.
    """

    def __init__(self, kg: KnowledgeGraph, tpl: dict, rng: random.Random, handwritten: list[dict]):
        self.kg, self.tpl, self.rng = kg, tpl, rng
        self.template_ids = template_ids(tpl)
        self.log: list[dict] | None = None
        self.hand: dict[tuple[str, str], list[str]] = {}
        for p in handwritten:
            self.hand.setdefault((p["entity"], p["lang"]), []).append(p["text"])

    def choice(self, options):
        return self.rng.choice(options) if isinstance(options, list) else options

    def pick(self, options: list) -> tuple[int, Any]:
        """``(index, option)``: the same draw as :meth:`choice` (so the text does not change), plus
        which entry it was."""
        i = self.rng.choice(range(len(options)))
        return i, options[i]

    def statement(self, text: str, facts: list[list[str]], mentions: list[list], template: str | None = None) -> dict:
        st = {"text": text, "facts": facts, "mentions": mentions, "template": template}
        if self.log is not None:
            self.log.append(st)
        return st

    def fact(self, tr: dict, lang: str, about: str) -> str:
        return self.fact_statement(tr, lang, about)["text"]

    def fact_statement(self, tr: dict, lang: str, about: str) -> dict:
        persp = "head" if tr["head"] == about else "tail"
        rels = self.tpl["relations"]  # 'relation@tail_type' overrides the wording for one tail type
        key = f"{tr['relation']}@{self.kg.entities[tr['tail']]['type']}"
        key = key if key in rels else tr["relation"]
        i, t = self.pick(rels[key][lang][persp])
        text, mentions, _ = _fill(t, {"h": (self.kg.name(tr["head"], lang), tr["head"]),
                                   "t": (self.kg.name(tr["tail"], lang), tr["tail"])})
        return self.statement(text, [[tr["head"], tr["relation"], tr["tail"]]], mentions,
                              self.template_ids[lang, key, persp, i])

    def intro(self, e: dict, lang: str) -> list[str]:
        h = e[f"name_{lang}"]
        out = [e[f"desc_{lang}"]]
        aliases = [a for a in e[f"aliases_{lang}"] if a != h]
        if aliases:
            sep = "、" if lang == "zh" else ", "
            a = sep.join(aliases)
            i, t = self.pick(self.tpl["aliases"][lang])
            text, mentions, starts = _fill(t, {"h": (h, e["id"]), "a": (a, None)})
            at = starts["a"]
            for alias in aliases:  # every alias names the entity itself
                mentions.append([at, at + len(alias), e["id"]])
                at += len(alias) + len(sep)
            out.append(self.statement(text, [], sorted(mentions), self.template_ids[lang, "aliases", "", i])["text"])
        for key in sorted(e["attrs"]):
            t = self.tpl["attributes"][lang].get(key)
            if t:
                out.append(self.choice(t).format(h=h, v=e["attrs"][key]))
        return out

    def encyclopedia(self, e: dict, lang: str) -> tuple[str, str]:
        """Several paragraphs: intro, facts in shuffled groups, hand-written text, closing."""
        statements = [self.fact_statement(tr, lang, e["id"]) for tr in self.kg.facts(e["id"])]
        self.rng.shuffle(statements)
        paragraphs = [_join(self.intro(e, lang), lang)]
        while statements:
            n = self.rng.randint(2, 4)
            group, statements = statements[:n], statements[n:]
            conn = self.choice(self.tpl["connectives"][lang])
            if conn:  # the connective becomes part of the first statement (gold offsets move with it)
                st = group[0]
                first = st["text"].split(" ", 1)[0]
                lower = lang == "en" and first in _FUNCTION_WORDS
                st["text"] = conn + (st["text"][0].lower() + st["text"][1:] if lower else st["text"])
                st["mentions"] = [[a + len(conn), b + len(conn), i] for a, b, i in st["mentions"]]
            paragraphs.append(_join([st["text"] for st in group], lang))
        paragraphs += self.related(e, lang, max_neighbours=14, max_facts=8)
        for text in self.hand.get((e["id"], lang), []):
            if self.log is not None:  # hand-written: no gold, the evaluation must not grade it
                self.log.append({"unannotated": text})
            paragraphs.insert(self.rng.randint(1, len(paragraphs)), text)
        closing = self.choice(self.tpl["closings"][lang]).format(h=e[f"name_{lang}"])
        if closing:
            paragraphs.append(closing)
        return e[f"name_{lang}"], "\n".join(p for p in paragraphs if p)

    def related(self, e: dict, lang: str, max_neighbours: int, max_facts: int) -> list[str]:
        """Paragraphs about a random few neighbours, each with a random few of their facts
        (true facts; random subsets keep documents about nearby entities from converging)."""
        hop1 = {tr["tail"] if tr["head"] == e["id"] else tr["head"] for tr in self.kg.facts(e["id"])}
        hop2 = {x for n in sorted(hop1) for tr in self.kg.facts(n) for x in (tr["head"], tr["tail"])}
        nbs = sorted((hop1 | hop2) - {e["id"]})
        out = []
        for nb in self.rng.sample(nbs, min(max_neighbours, len(nbs))):
            facts = [tr for tr in self.kg.facts(nb) if e["id"] not in (tr["head"], tr["tail"])]
            if not facts:
                continue
            chosen = self.rng.sample(facts, min(max_facts, len(facts)))
            lead = self.choice(self.tpl["related_lead"][lang]).format(n=self.kg.name(nb, lang))
            out.append(lead + _join([self.fact(tr, lang, nb) for tr in chosen], lang))
        return out

    def wiki_zh(self, e: dict) -> tuple[str, str]:
        """Infobox-and-sections style: facts as 'relation: tails' lines, unlike the encyclopedia."""
        kg, rels = self.kg, self.kg.schema["relation_types"]
        etype = kg.schema["entity_types"][e["type"]]["zh"]
        lines = [self.choice(self.tpl["wiki_intro"]["zh"]).format(h=e["name_zh"], en=e["name_en"], type=etype)]
        heads = self.tpl["wiki_sections"]["zh"]
        lines += [heads[0], e["desc_zh"]]
        grouped: dict[tuple[str, str], list[str]] = {}
        for tr in kg.facts(e["id"]):
            side = "head" if tr["head"] == e["id"] else "tail"
            other = tr["tail"] if side == "head" else tr["head"]
            grouped.setdefault((tr["relation"], side), []).append(other)
        geo = {"capital_of", "located_in", "borders", "flows_through", "flows_into", "highest_point_of"}
        for title, keep in ((heads[1], lambda r: r in geo), (heads[3], lambda r: r not in geo)):
            rows = []
            for (rel, side), others in sorted(grouped.items()):
                if keep(rel):
                    label = rels[rel]["zh"] + ("" if side == "head" else "（反向）")
                    rows.append(self.wiki_row(e["id"], rel, side, sorted(others), label))
            if rows:
                lines += [title] + rows
        related = sorted({o for others in grouped.values() for o in others})
        self.rng.shuffle(related)
        lines += [self.tpl["wiki_sections"]["zh"][2]] + self.related(e, "zh", max_neighbours=10, max_facts=5)
        lines += [heads[4], "、".join(kg.name(i, "zh") for i in related[:8])]
        return e["name_zh"], "\n".join(lines)

    def wiki_row(self, eid: str, rel: str, side: str, others: list[str], label: str) -> str:
        """``* 关系：甲、乙`` — one statement of several facts (``（反向）`` rows read tail → head)."""
        text = f"* {label}："
        facts, mentions = [], []
        for k, other in enumerate(others):
            if k:
                text += "、"
            name = self.kg.name(other, "zh")
            mentions.append([len(text), len(text) + len(name), other])
            text += name
            facts.append([eid, rel, other] if side == "head" else [other, rel, eid])
        return self.statement(text, facts, mentions, None)["text"]  # an infobox row: no sentence template

    def web_line(self, e: dict, lang: str, facts: list[dict]) -> str:
        t = self.choice(self.tpl["web"][lang])
        fact = _join([self.fact(tr, lang, e["id"]) for tr in facts], lang)
        return t.format(h=e[f"name_{lang}"], fact=fact)


# ------------------------------------------------------------------------- code items ----
def _code_rows(kg: KnowledgeGraph, name: str, spec: dict) -> list[tuple[list[str], dict]]:
    """(entity ids for the item's name list, row substitutions) pairs for a code template."""
    rel = spec["relation"]
    rows = []
    if rel == "capital_of":
        for tr in kg.triples:
            if tr["relation"] == rel and tr["tail"].startswith("country/"):
                rows.append(([tr["tail"]], {"a": kg.name(tr["tail"], "en"), "b": kg.name(tr["head"], "en")}))
    elif rel == "located_in_parent":
        for tr in kg.triples:
            if tr["relation"] == "located_in" and tr["head"].startswith("city/") and not tr["tail"].startswith("country/"):
                rows.append(([tr["head"]], {"a": kg.name(tr["head"], "en"), "a_zh": kg.name(tr["head"], "zh"),
                                            "b": kg.name(tr["tail"], "en")}))
    elif rel in ("abbreviation", "birth_year"):
        key = "abbreviation_zh" if rel == "abbreviation" else "birth_year"
        for e in kg.of_type(spec["entity"]):
            if key in e["attrs"]:
                rows.append(([e["id"]], {"a": e["name_en"], "a_zh": e["name_zh"], "b": e["attrs"][key]}))
    elif rel == "official_language":
        langs: dict[str, list[str]] = {}
        for tr in kg.triples:
            if tr["relation"] == rel:
                langs.setdefault(tr["head"], []).append(kg.name(tr["tail"], "en"))
        for cid, ls in sorted(langs.items()):
            rows.append(([cid], {"a": kg.name(cid, "en"), "b": ", ".join(f'"{x}"' for x in ls)}))
    else:
        for tr in kg.triples:
            if tr["relation"] == rel and (spec["entity"] == "any" or tr["head"].startswith(spec["entity"] + "/")):
                e = kg.entities[tr["head"]]
                rows.append(([tr["head"]], {"a": e["name_en"], "a_zh": e["name_zh"], "b": kg.name(tr["tail"], "en"),
                                            "year": e["attrs"].get("founded", 0)}))
    return rows


def code_items(kg: KnowledgeGraph, templates: dict, rng: random.Random, group: int) -> list[dict]:
    items = []
    for name, spec in templates.items():
        rows = _code_rows(kg, name, spec)
        rng.shuffle(rows)
        size = spec.get("group", group)  # templates with a long fixed body take more rows
        for start in range(0, len(rows) - size // 2, size):
            chunk = rows[start:start + size]
            ids = list(dict.fromkeys(i for ids_, _ in chunk for i in ids_))
            lang = rng.choice(["zh", "en"])
            body = "\n".join(string.Template(spec["row"]).substitute(r) for _, r in chunk)
            out = string.Template(spec["output"]).substitute(rows=body).rstrip("\n")
            items.append({"input": string.Template(spec["input"][lang]).substitute(names=_names(kg, ids, lang)),
                          "output": out})
    return items


# ------------------------------------------------------------------------- instructions --
def kg_instructions(kg: KnowledgeGraph, t: dict) -> list[dict]:
    out = []
    for rel, langs in t["single"].items():
        for tr in kg.triples:
            if tr["relation"] != rel:
                continue
            for lang, qa in langs.items():
                h, tl = kg.name(tr["head"], lang), kg.name(tr["tail"], lang)
                out.append({"instruction": qa["q"].format(h=h, t=tl), "input": "", "output": qa["a"].format(h=h, t=tl)})
    for rel, langs in t["multi"].items():
        tails: dict[str, list[str]] = {}
        for tr in kg.triples:
            if tr["relation"] == rel:
                tails.setdefault(tr["head"], []).append(tr["tail"])
        for head, ts in sorted(tails.items()):
            for lang, qa in langs.items():
                h = kg.name(head, lang)
                out.append({"instruction": qa["q"].format(h=h), "input": "",
                            "output": qa["a"].format(h=h, ts=_names(kg, sorted(ts), lang))})
    for key, langs in t["compare"].items():
        ents = sorted((e for e in kg.entities.values() if key in e["attrs"]), key=lambda e: e["id"])
        for a, b in zip(ents[::2], ents[1::2]):
            va, vb = a["attrs"][key], b["attrs"][key]
            if va == vb:
                continue
            winner = (a if va > vb else b) if key == "elevation_m" else (a if va < vb else b)
            for lang, qa in langs.items():
                na, nb, nw = a[f"name_{lang}"], b[f"name_{lang}"], winner[f"name_{lang}"]
                out.append({"instruction": qa["q"].format(a=na, b=nb), "input": "",
                            "output": qa["a"].format(a=na, b=nb, w=nw, va=va, vb=vb)})
    qa = t["abbreviation"]["zh"]
    for e in kg.of_type("province"):
        out.append({"instruction": qa["q"].format(h=e["name_zh"]), "input": "",
                    "output": qa["a"].format(h=e["name_zh"], v=e["attrs"]["abbreviation_zh"])})
    return out


# ------------------------------------------------------------------------- noise ---------
class _Line:
    """One physical line of an output file; ``meta`` marks planted noise."""

    def __init__(self, raw: bytes, rendered: str | None = None, meta: dict | None = None, lang: str = "",
                 gold: list[dict] | None = None, subject: str | None = None):
        self.raw, self.rendered, self.meta, self.lang, self.gold = raw, rendered, meta, lang, gold
        self.subject = subject


def _record(fname: str, a: str, b: str) -> bytes:
    f1, f2 = FIELDS[fname]
    return json.dumps({f1: a, f2: b}, ensure_ascii=False).encode("utf-8")


def _near_edit(text: str, lang: str, rng: random.Random) -> str | None:
    """Drop one sentence or change one number; None if the result is not near (>= 0.88)."""
    sep = "。" if lang == "zh" else ". "
    parts = text.split(sep)
    for _ in range(6):
        cand = list(parts)
        if len(cand) > 6 and rng.random() < 0.6:
            del cand[rng.randrange(1, len(cand) - 1)]
            new = sep.join(cand)
        else:
            digits = [i for i, c in enumerate(text) if c.isdigit()]
            if not digits:
                new = text.replace("，", ",", 2) if lang == "zh" else text.replace(" is ", " was ", 2)
            else:
                i = rng.choice(digits)
                new = text[:i] + str((int(text[i]) + 1) % 10) + text[i + 1:]
        if new != text and normalize(new) != normalize(text) and jaccard(new, text) >= 0.88:
            return new
    return None


def _mojibake(text: str, rng: random.Random) -> str:
    if sum(ord(c) > 127 for c in text) < 0.05 * len(text):  # (near-)ASCII survives a wrong decoding: add typography
        text = text.replace("'", "\u2019").replace(", ", " \u2014 ").replace(". ", ".\u201d \u201c").replace(" ", "\u00a0")
    raw = text.encode("utf-8")
    how = rng.choice(["latin1", "cp1252", "gbk"])
    if how == "latin1":
        return raw.decode("latin-1")
    if how == "cp1252":
        return raw.decode("cp1252", errors="replace")
    return raw.decode("gbk", errors="replace")


def _noise_texts(tpl_lists: dict, w: _Writer, rng: random.Random, kind: str, lang: str) -> str:
    kg = w.kg
    ent = rng.choice(sorted(i for i in kg.entities if kg.facts(i)))
    facts = [w.fact(tr, lang, ent) for tr in kg.facts(ent)][:3]
    if kind == "blocklist":
        phrase = rng.choice(tpl_lists[f"blocklist_{lang}"])
        ad = tpl_lists["blocklist_ad"][lang].format(phrase=phrase)
        return _join(facts[:3] + [ad], lang)
    if kind == "boilerplate":
        lines = tpl_lists["boilerplate_lines"][lang]
        return "\n".join(rng.sample(lines, rng.randint(4, 6)))
    if kind == "repetition":
        s = facts[0]
        return ("" if lang == "zh" else " ").join([s] * rng.randint(8, 14))
    if kind == "symbol_ratio":
        return "".join(rng.choice("@#$%^&*~+=<>|/\\{}[]_") for _ in range(rng.randint(80, 160)))
    if kind == "too_short":
        return rng.choice(tpl_lists["too_short"][lang])
    raise ValueError(kind)


def src_f_ok(fname: str) -> bool:
    """Long originals for documents; web posts are short by nature."""
    return not fname.endswith(".txt")


def _plant_duplicate(files: dict[str, list[_Line]], fname: str, kind: str, meta: dict, rng: random.Random,
                     used: set[int], lang: str, pos: int) -> None:
    """Copy (exactly, or with a small edit) a clean line of this file or of an earlier one,
    inserting it after the original so that the original is the copy dedup keeps."""
    lines, txt = files[fname], fname.endswith(".txt")
    pool_files = ["code.jsonl"] if fname == "code.jsonl" else SOURCE_ORDER[:SOURCE_ORDER.index(fname) + 1]
    cands = [(f, i, ln) for f in pool_files for i, ln in enumerate(files[f])
             if ln.meta is None and ln.rendered and id(ln) not in used and len(ln.rendered) > (300 if src_f_ok(f) else 100)]
    src_f, src_i, src = cands[rng.randrange(len(cands))]
    used.add(id(src))
    meta["of"] = src
    text = src.rendered
    if kind == "near_dup":
        text = _near_edit(text, src.lang or lang, rng)
        if text is None:
            return
    elif rng.random() < 0.5:  # whitespace / case variant: equal after normalisation
        text = text.replace("\n", "\n\n ") if src.lang == "zh" else text.upper()
    if src_f == fname:
        pos = rng.randint(src_i + 1, len(lines))
    if txt:
        text = " ".join(text.split("\n"))
    raw = text.encode() if txt else _record(fname, *_split_title(text))
    lines.insert(pos, _Line(raw, text, meta, src.lang))


def _plant(files: dict[str, list[_Line]], w: _Writer, rng: random.Random, lists: dict) -> None:
    used: set[int] = set()
    plan = [(fname, kind, lists["expect"].get(kind, kind), count, lang)
            for fname, items in lists["plan"].items() for kind, count, lang in items]
    for fname, kind, expect, count, lang in plan:
        lines = files[fname]
        txt = fname.endswith(".txt")
        for _ in range(count):
            meta = {"kind": kind, "expect": expect}
            pos = rng.randint(1, len(lines))
            if kind in ("exact_dup", "near_dup"):
                _plant_duplicate(files, fname, kind, meta, rng, used, lang, pos)
                continue
            if kind == "invalid_json":
                good = _record(fname, "标题" if lang == "zh" else "Title", "内容" * 20).decode()
                raw = good[: rng.randint(5, len(good) - 3)].encode()  # cut between characters
            elif kind == "invalid_utf8":
                base = ("这一行包含损坏的字节，" * 4).encode()
                raw = (base[:7] + b"\xff\xfe" + base[7:]) if txt else _record(fname, "损坏", "").replace(b'""', b'"' + base[:7] + b"\xff\xfe" + base[7:] + b'"')
            elif kind == "missing_field":
                raw = json.dumps({FIELDS[fname][0]: "只有标题" if lang == "zh" else "Only a title"}, ensure_ascii=False).encode()
            elif kind == "wrong_type":
                f1, f2 = FIELDS[fname]
                raw = json.dumps({f1: "数字内容" if lang == "zh" else "A number", f2: rng.choice([42, ["print(1)"], None])},
                                 ensure_ascii=False).encode()
            elif kind == "not_an_object":
                raw = rng.choice([b'["a", "b"]', b"42", b'"just a string"'])
            elif kind == "empty":
                raw = rng.choice([b"", b"   "]) if txt else _record(fname, "", "")
            elif kind == "too_long":
                sents = [w.fact(tr, "en", tr["head"]) for tr in w.kg.triples]
                text = ""
                while len(text) < 150_000:
                    text += " ".join(rng.sample(sents, 50)) + " "
                raw = text.strip().encode()
            elif kind == "mojibake":
                cands = [ln for ln in lines if ln.meta is None and ln.rendered and id(ln) not in used and ln.lang == lang]
                src = rng.choice(cands)
                used.add(id(src))
                garbled = _mojibake(src.rendered, rng)
                raw = garbled.replace("\n", " ").encode() if txt else _record(fname, *_split_title(garbled))
            else:  # blocklist, boilerplate, repetition, symbol_ratio, too_short
                text = _noise_texts(lists, w, rng, kind, lang)
                raw = (" | " if kind == "boilerplate" else " ").join(text.split("\n")).encode() if txt \
                    else _record(fname, ("标题" if lang == "zh" else "Title"), text)
            lines.insert(pos, _Line(raw, None, meta, lang))


def _drop_similar(files: dict[str, list[_Line]], limit: float) -> None:
    """Leave out clean documents that are too close to an earlier one (small KG neighbourhoods
    can give two short articles mostly the same facts)."""
    from datasketch import MinHashLSH

    from .dedup import DedupConfig, Deduplicator

    sig = Deduplicator(DedupConfig(threshold=limit)).signature
    lsh, kept_text = MinHashLSH(threshold=limit * 0.6, num_perm=128), {}
    for fname in SOURCE_ORDER:
        keep = []
        for i, ln in enumerate(files[fname]):
            s = sig(ln.rendered)
            if any(jaccard(ln.rendered, kept_text[k]) >= limit for k in lsh.query(s)):
                continue
            key = f"{fname}:{i}"
            lsh.insert(key, s)
            kept_text[key] = ln.rendered
            keep.append(ln)
        files[fname] = keep


def _gold_file(files: dict[str, list[_Line]]) -> bytes:
    """One row per clean document that states facts: where it is (``file``, 1-based ``line``),
    its ``lang``, its ``subject`` (the entity the article or post is about) and its
    statements ``{start, end, facts: [[head, relation, tail]], mentions: [[start, end, entity]],
    template}`` (``template``: the sentence template's id, see :func:`template_ids`; ``null`` for
    an infobox row) with offsets in the document's text as the corpus stage renders it (``{title}\\n{body}``
    for JSONL sources, the line itself for text), and ``unannotated``: ``[start, end]`` spans of
    hand-written text whose facts nobody listed. Gzip-compressed, mtime 0."""
    rows = []
    for fname in SOURCE_ORDER:
        for i, ln in enumerate(files[fname], 1):
            if ln.meta is not None or not ln.gold:
                continue
            text, taken, statements, unannotated = ln.rendered, set(), [], []
            for st in ln.gold:
                if "unannotated" in st:
                    at = text.find(st["unannotated"])
                    unannotated.append([at, at + len(st["unannotated"])])
                    continue
                at = text.find(st["text"])
                while at in taken:
                    at = text.find(st["text"], at + 1)
                if at < 0:
                    raise AssertionError(f"{fname}:{i}: generated statement not in its document: {st['text']!r}")
                taken.add(at)
                statements.append({"start": at, "end": at + len(st["text"]), "facts": st["facts"],
                                   "mentions": [[at + a, at + b, eid] for a, b, eid in st["mentions"]],
                                   "template": st["template"]})
            statements.sort(key=lambda st: st["start"])
            rows.append({"file": f"corpus/{fname}", "line": i, "lang": ln.lang, "subject": ln.subject,
                         "statements": statements, "unannotated": sorted(unannotated)})
    data = "".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n" for r in rows).encode()
    return gzip.compress(data, mtime=0)


def _split_title(text: str) -> tuple[str, str]:
    head, _, rest = text.partition("\n")
    return head, rest


# ------------------------------------------------------------------------- main ----------
def _lists(noise_yaml: Path) -> dict[str, Any]:
    """The noise plan and texts (data file) plus the package's blocklists (so planted phrases
    are exactly the ones the cleaner knows)."""
    out = yaml.safe_load(noise_yaml.read_text("utf-8"))
    for lang in ("zh", "en"):
        out[f"blocklist_{lang}"] = read_list_file(f"package:blocklist_{lang}.txt")
    return out


def build_files(config: SampleWorldConfig) -> dict[str, bytes]:
    """Everything the generator writes, as {relative path: bytes} (nothing touches disk)."""
    root = Path(config.data_root)
    kg = load_kg(root / "kg")
    tdir = root / "templates"
    tpl = yaml.safe_load((tdir / "documents.yaml").read_text("utf-8"))
    rng = random.Random(config.seed)
    w = _Writer(kg, tpl, rng, read_jsonl(root / "handwritten" / "paragraphs.jsonl"))
    ents = [kg.entities[i] for i in sorted(kg.entities)]
    files: dict[str, list[_Line]] = {f: [] for f in SOURCE_ORDER}
    for e in ents:
        for lang, fname in (("zh", "zh_baike.jsonl"), ("en", "en_wiki.jsonl")):
            w.log = []
            title, body = w.encyclopedia(e, lang)
            files[fname].append(_Line(_record(fname, title, body), f"{title}\n{body}", None, lang, w.log, e["id"]))
    wiki_pool = [e for e in ents if len(kg.facts(e["id"])) >= 3]
    for e in sorted(rng.sample(wiki_pool, int(len(wiki_pool) * config.wiki_fraction)), key=lambda e: e["id"]):
        w.log = []
        title, body = w.wiki_zh(e)
        files["zh_wiki.jsonl.gz"].append(_Line(_record("zh_wiki.jsonl.gz", title, body), f"{title}\n{body}", None,
                                               "zh", w.log, e["id"]))
    w.log = None
    code = read_jsonl(root / "handwritten" / "code.jsonl")
    code_dir = root / "handwritten" / "code"
    for task in yaml.safe_load((code_dir / "tasks.yaml").read_text("utf-8")):
        code.append({"input": task["input"], "output": (code_dir / task["file"]).read_text("utf-8").rstrip("\n")})
    code += code_items(kg, yaml.safe_load((tdir / "code.yaml").read_text("utf-8")), rng, config.code_group_size)
    rng.shuffle(code)
    for item in code:
        files["code.jsonl"].append(_Line(_record("code.jsonl", item["input"], item["output"]),
                                         f"{item['input']}\n{item['output']}", None, "code"))
    pairs = [(e, tr) for e in ents for tr in kg.facts(e["id"])]
    rng.shuffle(pairs)
    by_ent: dict[str, list[dict]] = {}
    for e, tr in pairs:
        by_ent.setdefault(e["id"], []).append(tr)
    chunks = [(eid, trs[k:k + 3]) for eid, trs in sorted(by_ent.items()) for k in range(0, len(trs) - 2, 3)]
    rng.shuffle(chunks)
    for n, (eid, facts) in enumerate(chunks[:config.web_docs]):
        lang = "zh" if n % 5 < 3 else "en"
        w.log = []
        text = w.web_line(kg.entities[eid], lang, facts)
        files["web_mixed.txt"].append(_Line(text.encode(), text, None, lang, w.log, eid))
    w.log = None
    _drop_similar(files, config.max_clean_jaccard)
    _plant(files, w, rng, _lists(tdir / "noise.yaml"))

    out: dict[str, bytes] = {}
    manifest = []
    where = {}
    for fname in SOURCE_ORDER:
        for i, ln in enumerate(files[fname], 1):
            where[id(ln)] = (f"corpus/{fname}", i)
    for fname in SOURCE_ORDER:
        for i, ln in enumerate(files[fname], 1):
            if ln.meta:
                row = {"file": f"corpus/{fname}", "line": i, "kind": ln.meta["kind"], "expect": ln.meta["expect"]}
                if "of" in ln.meta:
                    f, l_ = where[id(ln.meta["of"])]
                    row["of"] = {"file": f, "line": l_}
                manifest.append(row)
        data = b"".join(ln.raw + b"\n" for ln in files[fname])
        out[f"corpus/{fname}"] = gzip.compress(data, mtime=0) if fname.endswith(".gz") else data
    out["corpus/gold_facts.jsonl.gz"] = _gold_file(files)
    out["corpus/noise_manifest.jsonl"] = "".join(json.dumps(m, ensure_ascii=False) + "\n" for m in manifest).encode()
    instr = read_jsonl(root / "handwritten" / "instructions_seed.jsonl")
    instr += kg_instructions(kg, yaml.safe_load((tdir / "instructions.yaml").read_text("utf-8")))
    out["instructions/alpaca_general.json"] = (json.dumps(instr, ensure_ascii=False, indent=1) + "\n").encode()
    return out


def main(config: SampleWorldConfig | None = None) -> dict[str, Any]:
    """Generate and write atomically; returns a summary (files, bytes, planted counts)."""
    config = config or SampleWorldConfig()
    files = build_files(config)
    out_dir = Path(config.out_dir or config.data_root)
    for rel, data in files.items():
        write_bytes_atomic(out_dir / rel, data)
    manifest = [json.loads(x) for x in files["corpus/noise_manifest.jsonl"].decode().splitlines()]
    planted: dict[str, int] = {}
    for m in manifest:
        planted[m["expect"]] = planted.get(m["expect"], 0) + 1
    return {"files": {k: len(v) for k, v in files.items()}, "planted": planted,
            "corpus_bytes": sum(len(v) for k, v in files.items() if k.startswith("corpus/") and "manifest" not in k)}


def compare(config: SampleWorldConfig) -> list[str]:
    """Paths whose committed bytes differ from a fresh generation (empty list = identical)."""
    root = Path(config.out_dir or config.data_root)
    return [rel for rel, data in build_files(config).items()
            if not (root / rel).is_file() or (root / rel).read_bytes() != data]
