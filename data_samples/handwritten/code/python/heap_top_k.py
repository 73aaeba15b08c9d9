import heapq


def top_k_frequent(items, k):
    """Return the k most frequent items, ties broken by the item itself."""
    counts = {}
    for x in items:
        counts[x] = counts.get(x, 0) + 1
    return [x for _, x in heapq.nsmallest(k, ((-n, x) for x, n in counts.items()))]


print(top_k_frequent(["a", "b", "a", "c", "b", "a", "d"], 2))  # ['a', 'b']
