def knapsack(weights, values, capacity):
    """0-1 背包问题：在容量限制内选择物品，使总价值最大。"""
    best = [0] * (capacity + 1)
    for w, v in zip(weights, values):
        for c in range(capacity, w - 1, -1):
            best[c] = max(best[c], best[c - w] + v)
    return best[capacity]


print(knapsack([1, 3, 4, 5], [1, 4, 5, 7], 7))  # 9（选择重量 3 和 4 的物品）
