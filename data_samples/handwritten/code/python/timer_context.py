import time
from contextlib import contextmanager


@contextmanager
def timed(label: str):
    """用 with 语句统计一段代码的运行时间。"""
    start = time.perf_counter()
    try:
        yield
    finally:
        print(f"{label}: {time.perf_counter() - start:.3f} s")


with timed("求和"):
    total = sum(i * i for i in range(1_000_000))
print(total)
