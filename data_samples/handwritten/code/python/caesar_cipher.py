import string


def caesar(text: str, shift: int) -> str:
    """凯撒密码：把字母按字母表循环移动 shift 位，其他字符保持不变。"""
    lower, upper = string.ascii_lowercase, string.ascii_uppercase
    k = shift % 26
    table = str.maketrans(lower + upper, lower[k:] + lower[:k] + upper[k:] + upper[:k])
    return text.translate(table)


secret = caesar("Hello, World!", 3)
print(secret)               # Khoor, Zruog!
print(caesar(secret, -3))   # Hello, World!
