"""From generated token ids to the prediction line the scorer reads, and the stop ids of a model.

The text rule follows microsoft/LoRA's gpt2_decode.py (decode, keep what comes before the first
end-of-text and the first blank line, strip), made tokenizer-general:

1. decode without any special token of the tokenizer (eos, pad, chat markers ...): a special
   token is never part of a prediction, and dropping them *before* cutting means a leading marker
   cannot turn the prediction into an empty string (LoRA's "cut at <|endoftext|>" then only
   matters for a stop token, which the search already removed);
2. leading whitespace goes before the cut, so a format whose target starts on a new line is not
   cut to nothing by its own separator;
3. keep what comes before the first "\\n\\n" (the end of a paragraph: LoRA stops there too);
4. one line (remaining line breaks become spaces), stripped.
"""

from __future__ import annotations

from collections.abc import Sequence

from solo.decode.writers import one_line
from solo.errors import SoloError

PARAGRAPH_END = "\n\n"


def prediction_text(tokenizer, ids: Sequence[int]) -> str:
    """The prediction for generated `ids` (no prompt): see the module doc for the rule."""
    text = tokenizer.decode(list(ids), skip_special_tokens=True, clean_up_tokenization_spaces=False)
    return one_line(text.lstrip().split(PARAGRAPH_END, 1)[0])


def stop_token_ids(tokenizer, extra: Sequence[str] = ()) -> list[int]:
    """The tokenizer's eos id, then the id of each string in `extra` (decode.extra_stop_tokens),
    which must encode to exactly one token (e.g. GPT-2's "\\n\\n" is token 628)."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise SoloError("the tokenizer has no eos token, so decoding cannot stop; use a tokenizer "
                        "with one (model.tokenizer)")
    ids = [int(eos)]
    for text in [extra] if isinstance(extra, str) else extra:
        encoded = tokenizer.encode(text, add_special_tokens=False)
        if len(encoded) != 1:
            raise SoloError(f"decode.extra_stop_tokens: {text!r} encodes to {len(encoded)} tokens "
                            f"{encoded} with this tokenizer; a stop token must be exactly one token")
        if encoded[0] not in ids:
            ids.append(int(encoded[0]))
    return ids
