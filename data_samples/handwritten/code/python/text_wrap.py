def wrap(text: str, width: int) -> list[str]:
    """Greedy word wrap: no line longer than width unless a single word is."""
    lines, current = [], ""
    for word in text.split():
        candidate = f"{current} {word}" if current else word
        if len(candidate) <= width or not current:
            current = candidate
        else:
            lines.append(current)
            current = word
    if current:
        lines.append(current)
    return lines


for line in wrap("The quick brown fox jumps over the lazy dog near the riverbank", 20):
    print(line)
