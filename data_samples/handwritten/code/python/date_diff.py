from datetime import date


def days_between(a: str, b: str) -> int:
    """两个 ISO 格式日期（YYYY-MM-DD）之间相差的天数。"""
    d1, d2 = date.fromisoformat(a), date.fromisoformat(b)
    return abs((d2 - d1).days)


print(days_between("2024-01-01", "2024-12-31"))  # 365（2024 年是闰年）
