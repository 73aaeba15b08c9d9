"""Stage 02 — tokenizers and Chinese vocabulary extension.

LLaMA's SentencePiece tokenizer (32000 BPE pieces) was trained mostly on English, so most
Chinese characters fall back to 1-3 UTF-8 byte tokens. Chinese-LLaMA-Alpaca trained a 20K
Chinese SentencePiece model and appended its pieces that LLaMA lacks (49953 pieces in all);
KnowLM (ZhiXi) kept LLaMA's vocabulary. This module does both, with the same code on the
sample world and on a cluster:

* :func:`train_tokenizer` streams documents of the cleaned corpus (stage 01) into a temporary
  text file (bounded memory; ``input_sentence_size`` samples huge inputs) and trains a BPE model
  with LLaMA's settings (:data:`LLAMA_SETTINGS`);
* :func:`write_hf_files` turns a ``tokenizer.model`` folder into a Hugging Face tokenizer folder
  that ``AutoTokenizer`` loads and that encodes exactly like sentencepiece;
* :func:`extend_vocabulary` merges two models the Chinese-LLaMA-Alpaca way;
* :func:`resize_embeddings` grows a model's embeddings and LM head for the new vocabulary;
* :func:`tokens_per_char` / :func:`tokens_per_char_table` measure the result on held-out text;
* :func:`main` runs the whole stage (``knowlm tokenizer train CONFIG.yaml --out DIR``).

Output folders are replaced whole, so :func:`train_tokenizer`, :func:`extend_vocabulary` and
:func:`build` first check them with :func:`~knowlm_utils.fileio.check_output_dir`: a new or empty
folder, or one knowlm wrote (it holds ``.knowlm-output.json``), is replaced; any other folder only
with ``overwrite`` (``--overwrite``); a file, the current folder and a folder holding the run's
inputs never.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
import warnings
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from tqdm import tqdm

from .config import Overrides, Section, StageConfig, field, show_config_fields, stage_command
from .fileio import (check_output_dir, remove_stale_temp, replace_dir, temp_dir_beside, write_bytes_atomic,
                     write_json_atomic)
from .spm import MODEL_FILE, load_processor, load_proto, model_file, processor_from_proto, sha256, without_dummy_prefix

PAD_PIECE = "[PAD]"
# what a tokenizer folder / this stage's output held before outputs carried the ownership marker
# (such a folder is still recognised as written by knowlm; see fileio.check_output_dir)
LEGACY_TOKENIZER_ENTRIES = (r"tokenizer\.model", r"tokenizer\.json", r"tokenizer_config\.json",
                            r"special_tokens_map\.json")
LEGACY_STAGE_ENTRIES = (r"base", r"zh", r"extended", r"report\.json")
LANGUAGES = ("zh", "en", "code", "mixed")

# LLaMA's tokenizer.model trainer/normalizer settings (read from its ModelProto): BPE with byte
# fallback, no Unicode normalisation, whitespace kept as is, digits split into single pieces,
# a dummy "▁" prefix, <unk>=0 <s>=1 </s>=2 and no padding piece.
LLAMA_SETTINGS: dict[str, Any] = dict(
    model_type="bpe", byte_fallback=True, normalization_rule_name="identity",
    remove_extra_whitespaces=False, add_dummy_prefix=True, split_digits=True,
    allow_whitespace_only_pieces=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
)


# ----------------------------------------------------------------------------- config ----
@dataclass
class TrainSpec(Section):
    """What one SentencePiece model is trained on, and how."""

    vocab_size: int = field(help="number of pieces, including <unk> <s> </s> and the 256 byte pieces")
    languages: dict[str, float] = field(default_factory=lambda: {"en": 1.0, "code": 1.0},
                                        help="language -> fraction of its training documents to use (0..1), "
                                             "chosen deterministically by a hash of the document id; languages "
                                             "not listed are not used")
    max_chars: dict[str, int] = field(default_factory=dict, ge=0, help="language -> character budget (documents "
                                      "are taken in corpus order until it is reached); absent: no cap")
    character_coverage: float = field(0.99995, ge=0.98, le=1, help="share of characters covered by pieces (LLaMA: "
                                      "0.99995; sentencepiece accepts 0.98 to 1); the rarest characters are left to "
                                      "byte fallback")
    input_sentence_size: int = field(0, ge=0, help="lines sentencepiece samples from the text file (0: all); "
                                     "set e.g. 10_000_000 on a cluster to bound the trainer's memory")
    shuffle_input_sentence: bool = field(True, help="sample lines at random when input_sentence_size is set")
    max_sentence_length: int = field(16384, ge=1, help="bytes per training line; longer lines are cut (counted)")
    max_sentencepiece_length: int = field(16, ge=1, help="longest piece in characters (LLaMA: 16)")
    num_threads: int = field(2, ge=1, help="trainer threads")
    seed: int = field(0, help="salt of the per-document sampling hash (change it to draw another sample)")

    def validate(self) -> None:
        if self.vocab_size < 300:
            raise ValueError(f"vocab_size {self.vocab_size} is too small: 3 specials + 256 bytes need 259")
        for lang, frac in self.languages.items():
            if not 0 <= frac <= 1:
                raise ValueError(f"languages.{lang}: fraction must be in [0, 1], got {frac!r}")


@dataclass
class TokenizerConfig(StageConfig):
    """Stage 02: train a LLaMA-like base tokenizer and a Chinese one, extend, measure."""

    corpus_dir: str = field("corpus", help="cleaned corpus of stage 01 (relative to the config file)")
    output_dir: str = field("tokenizer_out", help="gets base/, zh/, extended/ and report.json (replaced whole)")
    overwrite: bool = field(False, help="replace output_dir even if knowlm did not write it (no "
                            ".knowlm-output.json inside); never a file, the current folder or one holding the corpus")
    heldout_percent: float = field(1.0, ge=0, lt=100, help="documents held out by corpus.is_heldout: never "
                                   "trained on, used to measure tokens per character (same split in stage 04)")
    base: TrainSpec = field(default_factory=lambda: TrainSpec(
        vocab_size=3500, languages={"en": 1.0, "code": 1.0, "zh": 0.01}),
        help="the LLaMA-like base tokenizer: mostly English + code, a small share of Chinese")
    zh: TrainSpec = field(default_factory=lambda: TrainSpec(vocab_size=3500, languages={"zh": 1.0}),
                          help="the Chinese tokenizer whose pieces extend the base")
    add_pad: bool = field(False, help="append a [PAD] control piece to the extended vocabulary")
    eval_max_chars: int = field(2_000_000, ge=1, help="held-out characters per language used for measuring")
    hf_check_docs: int = field(100, ge=0, help="held-out documents per language checked for HF == sentencepiece")
    progress: bool = field(True, help="show progress bars")


def load_tokenizer_config(path: str | os.PathLike, overrides: Overrides = None) -> TokenizerConfig:
    """``TokenizerConfig.from_yaml``: relative paths in the file are taken from its folder."""
    return TokenizerConfig.from_yaml(path, overrides)


# ----------------------------------------------------------------------------- training ----
def _selected(doc: dict, spec: TrainSpec, used: dict[str, int]) -> bool:
    lang = doc.get("lang")
    frac = spec.languages.get(lang, 0.0)
    if frac <= 0:
        return False
    if frac < 1:
        bucket = zlib.crc32(f"{spec.seed}:{doc.get('id', '')}".encode("utf-8")) % 1_000_000
        if bucket >= frac * 1_000_000:
            return False
    cap = spec.max_chars.get(lang)
    return cap is None or used.get(lang, 0) < cap


def _training_lines(text: str, max_bytes: int, stats: dict[str, int]) -> Iterator[str]:
    """One training line per text line (sentencepiece reads lines; "\\n" itself is left to byte
    fallback, as in LLaMA); lines longer than ``max_bytes`` are cut at character boundaries."""
    for line in text.split("\n"):
        if not line.strip():
            continue
        data = line.encode("utf-8")
        if len(data) <= max_bytes:
            yield line
            continue
        stats["lines_cut"] += 1
        start = 0
        while start < len(data):
            end = min(start + max_bytes, len(data))
            while end < len(data) and (data[end] & 0xC0) == 0x80:  # not inside a UTF-8 sequence
                end -= 1
            yield data[start:end].decode("utf-8")
            start = end


def write_training_text(corpus_dir: str | os.PathLike, spec: TrainSpec, path: str | os.PathLike,
                        heldout_percent: float, progress: bool = True) -> dict[str, Any]:
    """Stream the selected training documents into ``path`` (one line per text line)."""
    from .corpus import iter_cleaned_documents

    stats: dict[str, Any] = {"docs": {}, "chars": {}, "lines": 0, "lines_cut": 0, "docs_not_selected": 0}
    docs = iter_cleaned_documents(corpus_dir, split="train", heldout_percent=heldout_percent)
    with open(path, "w", encoding="utf-8") as fh:
        for doc in tqdm(docs, desc="training text", unit="doc", disable=not progress):
            if not _selected(doc, spec, stats["chars"]):
                stats["docs_not_selected"] += 1
                continue
            lang = doc["lang"]
            stats["docs"][lang] = stats["docs"].get(lang, 0) + 1
            stats["chars"][lang] = stats["chars"].get(lang, 0) + len(doc["text"])
            for line in _training_lines(doc["text"], spec.max_sentence_length, stats):
                fh.write(line + "\n")
                stats["lines"] += 1
    if stats["lines"] == 0:
        raise ValueError(f"{corpus_dir}: no training text for languages {spec.languages} "
                         f"(max_chars {spec.max_chars}); check the corpus languages and fractions")
    return stats


def train_sentencepiece(text_path: str | os.PathLike, out_model: str | os.PathLike, spec: TrainSpec) -> Path:
    """Train a BPE model with :data:`LLAMA_SETTINGS` on a text file; write ``out_model``."""
    import sentencepiece as spm

    out_model = Path(out_model)
    with tempfile.TemporaryDirectory(dir=out_model.parent) as tmp:
        prefix = Path(tmp) / "sp"
        try:
            spm.SentencePieceTrainer.train(
                input=str(text_path), model_prefix=str(prefix), vocab_size=spec.vocab_size,
                character_coverage=spec.character_coverage, input_sentence_size=spec.input_sentence_size,
                shuffle_input_sentence=spec.shuffle_input_sentence, max_sentence_length=spec.max_sentence_length,
                max_sentencepiece_length=spec.max_sentencepiece_length, num_threads=spec.num_threads,
                minloglevel=2, **LLAMA_SETTINGS)
        except RuntimeError as exc:
            raise ValueError(f"sentencepiece training on {text_path} failed: {exc}") from None
        proto = load_proto(prefix.with_suffix(".model"))
        # the trainer records its (temporary) input and output paths; drop them so the same
        # vocabulary always has the same bytes and sha256
        proto.trainer_spec.ClearField("input")
        proto.trainer_spec.model_prefix = ""
        write_bytes_atomic(out_model, proto.SerializeToString())
    return out_model


def train_tokenizer(corpus_dir: str | os.PathLike, spec: TrainSpec, out_dir: str | os.PathLike,
                    heldout_percent: float = 1.0, progress: bool = True, overwrite: bool = False) -> dict[str, Any]:
    """Train one tokenizer on the cleaned corpus into ``out_dir`` (tokenizer.model + HF files),
    built in a temporary folder and renamed into place. ``out_dir`` must be new, empty or written
    by knowlm unless ``overwrite`` (see the module docstring). Returns the training-text stats."""
    out = check_output_dir(out_dir, overwrite=overwrite, protected=[corpus_dir], legacy_names=LEGACY_TOKENIZER_ENTRIES)
    remove_stale_temp(out)
    return _train_into(corpus_dir, spec, out, heldout_percent, progress,
                       producer="knowlm_utils.tokenizer.train_tokenizer")


def _train_into(corpus_dir, spec: TrainSpec, out: Path, heldout_percent: float, progress: bool,
                producer: str | None = None) -> dict[str, Any]:
    """:func:`train_tokenizer` without the output checks (:func:`build` writes into its own
    fresh temporary folder)."""
    tmp = temp_dir_beside(out)
    try:
        text = tmp / "train.txt"
        stats = write_training_text(corpus_dir, spec, text, heldout_percent, progress)
        t0 = time.perf_counter()
        train_sentencepiece(text, tmp / MODEL_FILE, spec)
        stats["train_s"] = round(time.perf_counter() - t0, 2)
        text.unlink()
        write_hf_files(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    replace_dir(tmp, out, producer=producer)
    stats["vocab_size"] = load_processor(out).get_piece_size()
    return stats


# -------------------------------------------------------------------- Hugging Face files ----
def write_hf_files(tokenizer_dir: str | os.PathLike, exact: bool = True) -> Path:
    """Write the Hugging Face files next to ``DIR/tokenizer.model`` so that
    ``AutoTokenizer.from_pretrained(DIR)`` loads it (``<s>`` added in front, as in LLaMA).

    ``LlamaTokenizer.from_pretrained(DIR, add_bos_token=True).save_pretrained(DIR)`` alone gives
    a tokenizer that differs from sentencepiece in three ways; ``exact=True`` fixes all three:

    1. transformers 5's ``LlamaTokenizer`` rebuilds its pre-tokenizer on load as
       ``Metaspace(prepend_scheme="first")``, which skips the dummy ``▁`` prefix when the text
       already starts with a space or ``▁`` (sentencepiece always adds it). We store the
       sentencepiece pipeline (normaliser ``Prepend("▁") + Replace(" ", "▁")``, no pre-tokenizer)
       in tokenizer.json and set ``tokenizer_class`` to ``TokenizersBackend`` so that
       AutoTokenizer uses tokenizer.json as written instead of rebuilding it.
    2. HF matches special-token strings such as ``"</s>"`` inside text; sentencepiece never
       does (a literal "</s>" in a web page must not end a document). ``split_special_tokens``
       makes HF treat them as text; add ``<s>``/``</s>`` ids explicitly, never as strings.
    3. HF orders BPE merges by vocabulary id; sentencepiece applies the merge whose piece has
       the highest score (ties: leftmost in the text). We rank merges by score
       (:func:`_merges_by_score`), which is exact whenever scores are distinct — trained models
       and :func:`extend_vocabulary`'s default. Tied scores (``added_score="zero"``) cannot be
       expressed as HF merge ranks, so such a model keeps some differences.
    """
    from transformers import LlamaTokenizer

    d = Path(tokenizer_dir)
    proto = load_proto(d)
    kwargs: dict[str, Any] = {"add_bos_token": True, "split_special_tokens": exact}
    if proto.trainer_spec.pad_id >= 0:
        kwargs["pad_token"] = proto.pieces[proto.trainer_spec.pad_id].piece
    tok = LlamaTokenizer.from_pretrained(str(d), **kwargs)
    if exact:
        _make_exact(tok, proto)
    tok.save_pretrained(str(d))
    if exact:
        cfg_path = d / "tokenizer_config.json"
        cfg = json.loads(cfg_path.read_text("utf-8"))
        cfg["tokenizer_class"] = "TokenizersBackend"
        write_json_atomic(cfg_path, cfg)
    return d


def _make_exact(tok, proto) -> None:
    from tokenizers import normalizers
    from tokenizers.models import BPE

    norm = proto.normalizer_spec
    if norm.name != "identity" or norm.remove_extra_whitespaces or not norm.escape_whitespaces:
        warnings.warn(f"normalizer {norm.name!r} (remove_extra_whitespaces={norm.remove_extra_whitespaces}) "
                      "has no exact Hugging Face equivalent here; HF and sentencepiece may differ",
                      stacklevel=3)
    steps = ([normalizers.Prepend("▁")] if norm.add_dummy_prefix else []) + [normalizers.Replace(" ", "▁")]
    backend = tok.backend_tokenizer
    backend.normalizer = normalizers.Sequence(steps)
    backend.pre_tokenizer = None
    vocab = json.loads(backend.to_str())["model"]["vocab"]
    backend.model = BPE(vocab=vocab, merges=_merges_by_score(proto, vocab), fuse_unk=True, byte_fallback=True)


def _merges_by_score(proto, vocab: dict[str, int]) -> list[tuple[str, str]]:
    """BPE merges ranked the way sentencepiece applies them: by the score of the merged piece
    (highest first), ties by piece id. Only normal and user-defined pieces are merge results."""
    from sentencepiece import sentencepiece_model_pb2 as pb

    mergeable = {pb.ModelProto.SentencePiece.NORMAL, pb.ModelProto.SentencePiece.USER_DEFINED}
    ranked = sorted(((-p.score, i, p.piece) for i, p in enumerate(proto.pieces) if p.type in mergeable))
    merges = []
    for _, _, piece in ranked:
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in vocab and right in vocab:
                merges.append((left, right))
    return merges


# ------------------------------------------------------------------ vocabulary extension ----
# East Asian script characters: CJK radicals/ideographs (every plane), CJK symbols and punctuation,
# kana, bopomofo, hangul, compatibility ideographs, fullwidth forms. An added piece without one of
# them is the only kind that can change how text without them (English, code) is encoded.
_CJK = re.compile("[\u2e80-\u2fdf\u3000-\u30ff\u3100-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af"
                  "\uf900-\ufaff\ufe30-\ufe4f\uff00-\uffef\U00020000-\U0003ffff]")
_DIGITS2 = re.compile(r"\d.*\d")

# a few held-out sentences every extension is checked on (more with check_texts / --check-text)
CHECK_SENTENCES: dict[str, list[str]] = {"builtin": [
    "The Yangtze is about 6,300 km long; in 1969 a survey counted 600 tributaries.",
    "Version 3.11 of the library was released on 2024-03-15 (see CHANGES, section 12).",
    "def mean(xs):\n    return sum(xs) / len(xs)  # 42 tests, 0 failures\n",
    "  leading spaces, trailing  ", "Zürich, São Paulo and Kraków — “quoted” text…",
    "</s> and <s> are text here", "长江全长约6300千米，是中国第一长河。",
    "黄河发源于青藏高原，流经九个省区，最后注入渤海。", "中文English混合123，以及 emoji 😀",
    "知识图谱（Knowledge Graph）用三元组表示实体之间的关系。"]}


def has_cjk(text: str) -> bool:
    """True when ``text`` holds an East Asian script character (see ``_CJK``)."""
    return _CJK.search(text) is not None


@dataclass
class ExtensionReport:
    base_model: str
    add_model: str
    out_dir: str
    base_size: int          # pieces in the base model
    add_size: int           # pieces in the added model
    add_special: int        # control/byte/unknown/unused pieces of the added model (never copied)
    duplicates: int         # normal pieces of the added model already in the base
    added: int              # pieces appended
    pad_id: int | None      # id of [PAD] when one was appended (or the base's own pad)
    final_size: int
    added_score: str
    warnings: list          # settings that differ between the models (the merged model keeps the base's)
    sha256: str             # of the merged tokenizer.model
    base_model_type: str = "BPE"      # trainer_spec.model_type of each input (the merged model is the base's)
    add_model_type: str = "BPE"
    model_type_note: str | None = None  # how the added model's pieces were used when the types differ
    skipped_non_cjk: int = 0          # pieces of the added model without a CJK character, skipped (only_cjk)
    added_without_cjk: int = 0        # appended pieces without a CJK character (can change non-CJK text)
    added_multi_digit: int = 0        # appended pieces holding two or more digits
    added_unreachable: int = 0        # appended pieces that no chain of BPE merges builds (never produced)
    check: dict | None = None         # held-out check (see extension_check)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# settings that decide what a piece's text *means*: a difference makes every added piece spell
# word boundaries differently from the base, so the merge is refused
_WHITESPACE = [("treat_whitespace_as_suffix", "trainer_spec"), ("escape_whitespaces", "normalizer_spec")]
# settings reported when they differ: the merged model keeps the base's, so they never change how
# the base encodes; they only decide which added pieces are ever produced
_NOTED = [("byte_fallback", "trainer_spec"), ("split_digits", "trainer_spec"), ("name", "normalizer_spec"),
          ("add_dummy_prefix", "normalizer_spec"), ("remove_extra_whitespaces", "normalizer_spec")]


def check_compatible(base, add, base_name: str = "base", add_name: str = "add") -> list[str]:
    """Compare two ModelProtos before appending ``add``'s pieces to ``base``; return the notes
    (differences the merged model tolerates), raise ``ValueError`` (one line, with the reason)
    where the merge is unsound.

    * The base must be BPE (LLaMA's is): added pieces become merges scored after the base's and
      the Hugging Face files are BPE; a unigram base would read those scores as log-probabilities.
    * The added model may be of any type (Chinese-LLaMA-Alpaca's ``chinese_sp.model`` is unigram):
      only its pieces are used, their scores are replaced (``added_score``). Reported as a note.
    * Whitespace conventions (``escape_whitespaces``, ``treat_whitespace_as_suffix``) must match:
      otherwise an added piece such as "▁中国" would stand for other text under the base's spec.
    * Normaliser, byte fallback, digit splitting, dummy prefix: the merged model keeps the base's
      settings, so the base's segmentation rules stay; a difference only means some added pieces
      are never produced (e.g. NFKC-only forms) — reported, not refused.
    """
    from sentencepiece import sentencepiece_model_pb2 as pb

    base_type, add_type = (pb.TrainerSpec.ModelType.Name(m.trainer_spec.model_type) for m in (base, add))
    if base_type != "BPE":
        raise ValueError(f"{base_name}: base model_type is {base_type}; extension appends pieces as BPE merges "
                         "scored after the base's (and writes BPE Hugging Face files), which is sound only for a "
                         "BPE base such as LLaMA's")
    for name, where in _WHITESPACE:
        a, b = getattr(getattr(base, where), name), getattr(getattr(add, where), name)
        if a != b:
            raise ValueError(f"{where}.{name} differs: {base_name} has {a!r}, {add_name} has {b!r}; the added "
                             "pieces would mark whitespace differently from the base, so they would stand for "
                             "other text")
    msgs = []
    if add_type != base_type:
        msgs.append(f"trainer_spec.model_type differs: {base_name} is {base_type}, {add_name} is {add_type} "
                    "(only the added pieces are used: appended as BPE merges, their scores replaced)")
    for name, where in _NOTED:
        a, b = getattr(getattr(base, where), name), getattr(getattr(add, where), name)
        if a != b:
            msgs.append(f"{where}.{name} differs: {base_name} has {a!r}, {add_name} has {b!r} "
                        "(the merged model keeps the base's setting)")
    return msgs


def _after_base_scores(lowest: float, n: int) -> list[float]:
    """``n`` strictly decreasing scores below ``lowest``, distinct as float32 (how ModelProto stores
    them): ``lowest - 1, lowest - 2, ...`` while that is exact, the next float32 down where it is
    not (LLaMA's "▁" piece scores -1e9, where float32 steps are 64)."""
    import numpy as np

    out, s = [], np.float32(lowest)
    for _ in range(n):
        nxt = np.float32(s - np.float32(1.0))
        if nxt >= s:
            nxt = np.nextafter(s, np.float32(-np.inf))
        out.append(float(nxt))
        s = nxt
    return out


def _unreachable(vocab: set[str], pieces: Iterable[str]) -> int:
    """How many of ``pieces`` no chain of BPE merges builds: a piece is built from two adjacent
    symbols (single characters, or pieces of ``vocab`` built the same way) whose concatenation it is."""
    memo: dict[str, bool] = {}

    def built(s: str) -> bool:
        if len(s) == 1:
            return True
        if s not in memo:
            memo[s] = False  # no piece is its own half; guards the recursion
            memo[s] = any((len(s[:i]) == 1 or s[:i] in vocab) and (len(s[i:]) == 1 or s[i:] in vocab)
                          and built(s[:i]) and built(s[i:]) for i in range(1, len(s)))
        return memo[s]

    return sum(not built(p) for p in pieces)


def extension_check(base_model, extended_model, texts: dict[str, list[str]],
                    hf_max_docs: int | None = None, examples: int = 3) -> dict[str, Any]:
    """Encode held-out ``texts`` (name -> documents) with the base and the extended tokenizer.

    * ``non_cjk``: documents without a CJK character (English, code): how many encode to exactly
      the base's ids (``non_cjk_identical`` is True when all do), with the first differences;
    * ``cjk``: documents with CJK characters: tokens before and after (the extension's gain);
    * ``hf_mismatch_docs``: documents (the first ``hf_max_docs`` of each name; ``None`` all,
      ``0`` none) where ``AutoTokenizer`` on the extended folder differs from sentencepiece.
    """
    base, ext = load_processor(base_model), load_processor(extended_model)
    groups = {g: {"docs": 0, "chars": 0, "base_tokens": 0, "extended_tokens": 0, "identical_docs": 0}
              for g in ("non_cjk", "cjk")}
    by_name: dict[str, Any] = {}
    changed: list[dict[str, Any]] = []
    for name, docs in texts.items():
        row = {"docs": len(docs), "chars": sum(map(len, docs)), "base_tokens": 0, "extended_tokens": 0,
               "identical_docs": 0}
        for i, (doc, a, b) in enumerate(zip(docs, base.encode(docs), ext.encode(docs))):
            g = groups["cjk" if has_cjk(doc) else "non_cjk"]
            same = a == b
            for r in (row, g):
                r["base_tokens"] += len(a)
                r["extended_tokens"] += len(b)
                r["identical_docs"] += same
            g["docs"] += 1
            g["chars"] += len(doc)
            if not same and not has_cjk(doc) and len(changed) < examples:
                k = next((j for j, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
                changed.append({"name": name, "index": i, "text": doc[:80],
                                "base": [base.id_to_piece(x) for x in a[max(0, k - 2):k + 3]],
                                "extended": [ext.id_to_piece(x) for x in b[max(0, k - 2):k + 3]]})
        by_name[name] = row
    out: dict[str, Any] = {**groups, "by_name": by_name, "non_cjk_changed_examples": changed,
                           "non_cjk_identical": groups["non_cjk"]["identical_docs"] == groups["non_cjk"]["docs"]}
    if hf_max_docs != 0:
        hf_docs, hf_bad = 0, []
        for name, docs in texts.items():
            part = docs if hf_max_docs is None else docs[:hf_max_docs]
            bad = hf_mismatches(extended_model, part)
            by_name[name]["hf_checked_docs"], by_name[name]["hf_mismatch_docs"] = len(part), len(bad)
            hf_docs += len(part)
            hf_bad += [{"name": name, **m} for m in bad]
        out.update(hf_checked_docs=hf_docs, hf_mismatch_docs=len(hf_bad), hf_identical=not hf_bad,
                   hf_mismatch_examples=hf_bad[:examples])
    return out


def read_check_texts(path: str | os.PathLike, max_chars: int | None = None) -> tuple[list[str], dict[str, int]]:
    """Documents of a held-out text file for :func:`extension_check`: ``.jsonl`` (a ``"text"``
    string per line; a bad line is a one-line error naming FILE:LINE) or plain UTF-8 text
    (documents separated by blank lines). Whole documents are read until ``max_chars``; the
    rest are counted, not read. Returns (documents, {"docs", "chars", "docs_not_read"})."""
    p = Path(path)
    docs: list[str] = []
    stats = {"docs": 0, "chars": 0, "docs_not_read": 0}

    def take(doc: str) -> None:
        if not doc.strip():
            return
        if max_chars is not None and stats["chars"] >= max_chars:
            stats["docs_not_read"] += 1
            return
        docs.append(doc)
        stats["docs"] += 1
        stats["chars"] += len(doc)

    try:
        with open(p, encoding="utf-8") as fh:
            if p.suffix == ".jsonl":
                for lineno, line in enumerate(fh, 1):
                    if not line.strip():
                        continue
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise ValueError(f"{p}:{lineno}: not JSON ({exc.msg})") from None
                    if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                        raise ValueError(f"{p}:{lineno}: expected an object with a \"text\" string")
                    take(row["text"])
            else:
                for doc in re.split(r"\n[ \t]*\n", fh.read()):
                    take(doc.strip("\n"))
    except UnicodeDecodeError as exc:
        raise ValueError(f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if not docs:
        raise ValueError(f"{p}: no text to check the extension on")
    return docs, stats


def extend_vocabulary(base_model: str | os.PathLike, add_model: str | os.PathLike, out_dir: str | os.PathLike,
                      add_pad: bool = False, added_score: str = "after_base", hf_files: bool = True,
                      overwrite: bool = False, only_cjk: bool = False,
                      check_texts: dict[str, list[str]] | None = None,
                      hf_check_docs: int | None = None) -> ExtensionReport:
    """Append every normal piece of ``add_model`` that ``base_model`` lacks (Chinese-LLaMA-Alpaca).

    All base pieces keep their id, score and type, so a model trained with the base tokenizer
    still reads every old id the same way; the new ids come after the base's. Control, byte,
    unknown and unused pieces of the added model are skipped (the base has its own). The base
    must be BPE; the added model may be unigram, like Chinese-LLaMA-Alpaca's ``chinese_sp.model``
    (only its pieces are used; see :func:`check_compatible` for what is refused and why). On
    LLaMA's 32,000 pieces + ``chinese_sp.model`` (20,000): 3 specials skipped, 2,044 duplicates,
    17,953 added = 49,953.

    ``added_score`` — the score decides a BPE merge's priority (highest first):

    * ``"after_base"`` (default): below every base score, in the added model's own order, all
      distinct. Where the base's merges are done, an added piece can still join two of its final
      pieces (on LLaMA + ``chinese_sp.model``: multi-digit numbers such as "19", Latin words such
      as "China"), so English can change a little — :func:`extension_check` measures it, and
      ``only_cjk`` prevents it. The Hugging Face files encode exactly like sentencepiece.
    * ``"zero"``: score 0 for every added piece, as Chinese-LLaMA-Alpaca's merge script does. The
      added merges then outrank all base merges: an added piece such as ``"en"`` can break up
      ``"▁Argentina"`` (English gets more tokens), and because thousands of merges tie at 0,
      sentencepiece resolves them by position while HF BPE resolves them by rank — the HF files
      then differ from sentencepiece on many Chinese texts (measured in the tests and notebook 02).

    ``only_cjk`` skips (and counts) added pieces without a CJK character: text without CJK
    characters then encodes exactly as with the base, by construction.

    ``add_pad`` appends ``[PAD]`` as a CONTROL piece with ``trainer_spec.pad_id`` pointing at it,
    so sentencepiece and Hugging Face agree on its id and the vocabulary size (an HF-only added
    token, as Chinese-Alpaca did, exists only in the HF files), and a literal "[PAD]" in text is
    never turned into padding.

    The result is checked (``report.check``, :func:`extension_check`) on :data:`CHECK_SENTENCES`
    plus ``check_texts`` (name -> held-out documents): non-CJK text against the base, and the HF
    files against sentencepiece (``hf_check_docs`` documents per name; ``None`` all). The merged
    ``tokenizer.model`` and the HF files are built in a temporary folder and renamed onto
    ``out_dir``, which must be new, empty or written by knowlm unless ``overwrite`` (never a file,
    the current folder or a folder holding either model).
    """
    texts = {**CHECK_SENTENCES, **(check_texts or {})}
    return _extend(base_model, add_model, out_dir, add_pad, added_score, hf_files, check=True, overwrite=overwrite,
                   only_cjk=only_cjk, check_texts=texts, hf_check_docs=hf_check_docs)


def _extend(base_model, add_model, out_dir, add_pad: bool, added_score: str, hf_files: bool, *, check: bool,
            overwrite: bool = False, only_cjk: bool = False, check_texts: dict[str, list[str]] | None = None,
            hf_check_docs: int | None = None) -> ExtensionReport:
    """:func:`extend_vocabulary`; ``check=False`` (for :func:`build`, which writes into its own
    fresh temporary folder) skips the output-folder check and the ownership marker;
    ``check_texts=None`` skips the held-out check."""
    from sentencepiece import sentencepiece_model_pb2 as pb

    if added_score not in ("zero", "after_base"):
        raise ValueError(f"added_score must be 'zero' or 'after_base', got {added_score!r}")
    base_path, add_path = model_file(base_model), model_file(add_model)
    if check:
        out = check_output_dir(out_dir, overwrite=overwrite, protected=[base_path, add_path],
                               legacy_names=LEGACY_TOKENIZER_ENTRIES)
        remove_stale_temp(out)
    else:
        out = Path(out_dir).resolve()
    base, add = load_proto(base_path), load_proto(add_path)
    base_type, add_type = (pb.TrainerSpec.ModelType.Name(m.trainer_spec.model_type) for m in (base, add))
    msgs = check_compatible(base, add, str(base_path), str(add_path))
    base_size, existing = len(base.pieces), {p.piece for p in base.pieces}
    skip_types = {pb.ModelProto.SentencePiece.CONTROL, pb.ModelProto.SentencePiece.BYTE,
                  pb.ModelProto.SentencePiece.UNKNOWN, pb.ModelProto.SentencePiece.UNUSED}
    special = dupes = non_cjk_skipped = 0
    new_pieces = []
    for p in add.pieces:
        if p.type in skip_types:
            special += 1
        elif p.piece in existing:
            dupes += 1
        elif only_cjk and not has_cjk(p.piece):
            non_cjk_skipped += 1
        else:
            new_pieces.append(p)
            existing.add(p.piece)
    scores = ([0.0] * len(new_pieces) if added_score == "zero"
              else _after_base_scores(min(p.score for p in base.pieces), len(new_pieces)))
    for p, score in zip(new_pieces, scores):
        new = base.pieces.add()
        new.piece, new.type, new.score = p.piece, p.type, score
    added_text = [p.piece for p in new_pieces]
    multi_digit = sum(_DIGITS2.search(t) is not None for t in added_text)
    if multi_digit and base.trainer_spec.split_digits:
        msgs.append(f"{multi_digit} added pieces hold two or more digits: the merged model joins digits that "
                    f"the base (split_digits) writes one per token (only_cjk / --only-cjk-pieces skips them)")
    for m in msgs:
        warnings.warn(m, stacklevel=3)
    pad_id = base.trainer_spec.pad_id if base.trainer_spec.pad_id >= 0 else None
    if add_pad and pad_id is None:
        if PAD_PIECE in existing:
            raise ValueError(f"{PAD_PIECE} is already a (non-control) piece of the merged vocabulary")
        pad = base.pieces.add()
        pad.piece, pad.type, pad.score = PAD_PIECE, pb.ModelProto.SentencePiece.CONTROL, 0.0
        pad_id = len(base.pieces) - 1
        base.trainer_spec.pad_id, base.trainer_spec.pad_piece = pad_id, PAD_PIECE
    processor_from_proto(base)  # sentencepiece must accept what we write
    data = base.SerializeToString()
    vocab = {p.piece for p in base.pieces if p.type == pb.ModelProto.SentencePiece.NORMAL}
    report = ExtensionReport(
        str(base_path), str(add_path), str(out), base_size, len(add.pieces), special, dupes, len(new_pieces),
        pad_id, len(base.pieces), added_score, msgs, hashlib.sha256(data).hexdigest(),
        base_model_type=base_type, add_model_type=add_type,
        model_type_note=None if base_type == add_type else
        f"{base_type} base + {add_type} addition: the added model's pieces are appended as BPE merges "
        f"({added_score} scores); its own {add_type.lower()} scores are not used",
        skipped_non_cjk=non_cjk_skipped, added_without_cjk=sum(not has_cjk(t) for t in added_text),
        added_multi_digit=multi_digit, added_unreachable=_unreachable(vocab, added_text))
    tmp = temp_dir_beside(out)
    try:
        write_bytes_atomic(tmp / MODEL_FILE, data)
        if hf_files:
            write_hf_files(tmp)
        if check_texts:
            report.check = extension_check(base_path, tmp, check_texts, hf_max_docs=hf_check_docs if hf_files else 0)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    replace_dir(tmp, out, producer="knowlm tokenizer extend" if check else None)
    return report


# ----------------------------------------------------------------------------- measuring ----
def tokens_per_char(sp_or_path, texts: Iterable[str], batch_size: int = 512) -> float:
    """Tokens (without <s>) per character over ``texts``, streamed in batches. Lower = the
    tokenizer packs more text into each token (a shorter sequence for the same context)."""
    sp = load_processor(sp_or_path)
    n_tok = n_chr = 0
    batch: list[str] = []
    for text in texts:
        batch.append(text)
        if len(batch) >= batch_size:
            n_tok += sum(map(len, sp.encode(batch)))
            n_chr += sum(map(len, batch))
            batch = []
    if batch:
        n_tok += sum(map(len, sp.encode(batch)))
        n_chr += sum(map(len, batch))
    if n_chr == 0:
        raise ValueError("tokens_per_char: no text to measure")
    return n_tok / n_chr


def heldout_texts(corpus_dir: str | os.PathLike, heldout_percent: float, max_chars: int | None = None,
                  languages: Iterable[str] | None = None) -> dict[str, list[str]]:
    """Held-out documents per language (the stage never trains on them), at most ``max_chars``
    characters per language (whole documents, in corpus order); ``languages=None``: every
    language of the corpus (zh, en, code, mixed first, in that order)."""
    from .corpus import iter_cleaned_documents

    wanted = None if languages is None else set(languages)
    out: dict[str, list[str]] = {lang: [] for lang in LANGUAGES if wanted is None or lang in wanted}
    used: dict[str, int] = {}
    for doc in iter_cleaned_documents(corpus_dir, split="heldout", heldout_percent=heldout_percent):
        lang = doc.get("lang")
        if (wanted is not None and lang not in wanted) or (max_chars is not None and used.get(lang, 0) >= max_chars):
            continue
        out.setdefault(lang, []).append(doc["text"])
        used[lang] = used.get(lang, 0) + len(doc["text"])
    return {lang: texts for lang, texts in out.items() if texts}


def tokens_per_char_table(tokenizers: dict[str, Any], texts_by_lang: dict[str, list[str]]):
    """DataFrame: one row per language (docs, chars) and one tokens/char column per tokenizer."""
    import pandas as pd

    sps = {name: load_processor(t) for name, t in tokenizers.items()}
    rows = []
    for lang, texts in texts_by_lang.items():
        row: dict[str, Any] = {"lang": lang, "docs": len(texts), "chars": sum(map(len, texts))}
        row.update({name: round(tokens_per_char(sp, texts), 4) for name, sp in sps.items()})
        rows.append(row)
    return pd.DataFrame(rows).set_index("lang")


def hf_mismatches(tokenizer_dir: str | os.PathLike, texts: Iterable[str]) -> list[dict[str, Any]]:
    """Texts where ``AutoTokenizer.from_pretrained(DIR)`` ids (without <s>) differ from
    sentencepiece's; each entry shows the first differing position and both piece lists there."""
    from transformers import AutoTokenizer

    sp = load_processor(tokenizer_dir)
    hf = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    bad = []
    for i, text in enumerate(texts):
        a, b = sp.encode(text), hf(text, add_special_tokens=False)["input_ids"]
        if a != b:
            k = next((j for j, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
            bad.append({"index": i, "position": k, "text": text[:80],
                        "sentencepiece": [sp.id_to_piece(x) for x in a[max(0, k - 2):k + 3]],
                        "hf": hf.convert_ids_to_tokens(b[max(0, k - 2):k + 3])})
    return bad


# ------------------------------------------------------------------------ model resizing ----
def _vocab_pieces(tokenizer) -> tuple[int, Any]:
    """(size, id -> (piece, is_special)) for a sentencepiece path/processor or an HF tokenizer."""
    if hasattr(tokenizer, "convert_ids_to_tokens"):  # a transformers tokenizer
        special = set(tokenizer.all_special_ids)
        return len(tokenizer), lambda i: (tokenizer.convert_ids_to_tokens(i), i in special)
    sp = load_processor(tokenizer)
    return sp.get_piece_size(), lambda i: (sp.id_to_piece(i), sp.is_control(i) or sp.is_unknown(i)
                                           or sp.is_byte(i) or sp.is_unused(i))


def subword_sources(new_tokenizer, base_tokenizer, start: int, stop: int) -> list[list[int] | None]:
    """For each new id in ``[start, stop)``: the base-tokenizer ids its text encodes to
    (``None`` for special pieces such as [PAD], which have no text)."""
    _, piece_of = _vocab_pieces(new_tokenizer)
    base = without_dummy_prefix(base_tokenizer)  # encodes a piece's surface text exactly
    out: list[list[int] | None] = []
    for i in range(start, stop):
        piece, special = piece_of(i)
        out.append(None if special else base.encode(piece.replace("▁", " ")) or None)
    return out


def resize_embeddings(model, new_vocab, init: str = "mean", base_tokenizer=None) -> dict[str, Any]:
    """Grow the input embeddings and the LM head of a transformers causal LM to a larger vocabulary.

    ``new_vocab``: the new size, or the extended tokenizer (folder, .model, processor or HF
    tokenizer). Old rows stay bit-identical; ``model.config.vocab_size`` is updated; a tied head
    stays tied (one matrix), an untied head gets its own new rows.

    ``init`` for the new rows:

    * ``"mean"`` (default: needs nothing but the model) — the mean of the existing rows, a point
      inside the trained distribution, so new tokens start with a neutral, small-loss prediction.
      (Chinese-LLaMA-Alpaca called HF's ``resize_token_embeddings``, which samples new rows
      around that mean; here it is the mean itself, deterministic.)
    * ``"subword"`` — the mean of the rows of the base-tokenizer pieces that the new piece's text
      encodes to (``base_tokenizer`` required; new_vocab must be the extended tokenizer). "中国"
      starts where the model already represents "中"+"国" (or their UTF-8 bytes), a meaningful
      point; special new pieces (e.g. [PAD]) fall back to the mean.
    """
    import torch

    if init not in ("mean", "subword"):
        raise ValueError(f"init must be 'mean' or 'subword', got {init!r}")
    new_size = new_vocab if isinstance(new_vocab, int) else _vocab_pieces(new_vocab)[0]
    emb = model.get_input_embeddings()
    old_size = emb.weight.shape[0]
    if new_size < old_size:
        raise ValueError(f"new vocabulary ({new_size}) is smaller than the model's embedding "
                         f"({old_size} rows): shrinking would drop trained rows")
    head = model.get_output_embeddings()
    tied = head is not None and head.weight.data_ptr() == emb.weight.data_ptr()
    sources = None
    if init == "subword":
        if base_tokenizer is None or isinstance(new_vocab, int):
            raise ValueError("init='subword' needs the extended tokenizer as new_vocab and base_tokenizer")
        base_size = _vocab_pieces(base_tokenizer)[0]
        if base_size > old_size:
            raise ValueError(f"base tokenizer has {base_size} pieces but the model only {old_size} rows")
        sources = subword_sources(new_vocab, base_tokenizer, old_size, new_size)
    old_in = emb.weight.detach().clone()
    old_out = None if tied or head is None else head.weight.detach().clone()
    model.resize_token_embeddings(new_size, mean_resizing=False)
    fallback = 0
    with torch.no_grad():
        targets = [(model.get_input_embeddings().weight, old_in)]
        if old_out is not None:
            targets.append((model.get_output_embeddings().weight, old_out))
        for weight, old in targets:
            weight[:old_size] = old  # already copied by transformers; made explicit
            mean = old.float().mean(0)
            for k in range(new_size - old_size):
                ids = sources[k] if sources is not None else None
                row = old[ids].float().mean(0) if ids else mean
                weight[old_size + k] = row.to(weight.dtype)
        if sources is not None:
            fallback = sum(1 for ids in sources if not ids)
        bias = getattr(model.get_output_embeddings(), "bias", None)
        if bias is not None and old_size < new_size:
            bias[old_size:] = bias[:old_size].mean()
    model.config.vocab_size = new_size
    text_cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else None
    if text_cfg is not None:
        text_cfg.vocab_size = new_size
    return {"old_size": old_size, "new_size": new_size, "init": init, "tied": tied,
            "new_rows": new_size - old_size, "mean_fallback": fallback if init == "subword" else new_size - old_size}


# ------------------------------------------------------------------------------- stage ----
def build(config: TokenizerConfig, output_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Train base + zh, extend, measure on held-out text; write ``OUT/{base,zh,extended}/`` and
    ``OUT/report.json`` (assembled in a temporary folder, renamed into place at the end). ``OUT``
    must be new, empty or written by knowlm unless ``config.overwrite``; never the current folder
    or one holding the corpus or the config's folder."""
    corpus_dir = config.path(config.corpus_dir)
    out = Path(output_dir) if output_dir else config.path(config.output_dir)
    protected = [corpus_dir] + ([config.base_dir] if config.base_dir else [])
    out = check_output_dir(out, overwrite=config.overwrite, protected=protected, legacy_names=LEGACY_STAGE_ENTRIES)
    remove_stale_temp(out)
    tmp = temp_dir_beside(out)
    t0 = time.perf_counter()
    try:
        training = {name: _train_into(corpus_dir, spec, tmp / name, config.heldout_percent, config.progress)
                    for name, spec in (("base", config.base), ("zh", config.zh))}
        held = heldout_texts(corpus_dir, config.heldout_percent, config.eval_max_chars)
        if not held:
            raise ValueError(f"{corpus_dir}: no held-out documents at heldout_percent={config.heldout_percent}")
        ext = _extend(tmp / "base", tmp / "zh", tmp / "extended", config.add_pad, "after_base", True, check=False,
                      check_texts=held, hf_check_docs=config.hf_check_docs)
        table = tokens_per_char_table({n: tmp / n for n in ("base", "zh", "extended")}, held)
        hf_check = {lang: row.get("hf_mismatch_docs", 0) for lang, row in ext.check["by_name"].items()}
        report = {
            "corpus_dir": str(corpus_dir), "heldout_percent": config.heldout_percent,
            "vocab": {"base": ext.base_size, "zh": ext.add_size, "added": ext.added,
                      "duplicates": ext.duplicates, "zh_special_skipped": ext.add_special,
                      "extended": ext.final_size, "pad_id": ext.pad_id},
            "training": training, "extension": {**ext.to_dict(), "base_model": "base/tokenizer.model",
                          "add_model": "zh/tokenizer.model", "out_dir": "extended"},
            "tokens_per_char": {lang: row for lang, row in table.to_dict("index").items()},
            "hf_mismatches": {"docs_checked_per_language": config.hf_check_docs, "by_language": hf_check},
            "sha256": {n: sha256(tmp / n) for n in ("base", "zh", "extended")},
            "config": config.to_dict(),
        }
        report["wall_s"] = round(time.perf_counter() - t0, 2)
        write_json_atomic(tmp / "report.json", report)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    replace_dir(tmp, out, producer="knowlm tokenizer train")
    return report


def main(config: TokenizerConfig | str | os.PathLike, overrides: Overrides = None) -> dict[str, Any]:
    """Entry point shared by the CLI, scripts and notebooks: a config object or a YAML path,
    plus ``key=value`` overrides (``output_dir=...`` picks the output folder)."""
    return build(TokenizerConfig.load(config, overrides))


# ----------------------------------------------------------------------------- CLI --------
def add_cli(subparsers) -> None:
    """``knowlm tokenizer train|extend``."""
    p = subparsers.add_parser("tokenizer", help="stage 02: train tokenizers, extend a vocabulary")
    show_config_fields(p, TokenizerConfig)  # the fields of `build`/`train`, shown one level up too
    sub = p.add_subparsers(dest="tokenizer_cmd", required=True)
    t = stage_command(sub.add_parser("train", help="train base + zh tokenizers on a cleaned corpus, extend, measure"),
                      TokenizerConfig, "configs/tokenizer/sample.yaml", "base.vocab_size=4000", _cli_train)
    t.add_argument("--overwrite", action="store_const", const="true", dest="config_shortcut_overwrite",
                   help="replace the output folder even if knowlm did not write it (= -o overwrite=true)")
    e = sub.add_parser("extend", help="append the pieces of --add missing from --base (e.g. a real LLaMA "
                                      "tokenizer.model + a Chinese model)")
    e.add_argument("--base", required=True, help="base tokenizer.model (or a folder holding one)")
    e.add_argument("--add", required=True, help="tokenizer.model whose missing pieces are appended")
    e.add_argument("--out", required=True, help="output folder: tokenizer.model + Hugging Face files (replaced "
                                                "whole: new, empty or written by knowlm, else --overwrite)")
    e.add_argument("--overwrite", action="store_true", help="replace --out even if knowlm did not write it "
                   "(never a file, the current folder or a folder holding --base/--add)")
    e.add_argument("--add-pad", action="store_true", help=f"append a {PAD_PIECE} control piece")
    e.add_argument("--added-score", choices=("after_base", "zero"), default="after_base",
                   help="score of appended pieces (see extend_vocabulary); zero = Chinese-LLaMA-Alpaca")
    e.add_argument("--only-cjk-pieces", action="store_true", help="skip (and count) added pieces without a CJK "
                   "character (multi-digit numbers, Latin words): text without CJK then encodes exactly as with "
                   "--base; default: append all, as Chinese-LLaMA-Alpaca did")
    e.add_argument("--check-text", action="append", default=[], metavar="FILE",
                   help="held-out text to check the result on (repeatable): .jsonl with a \"text\" string per line, "
                        "or plain text with documents separated by blank lines; checked: non-CJK documents encode "
                        "exactly as with --base, the Hugging Face files encode like sentencepiece (a few built-in "
                        "sentences are always checked)")
    e.add_argument("--check-max-chars", type=int, default=2_000_000, metavar="N",
                   help="characters read per --check-text file (whole documents; the rest are counted, not read)")
    e.add_argument("--report", metavar="FILE", help="also write the extension report (counts, model types, "
                                                   "settings that differ, the check) as JSON to FILE")
    e.set_defaults(func=_cli_extend)


def _cli_train(config: TokenizerConfig) -> int:
    report = build(config)
    v = report["vocab"]
    print(f"vocab: base {v['base']} + zh {v['zh']} → added {v['added']} (duplicates {v['duplicates']}) "
          f"→ extended {v['extended']}  ({report['wall_s']:.1f} s)")
    for lang, row in report["tokens_per_char"].items():
        print(f"  {lang:6s} tokens/char base {row['base']:.3f}  extended {row['extended']:.3f}  ({row['chars']} chars)")
    return 0


def _cli_extend(args) -> int:
    if args.check_max_chars < 1:
        raise ValueError(f"--check-max-chars must be >= 1, got {args.check_max_chars}")
    texts, read = {}, {}
    for path in args.check_text:
        texts[str(path)], read[str(path)] = read_check_texts(path, args.check_max_chars)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = extend_vocabulary(args.base, args.add, args.out, add_pad=args.add_pad, added_score=args.added_score,
                              overwrite=args.overwrite, only_cjk=args.only_cjk_pieces, check_texts=texts)
    for w in caught:
        print(f"warning: {w.message}")
    skipped = f", skipped without CJK {r.skipped_non_cjk}" if args.only_cjk_pieces else ""
    print(f"base {r.base_model_type} {r.base_size} + add {r.add_model_type} {r.add_size} (special {r.add_special}, "
          f"duplicates {r.duplicates}{skipped}) → added {r.added} → {r.final_size} pieces"
          + (f", pad id {r.pad_id}" if r.pad_id is not None else ""))
    if r.model_type_note:
        print(f"model types differ: {r.model_type_note}")
    print(f"added pieces: {r.added_without_cjk} without a CJK character, {r.added_multi_digit} with 2+ digits, "
          f"{r.added_unreachable} that no chain of BPE merges builds (never produced)")
    c, n_read = r.check, {k: v for k, v in read.items() if v["docs_not_read"]}
    for path, st in n_read.items():
        print(f"check: {path}: read {st['docs']} documents ({st['chars']} chars), {st['docs_not_read']} more not "
              f"read (--check-max-chars)")
    nc, zh = c["non_cjk"], c["cjk"]
    print(f"check, text without CJK: {nc['identical_docs']}/{nc['docs']} documents encode exactly as with the base "
          f"({nc['base_tokens']} → {nc['extended_tokens']} tokens, {nc['chars']} chars)")
    for ex in c["non_cjk_changed_examples"]:
        print(f"  {ex['name']}[{ex['index']}] {ex['text'][:40]!r}: base {ex['base']} → extended {ex['extended']}")
    print(f"check, text with CJK: {zh['docs']} documents, {zh['base_tokens']} → {zh['extended_tokens']} tokens "
          f"({zh['chars']} chars)")
    if "hf_checked_docs" in c:
        print(f"check, Hugging Face files == sentencepiece: {c['hf_checked_docs'] - c['hf_mismatch_docs']}/"
              f"{c['hf_checked_docs']} documents")
    if args.report:
        write_json_atomic(args.report, {**r.to_dict(), "check_files": read})
    print(f"wrote {r.out_dir}/tokenizer.model (sha256 {r.sha256[:16]}…) and Hugging Face files"
          + (f"; report {args.report}" if args.report else ""))
    return 0
