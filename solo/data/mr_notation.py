"""An E2E meaning representation in either data setup's notation.

The E2E release writes `name[The Eagle], eatType[coffee shop], priceRange[£20-25]`; microsoft/LoRA's
files (the `lora` setup) write `name : The Eagle | Type : coffee shop | price : £ 20 - 25`: other
attribute names, and prices tokenised. A model trained on one notation meets the other as a new
kind of prompt, so `solo.generate` writes a user's MR in the notation its run was trained on.
Converting every MR of the E2E dev and test CSVs gives the LoRA files' MRs exactly (tested).
"""

from __future__ import annotations

import re

from solo.errors import SoloError

# E2E release attribute -> microsoft/LoRA's name for it.
LORA_NAMES = {
    "name": "name", "eatType": "Type", "food": "food", "priceRange": "price",
    "customer rating": "customer rating", "area": "area", "familyFriendly": "family friendly", "near": "near",
}
_OFFICIAL_NAMES = {lora: official for official, lora in LORA_NAMES.items()}
_OFFICIAL_ITEM = re.compile(r"\s*([^\[\],]+?)\s*\[([^\]]*)\]\s*(?:,|$)")


def notation(mr: str) -> str | None:
    """"official" (starts `attribute[`), "lora" (starts `attribute :`), or None: text in neither,
    passed on as it is."""
    if re.match(r"\s*[^\[\],|:]+?\s*\[", mr):
        return "official"
    # `name : X` or `a : b | c : d`; a sentence with a colon ("Tell me: ...") is no MR.
    first = re.match(r"\s*([A-Za-z][A-Za-z ]*?)\s*:", mr)
    if first and (first[1] in _OFFICIAL_NAMES or first[1] in LORA_NAMES or "|" in mr):
        return "lora"
    return None


def _parse_official(mr: str) -> list[tuple[str, str]]:
    items, at = [], 0
    while at < len(mr.rstrip()):
        match = _OFFICIAL_ITEM.match(mr, at)
        if match is None:
            raise SoloError(f"MR {mr!r}: cannot read it from {mr[at:]!r} on; write attribute[value], attribute[value], ...")
        items.append((match[1], match[2].strip()))
        at = match.end()
    return items


def _parse_lora(mr: str) -> list[tuple[str, str]]:
    items = []
    for part in re.split(r"\s*\|\s*", mr.strip()):
        if not part:  # a trailing or doubled `|`
            continue
        name, sep, value = part.partition(":")
        if not sep or not name.strip() or re.search(r"[\[\]]", part):
            raise SoloError(f"MR {mr!r}: {part!r} is not `attribute : value`; write attribute : value | "
                            f"attribute : value ... (or attribute[value], ... throughout)")
        items.append((name.strip(), value.strip()))
    return items


def _known(name: str, names: dict[str, str], mr: str) -> str:
    if name not in names:
        raise SoloError(f"MR {mr!r}: {name!r} is not an E2E attribute; known: {', '.join(names)}")
    return names[name]


def in_notation(mr: str, target: str) -> str:
    """`mr` written in `target` notation ("official" or "lora"), spaced as the data files are and
    with prices tokenised for "lora"; text in neither notation comes back as it is (stripped).
    Across notations the attributes must be E2E's; within one, any name is kept (own data)."""
    source = notation(mr)
    if source is None:
        return mr.strip()
    items = _parse_official(mr) if source == "official" else _parse_lora(mr)
    if source != target:
        names = LORA_NAMES if target == "lora" else _OFFICIAL_NAMES
        items = [(_known(name, names, mr), value) for name, value in items]
    if target == "lora":
        return " | ".join(f"{name} : {_tokenise_price(value)}" for name, value in items)
    return ", ".join(f"{name}[{_untokenise_price(value)}]" for name, value in items)


def _tokenise_price(value: str) -> str:
    return re.sub(r"(?<=\d)-(?=\d)", " - ", re.sub(r"£(?=\d)", "£ ", value))


def _untokenise_price(value: str) -> str:
    return re.sub(r"(?<=\d) - (?=\d)", "-", re.sub(r"£ (?=\d)", "£", value))
