"""GPT-2 BPE encoding of E2E examples: the training sequence with its loss mask, and the prompt.

Training sequence (as in microsoft/LoRA's E2E recipe):
    MR tokens, <|endoftext|>, tokens of " " + reference, <|endoftext|>
The loss mask is 1 exactly on the reference tokens and the final <|endoftext|>: the model is
trained to write the reference and to stop, never to reproduce the MR.

Truncation (only when a sequence exceeds `max_length`): the prompt (MR + separator) is kept whole
and the reference is cut from the right. The final <|endoftext|> is then dropped too, because
training the model to stop in the middle of a reference would teach it to end early; the mask
still covers exactly the reference tokens that remain. A prompt that leaves no room for even one
reference token is a configuration error (raise `data.max_length`).
"""

from __future__ import annotations

from collections.abc import Sequence

from solo.data.records import E2EPair
from solo.errors import SoloError


def encode_example(tokenizer, mr: str, ref: str, max_length: int | None) -> tuple[list[int], list[int]]:
    """Token ids and loss mask (same length) for one training pair; see the module doc."""
    mr_ids, ref_ids = _encode_texts(tokenizer, [mr], [ref])
    return _assemble(mr_ids[0], ref_ids[0], _eos_id(tokenizer), max_length)


def encode_pairs(tokenizer, pairs: Sequence[E2EPair], max_length: int | None) -> list[tuple[list[int], list[int]]]:
    """`encode_example` for many pairs at once (one batched tokenizer call: much faster)."""
    if not pairs:
        return []
    mr_ids, ref_ids = _encode_texts(tokenizer, [p.mr for p in pairs], [p.ref for p in pairs])
    eos = _eos_id(tokenizer)
    return [_assemble(m, r, eos, max_length) for m, r in zip(mr_ids, ref_ids, strict=True)]


def encode_prompt(tokenizer, mr: str) -> list[int]:
    """The decoding prompt: MR tokens followed by <|endoftext|> (the model writes the reference next)."""
    return _tokens(tokenizer, [mr])[0] + [_eos_id(tokenizer)]


def _encode_texts(tokenizer, mrs: list[str], refs: list[str]) -> tuple[list[list[int]], list[list[int]]]:
    # The leading space makes the reference's first word the same BPE token it is mid-sentence.
    return _tokens(tokenizer, mrs), _tokens(tokenizer, [" " + ref for ref in refs])


def _tokens(tokenizer, texts: list[str]) -> list[list[int]]:
    return [list(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def _eos_id(tokenizer) -> int:
    eos = tokenizer.eos_token_id
    if eos is None:
        raise SoloError("the tokenizer has no eos token; use a GPT-2 tokenizer (model.tokenizer)")
    return int(eos)


def _assemble(mr_ids: list[int], ref_ids: list[int], eos: int,
              max_length: int | None) -> tuple[list[int], list[int]]:
    prompt = mr_ids + [eos]
    target = ref_ids + [eos]
    if max_length is not None and len(prompt) + len(target) > max_length:
        room = max_length - len(prompt)
        if room < 1:
            raise SoloError(
                f"data.max_length={max_length} leaves no room for the reference after an MR of "
                f"{len(mr_ids)} tokens; raise data.max_length"
            )
        target = ref_ids[:room]  # cut reference: no final eos (see module doc)
    return prompt + target, [0] * len(prompt) + [1] * len(target)
