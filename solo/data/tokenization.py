"""Encoding of E2E examples: the training sequence with its loss mask, and the decoding prompt.

The format (what comes before the MR, what separates it from the reference, what ends the
reference) is chosen per model by `model.format` (see `PromptFormat`); `null` is microsoft/LoRA's
GPT-2 recipe, token for token:
    MR tokens, <|endoftext|>, tokens of " " + reference, <|endoftext|>
An instruct model is better served by its own chat markup, e.g. SmolLM2 (configs/model/):
    <|im_start|>user\n MR <|im_end|>\n<|im_start|>assistant\n reference <|im_end|>
Each piece (prefix, MR, separator, target prefix + reference, end) is tokenized on its own, so
special-token strings in the pieces become their single ids and the prompt of a training
sequence is exactly the decoding prompt. The format travels with the tokenizer
(`attach_format`, done by solo.models.load_backbone), so training, dev loss and decoding of one
run cannot disagree on it.

The loss mask is 1 exactly on the reference tokens and the end token: the model is trained to
write the reference and to stop, never to reproduce the prompt.

Truncation (only when a sequence exceeds `max_length`): the prompt is kept whole and the
reference is cut from the right. The end token is then dropped too, because training the model
to stop in the middle of a reference would teach it to end early; the mask still covers exactly
the reference tokens that remain. A prompt that leaves no room for even one reference token is a
configuration error (raise `data.max_length`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from solo.data.records import E2EPair
from solo.errors import SoloError

_FORMAT_ATTR = "solo_format"


@dataclass(frozen=True)
class PromptFormat:
    """`model.format`: text pieces around the MR and the reference (null fields: the eos token).

    prompt   = prefix, MR, separator            (separator: any text; null: the eos token)
    target   = target_prefix + reference, end   (end null: the tokenizer's eos token)
    `end` must be one token, and the decoder must stop on it: it is the eos token or one of
    `decode.extra_stop_tokens`.
    """

    prefix: str = ""
    separator: str | None = None
    target_prefix: str = " "  # GPT-2: the reference's first word is then the BPE token it is mid-sentence
    end: str | None = None

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None) -> PromptFormat:
        if cfg is None:
            return cls()
        if not isinstance(cfg, Mapping):
            raise SoloError(f"model.format must be null or a mapping of {', '.join(f.name for f in fields(cls))}; got {cfg!r}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(cfg) - known)
        if unknown:
            raise SoloError(f"model.format.{unknown[0]} is not a format field; known: {', '.join(sorted(known))}")
        for key, value in cfg.items():
            if value is not None and not isinstance(value, str):
                raise SoloError(f"model.format.{key} must be a string or null, got {value!r}")
        values = dict(cfg)
        for key in ("prefix", "target_prefix"):
            if values.get(key) is None:
                values.pop(key, None)
        return cls(**values)


def attach_format(tokenizer, format_cfg: Mapping[str, Any] | PromptFormat | None) -> PromptFormat:
    """Make `format_cfg` the format every encoder below uses with `tokenizer`; checks its tokens."""
    fmt = format_cfg if isinstance(format_cfg, PromptFormat) else PromptFormat.from_config(format_cfg)
    _special_id(tokenizer, fmt.end, "end")
    if fmt.separator is None:
        _eos_id(tokenizer)
    setattr(tokenizer, _FORMAT_ATTR, fmt)
    return fmt


def format_of(tokenizer) -> PromptFormat:
    """The format attached to `tokenizer` (the GPT-2 recipe if none was)."""
    return getattr(tokenizer, _FORMAT_ATTR, None) or PromptFormat()


def end_token_id(tokenizer) -> int:
    """The id that ends every training target (the decoder must stop on it)."""
    return _special_id(tokenizer, format_of(tokenizer).end, "end")


def encode_example(tokenizer, mr: str, ref: str, max_length: int | None) -> tuple[list[int], list[int]]:
    """Token ids and loss mask (same length) for one training pair; see the module doc."""
    return encode_pairs(tokenizer, [E2EPair(mr=mr, ref=ref)], max_length)[0]


def encode_pairs(tokenizer, pairs: Sequence[E2EPair], max_length: int | None) -> list[tuple[list[int], list[int]]]:
    """`encode_example` for many pairs at once (one batched tokenizer call: much faster)."""
    if not pairs:
        return []
    fmt = format_of(tokenizer)
    prompts = _prompts(tokenizer, fmt, [p.mr for p in pairs])
    refs = _tokens(tokenizer, [fmt.target_prefix + p.ref for p in pairs])
    end = end_token_id(tokenizer)
    return [_assemble(p, r, end, max_length) for p, r in zip(prompts, refs, strict=True)]


def encode_prompt(tokenizer, mr: str) -> list[int]:
    """The decoding prompt (prefix, MR, separator): the model writes the reference next."""
    return _prompts(tokenizer, format_of(tokenizer), [mr])[0]


def _prompts(tokenizer, fmt: PromptFormat, mrs: list[str]) -> list[list[int]]:
    prefix = _tokens(tokenizer, [fmt.prefix])[0] if fmt.prefix else []
    separator = (_tokens(tokenizer, [fmt.separator])[0] if fmt.separator is not None
                 else [_eos_id(tokenizer)])
    return [prefix + ids + separator for ids in _tokens(tokenizer, mrs)]


def _tokens(tokenizer, texts: list[str]) -> list[list[int]]:
    return [list(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def _eos_id(tokenizer) -> int:
    eos = tokenizer.eos_token_id
    if eos is None:
        raise SoloError("the tokenizer has no eos token; set model.format.separator and model.format.end")
    return int(eos)


def _special_id(tokenizer, text: str | None, field: str) -> int:
    if text is None:
        return _eos_id(tokenizer)
    ids = _tokens(tokenizer, [text])[0]
    if len(ids) != 1:
        raise SoloError(f"model.format.{field}={text!r} is {len(ids)} tokens for this tokenizer; use one special token (or null for eos)")
    return ids[0]


def _assemble(prompt: list[int], ref_ids: list[int], end: int,
              max_length: int | None) -> tuple[list[int], list[int]]:
    target = ref_ids + [end]
    if max_length is not None and len(prompt) + len(target) > max_length:
        room = max_length - len(prompt)
        if room < 1:
            raise SoloError(
                f"data.max_length={max_length} leaves no room for the reference after a prompt of "
                f"{len(prompt)} tokens; raise data.max_length"
            )
        target = ref_ids[:room]  # cut reference: no end token (see module doc)
    return prompt + target, [0] * len(prompt) + [1] * len(target)
