"""Read predictions and references in the formats the official E2E scorer accepts.

- plain text: predictions one per line; references as blocks of lines separated by blank lines,
  one block per MR (a file without any blank line holds one reference per MR);
- CSV/TSV (by file extension): an MR column and a reference/output column, found by header.
"""

from __future__ import annotations

import csv
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

from e2e_eval.errors import E2EEvalError

# Header names the official scorer recognises (matched at the start of the field, any case).
_HEADER_MR = re.compile(r"(mr|src|source|meaning(?:[_ .-]rep(?:resentation)?)?|da|dial(?:ogue)?[_ .-]act)s?", re.I)
_HEADER_OUTPUT = re.compile(r"(out(?:put)?|ref(?:erence)?|sys(?:tem)?(?:[_ .-](?:out(?:put)?|ref(?:erence)?))?)s?", re.I)
_HEADER_REF = re.compile(r"(trg|tgt|target|ref(?:erence)?|human(?:[_ .-](?:ref(?:erence)?))?)s?", re.I)
_TABLE_SUFFIX = re.compile(r"\.[ct]sv$", re.I)
# The official reader repairs these mis-encodings of "£" and "é" in CSV/TSV files only.
_MOJIBAKE = (("Ł", "£"), ("Â£", "£"), ("Ã©", "é"), ("ã©", "é"))


@dataclass(frozen=True)
class Inputs:
    predictions: list[str]
    references: list[list[str]]


def load_inputs(refs_path: str | Path, preds_path: str | Path) -> Inputs:
    """Predictions and their reference groups, aligned as the official scorer aligns them."""
    refs_path, preds_path = Path(refs_path), Path(preds_path)
    if _is_table(preds_path):
        pred_mrs, predictions = _read_table(preds_path, _HEADER_OUTPUT, "output")
    else:
        pred_mrs, predictions = None, _stripped_lines(preds_path)
        _warn_if_bom(preds_path, predictions)
    if _is_table(refs_path):
        references = _read_reference_table(refs_path, pred_mrs)
    else:
        references = _read_reference_blocks(refs_path)
        _warn_if_bom(refs_path, references[0])
    if len(references) != len(predictions):
        raise E2EEvalError(
            f"{refs_path} has references for {len(references)} MRs but {preds_path} has "
            f"{len(predictions)} predictions; give exactly one prediction line per MR"
        )
    return Inputs(predictions, references)


def _is_table(path: Path) -> bool:
    return bool(_TABLE_SUFFIX.search(path.name))


def _warn_if_bom(path: Path, first_lines: list[str]) -> None:
    # Kept, as the official reader keeps it, so the scores match it; but the mark then sticks to
    # the first word and costs BLEU/NIST silently (an editor's "UTF-8 with BOM").
    if first_lines and first_lines[0].startswith("\ufeff"):
        warnings.warn(
            f"{path} starts with a UTF-8 byte-order mark, which the official scorer (and this one) "
            "reads as part of the first word; re-save the file as UTF-8 without BOM",
            stacklevel=3,
        )


def _stripped_lines(path: Path) -> list[str]:
    """Lines as the official reader sees them: UTF-8, split by str.splitlines, stripped.

    The official reader iterates a codecs UTF-8 stream, which splits lines like str.splitlines
    (so \\u2028, \\x85, \\x0c ... also end a line) and keeps a leading byte-order mark.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise E2EEvalError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise E2EEvalError(f"{path} is a directory; give the file to score") from None
    except OSError as err:
        raise E2EEvalError(f"{path}: cannot read ({err.strerror})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise E2EEvalError(
            f"{path}:{line}: byte 0x{data[err.start]:02x} is not valid UTF-8; re-save the file as UTF-8"
        ) from None
    return [line.strip() for line in text.splitlines()]


def _read_reference_blocks(path: Path) -> list[list[str]]:
    groups: list[list[str]] = [[]]
    for number, line in enumerate(_stripped_lines(path), start=1):
        if line:
            groups[-1].append(line)
        elif groups[-1]:
            groups.append([])
        else:
            # The official reader would make an MR without references here and crash later.
            raise E2EEvalError(
                f"{path}:{number}: blank line starts an empty reference block; separate blocks by exactly one blank line"
            )
    if not groups[-1]:
        groups.pop()
    if not groups:
        raise E2EEvalError(f"{path} contains no references")
    if len(groups) == 1:  # no blank line at all: one reference per MR, one MR per line
        groups = [[ref] for ref in groups[0]]
    return groups


def _read_table(path: Path, value_header: re.Pattern, what: str) -> tuple[list[str], list[str]]:
    """(MRs, values) of a CSV/TSV file with an MR column and a `value_header` column."""
    lines = _stripped_lines(path)
    if lines:
        lines[0] = lines[0].replace("\ufeff", "")
    for bad, good in _MOJIBAKE:
        lines = [line.replace(bad, good) for line in lines]
    lines = [line for line in lines if line]
    if not lines:
        raise E2EEvalError(f"{path} is empty")
    rows = list(csv.reader(lines, delimiter="\t" if "\t" in lines[0] else ","))
    header = rows[0]
    mr_cols = [i for i, field in enumerate(header) if _HEADER_MR.match(field)]
    value_cols = [i for i, field in enumerate(header) if value_header.match(field)]
    if len(mr_cols) == len(value_cols) == 1:
        mr_col, value_col, rows = mr_cols[0], value_cols[0], rows[1:]
    elif not mr_cols and not value_cols and len(header) == 2:
        mr_col, value_col = 0, 1  # no header: MR first, then the text
    else:
        raise E2EEvalError(
            f"{path}:1: cannot tell the columns apart (header {header}); name exactly one MR column "
            f"(e.g. `mr`) and one {what} column (e.g. `{'ref' if what == 'reference' else 'output'}`)"
        )
    bad_rows = [i for i, row in enumerate(rows, start=1) if len(row) != len(header)]
    if bad_rows:
        raise E2EEvalError(
            f"{path}: rows {bad_rows[:5]} (counting data rows from 1) have a number of fields other than "
            f"{len(header)}; quote fields that contain the delimiter"
        )
    return [row[mr_col] for row in rows], [row[value_col] for row in rows]


def _read_reference_table(path: Path, pred_mrs: list[str] | None) -> list[list[str]]:
    mrs, refs = _read_table(path, _HEADER_REF, "reference")
    by_mr: dict[str, list[str]] = {}
    for mr, ref in zip(mrs, refs, strict=True):
        by_mr.setdefault(mr, []).append(ref)
    if pred_mrs is None or not any(pred_mrs):
        return list(by_mr.values())  # MRs in order of first appearance
    missing = [mr for mr in pred_mrs if mr not in by_mr]
    if missing:
        raise E2EEvalError(f"{path} has no reference for the predicted MR {missing[0]!r}; check the MR column")
    return [by_mr[mr] for mr in pred_mrs]
