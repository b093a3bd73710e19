"""The paper's printed tables, as the shared notes hold them: where `tables.csv` is, its rows, and
how its parameter counts are printed ('0.12M', '78k'). Read by the parameter audit
(solo.methods.audit) and the results tables (solo.experiments)."""

from __future__ import annotations

import csv
import re
from pathlib import Path

from solo.errors import SoloError
from solo.paths import shared_data_dir

_PRINTED_COUNT = re.compile(r"\s*([0-9]*\.?[0-9]+)\s*([kKmM]?)\s*")


def tables_csv() -> Path:
    """`paper/tables.csv` beside the shared data folder (or inside it); SoloError if neither."""
    beside = shared_data_dir().parent / "paper" / "tables.csv"
    for candidate in (beside, shared_data_dir() / "paper" / "tables.csv"):
        if candidate.is_file():
            return candidate
    raise SoloError(f"paper tables not found next to the shared data ({beside}); set SOLO_SHARED_DATA "
                    "to the shared/data folder (paper/ sits beside it)")


def read_tables_csv(path: Path | None = None) -> tuple[Path, list[dict[str, str]]]:
    """The file read (default `tables_csv()`) and its rows as dicts, in file order."""
    path = path or tables_csv()
    if not path.is_file():
        raise SoloError(f"{path} not found; set SOLO_SHARED_DATA to the shared/data folder (paper/ sits beside it)")
    with open(path, newline="", encoding="utf-8") as handle:
        return path, list(csv.DictReader(handle))


def parse_printed_count(text: str) -> float:
    """'354.92M' -> 354920000, '0.12M' -> 120000, '78k' -> 78000 (the paper's printed counts)."""
    match = _PRINTED_COUNT.fullmatch(text)
    if not match:
        raise SoloError(f"printed parameter count {text!r} in tables.csv is not like '0.12M' or '78k'")
    return float(match.group(1)) * {"": 1.0, "k": 1e3, "m": 1e6}[match.group(2).lower()]
