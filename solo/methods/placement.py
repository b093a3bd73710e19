"""Where Solo Connections go: the backbone's block list and the groups of blocks each connection spans.

Blocks are numbered from 1 as in the paper (D_1 … D_n). A connection is a group `(first, last)`: it
reads the hidden state entering block `first` and adds its output to the output of block `last`
(span 1: first == last, i.e. `y_i = D_i(x_{i-1}) + f_solo(x_{i-1})`).

Default placement, span k: groups of k consecutive blocks separated by one uncovered block,
starting at D_2, keeping only whole groups that do not touch the final block (no connection feeds
the final layer norm directly). For k = 1 this is the paper's "alternate blocks from D_2":

| span k | GPT-2 S (12 blocks)          | T  | GPT-2 M (24 blocks)                         | T  |
|--------|------------------------------|----|---------------------------------------------|----|
| 1      | D2, D4, D6, D8, D10          | 5  | D2, D4, …, D22                              | 11 |
| 3      | D2–D4, D6–D8                 | 2  | D2–D4, D6–D8, D10–D12, D14–D16, D18–D20     | 5  |
| 5      | D2–D6                        | 1  | D2–D6, D8–D12, D14–D18                      | 3  |

(D10–D12 on S, D22–D24 on M and D8–D12 on S, D20–D24 on M are dropped because they would end on
the final block.) The paper does not say how its span groups are laid out; this layout makes k = 1
identical to the default and is our reading of "consecutive groups of k blocks starting at D_2".
An explicit `blocks` list gives the first block of each group instead.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from solo.errors import SoloError

# Attribute paths of the decoder block list in the model families we know; anything else falls
# back to the ModuleList whose length equals the configured number of layers.
_KNOWN_BLOCK_PATHS = ("transformer.h", "model.layers", "model.decoder.layers", "gpt_neox.layers")


def find_blocks(model: nn.Module) -> nn.ModuleList:
    """The `ModuleList` of decoder blocks of a Hugging Face decoder-only model."""
    for path in _KNOWN_BLOCK_PATHS:
        module: nn.Module | None = model
        for part in path.split("."):
            module = getattr(module, part, None)
            if module is None:
                break
        if isinstance(module, nn.ModuleList) and len(module) > 0:
            return module
    n_layers = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    candidates = [m for m in model.modules() if isinstance(m, nn.ModuleList) and len(m) == n_layers]
    if len(candidates) == 1:
        return candidates[0]
    raise SoloError(
        f"cannot find the decoder block list of {type(model).__name__}: expected a ModuleList at one "
        f"of {', '.join(_KNOWN_BLOCK_PATHS)}; use a Hugging Face decoder-only model"
    )


def hidden_size(model: nn.Module) -> int:
    """Width d of the residual stream."""
    size = getattr(getattr(model, "config", None), "hidden_size", None)
    if not isinstance(size, int):
        raise SoloError(f"{type(model).__name__} has no config.hidden_size; use a Hugging Face model")
    return size


def default_group_starts(n_blocks: int, span: int) -> list[int]:
    """First blocks (1-indexed) of the default groups: D_2, then every span+1 blocks."""
    starts = []
    first = 2
    while first + span - 1 < n_blocks:  # the group's last block must not be the final block
        starts.append(first)
        first += span + 1
    return starts


def connection_groups(n_blocks: int, blocks: Sequence[int] | None, span: int) -> list[tuple[int, int]]:
    """Validated `(first, last)` block pairs (1-indexed, inclusive), one per connection."""
    if isinstance(span, bool) or not isinstance(span, int) or span < 1:
        raise SoloError(f"method.span must be a positive integer, got {span!r}")
    if span > n_blocks:
        raise SoloError(f"method.span={span} is longer than the model ({n_blocks} blocks); use a span <= {n_blocks}")
    if blocks is None:
        starts = default_group_starts(n_blocks, span)
        if not starts:
            raise SoloError(
                f"method.span={span} leaves no room for a connection in a {n_blocks}-block model "
                f"(groups start at D2 and may not end on the final block); "
                + ("lower method.span or " if span > 1 else "") + "set method.blocks (e.g. [1])"
            )
    else:
        starts = list(blocks)
        if not starts:
            raise SoloError("method.blocks is empty; give at least one block or null for the default")
        for b in starts:
            if isinstance(b, bool) or not isinstance(b, int):
                raise SoloError(f"method.blocks must hold integers (1-indexed blocks), got {b!r}")
            if not 1 <= b or b + span - 1 > n_blocks:
                raise SoloError(
                    f"method.blocks entry {b} with span {span} is out of range for a {n_blocks}-block "
                    f"model; use blocks in 1..{n_blocks - span + 1}"
                )
        if len(set(starts)) != len(starts):
            raise SoloError(f"method.blocks has duplicates: {starts}")
        ordered = sorted(starts)
        for a, b in zip(ordered, ordered[1:], strict=False):
            if b <= a + span - 1:
                raise SoloError(
                    f"method.blocks {a} and {b} with span {span} overlap (D{a}-D{a + span - 1} and "
                    f"D{b}-D{b + span - 1} share a block); start groups at least {span} blocks apart"
                )
    return [(b, b + span - 1) for b in sorted(starts)]
