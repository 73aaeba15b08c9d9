import re
from collections import Counter


def top_words(text: str, k: int = 5) -> list[tuple[str, int]]:
    # 统计英文文本中出现次数最多的 k 个单词（忽略大小写）
    words = re.findall(r"[a-z']+", text.lower())
    return Counter(words).most_common(k)


sample = "the cat sat on the mat and the dog sat on the log"
print(top_words(sample, 3))   # [('the', 4), ('sat', 2), ('on', 2)]
