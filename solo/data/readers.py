"""Readers for the two E2E file formats: the official release CSVs and microsoft/LoRA's `MR||ref` text.

Both are read with the standard library (not `datasets`' CSV builder) because every rejection must
name the file and the line, which pandas-backed loaders do not report, and because these files are
small enough (the training set is 42k rows) that an Arrow cache brings nothing. Nothing is written.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from solo.data.records import E2EPair
from solo.errors import SoloError

LORA_SEPARATOR = "||"


def read_official_csv(path: str | Path) -> list[E2EPair]:
    """Read an E2E release CSV (`trainset.csv`, `devset.csv`, `testset_w_refs.csv`): columns mr, ref.

    Column names are matched case- and space-insensitively; any other columns are ignored.
    Raises SoloError naming `file:line` for a missing column, a row with the wrong number of
    fields, an empty MR or reference, broken quoting, or bytes that are not UTF-8.
    """
    path = Path(path)
    reader = csv.reader(io.StringIO(_read_utf8(path), newline=""), strict=True)
    header = _next_row(reader, path, line=1)
    if header is None:
        raise SoloError(f"{path}: the file is empty; an E2E CSV needs a header row with columns mr,ref")
    columns = [name.strip().lower() for name in header]
    missing = [name for name in ("mr", "ref") if name not in columns]
    if missing:
        raise SoloError(
            f"{path}:1: missing column(s) {', '.join(missing)} (header is {','.join(header)}); "
            "an E2E CSV needs columns mr,ref"
        )
    mr_at, ref_at = columns.index("mr"), columns.index("ref")
    pairs: list[E2EPair] = []
    while True:
        # A quoted field may span lines, so a record starts one line after the previous one ended.
        line = reader.line_num + 1
        row = _next_row(reader, path, line)
        if row is None:
            break
        if not row:  # a blank line carries no record
            continue
        if len(row) != len(header):
            raise SoloError(
                f"{path}:{line}: expected {len(header)} fields ({','.join(header)}), found {len(row)}; "
                "quote any field that contains a comma"
            )
        pairs.append(_pair(row[mr_at], row[ref_at], path, line))
    if not pairs:
        raise SoloError(f"{path}: no data rows after the header")
    return pairs


def read_lora_txt(path: str | Path) -> list[E2EPair]:
    """Read microsoft/LoRA's E2E text format: one `MR||reference` line per pair.

    Surrounding whitespace is stripped (LoRA's references end with a space); blank lines are
    skipped. Raises SoloError naming `file:line` for a line without exactly one `||`, an empty MR
    or reference, or bytes that are not UTF-8.
    """
    path = Path(path)
    pairs: list[E2EPair] = []
    # split("\n") rather than splitlines(): the latter also breaks on form feeds and U+2028,
    # which would make the reported line numbers disagree with an editor's.
    for line_number, line in enumerate(_read_utf8(path).split("\n"), start=1):
        if not line.strip():
            continue
        parts = line.split(LORA_SEPARATOR)
        if len(parts) != 2:
            found = "no" if len(parts) == 1 else f"{len(parts) - 1}"
            raise SoloError(
                f"{path}:{line_number}: found {found} '{LORA_SEPARATOR}' separator(s); "
                f"each line must be MR{LORA_SEPARATOR}reference"
            )
        pairs.append(_pair(parts[0], parts[1], path, line_number))
    if not pairs:
        raise SoloError(f"{path}: the file has no MR{LORA_SEPARATOR}reference lines")
    return pairs


def _read_utf8(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SoloError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise SoloError(f"{path}: is a folder, expected an E2E data file") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise SoloError(
            f"{path}:{line}: byte 0x{data[err.start]:02x} is not valid UTF-8; re-save the file as UTF-8"
        ) from None
    return text.removeprefix("\ufeff")  # spreadsheet exports often start with a byte-order mark


def _next_row(reader, path: Path, line: int) -> list[str] | None:
    try:
        return next(reader)
    except StopIteration:
        return None
    except csv.Error as err:
        raise SoloError(f"{path}:{line}: malformed CSV ({err}); check the quoting of this row") from None


def _pair(mr: str, ref: str, path: Path, line: int) -> E2EPair:
    mr, ref = mr.strip(), ref.strip()
    if not mr:
        raise SoloError(f"{path}:{line}: empty MR; every row needs a meaning representation")
    if not ref:
        raise SoloError(f"{path}:{line}: empty reference; every row needs a reference text")
    return E2EPair(mr=mr, ref=ref)
