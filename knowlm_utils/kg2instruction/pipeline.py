"""Stage 06 end to end: ``knowlm ie build CONFIG.yaml`` — cleaned corpus + KG → IE instructions.

One pass over the corpus, one document at a time (nothing holds the corpus, its candidates or
its records in memory, so the same code runs on a Wikipedia dump on a cluster node):

1. mention detection and linking (:class:`~.documents.DocumentPreparer`),
2. distant supervision against the KG and the rule filters (:mod:`.supervision`),
3. the human corrections of an earlier run, when ``corrections`` names a reviewed CSV
   (:mod:`.correction`); every candidate also goes to ``candidates.csv`` for the next review,
4. annotated sentences → NER/RE instructions in both styles (:mod:`.instructions`), plus EE
   from KG-grounded event sentences (:mod:`.events`) and any standard-format corpora
   (``extra_datasets``: CoNLL-2003, People's Daily, DuIE, DuEE, IEPile),
5. split by the entity a document is about (no test document is about an entity that a train
   document is about), mixed with general instructions, written as JSONL per split and a
   Hugging Face ``datasets`` folder, with ``report.json``: per-stage precision/recall against
   the sample world's gold (when ``gold`` is set), linking accuracy, per-rule counts, sizes
   (``split_records``; ``split_sentences``: corpus sentences per split; ``paraphrase``: the hold-out).

The paraphrase split (``paraphrase.jsonl``) measures what a model learned beyond the wording of
its training data. When the gold names the sentence template of every statement (the sample
world's does), ``paraphrase_fraction`` of the templates of each (language, relation) are held out
(:func:`held_out_templates`): a sentence with a statement written by one of them goes to the
paraphrase split when its document is a test document and is dropped (and counted) when it is a
train or valid one, so train, valid and test only ever see the other templates. Paraphrase
records also use instruction phrasings held out of every other split
(``instructions.held_out_phrasings``); no general instructions are mixed in. Report its scores
next to the test split's: the gap is what the model learned about the wording, not the task.

Output folder (replaced whole, like every stage's): ``{train,valid,test,paraphrase}.jsonl``,
``annotations.jsonl`` (the corrected IE data itself; a sentence held out of train/valid for the
paraphrase split has ``"split": "held_out"``), ``candidates.csv``, ``hf_dataset/``,
``report.json``.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import logging
import os
import random
import shutil
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from tqdm import tqdm

from ..config import Overrides, Section, StageConfig, field, show_config_fields, stage_command
from ..corpus import iter_cleaned_documents
from ..fileio import (check_output_dir, remove_stale_temp, replace_dir, restore_interrupted_replace,
                      temp_dir_beside, write_json_atomic)
from ..ie.annotation import Annotation
from ..ie.converters import ConversionStats, read_annotations
from ..ie.linking import (CombinedDetector, EnglishNameRuleDetector, EntityLinker, Gazetteer, GazetteerDetector,
                          JiebaDetector)
from ..kg import load_kg
from . import correction, evaluation, events, export, instructions, supervision
from .documents import DocumentPreparer
from .gold import GoldDocument, has_template_ids, load_gold

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")          # the entity splits (general instructions are mixed into these)
PARAPHRASE = "paraphrase"                    # test-entity sentences written with held-out templates
OUTPUT_SPLITS = SPLITS + (PARAPHRASE,)       # every <split>.jsonl the stage writes
HELD_OUT = "held_out"                        # annotations.jsonl: a train/valid sentence held out for paraphrase
EXTRA_FORMATS = ("conll2003", "peoples_daily", "duie", "duee", "iepile")


@dataclass
class ExtraDataset(Section):
    path: str = field(help="a file in a standard IE format (relative to the config file)")
    format: str = field(choices=EXTRA_FORMATS, help="its format (see knowlm_utils.ie.converters)")
    lang: str | None = field(None, choices=("zh", "en"), help="iepile only: the language (default: detected)")


@dataclass
class KG2InstructionConfig(StageConfig):
    """Stage 06: cleaned corpus + knowledge graph → IE instruction data (KG2Instruction)."""

    corpus_dir: str = field(help="a cleaned corpus built by stage 01 (`knowlm corpus build`)")
    kg_dir: str = field(help="the knowledge graph: schema.yaml, entities/*.jsonl, triples/*.jsonl")
    ie_schema: str = field(help="the IE schema: entity types and the relations the instructions name, each "
                                "mapped to a KG relation with a reverse flag and head/tail types")
    gold: str | None = field(None, help="gold facts per sentence (the sample world's gold_facts.jsonl.gz); "
                                        "enables precision/recall after every stage")
    output_dir: str = field("ie", help="where the splits, candidates.csv, hf_dataset/ and report.json go "
                                       "(replaced whole)")
    overwrite: bool = field(False, help="replace output_dir even if knowlm did not write it")
    sources: list[str] = field(default_factory=list, help="corpus sources to read (empty: all; code sources are "
                                                          "skipped and counted)")
    max_docs_per_source: int | None = field(None, ge=0, help="read at most this many documents per source")
    open_mentions: bool = field(False, help="also detect names the KG may lack — jieba POS nr/ns/nt words (zh), "
                                            "runs of capitalised words (en) — and count them as unlinkable")
    canonical_bonus: float = field(0.0, ge=0, help="linking: a candidate whose own name (not an alias) is the "
                                   "surface scores this many neighbours more (0: KG2Instruction's plain neighbour "
                                   "count; on the sample 1 lifts ambiguous mentions from 81.9 % to 88.4 %)")
    scope: str = field("sentence", choices=("sentence", "document"),
                       help="distant supervision over each sentence (KG2Instruction) or whole documents")
    filters: supervision.FilterOptions = field(default_factory=supervision.FilterOptions,
                                               help="the rule filters after distant supervision")
    corrections: str | None = field(None, help="a reviewed candidates.csv from an earlier run to apply "
                                               "(keep/drop/fix per candidate id)")
    tasks: list[str] = field(default_factory=lambda: ["NER", "RE", "EE"], choices=("NER", "RE", "EE"),
                             help="which instruction tasks to write")
    kg_events: bool = field(True, help="EE instructions from KG-grounded event sentences (birth, founding, "
                                       "product launch)")
    extra_datasets: list[ExtraDataset] = field(default_factory=list, help="standard-format IE corpora to add "
                                               "(same records; split by record id)")
    instructions: instructions.InstructionOptions = field(default_factory=instructions.InstructionOptions,
                                                          help="templates, styles, formats, schema negatives")
    valid_fraction: float = field(0.1, ge=0, lt=1, help="share of subject entities whose documents go to valid")
    test_fraction: float = field(0.1, ge=0, lt=1, help="share of subject entities whose documents go to test")
    split_seed: int = field(0, help="seed of the entity → split hash and of the paraphrase hold-out")
    paraphrase_fraction: float = field(0.2, ge=0, lt=1,
                                       help="paraphrase split: share of the sentence templates (the gold's template "
                                            "ids) of each (language, relation) held out of train/valid/test (rounded "
                                            "half up, at most all but one per group), drawn with split_seed. "
                                            "Test-entity sentences using one go to paraphrase.jsonl, train/valid ones "
                                            "are dropped (counted). 0, no gold, or gold without template ids: no "
                                            "paraphrase split. The sample world: 0.2 holds out 32 of 141 templates, "
                                            "about a fifth of its sentences")
    general_instructions: str | None = field(None, help="Alpaca-format JSON of general instructions to mix in")
    general_ratio: float = field(0.0, ge=0, help="general records per IE record, in each split")
    hf_dataset: bool = field(True, help="also save the splits as a Hugging Face datasets folder (hf_dataset/)")
    progress: bool = field(True, help="show a progress bar")

    def validate(self) -> None:
        if self.valid_fraction + self.test_fraction >= 1:
            raise ValueError(f"valid_fraction + test_fraction must be < 1, got "
                             f"{self.valid_fraction} + {self.test_fraction}")
        if self.general_ratio and not self.general_instructions:
            raise ValueError("general_ratio > 0 needs general_instructions (an Alpaca-format JSON file)")


def split_of(key: str | None, config: KG2InstructionConfig) -> str:
    """train/valid/test by a stable hash of the entity a document is about (``None``: train)."""
    if key is None:
        return "train"
    h = int.from_bytes(hashlib.sha1(f"{config.split_seed}:{key}".encode()).digest()[:8], "big") / 2.0 ** 64
    if h < config.test_fraction:
        return "test"
    if h < config.test_fraction + config.valid_fraction:
        return "valid"
    return "train"


def make_linker(kg, config: KG2InstructionConfig) -> EntityLinker:
    """The entity linker the config asks for (gazetteer, optional open-mention detectors,
    ``canonical_bonus``)."""
    gaz = Gazetteer(kg)
    detector = None
    if config.open_mentions:  # the gazetteer first: its matches win overlaps
        detector = CombinedDetector(GazetteerDetector(gaz), JiebaDetector(gaz), EnglishNameRuleDetector(gaz))
    return EntityLinker(kg, gaz, detector, canonical_bonus=config.canonical_bonus)


def held_out_templates(gold: dict[tuple[str, int], GoldDocument], fraction: float,
                       seed: int) -> tuple[frozenset[str], dict[str, dict[str, Any]]]:
    """The sentence templates kept out of train/valid/test, and a table of them.

    Templates are grouped by the document's language and the relation of the statement's first
    fact (statements without facts, such as alias sentences, form a group of their own,
    ``"(no facts)"``).
    In a group of ``n`` templates, ``fraction × n`` rounded half up are held out, at most ``n - 1``
    (every group keeps a template for training) — drawn with ``seed`` from the sorted ids, so the
    choice depends on the gold, the fraction and the seed only.
    Returns the held-out ids and ``{"lang:relation": {"templates": n, "held_out": [ids]}}``."""
    groups: dict[tuple[str, str], set[str]] = {}
    for doc in gold.values():
        for st in doc.statements:
            if st.template is not None:
                groups.setdefault((doc.lang, st.facts[0][1] if st.facts else "(no facts)"), set()).add(st.template)
    held: set[str] = set()
    table: dict[str, dict[str, Any]] = {}
    for (lang, relation), ids in sorted(groups.items()):
        ordered = sorted(ids)
        n = len(ordered)
        k = max(0, min(n - 1, int(fraction * n + 0.5)))
        chosen = sorted(random.Random(f"{seed}:paraphrase:{lang}:{relation}").sample(ordered, k))
        held.update(chosen)
        table[f"{lang}:{relation}"] = {"templates": n, "held_out": chosen}
    return frozenset(held), table


@dataclass
class _Paraphrase:
    """The paraphrase hold-out of one build: which templates, and what it moved or dropped."""

    held: frozenset[str] = frozenset()
    reason: str | None = None                 # why there is no paraphrase split (None: there is one)
    table: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    dropped: Counter = dataclasses.field(default_factory=Counter)

    @classmethod
    def plan(cls, config: "KG2InstructionConfig", gold: dict | None) -> "_Paraphrase":
        if config.paraphrase_fraction <= 0:
            return cls(reason="paraphrase_fraction is 0")
        if gold is None:
            return cls(reason="no gold (the held-out templates come from the gold's template ids)")
        if not has_template_ids(gold):
            return cls(reason=f"gold {config.gold} has no sentence template ids (written before they existed: "
                              "rerun scripts/build_sample_world.py)")
        held, table = held_out_templates(gold, config.paraphrase_fraction, config.split_seed)
        return cls(held, None, table)

    @property
    def enabled(self) -> bool:
        return self.reason is None

    def route(self, split: str, templates: frozenset[str]) -> str:
        """Where a sentence with these templates goes: its document's split, ``paraphrase`` (a
        test sentence with a held-out template) or ``held_out`` (a train/valid one: dropped)."""
        if not self.held or self.held.isdisjoint(templates):
            return split
        if split == "test":
            return PARAPHRASE
        self.dropped[split] += 1
        return HELD_OUT


class _SplitWriter:
    """Records → ``<split>.jsonl`` in the build folder, counted by split/task/lang/style/format."""

    def __init__(self, folder: Path):
        self.files = {s: open(folder / f"{s}.jsonl", "w", encoding="utf-8") for s in OUTPUT_SPLITS}
        self.counts: Counter = Counter()
        self.subjects: dict[str, set[str]] = {s: set() for s in OUTPUT_SPLITS}
        self.sentences: Counter = Counter()   # corpus sentences (annotations) per split

    def write(self, split: str, records: list[dict[str, Any]], subject: str | None = None) -> None:
        fh = self.files[split]
        for r in records:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
            self.counts[(split, r["task"], r["lang"], r["style"], r["format"])] += 1
        if subject is not None and records:
            self.subjects[split].add(subject)

    def close(self) -> None:
        for fh in self.files.values():
            fh.close()

    def sizes(self) -> list[dict[str, Any]]:
        return [{"split": s, "task": t, "lang": lang, "style": st, "format": f, "records": n}
                for (s, t, lang, st, f), n in sorted(self.counts.items())]

    def split_total(self, split: str, task: str | None = None) -> int:
        return sum(n for (s, t, *_), n in self.counts.items() if s == split and (task is None or t == task))


def event_subject(annotation_id: str) -> str | None:
    """The entity a KG event sentence is about (``kg_event:birth:person/ma_yun:zh:0`` → the
    person; a two-event sentence: its first entity)."""
    parts = annotation_id.split(":")
    return parts[2].split("+")[0] if len(parts) >= 4 and parts[0] == "kg_event" else None


FORMAT_TASKS = {"conll2003": ("NER",), "peoples_daily": ("NER",), "duie": ("RE",), "duee": ("EE",)}


def _extra_tasks(fmt: str, ann: Annotation) -> tuple[str, ...]:
    """The tasks a converted record teaches: fixed by its corpus, or (IEPile, whose records
    hold any of the three) the ones it has items for."""
    if fmt in FORMAT_TASKS:
        return FORMAT_TASKS[fmt]
    return tuple(t for t, items in (("NER", ann.entities), ("RE", ann.relations), ("EE", ann.events)) if items)


def _extra_annotations(config: KG2InstructionConfig, kg,
                       conversions: dict[str, Any]) -> Iterator[tuple[Annotation, tuple[str, ...], str | None]]:
    """``(annotation, tasks, subject)`` of the KG event sentences and the standard corpora, one at a
    time (a real DuIE or CoNLL file is streamed, never listed); each corpus's conversion counts
    (converted, skipped by reason with file:line examples) go into ``conversions``."""
    if "EE" in config.tasks and config.kg_events:
        for a in events.event_annotations(kg):
            yield a, ("EE",), event_subject(a.id)
    for ds in config.extra_datasets:
        st = ConversionStats()
        for a in read_annotations(config.path(ds.path), ds.format, errors="skip", stats=st,
                                  **({"lang": ds.lang} if ds.format == "iepile" else {})):
            yield a, tuple(t for t in _extra_tasks(ds.format, a) if t in config.tasks), None
        conversions[ds.path] = st.to_dict()


def _filter_document(rules: list, candidates: list, doc, kg, ie_schema) -> supervision.FilterReport:
    """:func:`supervision.run_filters` for one document with rules built once (their counters
    add up over the whole corpus)."""
    ctx = supervision.FilterContext({doc.id: doc}, kg, ie_schema)
    kept = [c for c in candidates if c.kept]
    stages = [(supervision.DS_STAGE, list(kept))]
    for rule in rules:
        kept = rule.apply(kept, ctx)
        stages.append((rule.name, list(kept)))
    return supervision.FilterReport(candidates, stages, {r.name: r.stats for r in rules})


def _general_records(config: KG2InstructionConfig, totals: dict[str, int]) -> dict[str, list[dict[str, Any]]]:
    """``general_ratio`` × IE records of each split, drawn without replacement from one seeded
    permutation (so no general instruction is in two splits). When the file has fewer, every
    split gets the same fraction of what it wanted (the report gives wanted and taken)."""
    if not config.general_ratio or not config.general_instructions:
        return {s: [] for s in SPLITS}
    rows = export.read_general(config.path(config.general_instructions))
    order = list(range(len(rows)))
    random.Random(config.split_seed).shuffle(order)
    wanted = {s: round(config.general_ratio * totals[s]) for s in SPLITS}
    scale = min(1.0, len(rows) / max(1, sum(wanted.values())))  # too few: every split gets its share
    out, at = {}, 0
    for split in SPLITS:
        n = int(wanted[split] * scale)
        out[split] = [export.general_record(rows[i], i) for i in order[at:at + n]]
        at += n
    return out


def _hf_dataset(folder: Path) -> None:
    """``hf_dataset/``: the JSONL splits as a ``datasets.DatasetDict`` (Arrow files written by
    ``datasets`` itself, reading the JSONL in batches, so the size of a split does not matter)."""
    import datasets

    quiet = datasets.utils.logging.is_progress_bar_enabled()
    datasets.utils.logging.disable_progress_bar()  # one progress line per stage, not one per split
    try:
        _hf_dataset_write(folder, datasets)
    finally:
        if quiet:
            datasets.utils.logging.enable_progress_bar()


def _hf_dataset_write(folder: Path, datasets) -> None:
    features = export.record_features(list(instructions.RECORD_KEYS))
    dd = {}
    for split in OUTPUT_SPLITS:
        path = folder / f"{split}.jsonl"
        if path.stat().st_size:
            dd[split] = datasets.Dataset.from_json(str(path), features=features,
                                                   cache_dir=str(folder / ".hf-cache"))
        else:
            dd[split] = datasets.Dataset.from_dict({k: [] for k in instructions.RECORD_KEYS}, features=features)
    datasets.DatasetDict(dd).save_to_disk(str(folder / "hf_dataset"))
    shutil.rmtree(folder / ".hf-cache", ignore_errors=True)


# ----------------------------------------------------------------------------- build -------
def build(config: KG2InstructionConfig, nli: Any = None) -> dict[str, Any]:
    """Run the stage into ``config.output_dir`` (replaced whole at the end); returns the report.
    ``nli``: an NLI scorer or :class:`~.supervision.NLIFilter` when ``filters.nli`` is on."""
    t0 = time.perf_counter()
    out = config.path(config.output_dir).expanduser().resolve()
    restore_interrupted_replace(out)
    inputs = [config.path(p) for p in (config.corpus_dir, config.kg_dir, config.ie_schema)]
    out = check_output_dir(out, overwrite=config.overwrite, protected=inputs + [config.path(x.path) for x in
                                                                                config.extra_datasets])
    remove_stale_temp(out)
    kg = load_kg(config.path(config.kg_dir))
    ie_schema = dict(supervision.load_ie_schema(config.path(config.ie_schema), kg))
    if "EE" in config.tasks and config.kg_events:
        ie_schema["events"] = {**events.event_schema(), **ie_schema.get("events", {})}
    gold = load_gold(config.path(config.gold)) if config.gold else None
    paraphrase = _Paraphrase.plan(config, gold)
    if not paraphrase.enabled and config.gold and config.paraphrase_fraction > 0:
        log.warning("no paraphrase split: %s", paraphrase.reason)
    preparer = DocumentPreparer(kg, make_linker(kg, config), gold)
    rules = supervision.build_rules(config.filters, ie_schema, nli)
    review = correction.load_corrections(config.path(config.corrections), ie_schema) if config.corrections else None
    review_stats = correction.CorrectionStats()
    options = config.instructions if paraphrase.enabled else \
        dataclasses.replace(config.instructions, held_out_phrasings=0)  # no paraphrase split: every phrasing trains
    synth = instructions.InstructionSynthesizer.from_schema(ie_schema, options)
    ds_stats = supervision.DSStats()
    funnels: list[list[dict[str, Any]]] = []      # [running total] (added one document at a time)
    doc_funnels: list[list[dict[str, Any]]] = []
    linking = evaluation.LinkingScores()
    conversions: dict[str, dict[str, Any]] = {}
    tmp = temp_dir_beside(out)
    try:
        writer = _SplitWriter(tmp)
        with open(tmp / "annotations.jsonl", "w", encoding="utf-8") as ann_fh, \
                open(tmp / "candidates.csv", "w", encoding="utf-8-sig", newline="") as csv_fh:
            csv_out = csv.DictWriter(csv_fh, fieldnames=list(correction.COLUMNS), lineterminator="\r\n")
            csv_out.writeheader()
            docs = iter_cleaned_documents(config.path(config.corpus_dir), config.sources or None,
                                          max_docs_per_source=config.max_docs_per_source)
            for row in tqdm(docs, desc="kg2instruction", unit="doc", disable=not config.progress):
                doc = preparer(row)
                if doc is None:
                    continue
                cands = supervision.distant_supervision(doc, kg, config.scope, ds_stats)
                report = _filter_document(rules, cands, doc, kg, ie_schema)
                human = None
                if review is not None:
                    human, _ = review.apply(report.kept, {doc.id: doc.lang}, {doc.id: doc}, kg, review_stats)
                if gold is not None:  # running totals: memory does not grow with the corpus
                    funnels[:] = [evaluation.sum_funnels(funnels + [evaluation.funnel(report, [doc], human)])]
                    doc_funnels[:] = [evaluation.sum_funnels(
                        doc_funnels + [evaluation.funnel(report, [doc], human, level="document")])]
                    linking.add(evaluation.linking_scores([doc]))
                final = human if human is not None else report.kept
                csv_out.writerows(_review_rows(report.kept, doc, ie_schema, review))
                templates = {f"{doc.id}:{s.index}": s.templates for s in doc.sentences}
                for ann, subject in evaluation.annotations_with_subjects([doc], final, ie_schema):
                    split = paraphrase.route(split_of(subject, config), templates.get(ann.id, frozenset()))
                    row = {**ann.to_dict(), "split": split}
                    if paraphrase.enabled:
                        row["templates"] = sorted(templates.get(ann.id, ()))
                    ann_fh.write(json.dumps(row, ensure_ascii=False) + "\n")
                    if split == HELD_OUT:
                        continue
                    writer.sentences[split] += 1
                    for task in ("NER", "RE"):
                        if task in config.tasks:
                            writer.write(split, synth.records(ann, task, paraphrase=split == PARAPHRASE), subject)
            for ann, tasks, subject in _extra_annotations(config, kg, conversions):
                split = split_of(subject or ann.id, config)
                ann_fh.write(json.dumps({**ann.to_dict(), "split": split}, ensure_ascii=False) + "\n")
                for task in tasks:
                    writer.write(split, synth.records(ann, task), subject)
            ie_totals = {s: writer.split_total(s) for s in SPLITS}
            general = _general_records(config, ie_totals)
            for split, rows in general.items():
                writer.write(split, rows)
            mixing = {"ratio": config.general_ratio, "ie_records": ie_totals,
                      "wanted": {s: round(config.general_ratio * ie_totals[s]) for s in SPLITS},
                      "taken": {s: len(rows) for s, rows in general.items()}}
        writer.close()
        if config.hf_dataset:
            _hf_dataset(tmp)
        corrections = None
        if review is not None:
            corrections = {**review_stats.as_dict(), "unused_rows": len(review.unused()),
                           "unused_examples": [f"{review.where(r)}: {r.values['id']}" for r in review.unused()[:5]]}
        result = _report(config, writer, preparer, ds_stats, rules, funnels, doc_funnels, linking, conversions,
                         corrections, time.perf_counter() - t0)
        result["general_mixing"] = mixing
        result["paraphrase"] = _paraphrase_report(paraphrase, writer, synth)
        write_json_atomic(tmp / "report.json", result)
        replace_dir(tmp, out, producer="knowlm ie build")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        restore_interrupted_replace(out)
        raise
    return result


def _review_rows(kept: list, doc, ie_schema: dict, review) -> Iterator[dict[str, str]]:
    """``candidates.csv`` rows of one document: the candidates the rules kept (before any
    review, so a reviewed decision is never lost), with the decisions of the applied review
    carried over — the file is always the whole review state, ready for the next round."""
    for row in correction.correction_rows(kept, {doc.id: doc}, ie_schema):
        old = review.rows.get(row["id"]) if review is not None else None
        if old is not None:
            row.update({k: old.values.get(k, "") for k in ("action", *correction.FIXED, "note")})
        yield row


def _paraphrase_report(paraphrase: _Paraphrase, writer: _SplitWriter, synth) -> dict[str, Any]:
    """``report["paraphrase"]``: whether there is a split (and why not), the held-out templates
    per (language, relation), the held-out instruction phrasings, what went where."""
    return {
        "enabled": paraphrase.enabled,
        "reason": paraphrase.reason,
        "records": writer.split_total(PARAPHRASE),
        "sentences": writer.sentences[PARAPHRASE],
        "dropped_sentences": {s: paraphrase.dropped[s] for s in ("train", "valid")},
        "templates": sum(g["templates"] for g in paraphrase.table.values()),
        "held_out_templates": len(paraphrase.held),
        "template_groups": paraphrase.table,
        "held_out_phrasings": synth.held_out(),
    }


def _report(config, writer, preparer, ds_stats, rules, funnels, doc_funnels, linking, conversions, corrections,
            wall: float) -> dict[str, Any]:
    overlap = {s: len(writer.subjects[s] & writer.subjects["train"]) for s in ("valid", "test", PARAPHRASE)}
    return {
        "documents": preparer.stats.as_dict(),
        "distant_supervision": ds_stats.as_dict(),
        "filters": {r.name: r.stats.as_dict() for r in rules},
        "funnel_sentence": evaluation.sum_funnels(funnels) if funnels else None,
        "funnel_document": evaluation.sum_funnels(doc_funnels) if doc_funnels else None,
        "linking": linking.as_dict() if funnels else None,
        "corrections": corrections,
        "conversions": conversions,
        "sizes": writer.sizes(),
        "split_records": {s: writer.split_total(s) for s in OUTPUT_SPLITS},
        "split_sentences": {s: writer.sentences[s] for s in OUTPUT_SPLITS},
        "subjects": {s: len(writer.subjects[s]) for s in OUTPUT_SPLITS},
        "subjects_shared_with_train": overlap,
        "wall_s": round(wall, 2),
        "config": config.to_dict(),
    }


def main(config: KG2InstructionConfig | str | os.PathLike, overrides: Overrides = None) -> dict[str, Any]:
    """Entry point shared by the CLI, scripts and notebooks: a config object or a YAML path,
    plus ``key=value`` overrides (``output_dir=...`` picks the output folder)."""
    return build(KG2InstructionConfig.load(config, overrides))


# ----------------------------------------------------------------------------- CLI --------
def add_cli(subparsers) -> None:
    """``knowlm ie build CONFIG.yaml --out DIR``."""
    p = subparsers.add_parser("ie", help="stage 06: KG + corpus -> IE instruction data (KG2Instruction)")
    show_config_fields(p, KG2InstructionConfig)  # the fields of `build`, shown one level up too
    sub = p.add_subparsers(dest="ie_cmd", required=True)
    b = stage_command(sub.add_parser("build", help="link, distant-supervise, filter, correct, write instructions"),
                      KG2InstructionConfig, "configs/ie/sample.yaml", "filters.evidence_cues=false", _cli_build)
    b.add_argument("--overwrite", action="store_const", const="true", dest="config_shortcut_overwrite",
                   help="replace the output folder even if knowlm did not write it (= -o overwrite=true)")


def _cli_build(config: KG2InstructionConfig) -> int:
    r = build(config)
    d = r["documents"]
    print(f"documents {d['documents']} (annotated {d['annotated']}, skipped code {d['skipped_language']}), "
          f"candidates {r['distant_supervision']['candidates']} → {config.path(config.output_dir)} "
          f"({r['wall_s']:.1f} s)")
    for row in r["funnel_sentence"] or []:
        print(f"  {row['stage']:20s} {row['candidates']:7d} candidates  P {row['precision']:.3f}  "
              f"R {row['recall']:.3f}")
    print("records: " + ", ".join(f"{s} {n}" for s, n in r["split_records"].items()))
    p = r["paraphrase"]
    if p["enabled"]:
        print(f"held out for paraphrase: {p['held_out_templates']} of {p['templates']} sentence templates; "
              f"{p['sentences']} test sentences in paraphrase; {p['dropped_sentences']['train']} sentences dropped "
              f"from train, {p['dropped_sentences']['valid']} from valid")
    return 0
