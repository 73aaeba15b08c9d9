import functools
import time


def retry(times: int = 3, delay: float = 0.1, exceptions=(Exception,)):
    """Decorator: call the function again when it raises, up to `times` attempts."""
    def wrap(fn):
        @functools.wraps(fn)
        def inner(*args, **kwargs):
            for attempt in range(1, times + 1):
                try:
                    return fn(*args, **kwargs)
                except exceptions:
                    if attempt == times:
                        raise
                    time.sleep(delay * attempt)
        return inner
    return wrap


@retry(times=3)
def flaky(counter=[0]):
    counter[0] += 1
    if counter[0] < 3:
        raise RuntimeError("not yet")
    return counter[0]


print(flaky())  # 3
