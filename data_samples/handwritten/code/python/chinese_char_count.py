import re

CJK = re.compile(r"[\u4e00-\u9fff]")


def char_stats(text: str) -> dict:
    # 统计一段文字中的汉字、英文字母、数字和其他字符的数量
    stats = {"汉字": 0, "字母": 0, "数字": 0, "其他": 0}
    for ch in text:
        if CJK.match(ch):
            stats["汉字"] += 1
        elif ch.isascii() and ch.isalpha():
            stats["字母"] += 1
        elif ch.isdigit():
            stats["数字"] += 1
        elif not ch.isspace():
            stats["其他"] += 1
    return stats


print(char_stats("Python 3.11 发布于2022年。"))
