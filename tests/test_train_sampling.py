"""knowlm_utils.train.sampling.RankBatchSampler: each rank's share of the typed batches.
(ProportionalBatchSampler itself is tested with the index, in test_index.py.)"""

from __future__ import annotations

from collections import Counter

import pytest

from knowlm_utils.train.sampling import ProportionalBatchSampler, RankBatchSampler


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
