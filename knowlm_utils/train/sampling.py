"""Batch sampling for pretraining: KnowLM's per-batch mixing of typed ranges (zh / en / code …).

* :class:`FeistelPermutation` — a seeded permutation of ``range(n)`` evaluated pointwise in
  O(1) memory, so epochs of huge types need no stored permutation and resuming is O(1);
* :func:`largest_remainder_counts` — integer per-batch counts from proportions;
* ``ProportionalBatchSampler`` — a ``torch.utils.data.Sampler[list[int]]`` whose batch ``k`` is
  a pure function of (ranges, proportions, batch_size, seed, k);
* :class:`RankBatchSampler` — one rank's share of those batches (rank ``r`` of ``W`` takes batch
  ``k·W + r``), starting at any micro step in O(1).

torch is imported only when ``ProportionalBatchSampler`` is first used (PEP 562).
"""

from __future__ import annotations

import math
import numbers
import zlib
from typing import Iterator, Sequence

import numpy as np

from .lazy_torch import torch_class

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser: a cheap, well-mixed 64-bit hash of each element."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


class FeistelPermutation:
    """A seeded pseudo-random permutation of ``range(n)`` evaluated pointwise in O(1) memory
    (a 4-round Feistel network on the next even power of two, cycle-walked into ``[0, n)``).

    Why not ``rng.permutation(n)``: a type of a billion samples would need 8 GB per epoch per
    rank, and resuming would need it rebuilt. Here ``perm(positions)`` costs O(len(positions)).
    """

    def __init__(self, n: int, key: Sequence[int]):
        if n < 1:
            raise ValueError("a permutation needs n >= 1")
        self.n = int(n)
        bits = max(2, (self.n - 1).bit_length())
        self.half = np.uint64((bits + 1) // 2)
        self.mask = np.uint64((1 << int(self.half)) - 1)
        self.keys = np.random.SeedSequence(list(key)).generate_state(4, np.uint64)

    def _round_trip(self, x: np.ndarray) -> np.ndarray:
        left, right = x >> self.half, x & self.mask
        for k in self.keys:
            left, right = right, left ^ (_mix64(right ^ k) & self.mask)
        return (left << self.half) | right

    def __call__(self, positions: np.ndarray) -> np.ndarray:
        y = self._round_trip(np.asarray(positions, dtype=np.uint64))
        out = y >= np.uint64(self.n)
        while out.any():
            y[out] = self._round_trip(y[out])
            out = y >= np.uint64(self.n)
        return y.astype(np.int64)


def largest_remainder_counts(proportions: dict[str, float], total: int) -> dict[str, int]:
    """Integer counts proportional to ``proportions`` that sum exactly to ``total``: floors of
    the quotas, then +1 to the largest remainders (ties: the earlier type). Deterministic."""
    names = list(proportions)
    s = sum(float(v) for v in proportions.values())
    quotas = [float(proportions[k]) / s * total for k in names]
    counts = [math.floor(q + 1e-9) for q in quotas]
    by_remainder = sorted(range(len(names)), key=lambda i: (-round(quotas[i] - counts[i], 9), i))
    for i in by_remainder[: total - sum(counts)]:
        counts[i] += 1
    return dict(zip(names, counts))


class _ProportionalBatchSamplerImpl:
    """Batches of sample indices drawn from typed ranges in fixed proportions (KnowLM's
    per-batch mixing of zh / en / code). (Public as ``ProportionalBatchSampler``, a
    ``torch.utils.data.Sampler[list[int]]``.)

    * every batch holds ``counts_per_batch[t]`` samples of type ``t`` (largest-remainder
      rounding of ``proportions × batch_size``, summing exactly to ``batch_size``), grouped by
      type in the order of ``proportions``;
    * within a type, samples follow a seeded permutation per epoch of that type; when a type
      is exhausted its next epoch starts (types run through epochs independently);
    * batch ``k`` is a pure function of (ranges, proportions, batch_size, seed, k):
      ``start_step=k`` resumes exactly where an uninterrupted run was, in O(1) — nothing is
      replayed. ``num_steps`` is the END step of the run (exclusive), so a resumed sampler yields
      steps ``start_step … num_steps-1`` and ``len()`` is ``num_steps - start_step``; without
      it the sampler is endless.
    """

    def __init__(self, type_ranges: dict[str, tuple[int, int]], proportions: dict[str, float], batch_size: int,
                 seed: int = 0, start_step: int = 0, num_steps: int | None = None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if start_step < 0 or (num_steps is not None and num_steps < start_step):
            raise ValueError(f"need 0 <= start_step <= num_steps, got start_step={start_step}, num_steps={num_steps}")
        unknown = sorted(set(proportions) - set(type_ranges))
        if unknown:
            raise ValueError(f"proportions name type(s) {unknown} that are not in the index; it has {sorted(type_ranges)}")
        bad = {k: v for k, v in proportions.items()
               if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) or v < 0}
        if bad or not proportions or sum(proportions.values()) <= 0:
            raise ValueError(f"proportions must be finite, >= 0 and not all zero, got {dict(proportions)}")
        self.type_ranges = {k: (int(v[0]), int(v[1])) for k, v in type_ranges.items()}
        self.proportions = dict(proportions)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.start_step = int(start_step)
        self.num_steps = None if num_steps is None else int(num_steps)
        self.counts_per_batch = largest_remainder_counts(self.proportions, self.batch_size)
        for name, c in self.counts_per_batch.items():
            s, e = self.type_ranges[name]
            if self.proportions[name] > 0 and c == 0:
                raise ValueError(f"type {name!r} (proportion {self.proportions[name]}) rounds to 0 of {batch_size} "
                                 "samples per batch and would never be seen; raise batch_size or its proportion")
            if c and e <= s:
                raise ValueError(f"type {name!r} has no samples (range [{s}, {e})) but a proportion > 0")
        self._perm_cache: dict[tuple[str, int], FeistelPermutation] = {}

    def _perm(self, name: str, epoch: int) -> FeistelPermutation:
        key = (name, epoch)
        perm = self._perm_cache.get(key)
        if perm is None:
            s, e = self.type_ranges[name]
            if len(self._perm_cache) > 64:
                self._perm_cache.clear()
            perm = self._perm_cache[key] = FeistelPermutation(e - s, (self.seed, zlib.crc32(name.encode()), epoch))
        return perm

    def batch_at(self, step: int) -> list[int]:
        """The batch of step ``step`` (any step, in O(batch_size))."""
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        batch: list[int] = []
        for name, c in self.counts_per_batch.items():
            if not c:
                continue
            s, e = self.type_ranges[name]
            n = e - s
            pos = np.arange(step * c, step * c + c, dtype=np.int64)
            epochs, offsets = pos // n, pos % n
            picked = np.empty(c, np.int64)
            for ep in np.unique(epochs):
                sel = epochs == ep
                picked[sel] = s + self._perm(name, int(ep))(offsets[sel])
            batch.extend(picked.tolist())
        return batch

    def epoch_of(self, name: str, step: int) -> int:
        """The epoch of type ``name`` that batch ``step`` starts in."""
        s, e = self.type_ranges[name]
        return step * self.counts_per_batch[name] // (e - s)

    def __iter__(self) -> Iterator[list[int]]:
        step = self.start_step
        while self.num_steps is None or step < self.num_steps:
            yield self.batch_at(step)
            step += 1

    def __len__(self) -> int:
        if self.num_steps is None:
            raise TypeError("an endless ProportionalBatchSampler (num_steps=None) has no length")
        return self.num_steps - self.start_step


def __getattr__(name: str):
    """``ProportionalBatchSampler`` is created on first use (see :mod:`knowlm_utils.train.lazy_torch`)."""
    if name != "ProportionalBatchSampler":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return torch_class(globals(), name, _ProportionalBatchSamplerImpl, "Sampler")


class LengthGroupedBatches:
    """Batches of similar length, dealt from a proportional sampler's batches (Hugging Face's
    ``group_by_length``, kept exact and resumable): the ``group`` consecutive batches of steps
    ``g·group … g·group + group − 1`` are pooled per type, each type's samples sorted by length
    and cut into ``group`` slices, and batch ``j`` of the group takes the ``j``-th slice of every
    type (so its samples are of one length quantile), the group's batches in a seeded order.

    What a right-padded micro batch computes is its longest sample times its size; the course's
    SFT mix (IE records next to long copy records) pads 24 % of what it computes, grouped by 16
    micro batches a few per cent. Every step keeps the exact type counts of ``sampler``; a group
    holds exactly the samples the ungrouped batches held (nothing dropped, nothing repeated);
    ``batch_at(step)`` is a pure function of the step, so resuming needs no replay.
    ``sampler``: a ``ProportionalBatchSampler`` (``batch_at``, ``counts_per_batch``);
    ``lengths[i]``: sample ``i``'s length in tokens."""

    def __init__(self, sampler, lengths: Sequence[int], group: int, seed: int = 0):
        if isinstance(group, bool) or not isinstance(group, int) or group < 1:
            raise ValueError(f"group must be an integer >= 1 (batches sorted together), got {group!r}")
        self.sampler, self.group, self.seed = sampler, group, int(seed)
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.counts = [(name, c) for name, c in sampler.counts_per_batch.items() if c]
        self._cache: tuple[int, list[list[int]]] | None = None

    def batch_at(self, step: int) -> list[int]:
        """The batch of step ``step`` (computes its group once, O(group × batch))."""
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        if self.group == 1:
            return self.sampler.batch_at(step)
        g, j = divmod(step, self.group)
        if self._cache is None or self._cache[0] != g:
            self._cache = (g, self._deal(g))
        return self._cache[1][j]

    def _deal(self, g: int) -> list[list[int]]:
        plain = np.array([self.sampler.batch_at(g * self.group + j) for j in range(self.group)], dtype=np.int64)
        dealt = np.empty_like(plain)
        col = 0
        for _, c in self.counts:  # the sampler groups each batch by type, in this order
            pool = plain[:, col:col + c].ravel()
            pool = pool[np.argsort(self.lengths[pool], kind="stable")]
            dealt[:, col:col + c] = pool.reshape(self.group, c)
            col += c
        order = np.random.default_rng([self.seed, g]).permutation(self.group)
        return dealt[order].tolist()


def padding_share(batches, lengths: Sequence[int], steps: range) -> float:
    """The share of padding in what right-padded batches compute: 1 − tokens / (longest × size),
    summed over ``batches.batch_at(step)`` for ``step`` in ``steps``."""
    lengths = np.asarray(lengths, dtype=np.int64)
    real = padded = 0
    for step in steps:
        sizes = lengths[batches.batch_at(step)]
        real += int(sizes.sum())
        padded += int(sizes.max()) * len(sizes)
    return 1.0 - real / padded if padded else 0.0


class RankBatchSampler:
    """Micro batches for one rank: at micro step ``k`` rank ``r`` of ``W`` takes
    ``sampler.batch_at(k·W + r)``, for ``k`` in ``[start, end)``. Every rank's batch keeps the
    type proportions and no two ranks share a step. ``start`` > 0 resumes in O(1)."""

    def __init__(self, sampler, rank: int, world_size: int, start: int, end: int):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        if not 0 <= start <= end:
            raise ValueError(f"need 0 <= start <= end, got {start}, {end}")
        self.sampler, self.rank, self.world_size, self.start, self.end = sampler, rank, world_size, start, end

    def batch_at(self, k: int) -> list[int]:
        return self.sampler.batch_at(k * self.world_size + self.rank)

    def __iter__(self):
        for k in range(self.start, self.end):
            yield self.batch_at(k)

    def __len__(self) -> int:
        return self.end - self.start

    def set_epoch(self, epoch: int) -> None:  # the Trainer calls this; batches depend only on the step
        pass
