def edit_distance(a: str, b: str) -> int:
    """编辑距离（Levenshtein）：把 a 变成 b 最少需要多少次插入、删除或替换。"""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1,               # 删除
                           cur[j - 1] + 1,            # 插入
                           prev[j - 1] + (ca != cb)))  # 替换
        prev = cur
    return prev[-1]


print(edit_distance("kitten", "sitting"))  # 3
print(edit_distance("知识图谱", "知识库"))    # 2
