from collections import deque


def topological_order(deps: dict[str, list[str]]) -> list[str]:
    """Order tasks so that every task comes after the tasks it depends on (Kahn's algorithm)."""
    nodes = set(deps) | {d for ds in deps.values() for d in ds}
    indegree = {n: 0 for n in nodes}
    users = {n: [] for n in nodes}
    for task, ds in deps.items():
        for d in ds:
            indegree[task] += 1
            users[d].append(task)
    queue = deque(sorted(n for n in nodes if indegree[n] == 0))
    order = []
    while queue:
        n = queue.popleft()
        order.append(n)
        for u in sorted(users[n]):
            indegree[u] -= 1
            if indegree[u] == 0:
                queue.append(u)
    if len(order) != len(nodes):
        raise ValueError("dependency cycle")
    return order


print(topological_order({"tokenize": ["clean"], "train": ["tokenize"], "clean": []}))
# ['clean', 'tokenize', 'train']
