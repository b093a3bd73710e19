"""GPT-2 encoding: the training sequence round-trips and the loss mask covers exactly the target."""

from __future__ import annotations

from pathlib import Path

import pytest

from solo.data import (
    E2EPair,
    PromptFormat,
    attach_format,
    encode_example,
    encode_pairs,
    encode_prompt,
    end_token_id,
    format_of,
    read_lora_txt,
)
from solo.errors import SoloError

EOS_TEXT = "<|endoftext|>"


def _decode(tokenizer, ids):
    # No clean-up: LoRA's references are pre-tokenised ("It 's", "£ 30") and must survive as written.
    return tokenizer.decode(ids, clean_up_tokenization_spaces=False)


@pytest.fixture(scope="module")
def lora_pairs(shared_data: Path) -> list[E2EPair]:
    return read_lora_txt(shared_data / "lora-format" / "test.txt")


def test_round_trip_and_mask_on_real_examples(gpt2_tokenizer, lora_pairs):
    eos = gpt2_tokenizer.eos_token_id
    for pair in lora_pairs[:: len(lora_pairs) // 25]:
        ids, mask = encode_example(gpt2_tokenizer, pair.mr, pair.ref, max_length=512)
        assert len(ids) == len(mask)
        assert _decode(gpt2_tokenizer, ids) == f"{pair.mr}{EOS_TEXT} {pair.ref}{EOS_TEXT}"
        target = [t for t, m in zip(ids, mask, strict=True) if m == 1]
        assert _decode(gpt2_tokenizer, target) == f" {pair.ref}{EOS_TEXT}"
        # the mask is one contiguous run that ends the sequence, starting right after the MR's eos
        first = mask.index(1)
        assert ids[first - 1] == eos and set(mask[first:]) == {1} and set(mask[:first]) == {0}
        assert ids[-1] == eos
        assert ids[:first] == encode_prompt(gpt2_tokenizer, pair.mr)


def test_pretokenised_and_non_ascii_text_survives(gpt2_tokenizer, lora_pairs):
    pound = next(p for p in lora_pairs if "£" in p.ref or "£" in p.mr)
    ids, _ = encode_example(gpt2_tokenizer, pound.mr, pound.ref, max_length=None)
    assert _decode(gpt2_tokenizer, ids) == f"{pound.mr}{EOS_TEXT} {pound.ref}{EOS_TEXT}"


def test_encode_pairs_matches_encode_example(gpt2_tokenizer, lora_pairs):
    pairs = lora_pairs[:40]
    assert encode_pairs(gpt2_tokenizer, pairs, 512) == [
        encode_example(gpt2_tokenizer, p.mr, p.ref, 512) for p in pairs
    ]
    assert encode_pairs(gpt2_tokenizer, [], 512) == []


def test_truncation_cuts_reference_and_drops_final_eos(gpt2_tokenizer):
    mr, ref = "name : The Eagle | Type : pub", "The Eagle is a pub near the river with cheap food ."
    full_ids, full_mask = encode_example(gpt2_tokenizer, mr, ref, max_length=None)
    prompt = encode_prompt(gpt2_tokenizer, mr)
    limit = len(prompt) + 3
    ids, mask = encode_example(gpt2_tokenizer, mr, ref, max_length=limit)
    assert len(ids) == len(mask) == limit
    assert ids == full_ids[:limit]  # prompt whole, then the first reference tokens
    assert mask == [0] * len(prompt) + [1] * 3
    assert ids[-1] != gpt2_tokenizer.eos_token_id
    # exactly at the full length nothing is cut, and the final eos stays
    assert encode_example(gpt2_tokenizer, mr, ref, len(full_ids)) == (full_ids, full_mask)


def test_prompt_too_long_for_max_length_is_a_config_error(gpt2_tokenizer):
    mr = "name : The Eagle | Type : pub"
    with pytest.raises(SoloError, match="data.max_length=4"):
        encode_example(gpt2_tokenizer, mr, "A pub .", max_length=4)


@pytest.fixture()
def own_tokenizer(shared_data: Path):
    """A GPT-2 tokenizer of this test's own: a format attached to it must not leak into others."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(shared_data / "gpt2-tokenizer"))


def test_null_format_is_the_gpt2_recipe_token_for_token(own_tokenizer, lora_pairs):
    pairs = lora_pairs[:: len(lora_pairs) // 30]
    default = encode_pairs(own_tokenizer, pairs, 512)
    spelled_out = PromptFormat(prefix="", separator=EOS_TEXT, target_prefix=" ", end=EOS_TEXT)
    assert attach_format(own_tokenizer, None) == PromptFormat()
    assert encode_pairs(own_tokenizer, pairs, 512) == default
    attach_format(own_tokenizer, spelled_out)
    assert encode_pairs(own_tokenizer, pairs, 512) == default
    eos = own_tokenizer.eos_token_id
    for pair, (ids, _) in zip(pairs, default, strict=True):
        mr = own_tokenizer(pair.mr, add_special_tokens=False)["input_ids"]
        ref = own_tokenizer(" " + pair.ref, add_special_tokens=False)["input_ids"]
        assert ids == mr + [eos] + ref + [eos]


def test_a_chat_like_format_masks_exactly_the_reply(own_tokenizer, lora_pairs):
    fmt = {"prefix": "User: ", "separator": "\nAssistant:", "target_prefix": " ", "end": EOS_TEXT}
    attach_format(own_tokenizer, fmt)
    assert format_of(own_tokenizer) == PromptFormat(**fmt)
    for pair in lora_pairs[:20]:
        ids, mask = encode_example(own_tokenizer, pair.mr, pair.ref, max_length=512)
        first = mask.index(1)
        assert ids[:first] == encode_prompt(own_tokenizer, pair.mr)
        assert _decode(own_tokenizer, ids[:first]) == f"User: {pair.mr}\nAssistant:"
        assert _decode(own_tokenizer, ids[first:]) == f" {pair.ref}{EOS_TEXT}"
        assert set(mask[first:]) == {1}
    assert end_token_id(own_tokenizer) == own_tokenizer.eos_token_id


@pytest.mark.parametrize("fmt, message", [
    ({"sepparator": "x"}, "model.format.sepparator is not a format field"),
    ({"end": "two words"}, r"model.format.end='two words' is 2 tokens"),
    ({"prefix": 3}, "model.format.prefix must be a string"),
    ("chat", "model.format must be null or a mapping"),
])
def test_bad_formats_are_config_errors(own_tokenizer, fmt, message):
    with pytest.raises(SoloError, match=message):
        attach_format(own_tokenizer, fmt)
