"""knowlm_utils.train.sampling: the Feistel permutation, largest-remainder counts,
ProportionalBatchSampler (exact per-batch type counts, O(1) resume) and RankBatchSampler (each
rank's share of the typed batches)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from knowlm_utils.train.sampling import (FeistelPermutation, ProportionalBatchSampler, RankBatchSampler,
                                         largest_remainder_counts)


def test_rank_batch_sampler_gives_each_rank_a_different_proportional_share():
    ranges = {"zh": (0, 50), "en": (50, 80), "code": (80, 90)}
    base = ProportionalBatchSampler(ranges, {"zh": 2, "en": 1, "code": 1}, batch_size=4, seed=3)
    ranks = [list(RankBatchSampler(base, r, 2, 0, 6)) for r in range(2)]
    for k in range(6):
        a, b = ranks[0][k], ranks[1][k]
        assert a == base.batch_at(2 * k) and b == base.batch_at(2 * k + 1)
        for batch in (a, b):  # every rank's micro batch keeps the proportions
            kinds = Counter("zh" if i < 50 else "en" if i < 80 else "code" for i in batch)
            assert kinds == {"zh": 2, "en": 1, "code": 1}
    # one process sees, in order, exactly what the two ranks see interleaved
    single = list(RankBatchSampler(base, 0, 1, 0, 12))
    assert single == [ranks[k % 2][k // 2] for k in range(12)]
    resumed = RankBatchSampler(base, 1, 2, 4, 6)
    assert list(resumed) == ranks[1][4:] and len(resumed) == 2
    with pytest.raises(ValueError, match="rank 2 outside world size 2"):
        RankBatchSampler(base, 2, 2, 0, 1)


def _ranges():
    return {"zh": (0, 37), "en": (37, 60), "code": (60, 67)}


def test_sampler_proportions_are_exact_in_every_batch():
    ranges = _ranges()
    sampler = ProportionalBatchSampler(ranges, {"zh": 0.5, "en": 0.3, "code": 0.2}, batch_size=11, seed=3,
                                       num_steps=40)
    assert sampler.counts_per_batch == {"zh": 6, "en": 3, "code": 2}  # 5.5/3.3/2.2 -> largest remainder to zh
    batches = list(sampler)
    assert len(batches) == len(sampler) == 40
    for batch in batches:
        kinds = [next(t for t, (s, e) in ranges.items() if s <= i < e) for i in batch]
        assert {t: kinds.count(t) for t in ranges} == sampler.counts_per_batch
    # within one epoch of a type every sample appears exactly once; epochs continue independently
    code = [i for b in batches for i in b if 60 <= i < 67]
    for ep in range(len(code) // 7):
        assert sorted(code[7 * ep:7 * ep + 7]) == list(range(60, 67))
    assert code[:7] != code[7:14]  # a new permutation per epoch
    zh = [i for b in batches for i in b if i < 37]
    assert sorted(zh[:37]) == list(range(37))


def test_sampler_is_deterministic_and_resumable():
    props = {"zh": 0.6, "en": 0.3, "code": 0.1}
    full = list(ProportionalBatchSampler(_ranges(), props, 10, seed=1, num_steps=50))
    again = list(ProportionalBatchSampler(_ranges(), props, 10, seed=1, num_steps=50))
    other = list(ProportionalBatchSampler(_ranges(), props, 10, seed=2, num_steps=50))
    assert full == again and full != other
    for k in (0, 1, 17, 49, 50):
        resumed = ProportionalBatchSampler(_ranges(), props, 10, seed=1, start_step=k, num_steps=50)
        assert list(resumed) == full[k:] and len(resumed) == 50 - k
    far = ProportionalBatchSampler(_ranges(), props, 10, seed=1, start_step=10 ** 9)
    assert len(next(iter(far))) == 10  # O(1) resume, no replay
    with pytest.raises(TypeError, match="endless"):
        len(far)


def test_sampler_refuses_bad_proportions():
    with pytest.raises(ValueError, match=r"type\(s\) \['fr'\] that are not in the index"):
        ProportionalBatchSampler(_ranges(), {"fr": 1.0}, 4)
    with pytest.raises(ValueError, match="'code' .*rounds to 0 of 4"):
        ProportionalBatchSampler(_ranges(), {"zh": 0.9, "code": 0.1}, 4)
    with pytest.raises(ValueError, match="has no samples"):
        ProportionalBatchSampler({"zh": (0, 5), "en": (5, 5)}, {"zh": 1, "en": 1}, 4)
    with pytest.raises(ValueError, match="not all zero"):
        ProportionalBatchSampler(_ranges(), {"zh": 0}, 4)


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.sampled_from("abcdef"), st.floats(0.01, 100), min_size=1, max_size=6),
       st.integers(1, 500))
def test_largest_remainder_property(props, total):
    counts = largest_remainder_counts(props, total)
    assert sum(counts.values()) == total
    s = sum(props.values())
    for k, c in counts.items():
        assert abs(c - props[k] / s * total) < 1 + 1e-9


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 3000), st.integers(0, 2 ** 32), st.integers(0, 5))
def test_feistel_permutation_is_a_bijection(n, seed, epoch):
    perm = FeistelPermutation(n, (seed, 7, epoch))
    out = perm(np.arange(n))
    assert sorted(out.tolist()) == list(range(n))
    assert out.tolist() == perm(np.arange(n)).tolist()


def test_feistel_permutation_shuffles():
    a = FeistelPermutation(1000, (0, 1, 0))(np.arange(1000))
    b = FeistelPermutation(1000, (0, 1, 1))(np.arange(1000))
    assert abs(np.corrcoef(np.arange(1000), a)[0, 1]) < 0.15
    assert (a != b).mean() > 0.9


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 40), min_size=1, max_size=4), st.data())
def test_sampler_property(type_sizes, data):
    """Random ranges / proportions / batch sizes: exact per-batch counts, indices inside their
    type's range, and resuming at any step reproduces the uninterrupted run."""
    names = [f"t{i}" for i in range(len(type_sizes))]
    bounds = np.concatenate([[0], np.cumsum(type_sizes)]).tolist()
    ranges = {n: (bounds[i], bounds[i + 1]) for i, n in enumerate(names)}
    batch_size = data.draw(st.integers(len(names), 64))
    props = {n: data.draw(st.floats(0.2, 5.0)) for n in names}
    try:
        sampler = ProportionalBatchSampler(ranges, props, batch_size, seed=data.draw(st.integers(0, 99)), num_steps=12)
    except ValueError as exc:  # a type rounding to 0 per batch is refused, never silently dropped
        assert "rounds to 0" in str(exc)
        return
    full = list(sampler)
    for batch in full:
        assert len(batch) == batch_size
        for n, c in sampler.counts_per_batch.items():
            s, e = ranges[n]
            assert sum(s <= i < e for i in batch) == c
    k = data.draw(st.integers(0, 12))
    resumed = ProportionalBatchSampler(ranges, props, batch_size, seed=sampler.seed, start_step=k, num_steps=12)
    assert list(resumed) == full[k:]


def _kind(i: int) -> str:
    return next(t for t, (s, e) in _ranges().items() if s <= i < e)


def test_length_grouped_batches_deal_the_same_samples_by_length():
    from knowlm_utils.train.sampling import LengthGroupedBatches, padding_share

    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 400, size=67)
    props = {"zh": 0.5, "en": 0.25, "code": 0.25}
    plain = ProportionalBatchSampler(_ranges(), props, batch_size=8, seed=4)
    grouped = LengthGroupedBatches(plain, lengths, group=6, seed=4)
    steps = range(36)  # six groups
    for g in range(6):
        block = range(6 * g, 6 * g + 6)
        # the group holds exactly the samples the ungrouped batches held: nothing dropped or repeated
        assert Counter(i for k in block for i in grouped.batch_at(k)) == \
            Counter(i for k in block for i in plain.batch_at(k))
        for k in block:  # every batch keeps its type counts, each type in one length slice
            assert Counter(map(_kind, grouped.batch_at(k))) == plain.counts_per_batch
        for t in props:  # a type's slices do not overlap: batch j holds the j-th shortest of the pool
            slices = sorted([sorted(lengths[i] for i in grouped.batch_at(k) if _kind(i) == t) for k in block])
            assert all(a[-1] <= b[0] for a, b in zip(slices, slices[1:]))
    assert padding_share(grouped, lengths, steps) < 0.6 * padding_share(plain, lengths, steps)
    # a pure function of the step: a fresh instance resumed anywhere gives the same batches
    for k in (0, 5, 6, 23, 35):
        assert LengthGroupedBatches(plain, lengths, group=6, seed=4).batch_at(k) == grouped.batch_at(k)
    orders = {tuple(map(tuple, (grouped.batch_at(k) for k in range(6 * g, 6 * g + 6)))) for g in range(6)}
    assert len(orders) == 6
    assert [grouped.batch_at(k) for k in range(6)] != \
        [LengthGroupedBatches(plain, lengths, group=6, seed=5).batch_at(k) for k in range(6)]  # seeded order
    one = LengthGroupedBatches(plain, lengths, group=1)
    assert [one.batch_at(k) for k in steps] == [plain.batch_at(k) for k in steps]  # group 1: unchanged
    ranks = [list(RankBatchSampler(grouped, r, 2, 0, 6)) for r in range(2)]
    assert [ranks[k % 2][k // 2] for k in range(12)] == [grouped.batch_at(k) for k in range(12)]
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match="group must be an integer >= 1"):
            LengthGroupedBatches(plain, lengths, group=bad)


def test_padding_share_counts_what_right_padding_computes():
    from knowlm_utils.train.sampling import padding_share

    class Fixed:
        def batch_at(self, step):
            return [[0, 1], [2, 3]][step]

    # batch 0: lengths 2 and 4 → 8 computed, 6 real; batch 1: 5 and 5 → 10 computed, 10 real
    assert padding_share(Fixed(), [2, 4, 5, 5], range(2)) == pytest.approx(1 - 16 / 18)
    assert padding_share(Fixed(), [2, 4, 5, 5], range(1, 2)) == 0.0
