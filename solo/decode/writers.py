"""Predictions and references in the files the official E2E scorer (e2e-metrics) reads.

- predictions: one line per MR, in the order of the MRs;
- references: one block per MR (same order), one reference a line, blocks separated by one blank
  line.
Both are UTF-8 and written atomically (a temporary file renamed into place), and neither
overwrites an existing file: results are never replaced silently.
A line break inside a text would shift every following line, so line breaks become spaces.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from solo.atomic import write_text_atomic
from solo.errors import SoloError

_LINE_BREAKS = re.compile(r"[\r\n\u2028\u2029\x0b\x0c\x1c\x1d\x1e\x85]+")


def one_line(text: str) -> str:
    """`text` with line breaks replaced by a space and outer whitespace removed."""
    return _LINE_BREAKS.sub(" ", text).strip()


def write_predictions(path: str | os.PathLike, texts: Iterable[str]) -> Path:
    """Write one prediction a line (an empty prediction is an empty line)."""
    lines = [one_line(t) for t in texts]
    return _write_new(Path(path), "".join(line + "\n" for line in lines))


def write_references(path: str | os.PathLike, groups: Iterable[object]) -> Path:
    """Write the references of each MR as one block; `groups` are MRGroup-like (`.refs`) or lists of str."""
    blocks = []
    for i, group in enumerate(groups):
        refs: Sequence[str] = getattr(group, "refs", group)  # type: ignore[assignment]
        lines = [one_line(r) for r in refs]
        if not lines or any(not line for line in lines):
            # An empty block or line would merge or split blocks when the scorer reads them back.
            raise SoloError(f"{path}: MR group {i} has an empty reference list or an empty reference")
        blocks.append("".join(line + "\n" for line in lines))
    return _write_new(Path(path), "\n".join(blocks))


def _write_new(path: Path, content: str) -> Path:
    try:
        return write_text_atomic(path, content, exclusive=True)
    except FileExistsError:
        raise SoloError(f"{path} already exists; results are never overwritten (move it away or use a new run dir)") from None
