"""Both E2E file formats: counts on the shared data and one test per bad-input case."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from solo.data import E2EPair, group_by_mr, read_lora_txt, read_official_csv
from solo.errors import SoloError

# --- shared data: the counts every later stage relies on ------------------------------------


def test_official_dev_and_test_counts(shared_data: Path):
    dev = read_official_csv(shared_data / "e2e" / "devset.csv")
    test = read_official_csv(shared_data / "e2e" / "testset_w_refs.csv")
    assert (len(dev), len(group_by_mr(dev))) == (4672, 547)
    assert (len(test), len(group_by_mr(test))) == (4693, 630)
    assert sum(len(g.refs) for g in group_by_mr(test)) == 4693


def test_official_test_groups_follow_testset_csv_order(shared_data: Path):
    # testset.csv lists each test MR once (column "MR"); grouping must reproduce its order.
    lines = (shared_data / "e2e" / "testset.csv").read_text(encoding="utf-8").splitlines()[1:]
    mrs = [line.strip().strip('"') for line in lines if line.strip()]
    groups = group_by_mr(read_official_csv(shared_data / "e2e" / "testset_w_refs.csv"))
    assert len(mrs) == 630
    assert [g.mr for g in groups] == mrs


def test_lora_counts(shared_data: Path):
    valid = read_lora_txt(shared_data / "lora-format" / "valid.txt")
    test = read_lora_txt(shared_data / "lora-format" / "test.txt")
    assert (len(valid), len(group_by_mr(valid))) == (4672, 547)
    assert (len(test), len(group_by_mr(test))) == (4693, 630)


def _squash_official(mr: str) -> str:
    # Official `eatType[pub], priceRange[£20-25]` vs LoRA `Type : pub | price : £ 20 - 25`:
    # compare slot values only, with all spaces removed (LoRA pre-tokenised the values).
    return "|".join(re.sub(r"\s", "", value) for value in re.findall(r"\[([^\]]*)\]", mr))


def _squash_lora(mr: str) -> str:
    return "|".join(re.sub(r"\s", "", slot.split(" : ", 1)[1]) for slot in mr.split(" | "))


@pytest.mark.parametrize("official, lora", [("devset.csv", "valid.txt"), ("testset_w_refs.csv", "test.txt")])
def test_lora_mrs_group_in_official_order(shared_data: Path, official: str, lora: str):
    official_groups = group_by_mr(read_official_csv(shared_data / "e2e" / official))
    lora_groups = group_by_mr(read_lora_txt(shared_data / "lora-format" / lora))
    assert [_squash_lora(g.mr) for g in lora_groups] == [_squash_official(g.mr) for g in official_groups]
    assert [len(g.refs) for g in lora_groups] == [len(g.refs) for g in official_groups]


def test_lora_reader_strips_trailing_space_and_keeps_pretokenised_text(shared_data: Path):
    first = read_lora_txt(shared_data / "lora-format" / "test.txt")[0]
    raw = (shared_data / "lora-format" / "test.txt").read_text(encoding="utf-8").split("\n")[0]
    assert raw.endswith(" ")  # LoRA's lines end with a space; the reader must not keep it
    assert first == E2EPair(mr=raw.split("||")[0], ref=raw.split("||")[1].strip())


def test_group_by_mr_keeps_first_appearance_and_ref_order():
    pairs = [E2EPair("b", "1"), E2EPair("a", "2"), E2EPair("b", "3")]
    groups = group_by_mr(pairs)
    assert [(g.mr, g.refs) for g in groups] == [("b", ("1", "3")), ("a", ("2",))]


# --- well-formed edge cases ------------------------------------------------------------------


def test_csv_quoted_comma_newline_bom_and_header_case(tmp_path: Path):
    path = tmp_path / "x.csv"
    path.write_bytes('\ufeffMR , Ref\n"name[A], food[B]","Line one,\nline two"\n\nm2,r2\n'.encode())
    assert read_official_csv(path) == [
        E2EPair("name[A], food[B]", "Line one,\nline two"), E2EPair("m2", "r2")
    ]


# --- bad input: one SoloError naming file and line ---------------------------------------------


def _error(reader, path: Path) -> str:
    with pytest.raises(SoloError) as info:
        reader(path)
    message = str(info.value)
    assert "\n" not in message
    return message


BAD_CSV = [
    ("meaning,text\na,b\n", 1, "missing column(s) mr, ref"),
    ("mr,text\na,b\n", 1, "missing column(s) ref"),
    ("mr,ref\na,b\n ,c\n", 3, "empty MR"),
    ("mr,ref\na,b\nc,\n", 3, "empty reference"),
    ("mr,ref\na,b\nc,d,e\n", 3, "expected 2 fields"),
    ("mr,ref\na,b\nc\n", 3, "expected 2 fields"),
    ('mr,ref\na,b\n"x\ny",\n', 3, "empty reference"),  # a record spanning lines 3-4
    ('mr,ref\na,b\n"c"x,d\n', 3, "malformed CSV"),
]
BAD_LORA_TXT = [
    ("a||b\nno separator here\n", 2, "found no '||'"),
    ("a||b\nx||y||z\n", 2, "found 2 '||'"),
    ("a||b\n  ||ref\n", 2, "empty MR"),
    ("a||b\n\nmr|| \n", 3, "empty reference"),
]


@pytest.mark.parametrize(
    "reader, name, content, line, words",
    [(read_official_csv, "bad.csv", *case) for case in BAD_CSV]
    + [(read_lora_txt, "bad.txt", *case) for case in BAD_LORA_TXT],
)
def test_bad_file_names_file_line_and_problem(tmp_path: Path, reader, name: str, content: str,
                                              line: int, words: str):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    message = _error(reader, path)
    assert message.startswith(f"{path}:{line}: ")
    assert words in message


@pytest.mark.parametrize("reader, header", [(read_official_csv, b"mr,ref\n"), (read_lora_txt, b"")])
def test_non_utf8_names_line(tmp_path: Path, reader, header: bytes):
    path = tmp_path / "latin1.data"
    row = b"a,b\n" if header else b"a||b\n"
    path.write_bytes(header + row + "caf\u00e9".encode("latin-1") + (b",r\n" if header else b"||r\n"))
    message = _error(reader, path)
    line = 3 if header else 2
    assert message.startswith(f"{path}:{line}: byte 0xe9 is not valid UTF-8")


@pytest.mark.parametrize("reader", [read_official_csv, read_lora_txt])
def test_missing_and_empty_files(tmp_path: Path, reader):
    assert "file not found" in _error(reader, tmp_path / "absent.csv")
    empty = tmp_path / "empty"
    empty.write_text("mr,ref\n" if reader is read_official_csv else "\n", encoding="utf-8")
    assert _error(reader, empty).startswith(f"{empty}: ")
