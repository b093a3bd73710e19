"""The E2E data as plain records: one (MR, reference) pair, and one MR with all its references."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class E2EPair:
    """One training/scoring example: a meaning representation and one human reference for it."""

    mr: str
    ref: str


@dataclass(frozen=True)
class MRGroup:
    """A unique MR with every reference written for it, in file order (what the scorer needs)."""

    mr: str
    refs: tuple[str, ...]


def group_by_mr(pairs: Iterable[E2EPair]) -> list[MRGroup]:
    """Group pairs by MR in order of first appearance; references keep their file order.

    The official scorer and the paper's numbers assume this order (one prediction per unique test
    MR, as the MRs first appear), so it must not depend on sorting or hashing.
    """
    refs_by_mr: dict[str, list[str]] = {}
    for pair in pairs:
        refs_by_mr.setdefault(pair.mr, []).append(pair.ref)
    return [MRGroup(mr=mr, refs=tuple(refs)) for mr, refs in refs_by_mr.items()]
