class StackQueue:
    """A FIFO queue built from two LIFO stacks; each item is moved at most twice."""

    def __init__(self):
        self._in, self._out = [], []

    def push(self, item) -> None:
        self._in.append(item)

    def pop(self):
        if not self._out:
            while self._in:
                self._out.append(self._in.pop())
        if not self._out:
            raise IndexError("pop from empty queue")
        return self._out.pop()

    def __len__(self) -> int:
        return len(self._in) + len(self._out)


q = StackQueue()
for x in (1, 2, 3):
    q.push(x)
print(q.pop(), q.pop(), len(q))  # 1 2 1
