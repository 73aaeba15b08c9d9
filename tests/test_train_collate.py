"""knowlm_utils.train.collate: padding, labels, truncation and the pad-id choice."""

from __future__ import annotations

import pytest
import torch

from knowlm_utils.modeling import TokenizerInfo
from knowlm_utils.train.collate import CausalLMCollator, pad_token


def test_collator_pads_to_longest_masks_labels_and_counts_truncation():
    collator = CausalLMCollator(pad_id=2, max_length=5, pad_source="EOS")
    batch = collator([{"input_ids": torch.tensor([1, 7, 8])}, {"input_ids": torch.tensor([1, 9, 9, 9, 9, 9, 4])},
                      {"input_ids": torch.tensor([5])}])
    assert batch["input_ids"].tolist() == [[1, 7, 8, 2, 2], [1, 9, 9, 9, 9], [5, 2, 2, 2, 2]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]]
    assert batch["labels"].tolist() == [[1, 7, 8, -100, -100], [1, 9, 9, 9, 9], [5, -100, -100, -100, -100]]
    assert collator.truncated == 1
    # a pad id that equals a real token (EOS) is still a label where it is real text
    eos_text = collator([{"input_ids": torch.tensor([1, 2])}, {"input_ids": torch.tensor([1, 3, 3])}])
    assert eos_text["labels"].tolist() == [[1, 2, -100], [1, 3, 3]]
    with pytest.raises(ValueError, match="non-empty 1-D"):
        collator([{"input_ids": torch.tensor([], dtype=torch.long)}])
    assert pad_token(TokenizerInfo(10, 1, 2, 0, "t")) == (0, "tokenizer pad token")
    assert pad_token(TokenizerInfo(10, 1, 2, None, "t"))[0] == 2
    assert pad_token(TokenizerInfo(10, None, None, None, "t"))[0] == 0
