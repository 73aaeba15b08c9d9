VALUES = [(1000, "M"), (900, "CM"), (500, "D"), (400, "CD"), (100, "C"), (90, "XC"),
          (50, "L"), (40, "XL"), (10, "X"), (9, "IX"), (5, "V"), (4, "IV"), (1, "I")]


def to_roman(n: int) -> str:
    if not 0 < n < 4000:
        raise ValueError("1..3999 only")
    parts = []
    for value, symbol in VALUES:
        count, n = divmod(n, value)
        parts.append(symbol * count)
    return "".join(parts)


print(to_roman(1994), to_roman(2024))  # MCMXCIV MMXXIV
