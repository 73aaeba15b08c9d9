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
    shared = importlib.util.module_from_spec(spec)   # tests/conftest.py: sample texts and tokenizer, as the unit tests build them
    spec.loader.exec_module(shared)
    shared.train_sample_spm(shared.sample_texts(), out, prefix="tokenizer", num_threads=1)
    (out / "tokenizer.vocab").unlink()
    sp = spm.SentencePieceProcessor(model_file=str(out / "tokenizer.model"))
    ids = sp.encode(ANSWER)
    ids = ids[1:] if sp.id_to_piece(ids[0]) == "\u2581" else ids   # the dummy prefix of a new text
    scripted_llama(out / "tokenizer.model", [*ids, sp.eos_id()], loop=False).save_pretrained(out)
    write_hf_files(out)
    return out


if __name__ == "__main__":
    print(build(Path(sys.argv[1])))
