"""The prediction text of generated ids, and the stop ids of a tokenizer."""

from __future__ import annotations

import copy

import pytest

from solo.decode.text import prediction_text, stop_token_ids
from solo.errors import SoloError


@pytest.fixture(scope="module")
def chat_tokenizer(gpt2_tokenizer):
    """The GPT-2 tokenizer with two extra special tokens, as a chat model's tokenizer has."""
    tokenizer = copy.deepcopy(gpt2_tokenizer)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    return tokenizer


def ids(tokenizer, text: str) -> list[int]:
    return tokenizer.encode(text, add_special_tokens=False)


def test_text_is_cut_at_the_first_blank_line_and_made_one_line(gpt2_tokenizer):
    generated = ids(gpt2_tokenizer, " The Eagle is a pub.\nIt is cheap.\n\nname[Zizzi] is")
    assert prediction_text(gpt2_tokenizer, generated) == "The Eagle is a pub. It is cheap."
    # "\n" "\n" as two tokens is a blank line too.
    assert prediction_text(gpt2_tokenizer, [198, *ids(gpt2_tokenizer, "A"), 198, 198, 33]) == "A"


@pytest.mark.parametrize("text, expected", [
    ("<|endoftext|> The Eagle<|endoftext|>", "The Eagle"),
    ("<|im_start|>\n\n The Eagle<|im_end|> is a pub.", "The Eagle is a pub."),
    ("<|im_start|><|im_end|>", ""),
])
def test_no_special_token_and_no_empty_line_from_a_leading_marker(chat_tokenizer, text, expected):
    generated = ids(chat_tokenizer, text)
    assert generated[0] in chat_tokenizer.all_special_ids
    assert prediction_text(chat_tokenizer, generated) == expected


def test_stop_ids_are_eos_then_the_extra_tokens(gpt2_tokenizer, chat_tokenizer):
    assert stop_token_ids(gpt2_tokenizer) == [50256]
    assert stop_token_ids(gpt2_tokenizer, ["\n\n"]) == [50256, 628]
    assert stop_token_ids(gpt2_tokenizer, ["\n\n", "<|endoftext|>", "\n\n"]) == [50256, 628]
    assert stop_token_ids(chat_tokenizer, ["<|im_end|>"]) == [50256, 50258]


def test_a_stop_string_of_several_tokens_is_a_solo_error(gpt2_tokenizer):
    with pytest.raises(SoloError, match=r"decode.extra_stop_tokens: 'The end' encodes to 2 tokens"):
        stop_token_ids(gpt2_tokenizer, ["The end"])
