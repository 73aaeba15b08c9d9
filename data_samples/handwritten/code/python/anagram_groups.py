from collections import defaultdict


def group_anagrams(words):
    """Group words that are anagrams of each other."""
    groups = defaultdict(list)
    for w in words:
        groups["".join(sorted(w))].append(w)
    return [sorted(g) for g in groups.values()]


print(group_anagrams(["eat", "tea", "tan", "ate", "nat", "bat"]))
# [['ate', 'eat', 'tea'], ['nat', 'tan'], ['bat']]
