"""The model the browser tests talk to, built on the spot from files in the repository (no
network, no `make course`): a 2000-piece SentencePiece model trained on the sample corpus and the
scripted LLaMA of ``tests/generation_helpers.py`` (a real ``LlamaForCausalLM``) whose greedy answer
to any instruction is :data:`ANSWER` and then ``</s>``. Saved as a Hugging Face model folder
(safetensors + tokenizer files) that ``Generator.load`` reads, as it reads notebook 07's model."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
ANSWER = "城市：北京,上海"            # grouped NER: every token different (what a scripted model can write)
TEXT = "北京和上海都是中国的大城市。"
SCHEMA = "城市\n国家"


def build(out: Path) -> Path:
    """Write the model folder ``out`` (tokenizer.model + HF tokenizer files + safetensors)."""
    import sentencepiece as spm

    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))
    from generation_helpers import scripted_llama

    from knowlm_utils.tokenizer import write_hf_files

    spec = importlib.util.spec_from_file_location("knowlm_tests_conftest", TESTS / "conftest.py")
    shared = importlib.util.module_from_spec(spec)   # tests/conftest.py: the sample texts, as the unit tests read them
    spec.loader.exec_module(shared)
    sample_texts = shared.sample_texts
    out.mkdir(parents=True, exist_ok=True)
    text = out / "spm-train.txt"
    with open(text, "w", encoding="utf-8") as fh:
        for docs in sample_texts().values():
            for doc in docs:
                fh.write(doc.replace("\r", " ") + "\n")
    spm.SentencePieceTrainer.train(
        input=str(text), model_prefix=str(out / "tokenizer"), vocab_size=2000, model_type="bpe",
        character_coverage=0.9995, byte_fallback=True, normalization_rule_name="identity",
        remove_extra_whitespaces=False, split_digits=True, bos_id=1, eos_id=2, unk_id=0, pad_id=-1,
        max_sentence_length=100000, num_threads=1, minloglevel=2)
    text.unlink()
    (out / "tokenizer.vocab").unlink()
    sp = spm.SentencePieceProcessor(model_file=str(out / "tokenizer.model"))
    ids = sp.encode(ANSWER)
    ids = ids[1:] if sp.id_to_piece(ids[0]) == "\u2581" else ids   # the dummy prefix of a new text
    scripted_llama(out / "tokenizer.model", [*ids, sp.eos_id()], loop=False).save_pretrained(out)
    write_hf_files(out)
    return out


if __name__ == "__main__":
    print(build(Path(sys.argv[1])))
