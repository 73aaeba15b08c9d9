"""Exact and near-duplicate detection for streaming corpora.

* Exact: a 128-bit BLAKE2b digest of the normalised text (NFKC, lower-case, whitespace
  collapsed); 16 bytes of memory per kept document.
* Near: MinHash signatures over character n-grams (language-agnostic: works for Chinese,
  which has no spaces, as well as English and code) indexed with LSH. We use ``datasketch``
  (maintained, numpy-vectorised MinHash + banded LSH, with optional Redis/Cassandra storage
  for indexes that do not fit in memory) rather than writing our own banding; candidates from
  LSH are verified against the stored signature so that the threshold is the estimated
  Jaccard similarity, not just a band collision.

The first document seen is kept; later ones are reported as duplicates of it.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING

import xxhash

from .config import Section, field

if TYPE_CHECKING:
    from datasketch import LeanMinHash

_WS = re.compile(r"\s+")


@dataclass
class DedupConfig(Section):
    exact: bool = field(True, help="remove documents whose normalised text equals an earlier one")
    near: bool = field(True, help="remove near-duplicates with MinHash LSH")
    threshold: float = field(0.8, gt=0, le=1, help="estimated Jaccard similarity at or above which a document "
                                                   "is a near-duplicate")
    num_perm: int = field(128, ge=16, help="MinHash permutations (accuracy vs memory/speed)")
    ngram: int = field(5, ge=1, help="character n-gram size for shingles")
    seed: int = field(1, help="MinHash seed (same seed = same signatures across runs)")


def normalize(text: str) -> str:
    return _WS.sub(" ", unicodedata.normalize("NFKC", text).lower()).strip()


def shingles(text: str, n: int) -> set[bytes]:
    t = normalize(text)
    if len(t) <= n:
        return {t.encode("utf-8")}
    return {t[i:i + n].encode("utf-8") for i in range(len(t) - n + 1)}


def _hash32(b: bytes) -> int:
    return xxhash.xxh32_intdigest(b)


class Deduplicator:
    """``check(doc_id, text)`` returns ``None`` (new: remembered) or ``(kind, first_id)``."""

    def __init__(self, config: DedupConfig | None = None):
        # datasketch (and the scipy it pulls in, ~0.5 s) is imported only when a deduplicator is
        # built, so that modules reading the cleaned corpus stay cheap to import in worker processes.
        from datasketch import MinHash, MinHashLSH

        self.config = cfg = config or DedupConfig()
        self._exact: dict[bytes, str] = {}
        self._lsh = MinHashLSH(threshold=cfg.threshold, num_perm=cfg.num_perm) if cfg.near else None
        self._sigs: dict[str, LeanMinHash] = {}
        template = MinHash(num_perm=cfg.num_perm, seed=cfg.seed)
        self._perms, self._scheme = template.permutations, template.scheme  # computed once

    def signature(self, text: str) -> LeanMinHash:
        from datasketch import LeanMinHash, MinHash

        mh = MinHash(num_perm=self.config.num_perm, seed=self.config.seed, hashfunc=_hash32,
                     permutations=self._perms, scheme=self._scheme)
        mh.update_batch(list(shingles(text, self.config.ngram)))
        return LeanMinHash(mh)

    def fingerprint(self, text: str) -> tuple[bytes | None, LeanMinHash | None]:
        """(exact key, MinHash signature): the costly part, safe to compute in worker processes."""
        key = hashlib.blake2b(normalize(text).encode("utf-8"), digest_size=16).digest() if self.config.exact else None
        sig = self.signature(text) if self.config.near else None
        return key, sig

    def check(self, doc_id: str, text: str) -> tuple[str, str] | None:
        return self.check_fingerprint(doc_id, *self.fingerprint(text))

    def check_fingerprint(self, doc_id: str, key: bytes | None, sig: LeanMinHash | None) -> tuple[str, str] | None:
        """Compare with every document kept so far; remember this one if it is new."""
        if key is not None:
            first = self._exact.get(key)
            if first is not None:
                return "exact_duplicate", first
        if self._lsh is not None and sig is not None:
            best, best_sim = None, -1.0
            for cand in self._lsh.query(sig):
                sim = sig.jaccard(self._sigs[cand])
                if sim >= self.config.threshold and sim > best_sim:
                    best, best_sim = cand, sim
            if best is not None:
                return "near_duplicate", best
            self._lsh.insert(doc_id, sig)
            self._sigs[doc_id] = sig
        if key is not None:
            self._exact[key] = doc_id
        return None


def jaccard(a: str, b: str, n: int = 5) -> float:
    """Exact character n-gram Jaccard similarity (for tests and inspection)."""
    sa, sb = shingles(a, n), shingles(b, n)
    return len(sa & sb) / len(sa | sb) if sa | sb else 1.0


__all__ = ["DedupConfig", "Deduplicator", "normalize", "shingles", "jaccard"]
