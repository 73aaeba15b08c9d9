import heapq


def dijkstra(graph: dict, source):
    """Shortest distances from source in a graph with non-negative edge weights.

    graph maps a node to a list of (neighbour, weight) pairs.
    """
    dist = {source: 0}
    heap = [(0, source)]
    while heap:
        d, node = heapq.heappop(heap)
        if d > dist.get(node, float("inf")):
            continue
        for nxt, w in graph.get(node, []):
            nd = d + w
            if nd < dist.get(nxt, float("inf")):
                dist[nxt] = nd
                heapq.heappush(heap, (nd, nxt))
    return dist


g = {"A": [("B", 4), ("C", 1)], "C": [("B", 2), ("D", 5)], "B": [("D", 1)]}
print(dijkstra(g, "A"))  # {'A': 0, 'B': 3, 'C': 1, 'D': 4}
