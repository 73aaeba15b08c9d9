"""Span-constrained decoding of IEPile JSON answers (stage 08).

An IEPile NER or RE answer has one shape for a given record: a JSON object keyed by the record's
schema in its order (``{"城市": ["安卡拉"], "国家": []}``, ``{"位于": [{"subject": "巴西利亚", "object":
"巴西"}]}``), and every name in it stands in the input sentence. A small model that has learnt the
format but not yet to copy reliably loses most of its F1 to misspelt names, keys of its own and
broken JSON. Decoding under that shape (UIE's constrained decoding; Hugging Face ``generate``'s
``prefix_allowed_tokens_fn``) lets the model choose *which* spans and *when* to stop, but never a
string that is not a span of the input, a key outside the schema or a malformed answer:

* :class:`AnswerGrammar` — the answers a record allows, as a character automaton: the canonical JSON
  text (``json.dumps(..., ensure_ascii=False)``: ``", "`` and ``": "`` separators, keys in schema
  order, every key present), NER lists of strings, RE lists of ``{"subject": …, "object": …}``.
  A string is a span of the input's JSON-escaped text that starts and ends at a word boundary (no
  cut inside a run of Latin letters or digits, none inside an escape, no space at either end). A
  name holding a quote is written ``\\"`` as in the input's escaped form.
* :class:`TokenVocabulary` — what each token id appends to the text (SentencePiece pieces: ``▁`` is
  a space, ``<0xNN>`` one byte; control ids nothing), indexed by first character.
* :class:`AnswerConstraint` — one record's grammar over one vocabulary: :meth:`~AnswerConstraint.allowed`
  gives the ids that keep the generated ids a prefix of an allowed answer (``</s>`` once it is
  complete, and only then), with states cached by prefix.
* :func:`answer_grammar` — the grammar of a record, or None for records it does not cover (text
  styles, EE — whose argument roles are not in the schema — or an instruction without a readable
  schema and input); those records decode unconstrained (``predict_records`` marks every row).

What it cannot fix: a generation cut by ``max_new_tokens`` before the closing ``}`` is still
unparseable, and a name that is not a span of the input (a normalised date, say) cannot be written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from .formats import read_iepile_instruction, schema_key

#: tasks whose IEPile answers have a fixed shape given the schema
TASKS_COVERED = ("NER", "RE")
_RE_PAIR = ("subject", "object")
_DONE = ("done",)
_CJK = ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0x3040, 0x30FF), (0xAC00, 0xD7AF))


def _escaped(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)[1:-1]


def _latin_word(ch: str) -> bool:
    """A letter or digit of a script that writes words as runs (not CJK, where every character is a word)."""
    if not (ch.isalnum() or ch == "_"):
        return False
    o = ord(ch)
    return not any(lo <= o <= hi for lo, hi in _CJK)


class AnswerGrammar:
    """The IEPile answers of one record (see the module docstring). ``task`` NER or RE, ``keys`` the
    schema in order, ``text`` the input sentence (unescaped); ``word_boundaries`` False lets a span
    start or end inside a word.

    States are hashable tuples: :meth:`start`, :meth:`step` (None when the character is not allowed),
    :meth:`allowed_chars` (the characters :meth:`step` accepts), :meth:`done`."""

    def __init__(self, task: str, keys: Sequence[str], text: str, word_boundaries: bool = True):
        if task not in TASKS_COVERED:
            raise ValueError(f"constrained decoding covers {', '.join(TASKS_COVERED)} answers, not {task!r}")
        if any(not isinstance(k, str) for k in keys):
            raise ValueError(f"schema keys must be strings, got {list(keys)!r}")
        self.task, self.keys, self.text = task, [_escaped(k) for k in keys], _escaped(text)
        t, n = self.text, len(self.text)
        inside = [False] * (n + 1)  # a cut at k falls inside an escape sequence (\" \\ \n \uXXXX)
        i = 0
        while i < n:
            if t[i] == "\\":
                width = 6 if t[i + 1:i + 2] == "u" else 2
                for k in range(i + 1, min(i + width, n)):
                    inside[k] = True
                i += width
            else:
                i += 1

        def cut_ok(k: int) -> bool:
            if inside[k]:
                return False
            return not (word_boundaries and 0 < k < n and _latin_word(t[k - 1]) and _latin_word(t[k]))

        self._cut = [cut_ok(k) for k in range(n + 1)]
        self.starts = tuple(k for k in range(n) if self._cut[k] and not t[k].isspace())

    # -- states ----------------------------------------------------------------------------
    @staticmethod
    def _norm(state: tuple) -> tuple:
        while state[0] == "lit" and state[2] == len(state[1]):
            state = state[3]
        return state

    def _string(self, after: str, then: tuple) -> tuple:
        """A span being written: (str, length, matching start positions, literal after its closing quote, state after)."""
        return ("str", 0, self.starts, after, then)

    def _item(self, k: int) -> tuple:
        more = ("more", k)
        if self.task == "NER":
            return ("lit", '"', 0, self._string("", more))
        obj = self._string("}", more)
        return ("lit", '{"%s": "' % _RE_PAIR[0], 0, self._string(', "%s": "' % _RE_PAIR[1], obj))

    def _after_list(self, k: int) -> tuple:
        if k + 1 < len(self.keys):
            return ("lit", ', "%s": [' % self.keys[k + 1], 0, ("open", k + 1))
        return ("lit", "}", 0, _DONE)

    def start(self) -> tuple:
        """The state before the answer's first character."""
        if not self.keys:
            return ("lit", "{}", 0, _DONE)
        return ("lit", '{"%s": [' % self.keys[0], 0, ("open", 0))

    def done(self, state: tuple) -> bool:
        return state == _DONE

    def _closable(self, state: tuple) -> bool:
        _, length, starts, _, _ = state
        return length > 0 and any(self._cut[s + length] and not self.text[s + length - 1].isspace() for s in starts)

    def allowed_chars(self, state: tuple) -> set[str]:
        kind = state[0]
        if kind == "lit":
            return {state[1][state[2]]}
        if kind == "open":
            return {"]", '"' if self.task == "NER" else "{"}
        if kind == "more":
            return {",", "]"}
        if kind == "str":
            _, length, starts, _, _ = state
            chars = {self.text[s + length] for s in starts if s + length < len(self.text)}
            if self._closable(state):
                chars.add('"')
            return chars
        return set()

    def step(self, state: tuple, ch: str) -> tuple | None:
        kind = state[0]
        if kind == "lit":
            lit, pos = state[1], state[2]
            return self._norm(("lit", lit, pos + 1, state[3])) if lit[pos] == ch else None
        if kind in ("open", "more"):
            k = state[1]
            if ch == "]":
                return self._norm(self._after_list(k))
            if kind == "open":
                return self.step(self._item(k), ch)
            return self._norm(("lit", ", ", 1, self._item(k))) if ch == "," else None
        if kind == "str":
            if ch == '"':  # right after a backslash of the escaped text a quote is the name's own (\")
                inner = self.extend(state, ch)
                if inner is not None:
                    return inner
                return self._norm(("lit", state[3], 0, state[4])) if self._closable(state) else None
            return self.extend(state, ch)
        return None

    def extend(self, state: tuple, piece: str) -> tuple | None:
        """The span state after ``piece`` (no closing quote in it), or None when no start matches."""
        _, length, starts, after, then = state
        t = self.text
        kept = tuple(s for s in starts if t.startswith(piece, s + length))
        return ("str", length + len(piece), kept, after, then) if kept else None

    def _run(self, text: str) -> tuple | None:
        state: tuple | None = self.start()
        for ch in text:
            state = self.step(state, ch)
            if state is None:
                return None
        return state

    def accepts(self, answer: str) -> bool:
        """True when ``answer`` is one of the answers this grammar allows (e.g. a check of gold answers)."""
        state = self._run(answer)
        return state is not None and self.done(state)

    def accepts_prefix(self, text: str) -> bool:
        """True when ``text`` begins an allowed answer (a generation cut by ``max_new_tokens``)."""
        return self._run(text) is not None


def answer_grammar(record: Mapping[str, Any], word_boundaries: bool = True) -> AnswerGrammar | None:
    """The :class:`AnswerGrammar` of an IEPile NER/RE record, or None when it has none (another style or
    task, a schema that is not a list of strings, no input text)."""
    if record.get("format") != "iepile" or record.get("task") not in TASKS_COVERED:
        return None
    shown = read_iepile_instruction(record)  # what the model was shown, else the record's own fields
    schema, text = (shown["schema"], shown["input"]) if shown else (record.get("schema"), record.get("input"))
    keys = [schema_key(k) for k in schema] if isinstance(schema, list) else [None]
    if not isinstance(text, str) or not text or None in keys:
        return None
    return AnswerGrammar(record["task"], keys, text, word_boundaries)


@dataclass(frozen=True)
class TokenVocabulary:
    """What each token id appends to the text: a str, one byte (``bytes``), or None (control ids,
    never allowed inside an answer); ``eos`` the id that ends it."""

    surfaces: tuple[str | bytes | None, ...]
    eos: int
    by_first_char: dict[str, tuple[int, ...]] = field(repr=False)
    by_byte: dict[int, int] = field(repr=False)

    @classmethod
    def from_pieces(cls, pieces: Sequence[str | None], eos: int,
                    byte_ids: Iterable[int] = (), control_ids: Iterable[int] = ()) -> "TokenVocabulary":
        """From SentencePiece-style pieces (``▁`` a space, ``<0xNN>`` a byte for ids in ``byte_ids``)."""
        byte_ids, control = set(byte_ids), set(control_ids) | {eos}
        surfaces: list[str | bytes | None] = []
        for i, piece in enumerate(pieces):
            if piece is None or i in control:
                surfaces.append(None)
            elif i in byte_ids:
                surfaces.append(bytes([int(piece[3:5], 16)]))
            else:
                surfaces.append(piece.replace("\u2581", " ") or None)
        first: dict[str, list[int]] = {}
        by_byte: dict[int, int] = {}
        for i, s in enumerate(surfaces):
            if isinstance(s, str):
                first.setdefault(s[0], []).append(i)
            elif isinstance(s, bytes):
                by_byte[s[0]] = i
        return cls(tuple(surfaces), eos, {c: tuple(ids) for c, ids in first.items()}, by_byte)

    @classmethod
    def from_tokenizer(cls, tokenizer: Any) -> "TokenVocabulary":
        """From a SentencePiece processor / ``.model`` file / folder, a :class:`~knowlm_utils.generation.Codec`,
        or a transformers tokenizer with a SentencePiece vocabulary (``vocab_file``, or ``▁``/``<0xNN>`` pieces).
        Other vocabularies (byte-level BPE) get a one-line ValueError."""
        from .. import spm
        from ..generation import Codec

        if isinstance(tokenizer, Codec):
            tokenizer = tokenizer.sp if tokenizer.sp is not None else tokenizer.hf
        if spm.is_processor(tokenizer) or isinstance(tokenizer, (str, bytes)) or hasattr(tokenizer, "__fspath__"):
            sp = spm.load_processor(tokenizer)
            n = sp.get_piece_size()
            return cls.from_pieces([sp.id_to_piece(i) for i in range(n)], sp.eos_id(),
                                   [i for i in range(n) if sp.is_byte(i)],
                                   [i for i in range(n) if sp.is_control(i) or sp.is_unknown(i)])
        eos = getattr(tokenizer, "eos_token_id", None)
        if eos is None:
            raise ValueError("constrained decoding needs a tokenizer with an </s> (eos) token")
        size = len(tokenizer)
        pieces = tokenizer.convert_ids_to_tokens(list(range(size)))
        if not any(isinstance(p, str) and "\u2581" in p for p in pieces):
            name = getattr(tokenizer, "name_or_path", None) or type(tokenizer).__name__
            raise ValueError(f"constrained decoding: {name} is not a SentencePiece vocabulary (no '\u2581' pieces); "
                             f"decode without --constrained")
        byte_ids = [i for i, p in enumerate(pieces)
                    if isinstance(p, str) and len(p) == 6 and p.startswith("<0x") and p.endswith(">")]
        return cls.from_pieces(pieces, eos, byte_ids, getattr(tokenizer, "all_special_ids", ()) or ())


class AnswerConstraint:
    """One record's :class:`AnswerGrammar` over a :class:`TokenVocabulary`: :meth:`allowed` maps the ids
    generated so far to the ids that may come next."""

    def __init__(self, grammar: AnswerGrammar, vocab: TokenVocabulary):
        self.grammar, self.vocab = grammar, vocab
        self._states: dict[tuple[int, ...], tuple | None] = {(): (grammar.start(), b"")}
        self._allowed: dict[tuple, list[int]] = {}

    def _advance(self, state: tuple, surface: str | bytes | None) -> tuple | None:
        g, pending = state
        grammar = self.grammar
        if surface is None or grammar.done(g):
            return None
        if isinstance(surface, bytes):
            buf = pending + surface
            try:
                ch = buf.decode("utf-8")
            except UnicodeDecodeError:
                if len(buf) < 4 and any(c.encode("utf-8").startswith(buf) for c in grammar.allowed_chars(g)):
                    return (g, buf)
                return None
            nxt = grammar.step(g, ch)
            return None if nxt is None else (nxt, b"")
        if pending:
            return None
        if g[0] == "str" and '"' not in surface:  # the common case: a piece of a name, one startswith per start
            nxt = grammar.extend(g, surface)
            return None if nxt is None else (nxt, b"")
        for ch in surface:
            g = grammar.step(g, ch)
            if g is None:
                return None
        return (g, b"")

    def state(self, ids: Sequence[int]) -> tuple | None:
        """The decoding state after ``ids`` (None when they left the grammar)."""
        key = tuple(ids)
        if key in self._states:
            return self._states[key]
        parent = self.state(key[:-1])
        tok = key[-1]
        surfaces = self.vocab.surfaces
        st = None if parent is None or not 0 <= tok < len(surfaces) else self._advance(parent, surfaces[tok])
        self._states[key] = st
        return st

    def allowed(self, ids: Sequence[int]) -> list[int]:
        """Ids that may follow ``ids``; ``[eos]`` once the answer is complete (or if ``ids`` left the grammar)."""
        st = self.state(ids)
        eos = self.vocab.eos
        if st is None or (self.grammar.done(st[0]) and not st[1]):
            return [eos]
        if st in self._allowed:
            return self._allowed[st]
        g, pending = st
        chars = self.grammar.allowed_chars(g)
        candidates: set[int] = set()
        if not pending:
            for c in chars:
                candidates.update(self.vocab.by_first_char.get(c, ()))
        firsts = {c.encode("utf-8")[len(pending)] for c in chars
                  if len(c.encode("utf-8")) > len(pending) and c.encode("utf-8").startswith(pending)}
        candidates.update(self.vocab.by_byte[b] for b in firsts if b in self.vocab.by_byte)
        surfaces = self.vocab.surfaces
        ok = sorted(i for i in candidates if self._advance(st, surfaces[i]) is not None)
        self._allowed[st] = ok or [eos]
        return self._allowed[st]


def record_constraints(records: Sequence[Mapping[str, Any]], tokenizer: Any,
                       word_boundaries: bool = True) -> list[AnswerConstraint | None]:
    """One :class:`AnswerConstraint` per record (None where :func:`answer_grammar` has no grammar)."""
    grammars = [answer_grammar(r, word_boundaries) for r in records]
    if not any(grammars):
        return [None] * len(grammars)
    vocab = TokenVocabulary.from_tokenizer(tokenizer)
    return [None if g is None else AnswerConstraint(g, vocab) for g in grammars]


__all__ = ["TASKS_COVERED", "AnswerGrammar", "AnswerConstraint", "TokenVocabulary", "answer_grammar",
           "record_constraints"]
