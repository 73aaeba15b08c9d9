class Trie:
    """前缀树：插入单词，并按前缀查找所有单词。"""

    def __init__(self):
        self.children = {}
        self.is_word = False

    def insert(self, word: str) -> None:
        node = self
        for ch in word:
            node = node.children.setdefault(ch, Trie())
        node.is_word = True

    def words_with_prefix(self, prefix: str) -> list[str]:
        node = self
        for ch in prefix:
            if ch not in node.children:
                return []
            node = node.children[ch]
        found = []
        stack = [(node, prefix)]
        while stack:
            cur, text = stack.pop()
            if cur.is_word:
                found.append(text)
            for ch, child in cur.children.items():
                stack.append((child, text + ch))
        return sorted(found)


t = Trie()
for w in ["北京", "北京大学", "北海", "南京"]:
    t.insert(w)
print(t.words_with_prefix("北"))  # ['北京', '北京大学', '北海']
