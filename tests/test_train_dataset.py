"""knowlm_utils.train.dataset.TokenIndexDataset: torch items over a token index, the sample's
type from the reader, pickling for DataLoader workers, proportional batches through a DataLoader."""

import pickle

import numpy as np
import pytest
import torch

from knowlm_utils.index import MMapTokenIndexWriter
from knowlm_utils.train.dataset import TokenIndexDataset
from knowlm_utils.train.sampling import ProportionalBatchSampler


def random_docs(rng, n_docs, vocab, max_samples=4, max_len=50):
    return [[rng.integers(0, vocab, rng.integers(1, max_len + 1)).tolist()
             for _ in range(rng.integers(1, max_samples + 1))] for _ in range(n_docs)]


def write_docs(prefix, typed_docs, vocab):
    with MMapTokenIndexWriter(prefix, vocab) as writer:
        for name, docs in typed_docs.items():
            for doc in docs:
                writer.add_document([np.asarray(s, np.int64) for s in doc], type=name)


def flat_samples(typed_docs):
    return [s for docs in typed_docs.values() for doc in docs for s in doc]


def test_dataset_items_types_and_pickling(tmp_path):
    rng = np.random.default_rng(8)
    typed = {"zh": random_docs(rng, 3, 100), "en": random_docs(rng, 2, 100)}
    write_docs(tmp_path / "x", typed, vocab=100)
    ds = TokenIndexDataset(tmp_path / "x")
    expected = flat_samples(typed)
    n_zh = sum(len(d) for d in typed["zh"])
    assert len(ds) == len(expected)
    item = ds[1]["input_ids"]
    assert item.dtype == torch.long and item.tolist() == expected[1]
    assert [ds.type_of(i) for i in range(len(ds))] == ["zh"] * n_zh + ["en"] * (len(ds) - n_zh)
    assert ds.type_of(-1) == "en"
    assert ds.index.type_of(n_zh - 1) == "zh" and ds.index.type_of(n_zh) == "en"  # the reader owns the lookup
    with pytest.raises(IndexError):
        ds.type_of(len(ds))
    clone = pickle.loads(pickle.dumps(ds))  # DataLoader workers reopen the maps
    assert clone[len(ds) - 1]["input_ids"].tolist() == expected[-1]


def test_dataloader_with_proportional_batches(tmp_path):
    rng = np.random.default_rng(9)
    write_docs(tmp_path / "x", {"zh": random_docs(rng, 6, 50), "en": random_docs(rng, 6, 50)}, vocab=50)
    ds = TokenIndexDataset(tmp_path / "x")
    sampler = ProportionalBatchSampler(ds.type_ranges, {"zh": 0.75, "en": 0.25}, 4, num_steps=3)
    loader = torch.utils.data.DataLoader(ds, batch_sampler=sampler, collate_fn=lambda items: items)
    batches = list(loader)
    assert len(batches) == 3
    for b, idx in zip(batches, sampler):
        assert [x["input_ids"].tolist() for x in b] == [ds[i]["input_ids"].tolist() for i in idx]
