PAIRS = {")": "(", "]": "[", "}": "{"}


def balanced(expr: str) -> bool:
    """Check that (), [] and {} are properly nested."""
    stack = []
    for ch in expr:
        if ch in "([{":
            stack.append(ch)
        elif ch in PAIRS:
            if not stack or stack.pop() != PAIRS[ch]:
                return False
    return not stack


for s in ["(a[b]{c})", "(]", "((x)"]:
    print(s, balanced(s))
