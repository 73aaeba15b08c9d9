def quicksort(xs):
    """快速排序：返回新的有序列表，不修改输入。"""
    if len(xs) <= 1:
        return list(xs)
    pivot = xs[len(xs) // 2]
    smaller = [x for x in xs if x < pivot]
    equal = [x for x in xs if x == pivot]
    larger = [x for x in xs if x > pivot]
    return quicksort(smaller) + equal + quicksort(larger)


print(quicksort([5, 2, 9, 1, 5, 6]))  # [1, 2, 5, 5, 6, 9]
