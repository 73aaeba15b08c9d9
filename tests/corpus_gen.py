"""Deterministic generated documents for the cleaning equivalence test and
benchmarks/bench_corpus.py: long Chinese documents (the shape of a Baike/wiki corpus) with a
share of English, code, mixed text and planted noise of every kind the filters remove, plus
unicode edge cases. Everything comes from ``random.Random(seed)``: same seed, same documents.
"""

from __future__ import annotations

import random

# common Chinese characters, roughly by frequency (the first ones are drawn most often)
_ZH_CHARS = (
    "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后"
    "多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好应开它合"
    "还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只"
    "没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特件长求老头基资边"
    "流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做必战先回则任取据处队南给色光门即保治北造"
    "百规热领七海口东导器压志世金增争济阶油思术极交受联什认六共权收证改清己美再采转更单风切打白教速花带安场身车例"
    "真务具万每目至达走积示议声报斗完类八离华名确才科张信马节话米整空元况今集温传土许步群广石记需段研界拉林律叫且"
    "究观越织装影算低持音众书布复容儿须际商非验连断深难近矿千周委素技备半办青省列习响约支般史感劳便团往酸历市克何"
    "除消构府称太准精值号率族维划选标写存候毛亲快效斯院查江型眼王按格养易置派层片始却专状育厂京识适属圆包火住调满"
    "县局照参红细引听该铁价严龙飞")
_ZH_PUNCT = "，，，，，、、；："
_ZH_END = "。。。。。！？"
_EN_WORDS = ("the of and to in is was for on that with as by at from his an were are which this be has or "
             "had first not their after new two one also its been but who they other time year city world "
             "university river national history language system people water village school known music "
             "century state during between population company family building district government").split()
_CODE = ("def {f}(xs):\n    total = 0\n    for i, x in enumerate(xs):\n        if x % {k} == 0:\n"
         "            total += x * i\n    return total\n\n\nclass {C}:\n    def __init__(self, n={k}):\n"
         "        self.items = [{{}} for _ in range(n)]\n")
BOILER_ZH = ["点击这里查看更多", "扫码关注公众号", "版权所有 © 2023", "返回首页", "上一篇：", "下一篇：", "加微信领取优惠券",
             "立即注册", "客服电话：400-800-1234"]
BOILER_EN = ["Click here to subscribe now", "All rights reserved.", "Privacy Policy | Terms of Service",
             "Follow us on Twitter", "Read more", "Back to top", "We use cookies", "Copyright © 2021"]
BLOCK_ZH = ["网络赌博", "代开发票", "出售假币", "信用卡套现", "色情直播"]
BLOCK_EN = ["online casino bonus", "buy cocaine", "hire a hacker", "payday loan guaranteed approval"]
EDGE = ["", " ", "\n\n\n", "\t \u3000 \u00a0", "\u200b" * 40, "a", "中", "锟斤拷" * 12, "烫烫烫屯屯屯" * 5,
        "\ufffd" * 3 + "正常的中文文本" * 6, "é" * 50, "Ã©" * 40, "ðŸ˜€ ðŸ‘ hello world " * 4, "😀" * 40, "🙂 好的 " * 20,
        "\r\n".join(["第一行内容比较长一些"] * 8), "\u2028".join(["分隔符行内容"] * 8), "x\u0085y" * 30,
        "_" * 60, "＿＿＿全角下划线" * 8, "ｆｕｌｌｗｉｄｔｈ　ｔｅｘｔ　ａｎｄ　ＡＢＣ" * 3, "Ⅻ①②③⑴⒈" * 10,
        "𠀀𠀁𠀂𪚥" * 20, "\U000e0001tag" * 20, "a\u0301" * 40, "ٱلْعَرَبِيَّة" * 10, "русский текст " * 10,
        "...???!!!" * 20, "。。。。！！？？" * 20, "- - - - -\n" * 20, "[](){}<>" * 20, "\\" * 40,
        "word " * 200, ("长" * 1000 + "。") * 3]


def zh_sentence(rng: random.Random) -> str:
    n = rng.randint(8, 40)
    chars = [_ZH_CHARS[min(int(rng.expovariate(1 / 180)), len(_ZH_CHARS) - 1)] for _ in range(n)]
    for _ in range(n // 12):
        chars.insert(rng.randrange(1, len(chars)), rng.choice(_ZH_PUNCT))
    if rng.random() < 0.1:
        chars.insert(rng.randrange(len(chars)), str(rng.randint(1, 2024)))
    if rng.random() < 0.05:
        chars.insert(rng.randrange(len(chars)), "《" + "".join(rng.choices(_ZH_CHARS[:300], k=4)) + "》")
    return "".join(chars) + rng.choice(_ZH_END)


def en_sentence(rng: random.Random) -> str:
    words = rng.choices(_EN_WORDS, k=rng.randint(6, 24))
    return " ".join(words).capitalize() + rng.choice(".....?!")


def zh_document(rng: random.Random, n_chars: int) -> str:
    paras, size = [], 0
    title = "".join(rng.choices(_ZH_CHARS[:400], k=rng.randint(2, 8)))
    paras.append(title)
    while size < n_chars:
        p = "".join(zh_sentence(rng) for _ in range(rng.randint(2, 8)))
        paras.append(p)
        size += len(p)
    return "\n".join(paras)


def en_document(rng: random.Random, n_chars: int) -> str:
    paras, size = [], 0
    while size < n_chars:
        p = " ".join(en_sentence(rng) for _ in range(rng.randint(2, 8)))
        paras.append(p)
        size += len(p)
    return "\n".join(paras)


def code_document(rng: random.Random) -> str:
    return "".join(_CODE.format(f=f"f{rng.randint(0, 999)}", k=rng.randint(2, 9), C=f"C{rng.randint(0, 99)}")
                   for _ in range(rng.randint(1, 4)))


def noisy_document(rng: random.Random, kind: str, base: str) -> str:
    """``base`` with one kind of planted noise."""
    if kind == "boilerplate":
        lines = base.split("\n")[:3] + [rng.choice(BOILER_ZH + BOILER_EN) for _ in range(rng.randint(2, 12))]
        rng.shuffle(lines)
        return "\n".join(lines)
    if kind == "blocklist":
        i = rng.randrange(len(base) + 1)
        phrase = rng.choice(BLOCK_ZH + BLOCK_EN + ["Online  Casino\nBonus", "BUY COCAINE", "xbuy cocaine"])
        return base[:i] + " " + phrase + " " + base[i:]
    if kind == "mojibake":
        i = rng.randrange(len(base) + 1)
        piece = base[i:i + rng.randint(5, 200)]
        bad = piece.encode("utf-8").decode(rng.choice(["latin-1", "cp1252"]), errors="replace")
        return base[:i] + bad + base[i + len(piece):]
    if kind == "garbage":
        i = rng.randrange(len(base) + 1)
        return base[:i] + rng.choice(["锟斤拷", "烫烫烫", "\ufffd", "屯屯屯"]) * rng.randint(1, 30) + base[i:]
    if kind == "repetition":
        sent = zh_sentence(rng) if rng.random() < 0.5 else en_sentence(rng)
        return base[: rng.randint(0, 400)] + (sent + rng.choice(["", "\n", " "])) * rng.randint(2, 40)
    if kind == "compressible":
        block = base[: rng.randint(20, 120)]
        return (block + " ") * rng.randint(5, 60)
    if kind == "symbols":
        junk = "".join(rng.choices("#$%^&*+=~|<>/@`_█▓▒░★☆♥→←©®™€¥😀🎉", k=rng.randint(20, 800)))
        return base[: rng.randint(0, 300)] + junk
    if kind == "short":
        return base[: rng.randint(0, 45)]
    if kind == "long":
        return (base + "\n") * (100_001 // max(1, len(base)) + 1)
    if kind == "blank_lines":
        return "\n\n   \n".join(base.split("\n"))
    raise ValueError(kind)


NOISE_KINDS = ("boilerplate", "blocklist", "mojibake", "garbage", "repetition", "compressible", "symbols", "short",
               "long", "blank_lines")
NOISE_WEIGHTS = (1, 1, 1, 1, 1, 1, 1, 1, 0.1, 1)


def documents(seed: int, n_chars: int, mean_doc_chars: int = 5000, noise: float = 0.1, zh_share: float = 0.85,
              edge_cases: bool = True) -> list[str]:
    """Documents totalling about ``n_chars`` characters: Chinese (``zh_share``), English, code
    and mixed, a ``noise`` share of them with planted noise, and (``edge_cases``) the unicode
    edge cases of ``EDGE`` once each."""
    rng = random.Random(seed)
    out: list[str] = list(EDGE) if edge_cases else []
    total = sum(map(len, out))
    while total < n_chars:
        size = max(10, int(rng.lognormvariate(0, 0.6) * mean_doc_chars))
        r = rng.random()
        if r < zh_share:
            doc = zh_document(rng, size)
        elif r < zh_share + (1 - zh_share) / 3:
            doc = en_document(rng, size)
        elif r < zh_share + 2 * (1 - zh_share) / 3:
            doc = code_document(rng)
        else:
            doc = "\n".join(zh_document(rng, size // 2).split("\n") + en_document(rng, size // 2).split("\n"))
        if rng.random() < noise:  # (a "long" document is 20-40 ordinary ones: rarer)
            doc = noisy_document(rng, rng.choices(NOISE_KINDS, NOISE_WEIGHTS)[0], doc)
        out.append(doc)
        total += len(doc)
    return out
