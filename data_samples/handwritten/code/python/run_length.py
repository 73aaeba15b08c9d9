from itertools import groupby


def rle_encode(text: str) -> str:
    """Run-length encoding: "aaabcc" -> "3a1b2c"."""
    return "".join(f"{len(list(group))}{ch}" for ch, group in groupby(text))


def rle_decode(code: str) -> str:
    out, count = [], ""
    for ch in code:
        if ch.isdigit():
            count += ch
        else:
            out.append(ch * int(count))
            count = ""
    return "".join(out)


encoded = rle_encode("aaabccddddd")
print(encoded, rle_decode(encoded))  # 3a1b2c5d aaabccddddd
