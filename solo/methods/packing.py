"""Several runs' adapters over one frozen backbone in one forward pass, each on its own rows.

A method that can be packed describes what it adds to the backbone's forward as `PackedTerm`s:
"read the input of module `reads`, and add `term(input)` to the output of module `adds_to`".
Solo Connection gives one term per connection (block `first` -> block `last`), LoRA one per
adapted projection (its input -> its output). `PackedForward` hooks a backbone once and, while
`rows(...)` is active, applies each member's terms to that member's rows of the batch only, so
one forward over the concatenation of N runs' batches gives each run the activations it gets
alone (rows of a transformer never mix). Members with no term at a module add zeros there.

`shared_copy` gives each run its own module tree over the same frozen tensors, so the run's
method attaches as usual (and decodes, evaluates and saves as alone) without a second backbone
in memory.

Decoding packs too (`prompts(...)`): a beam search over the same prompts repeated once per member,
member by member, with each prompt's rows (its beams) on that prompt's member; when prompts leave
the batch (a finished prompt under the hf rule) the search says which stay (`PromptLayout.keep`).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

Term = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class PackedTerm:
    """`term(input of reads)` is added to the output of `adds_to` (names in `named_modules()`)."""

    reads: str
    adds_to: str
    term: Term


def module_input(args: tuple, kwargs: dict) -> torch.Tensor:
    """The hidden state a module is called with (blocks may take it as `hidden_states=`)."""
    return args[0] if args else kwargs["hidden_states"]


def add_to_output(output: Any, delta: torch.Tensor) -> Any:
    """`output + delta` for a tensor, or on the first item of a block's output tuple."""
    if isinstance(output, torch.Tensor):
        return output + delta
    return (output[0] + delta, *output[1:])


def shared_copy(model: nn.Module) -> nn.Module:
    """A new module tree whose parameters and buffers are `model`'s own tensors (not copies)."""
    memo: dict[int, Any] = {id(t): t for t in model.parameters()}
    memo.update({id(t): t for t in model.buffers()})
    return copy.deepcopy(model, memo)


class PackedForward:
    """Hooks on `model` applying each member's terms to its rows while `rows(...)` is active."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self._modules = dict(model.named_modules())
        self._terms: dict[str, dict[int, list[PackedTerm]]] = {}  # adds_to -> member -> terms
        self._capturing: set[str] = set()  # modules whose input is kept for another's term
        self._adding: set[str] = set()  # modules whose output gets terms
        self._handles: list[Any] = []
        self._inputs: dict[str, torch.Tensor] = {}
        # A batch's layout: its row count -> [(member, rows), ...] in batch order; None: no packing.
        self._layout: Callable[[int], list[tuple[int, int]]] | None = None

    def add_member(self, member: int, terms: Sequence[PackedTerm]) -> None:
        for term in terms:
            for name in (term.reads, term.adds_to):
                if name not in self._modules:
                    raise KeyError(f"packed term names {name!r}, which is not a module of the backbone")
            self._terms.setdefault(term.adds_to, {}).setdefault(member, []).append(term)
            self._hook(term.reads, term.adds_to)

    def remove_member(self, member: int) -> None:
        for by_member in self._terms.values():
            by_member.pop(member, None)

    def _hook(self, reads: str, adds_to: str) -> None:
        if reads != adds_to and reads not in self._capturing:
            self._handles.append(self._modules[reads].register_forward_pre_hook(
                self._capture(reads), with_kwargs=True))
            self._capturing.add(reads)
        if adds_to not in self._adding:
            self._handles.append(self._modules[adds_to].register_forward_hook(
                self._add(adds_to), with_kwargs=True))
            self._adding.add(adds_to)

    def _capture(self, name: str) -> Callable:
        def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
            if self._layout is not None:
                self._inputs[name] = module_input(args, kwargs)
        return hook

    def _add(self, name: str) -> Callable:
        def hook(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
            if self._layout is None:
                return output
            own_input = module_input(args, kwargs)
            by_member = self._terms.get(name, {})
            reference = output if isinstance(output, torch.Tensor) else output[0]
            parts, start, found = [], 0, False
            for member, count in self._layout(reference.shape[0]):
                part = None
                for term in by_member.get(member, ()):
                    source = own_input if term.reads == name else self._inputs[term.reads]
                    value = term.term(source[start:start + count])
                    part = value if part is None else part + value
                    found = True
                parts.append(part if part is not None else reference.new_zeros(
                    (count, *reference.shape[1:])))
                start += count
            if not found:
                return output
            return add_to_output(output, torch.cat(parts, dim=0))
        return hook

    @contextlib.contextmanager
    def rows(self, counts: Sequence[tuple[int, int]]) -> Iterator[None]:
        """Within: a forward's batch is `counts` = [(member, rows), ...] stacked in that order."""
        counts = list(counts)

        def layout(total: int) -> list[tuple[int, int]]:
            if total != sum(n for _, n in counts):
                raise ValueError(f"a packed forward of {total} rows, but the members have "
                                 f"{sum(n for _, n in counts)}")
            return counts

        with self._laid_out(layout):
            yield

    @contextlib.contextmanager
    def prompts(self, members: Sequence[int]) -> Iterator[PromptLayout]:
        """Within: a forward's batch holds prompt i's rows (each prompt as many) for member
        `members[i]`; a member's prompts are consecutive. Yields the layout, whose `keep` follows
        prompts leaving the batch."""
        layout = PromptLayout(list(members))
        with self._laid_out(layout.counts):
            yield layout

    @contextlib.contextmanager
    def _laid_out(self, layout: Callable[[int], list[tuple[int, int]]]) -> Iterator[None]:
        self._layout = layout
        try:
            yield
        finally:
            self._layout = None
            self._inputs.clear()

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


class PromptLayout:
    """The member of each prompt of a decoding batch (consecutive per member), as prompts leave."""

    def __init__(self, members: list[int]) -> None:
        started: set[int] = set()
        for i, member in enumerate(members):
            if member in started and members[i - 1] != member:
                raise ValueError(f"a member's prompts must be consecutive, got {members}")
            started.add(member)
        self.members = members

    def keep(self, prompts: Sequence[int]) -> None:
        """Only the prompts at these batch indices stay, in this order."""
        self.members = [self.members[i] for i in prompts]

    def counts(self, total: int) -> list[tuple[int, int]]:
        """[(member, rows), ...] of a forward of `total` rows: the prompts share them evenly (one
        row each for the prompt pass, one per beam after it)."""
        per_prompt, rest = divmod(total, len(self.members))
        if rest or not per_prompt:
            raise ValueError(f"a packed decoding forward of {total} rows over {len(self.members)} prompts")
        counts: list[tuple[int, int]] = []
        for member in self.members:
            if counts and counts[-1][0] == member:
                counts[-1] = (member, counts[-1][1] + per_prompt)
            else:
                counts.append((member, per_prompt))
        return counts
