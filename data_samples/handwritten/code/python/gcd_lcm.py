def gcd(a: int, b: int) -> int:
    # 辗转相除法求最大公约数
    while b:
        a, b = b, a % b
    return abs(a)


def lcm(a: int, b: int) -> int:
    return abs(a * b) // gcd(a, b) if a and b else 0


print(gcd(84, 36), lcm(84, 36))  # 12 252
