"""Where predicted names come from (knowlm_utils.ie.copy_check): hand-made predictions with known bins."""

from __future__ import annotations

from knowlm_utils.ie.annotation import Entity, Relation
from knowlm_utils.ie.copy_check import name_origins, record_text
from knowlm_utils.ie.formats import format_output, iepile_instruction


def ner(rid, text, schema=("城市", "国家")):
    return {"id": rid, "task": "NER", "lang": "zh", "style": "iepile", "format": "iepile", "schema": list(schema),
            "instruction": iepile_instruction("NER", "zh", list(schema), text), "input": "",
            "output": format_output("NER", "iepile", [], "zh", list(schema))}


def test_origins_counted_per_bin():
    recs = [ner("a", "秉坦拉位于土耳其。"), ner("b", "雅典是希腊的首都。"),
            {"id": "c", "task": "RE", "lang": "en", "style": "text", "format": "tuple", "schema": [],
             "instruction": "Extract triples.", "input": "Wuhan lies on the Yangtze.", "output": "NAN"}]
    preds = {
        "a": format_output("NER", "iepile", [Entity("秉坦拉", "城市"), Entity("土耳其", "国家")], "zh", ["城市", "国家"]),
        "b": format_output("NER", "iepile", [Entity("安卡拉", "城市"), Entity("火星国", "国家")], "zh", ["城市", "国家"]),
        "c": format_output("RE", "tuple", [Relation("Wuhan", "located on", "Yangtze")], "en"),
        "missing": "ignored: no such record",
    }
    got = name_origins(recs, preds, train_names=["土耳其", "安卡拉", "Wuhan"])
    assert dict(got.counts) == {"input_only": 2, "input_train": 2, "train_only": 1, "neither": 1}
    assert got.total == 6 and abs(got.copy_rate - 4 / 6) < 1e-12
    assert got.examples["input_only"] == ["秉坦拉", "Yangtze"] and got.examples["train_only"] == ["安卡拉"]
    d = got.to_dict()
    assert d["names"] == 6 and d["neither"] == 1 and d["examples"]["neither"] == ["火星国"]
    assert record_text(recs[0]) == "秉坦拉位于土耳其。" and record_text(recs[2]) == "Wuhan lies on the Yangtze."


def test_no_predictions_no_names():
    got = name_origins([ner("a", "今天下雨。")], {"a": "{}"}, train_names=[])
    assert got.total == 0 and got.copy_rate == 0.0


def test_induction_score_positions_and_errors():
    import pytest
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from knowlm_utils.ie.copy_check import induction_score

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=128)
    model = LlamaForCausalLM(cfg)
    got = induction_score(model, length=20, sequences=4, low_id=3)
    assert got == induction_score(model, length=20, sequences=4, low_id=3)  # seeded
    assert abs(got["score"] - (got["first"] - got["second"])) < 1e-9
    assert abs(got["score"]) < 0.5 and 4.0 < got["first"] < 8.0  # an untrained model: ≈ ln(300) both times, no copying

    class Oracle(torch.nn.Module):
        """Predicts the second copy perfectly (token t+1 = the one after t's earlier occurrence)."""
        config = cfg
        training = False

        def train(self, mode=True):
            return self

        def forward(self, input_ids):
            b, n = input_ids.shape
            logits = torch.zeros(b, n, cfg.vocab_size)
            half = (n - 1) // 2
            for j in range(half + 1, n - 1):
                logits[torch.arange(b), j, input_ids[:, j + 1]] = 50.0
            return type("Out", (), {"logits": logits})()

    oracle = induction_score(Oracle(), length=20, sequences=4, low_id=3)
    assert oracle["second"] < 1e-6 and oracle["score"] > 5.0
    with pytest.raises(ValueError, match="induction_score"):
        induction_score(model, length=1)


# ------------------------------------------------------------------ token alignment of gold names ----
def _ner_gold(rid, lang, text, entities, schema):
    from knowlm_utils.ie.annotation import Entity

    return {"id": rid, "task": "NER", "lang": lang, "style": "iepile", "format": "iepile", "schema": list(schema),
            "instruction": iepile_instruction("NER", lang, list(schema), text), "input": "",
            "output": format_output("NER", "iepile", [Entity(n, t) for n, t in entities], lang, list(schema))}


ALIGN_RECORDS = [
    _ner_gold("zh1", "zh", "巴西利亚是巴西的首都，阿根廷的首都是布宜诺斯艾利斯。",
              [("巴西利亚", "城市"), ("布宜诺斯艾利斯", "城市"), ("巴西", "国家"), ("阿根廷", "国家")], ("城市", "国家")),
    _ner_gold("en1", "en", "The capital of Brazil is Brasilia, and Paris lies in France.",
              [("Brasilia", "city"), ("Paris", "city"), ("Brazil", "country"), ("France", "country")],
              ("city", "country")),
]


def test_alignment_bins_on_hand_made_pieces():
    from knowlm_utils.ie.copy_check import _spans, alignment_bin

    prompt = ["▁in", "▁Paris", "阿根", "廷的", "巴西", "Rome", "Ber", "lin", "<0xE4>", "<0xB8>", "<0xAD>"]
    answer = ["[\"", "Paris", "巴西", "阿根廷", "Rome", "Berlin", "<0xE4>", "<0xB8>", "<0xAD>"]
    pid = {p: i for i, p in enumerate(prompt)}
    aid = [pid.get(p, 100 + i) for i, p in enumerate(answer)]
    in_prompt, in_answer = _spans(list(range(len(prompt))), prompt, 8), _spans(aid, answer, 8)
    got = {n: alignment_bin(n, in_prompt, in_answer) for n in ("Paris", "巴西", "阿根廷", "Rome", "Berlin", "中")}
    assert got == {"Paris": "space_prefixed", "巴西": "same_ids", "阿根廷": "no_token_span", "Rome": "same_ids",
                   "Berlin": "other_segmentation", "中": "same_ids"}  # 中 = bytes E4 B8 AD, same byte ids
    assert alignment_bin("Lisbon", in_prompt, in_answer) == "no_token_span"


def test_character_tokenizer_copies_every_name_and_bpe_does_not(tmp_path, sp):
    import sentencepiece as spm

    from knowlm_utils.ie.copy_check import TOKEN_ALIGNMENT, name_token_alignment
    from knowlm_utils.sft.data import SFTDataOptions

    text = tmp_path / "chars.txt"
    text.write_text("\n".join(r["instruction"] + " " + r["output"] for r in ALIGN_RECORDS) * 3, encoding="utf-8")
    spm.SentencePieceTrainer.train(input=str(text), model_prefix=str(tmp_path / "char"), model_type="char",
                                   character_coverage=1.0, byte_fallback=True, minloglevel=2,
                                   normalization_rule_name="identity", bos_id=1, eos_id=2, unk_id=0, pad_id=-1)
    char = spm.SentencePieceProcessor(model_file=str(tmp_path / "char.model"))
    got = name_token_alignment(ALIGN_RECORDS, char, options=SFTDataOptions(cutoff_len=2048))  # nothing cut
    assert got.total() == 8 and got.copy_ceiling == 1.0  # one character per token: every name is copyable
    assert got.to_dict()["by_lang_task"]["zh/NER"]["same_ids"] == 4

    bpe = name_token_alignment(ALIGN_RECORDS, sp, max_examples=8)
    assert bpe.total() == 8 and sum(sum(c.values()) for c in bpe.counts.values()) == 8
    assert set().union(*(c.keys() for c in bpe.counts.values())) <= set(TOKEN_ALIGNMENT)
    # mid-sentence English words are '▁'-pieces in the sentence but not after '["' in the answer
    assert bpe.counts["en/NER"]["space_prefixed"] >= 2 and bpe.copy_ceiling < 1.0
    assert set(bpe.examples["space_prefixed"]) <= {"Brasilia", "Paris", "Brazil", "France"}
    assert bpe.share("same_ids", "zh/NER") + bpe.share("no_token_span", "zh/NER") \
        + bpe.share("other_segmentation", "zh/NER") == 1.0


def test_alignment_skips_records_sft_drops(sp):
    from knowlm_utils.ie.copy_check import name_token_alignment
    from knowlm_utils.sft.data import SFTDataOptions

    got = name_token_alignment(ALIGN_RECORDS, sp, options=SFTDataOptions(cutoff_len=8))
    assert got.skipped_records == 2 and got.total() == 0 and got.copy_ceiling == 0.0


# ------------------------------------------------------------------ loss on the tokens of gold names ----
def _char_model(tmp_path):
    import sentencepiece as spm

    text = tmp_path / "chars.txt"
    text.write_text("\n".join(r["instruction"] + " " + r["output"] for r in ALIGN_RECORDS) * 3, encoding="utf-8")
    spm.SentencePieceTrainer.train(input=str(text), model_prefix=str(tmp_path / "char"), model_type="char",
                                   character_coverage=1.0, byte_fallback=True, minloglevel=2,
                                   normalization_rule_name="identity", bos_id=1, eos_id=2, unk_id=0, pad_id=-1)
    return spm.SentencePieceProcessor(model_file=str(tmp_path / "char.model"))


class _FixedLM:
    """Logits 50 on the true next token (``oracle``) or all zeros (uniform over ``vocab``)."""

    def __init__(self, vocab, oracle):
        import torch

        self.vocab, self.oracle, self.training = vocab, oracle, False
        self._p = torch.nn.Parameter(torch.zeros(1))

    def parameters(self):
        return iter([self._p])

    def eval(self):
        return self

    def train(self, mode=True):
        return self

    def __call__(self, input_ids):
        import torch

        b, n = input_ids.shape
        logits = torch.zeros(b, n, self.vocab)
        if self.oracle:
            logits[0, torch.arange(n - 1), input_ids[0, 1:]] = 50.0
        return type("Out", (), {"logits": logits})()


def test_name_token_scores_groups_every_answer_token(tmp_path, sp):
    import math

    from knowlm_utils.ie.copy_check import name_token_scores
    from knowlm_utils.sft.data import SFTDataOptions, encode_record
    from knowlm_utils.sft.prompter import PromptSet

    char = _char_model(tmp_path)
    opts = SFTDataOptions(cutoff_len=2048)
    oracle = name_token_scores(_FixedLM(char.get_piece_size(), True), ALIGN_RECORDS, char, options=opts)
    # one token per character; 巴西 inside 巴西利亚 is not counted twice
    assert {k: oracle.tokens[k] for k in ("zh/first", "zh/rest", "en/first", "en/rest")} == \
        {"zh/first": 4, "zh/rest": 12, "en/first": 4, "en/rest": 21}
    answers = sum(sum(label != -100 for label in encode_record(char, PromptSet(), r, opts).sample["labels"])
                  for r in ALIGN_RECORDS)  # every answer token, EOS included
    assert sum(oracle.tokens.values()) == answers and oracle.tokens["format"] == answers - 41
    assert oracle.names("accuracy") == 1.0 and oracle.accuracy("format") == 1.0 and oracle.names() < 1e-6
    uniform = name_token_scores(_FixedLM(char.get_piece_size(), False), ALIGN_RECORDS, char, options=opts)
    assert abs(uniform.mean_nll("zh/rest") - math.log(char.get_piece_size())) < 1e-5
    d = uniform.to_dict()
    assert set(d["groups"]) == {"zh/first", "zh/rest", "en/first", "en/rest", "format"} and d["skipped_records"] == 0
    dropped = name_token_scores(_FixedLM(char.get_piece_size(), True), ALIGN_RECORDS, sp,
                                options=SFTDataOptions(cutoff_len=8))
    assert dropped.skipped_records == 2 and math.isnan(dropped.names()) and math.isnan(dropped.mean_nll("format"))
