def primes_below(n: int) -> list[int]:
    """Sieve of Eratosthenes."""
    if n < 3:
        return []
    is_prime = [True] * n
    is_prime[0] = is_prime[1] = False
    p = 2
    while p * p < n:
        if is_prime[p]:
            for multiple in range(p * p, n, p):
                is_prime[multiple] = False
        p += 1
    return [i for i, flag in enumerate(is_prime) if flag]


print(primes_below(30))  # [2, 3, 5, 7, 11, 13, 17, 19, 23, 29]
