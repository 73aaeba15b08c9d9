from typing import Any, Iterator


def flatten(obj: Any) -> Iterator[Any]:
    """Yield the leaves of arbitrarily nested lists and tuples, left to right."""
    if isinstance(obj, (list, tuple)):
        for item in obj:
            yield from flatten(item)
    else:
        yield obj


print(list(flatten([1, [2, (3, [4])], 5])))  # [1, 2, 3, 4, 5]
