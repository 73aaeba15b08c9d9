"""Random token indexes for benchmarks and tests: :func:`write_synthetic_index`."""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from .writer import MMapTokenIndexWriter


def write_synthetic_index(prefix: str | os.PathLike, num_samples: int, sample_len: int = 64,
                          vocab_size: int = 32000, samples_per_doc: int = 4, types: Sequence[str] = ("default",),
                          seed: int = 0, chunk_samples: int = 1 << 16, progress: bool = False) -> dict:
    """A random index for benchmarks and tests (lengths 1 … ``sample_len``), written through the
    real writer in constant memory; ``types`` are equal consecutive ranges."""
    rng = np.random.default_rng(seed)
    per_type = [num_samples // len(types) + (i < num_samples % len(types)) for i in range(len(types))]
    with MMapTokenIndexWriter(prefix, vocab_size, progress=progress) as writer:
        for name, count in zip(types, per_type):
            done = 0
            while done < count:
                k = min(chunk_samples, count - done)
                sizes = rng.integers(1, sample_len + 1, k)
                docs = np.full(k // samples_per_doc, samples_per_doc, np.int64)
                if k % samples_per_doc:
                    docs = np.append(docs, k % samples_per_doc)
                tokens = rng.integers(0, vocab_size, int(sizes.sum()), dtype=np.int64)
                writer.add_documents_flat(tokens, sizes, docs, type=name)
                done += k
        return writer.finalize({"synthetic": {"seed": seed, "sample_len": sample_len}})
