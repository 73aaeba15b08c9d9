"""Held-out evaluation by type, and the unigram baseline it is compared with.

* :func:`eval_indices` — the valid samples of each type (all, or an evenly spaced subset);
* :class:`TypedEvaluator` — token-weighted held-out loss/perplexity per type and overall
  (samples split over the ranks, (loss sum, token count) all-reduced);
* :func:`unigram_counts` / :func:`unigram_cross_entropy` — the cross-entropy of add-one-smoothed
  train-token frequencies on the same valid tokens: "has the model learned anything beyond word
  frequencies?".
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np


def eval_indices(type_ranges: dict[str, tuple[int, int]], max_per_type: int | None) -> dict[str, np.ndarray]:
    """Valid sample indices per type: all of them, or ``max_per_type`` evenly spaced ones."""
    out = {}
    for name, (s, e) in type_ranges.items():
        n = e - s
        if n <= 0:
            continue
        if max_per_type is None or n <= max_per_type:
            out[name] = np.arange(s, e, dtype=np.int64)
        else:
            out[name] = s + np.unique(np.linspace(0, n - 1, max_per_type).round().astype(np.int64))
    return out


def _token_view(index) -> np.ndarray:
    """All token ids of an index as one read-only memmap (from its public ``paths``)."""
    if index.num_tokens == 0:
        return np.zeros(0, index.dtype)
    return np.memmap(index.paths["bin"], dtype=index.dtype.newbyteorder("<"), mode="r")


def unigram_counts(index, vocab_size: int, max_tokens: int | None = None, chunk_tokens: int = 1 << 24,
                   progress: bool = False) -> tuple[np.ndarray, dict[str, Any]]:
    """Counts of the *target* tokens of ``index`` (every token except each sample's first, the
    positions a causal LM predicts), in bounded memory. When the index holds more than
    ``max_tokens`` tokens, evenly spaced chunks totalling ~``max_tokens`` are counted instead
    (all their tokens; the first-token correction is then skipped) and ``info["exact"]`` is False."""
    from tqdm import tqdm

    tokens = _token_view(index)
    n = int(tokens.size)
    counts = np.zeros(vocab_size, np.int64)
    exact = max_tokens is None or n <= max_tokens
    if exact:
        starts = range(0, n, chunk_tokens)
        spans = [(a, min(a + chunk_tokens, n)) for a in starts]
    else:
        k = max(1, math.ceil(max_tokens / chunk_tokens))
        width = min(chunk_tokens, max_tokens)
        spans = [(int(a), int(a) + width) for a in np.linspace(0, n - width, k).round().astype(np.int64)]
    for a, b in tqdm(spans, desc="unigram counts", unit="chunk", disable=not progress):
        chunk = np.asarray(tokens[a:b])
        if chunk.size and int(chunk.max()) >= vocab_size:
            raise ValueError(f"{index.paths['bin']}: token id {int(chunk.max())} >= the model's vocabulary "
                             f"{vocab_size}")
        counts += np.bincount(chunk, minlength=vocab_size)
    if exact and len(index):
        firsts = tokens[(np.asarray(index.pointers) // index.dtype.itemsize)[np.asarray(index.sizes) > 0]]
        counts -= np.bincount(np.asarray(firsts), minlength=vocab_size)
    counted = int(counts.sum())
    return counts, {"exact": exact, "tokens_counted": counted, "index_tokens": n}


def unigram_cross_entropy(counts: np.ndarray, index, indices_by_type: dict[str, np.ndarray]) -> dict[str, float]:
    """Cross-entropy (nats/token) of the add-one-smoothed unigram model
    ``p(t) = (count(t) + 1) / (N + V)`` on the target tokens (all but the first) of the given
    valid samples, per type and overall (token-weighted)."""
    log_p = np.log(counts + 1.0) - math.log(float(counts.sum()) + counts.size)
    out, total_nll, total_n = {}, 0.0, 0
    for name, idx in indices_by_type.items():
        nll, n = 0.0, 0
        for i in idx:
            targets = np.asarray(index[int(i)][1:], dtype=np.int64)
            nll -= float(log_p[targets].sum())
            n += targets.size
        if n:
            out[name] = nll / n
        total_nll, total_n = total_nll + nll, total_n + n
    if total_n:
        out["all"] = total_nll / total_n
    return out


def _dist():
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


class TypedEvaluator:
    """Held-out loss per type: each rank takes every W-th sample of a type, all ranks run the same
    number of forward passes (ZeRO-3 gathers parameters collectively; a rank without samples
    left runs a zero-weight batch), and the (loss sum, token count) pairs are summed over ranks."""

    def __init__(self, dataset, indices_by_type: dict[str, np.ndarray], collator, batch_size: int,
                 unigram: dict[str, float] | None):
        self.dataset, self.indices_by_type, self.collator = dataset, indices_by_type, collator
        self.batch_size, self.unigram = batch_size, unigram or {}
        self.seconds = 0.0  # wall time spent evaluating (subtracted from the training throughput)

    def losses(self, model, device, rank: int = 0, world_size: int = 1) -> dict[str, tuple[float, int]]:
        import torch

        sums = {}
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                for name, idx in self.indices_by_type.items():
                    mine = idx[rank::world_size]
                    per_rank = math.ceil(len(idx) / world_size)
                    n_batches = math.ceil(per_rank / self.batch_size)
                    total = torch.zeros(2, dtype=torch.float64)
                    for b in range(n_batches):
                        part = mine[b * self.batch_size:(b + 1) * self.batch_size]
                        weight = 1.0 if len(part) else 0.0
                        if not len(part):
                            part = idx[:1]
                        batch = self.collator([self.dataset[int(i)] for i in part])
                        batch = {k: v.to(device) for k, v in batch.items()}
                        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
                        logits = logits[:, :-1].float()
                        targets = batch["labels"][:, 1:]
                        nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)),
                                                                targets.reshape(-1), ignore_index=-100,
                                                                reduction="sum")
                        total += weight * torch.stack([nll.double().cpu(),
                                                       (targets != -100).sum().double().cpu()])
                    dist = _dist()
                    if dist is not None and world_size > 1:
                        t = total.to(device)
                        dist.all_reduce(t)
                        total = t.cpu()
                    sums[name] = (float(total[0]), int(total[1]))
        finally:
            model.train(was_training)
        return sums

    def __call__(self, model, args, prefix: str = "eval") -> dict[str, float]:
        t0 = time.perf_counter()
        sums = self.losses(model, args.device, args.process_index, args.world_size)
        self.seconds += time.perf_counter() - t0
        metrics: dict[str, float] = {}
        all_nll = sum(s for s, _ in sums.values())
        all_n = sum(n for _, n in sums.values())
        if all_n:
            metrics[f"{prefix}_loss"] = all_nll / all_n
            metrics[f"{prefix}_ppl"] = math.exp(min(all_nll / all_n, 50.0))
        for name, (s, n) in sums.items():
            if n:
                metrics[f"{prefix}_loss_{name}"] = s / n
                metrics[f"{prefix}_ppl_{name}"] = math.exp(min(s / n, 50.0))
        for name, value in self.unigram.items():
            metrics[f"{prefix}_unigram_loss" + ("" if name == "all" else f"_{name}")] = value
        metrics[f"{prefix}_tokens"] = all_n
        return metrics


__all__ = ["TypedEvaluator", "eval_indices", "unigram_counts", "unigram_cross_entropy"]
