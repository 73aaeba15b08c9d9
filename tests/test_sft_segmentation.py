"""Copy-aligned segmentation (knowlm_utils.sft.segmentation): lossless, context-free ids for every
unit, names copyable, carried by the run's PromptSet into prediction and generation."""

from __future__ import annotations

import json

import pytest

from knowlm_utils.ie.formats import format_output, iepile_instruction
from knowlm_utils.sft.segmentation import CopyAlignedEncoder, SEGMENTATIONS, units

MIXED = ("巴西利亚是巴西的首都。 The capital of Brazil is Brasília,  and Paris lies in France.\n"
         "def f(x_1):\n\treturn x_1 + 42  # 注释 🙂 ÆØÅ")


def test_units_join_back_and_split_cjk_per_character():
    got = units(MIXED)
    assert "".join(got) == MIXED
    assert got[:4] == ["巴", "西", "利", "亚"] and "Brasília" in got and "x_1" in got and "42" in got
    assert got.count(" ") == MIXED.count(" ") and "\n" in got and "\t" in got


def test_encoder_is_lossless_and_context_free(sp):
    enc = CopyAlignedEncoder(sp)
    ids = enc.encode(MIXED)
    assert sp.decode(ids) == MIXED  # the ordinary decoder reads the ids back (bytes for 🙂)
    assert len(ids) > len(sp.encode(MIXED))  # it costs tokens
    # every unit keeps its ids wherever it stands: a substring of units is a run of the text's ids
    for name in ("Brasília", "巴西", "Paris", "France"):
        n = enc.encode(name)
        assert any(ids[i:i + len(n)] == n for i in range(len(ids))), name
        assert any(enc.encode(f'["{name}"]')[i:i + len(n)] == n for i in range(8)), name
    assert enc.encode(" ") == [sp.piece_to_id("▁")]


def test_names_become_copyable(sp):
    from knowlm_utils.ie.annotation import Entity
    from knowlm_utils.ie.copy_check import name_token_alignment
    from knowlm_utils.sft.data import SFTDataOptions

    text = "The capital of Brazil is Brasilia, and Paris lies in France."
    gold = [Entity("Brasilia", "city"), Entity("Paris", "city"), Entity("Brazil", "country"), Entity("France", "country")]
    rec = {"id": "en1", "task": "NER", "lang": "en", "style": "iepile", "format": "iepile",
           "schema": ["city", "country"], "instruction": iepile_instruction("NER", "en", ["city", "country"], text),
           "input": "", "output": format_output("NER", "iepile", gold, "en", ["city", "country"])}
    own = name_token_alignment([rec], sp)
    aligned = name_token_alignment([rec], sp, options=SFTDataOptions(segmentation="copy_aligned"))
    assert own.total() == aligned.total() == 4
    assert own.copy_ceiling < 1.0 and aligned.copy_ceiling == 1.0


def test_encode_record_masks_exactly_with_aligned_ids(sp):
    from knowlm_utils.sft.data import SFTDataOptions, encode_record
    from knowlm_utils.sft.prompter import PromptSet

    rec = {"id": "r", "task": "NER", "lang": "zh", "style": "text", "instruction": "找出实体。",
           "input": "巴西利亚是巴西的首都。", "output": "(巴西利亚,城市)"}
    ps = PromptSet()
    enc = encode_record(sp, ps, rec, SFTDataOptions(segmentation="copy_aligned"))
    aligned = CopyAlignedEncoder(sp)
    prompt = ps.prompt(rec)
    want_prompt = [sp.bos_id()] + aligned.encode(prompt)
    ids, labels = enc.sample["input_ids"], enc.sample["labels"]
    assert ids == want_prompt + aligned.encode(rec["output"]) + [sp.eos_id()]
    assert labels == [-100] * len(want_prompt) + aligned.encode(rec["output"]) + [sp.eos_id()]
    assert sp.decode(ids[len(want_prompt):-1]) == rec["output"]


def test_errors_are_one_line(sp, tmp_path, hf_tokenizer_dir):
    import sentencepiece as spm

    from knowlm_utils.sft.data import SFTDataOptions
    from knowlm_utils.sft.segmentation import check_segmentation

    with pytest.raises(ValueError, match="'words' is not a segmentation; allowed: tokenizer, copy_aligned"):
        check_segmentation("words")
    with pytest.raises(ValueError, match="segmentation: 'bogus' is not a segmentation"):
        SFTDataOptions(segmentation="bogus")
    (tmp_path / "t.txt").write_text("abc def ghi\n" * 50, encoding="utf-8")
    spm.SentencePieceTrainer.train(input=str(tmp_path / "t.txt"), model_prefix=str(tmp_path / "nb"), vocab_size=20,
                                   model_type="char", byte_fallback=False, minloglevel=2)
    with pytest.raises(ValueError, match=r"nb\.model has no byte fallback") as err:
        CopyAlignedEncoder(tmp_path / "nb.model")
    assert "\n" not in str(err.value)

    class NoModel:
        name_or_path = "some/tokenizer"
    with pytest.raises(ValueError, match="some/tokenizer has no SentencePiece model"):
        CopyAlignedEncoder(NoModel())
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(hf_tokenizer_dir), local_files_only=True)
    assert CopyAlignedEncoder(hf).encode("巴西 Paris") == CopyAlignedEncoder(sp).encode("巴西 Paris")


def test_prompt_set_carries_segmentation(tmp_path):
    from knowlm_utils.sft.prompter import PROMPTS_FILE, PromptSet

    assert "segmentation" not in PromptSet().to_dict()  # the default is not written: old runs load unchanged
    PromptSet(segmentation="copy_aligned").save(tmp_path)
    assert json.loads((tmp_path / PROMPTS_FILE).read_text("utf-8"))["segmentation"] == "copy_aligned"
    assert PromptSet.for_run(tmp_path / "checkpoint-5").segmentation == "copy_aligned"
    data = json.loads((tmp_path / PROMPTS_FILE).read_text("utf-8"))
    data["segmentation"] = "chars"
    (tmp_path / PROMPTS_FILE).write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ValueError, match=r"prompt_templates.json: segmentation: 'chars' is not a segmentation"):
        PromptSet.load(tmp_path)
    assert set(SEGMENTATIONS) == {"tokenizer", "copy_aligned", "characters"}


def test_prediction_and_generation_prompt_as_trained(sp, model):
    from knowlm_utils.generation import Codec, Generator
    from knowlm_utils.ie.predict import predict_records
    from knowlm_utils.sft.prompter import PromptSet

    rec = {"id": "r", "task": "NER", "lang": "zh", "style": "text", "instruction": "找出实体。",
           "input": "巴西利亚是巴西的首都。", "output": "NAN"}
    seen = []
    real = model.generate

    def spy(input_ids, **kw):
        seen.append(input_ids[0][input_ids[0] != kw["pad_token_id"]].tolist())
        return real(input_ids=input_ids, **kw)

    model.generate = spy
    try:
        ps = PromptSet(segmentation="copy_aligned")
        rows = predict_records([rec], model, sp, ps, max_new_tokens=3, progress=False)
        assert seen[-1] == [sp.bos_id()] + CopyAlignedEncoder(sp).encode(rows[0]["prompt"])
        predict_records([rec], model, sp, PromptSet(), max_new_tokens=3, progress=False)
        assert seen[-1] == [sp.bos_id()] + sp.encode(rows[0]["prompt"])
    finally:
        model.generate = real
    gen = Generator(model, sp, PromptSet(segmentation="copy_aligned"))
    assert gen.codec.encode("巴西 Paris") == Codec(sp, "copy_aligned").encode("巴西 Paris")
    assert Codec(gen.codec).segmentation == "copy_aligned" and Codec(gen.codec, "tokenizer").aligned is None


def test_characters_segmentation_spells_every_character_alone(sp):
    from knowlm_utils.sft.data import SFTDataOptions, as_adapter
    from knowlm_utils.sft.segmentation import unit_encoder

    assert "characters" in SEGMENTATIONS and unit_encoder(sp, "tokenizer") is None
    assert units(MIXED, "characters") == list(MIXED)
    enc = unit_encoder(sp, "characters")
    ids = enc.encode(MIXED)
    assert sp.decode(ids) == MIXED and len(ids) > len(CopyAlignedEncoder(sp).encode(MIXED))
    for word in ("Paris", "France", "x_1"):  # a word is its letters' ids, wherever it stands
        assert enc.encode(word) == [i for ch in word for i in enc.encode(ch)]
        assert all(len(enc.encode(ch)) >= 1 for ch in word)
    assert as_adapter(sp, "characters").encode("Paris") == enc.encode("Paris")
    assert SFTDataOptions(segmentation="characters").segmentation == "characters"
    with pytest.raises(ValueError, match="not encoded unit by unit"):
        CopyAlignedEncoder(sp, "tokenizer")
