"""Input files: the official scorer's formats, alignment of predictions to MRs, and bad input."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from e2e_eval import E2EEvalError
from e2e_eval.readers import _read_reference_table, load_inputs


def _write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode("utf-8"))
    return path


def test_example_text_refs_are_blank_line_separated_blocks(shared_data):
    folder = shared_data / "e2e-metrics-example"
    inputs = load_inputs(folder / "devel-conc.txt", folder / "baseline-output.txt")
    blocks = [b.splitlines() for b in (folder / "devel-conc.txt").read_text("utf-8").strip().split("\n\n")]
    assert inputs.references == blocks
    assert inputs.predictions == (folder / "baseline-output.txt").read_text("utf-8").splitlines()
    assert len(inputs.predictions) == len(inputs.references) == 10


def test_csv_refs_are_grouped_by_mr_in_order_of_first_appearance(testset_refs):
    with open(testset_refs, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    mrs = list(dict.fromkeys(row["mr"] for row in rows))
    groups = [[row["ref"] for row in rows if row["mr"] == mr] for mr in mrs]

    assert _read_reference_table(testset_refs, None) == groups
    assert len(groups) == 630 and sum(map(len, groups)) == 4693


def test_prediction_csv_with_mr_column_reorders_references(tmp_path):
    refs = _write(tmp_path / "refs.csv", 'mr,ref\nA,"a one"\nB,b one\nA,a two\n')
    preds = _write(tmp_path / "preds.tsv", "MR\toutput\nB\tpred b\nA\tpred a\n")
    inputs = load_inputs(refs, preds)
    assert inputs.predictions == ["pred b", "pred a"]
    assert inputs.references == [["b one"], ["a one", "a two"]]


def test_prediction_csv_naming_an_unknown_mr_is_rejected(tmp_path):
    refs = _write(tmp_path / "refs.csv", "mr,ref\nA,a\n")
    preds = _write(tmp_path / "preds.csv", "mr,output\nZ,z\n")
    with pytest.raises(E2EEvalError, match="no reference for the predicted MR 'Z'"):
        load_inputs(refs, preds)


def test_text_refs_without_blank_lines_hold_one_reference_per_mr(tmp_path):
    inputs = load_inputs(_write(tmp_path / "refs.txt", "r1\nr2\n"), _write(tmp_path / "p.txt", "p1\np2\n"))
    assert inputs.references == [["r1"], ["r2"]]


def test_empty_prediction_line_is_kept_as_an_empty_prediction(tmp_path):
    inputs = load_inputs(_write(tmp_path / "refs.txt", "a\n\nb\n\nc\n"), _write(tmp_path / "p.txt", "x\n\nz\n"))
    assert inputs.predictions == ["x", "", "z"]


def test_count_mismatch_names_both_counts(shared_data, testset_refs, tmp_path):
    lines = (shared_data / "system-outputs" / "tgen-std.run0.txt").read_text("utf-8").splitlines()
    short = _write(tmp_path / "short.txt", "\n".join(lines[:-1]) + "\n")
    with pytest.raises(E2EEvalError, match=r"630 MRs .* 629 predictions"):
        load_inputs(testset_refs, short)
    long = _write(tmp_path / "long.txt", "\n".join(lines + ["extra"]) + "\n")
    with pytest.raises(E2EEvalError, match=r"630 MRs .* 631 predictions"):
        load_inputs(testset_refs, long)


def test_missing_file_and_directory_are_named(tmp_path):
    refs = _write(tmp_path / "refs.txt", "a\n")
    with pytest.raises(E2EEvalError, match=r"nope\.txt: no such file"):
        load_inputs(refs, tmp_path / "nope.txt")
    with pytest.raises(E2EEvalError, match="is a directory"):
        load_inputs(tmp_path, refs)


def test_non_utf8_bytes_name_the_file_and_line(tmp_path):
    refs = _write(tmp_path / "refs.txt", "a\n\nb\n")
    preds = tmp_path / "latin1.txt"
    preds.write_bytes("fine\nCaf\xe9 at \xa320\n".encode("latin-1"))
    with pytest.raises(E2EEvalError, match=r"latin1\.txt:2: byte 0xe9 is not valid UTF-8"):
        load_inputs(refs, preds)


def test_pound_and_e_acute_are_read_as_the_official_scorer_reads_them(tmp_path):
    # CSV/TSV files get the official mis-encoding repairs; plain text is taken as it is.
    refs = _write(tmp_path / "refs.csv", "\ufeffmr,ref\nA,costs Â£20 at the CafÃ©\nB,costs Ł5\n")
    preds = _write(tmp_path / "p.txt", "costs Â£20\ncafé £5\n")
    inputs = load_inputs(refs, preds)
    assert inputs.references == [["costs £20 at the Café"], ["costs £5"]]
    assert inputs.predictions == ["costs Â£20", "café £5"]


def test_lines_split_like_the_official_codecs_reader(tmp_path):
    # codecs' readline uses str.splitlines: \u2028 and \x85 end a line too, \r\n is one break.
    inputs = load_inputs(_write(tmp_path / "r.txt", "a\nb\nc\nd\n"), _write(tmp_path / "p.txt", "one\u2028two\r\nthree\x85 four \n"))
    assert inputs.predictions == ["one", "two", "three", "four"]


def test_two_blank_lines_in_reference_blocks_are_rejected(tmp_path):
    refs = _write(tmp_path / "refs.txt", "a\n\n\nb\n")
    with pytest.raises(E2EEvalError, match=r"refs\.txt:3: blank line starts an empty reference block"):
        load_inputs(refs, _write(tmp_path / "p.txt", "x\ny\n"))


@pytest.mark.parametrize("csv, predictions, problem", [
    ("mr,ref,reference\nA,a,b\n", "x\n", r"refs\.csv:1: cannot tell the columns apart"),
    ("mr,ref\nA,a\nB,b,extra\n", "x\ny\n", r"rows \[2\]"),  # wrong number of fields, named
])
def test_unreadable_reference_csv_is_rejected(tmp_path, csv, predictions, problem):
    refs = _write(tmp_path / "refs.csv", csv)
    with pytest.raises(E2EEvalError, match=problem):
        load_inputs(refs, _write(tmp_path / "p.txt", predictions))


def test_headerless_two_column_csv_is_mr_then_text(tmp_path):
    refs = _write(tmp_path / "refs.csv", "A,a1\nA,a2\nB,b1\n")
    inputs = load_inputs(refs, _write(tmp_path / "p.txt", "x\ny\n"))
    assert inputs.references == [["a1", "a2"], ["b1"]]


def test_a_byte_order_mark_is_kept_as_the_official_reader_keeps_it_and_said(tmp_path):
    refs = _write(tmp_path / "refs.txt", "a b\n\nc d\n")
    preds = _write(tmp_path / "preds.txt", "\ufeffa b\nc d\n")
    with pytest.warns(UserWarning, match=r"preds\.txt starts with a UTF-8 byte-order mark"):
        inputs = load_inputs(refs, preds)
    assert inputs.predictions == ["\ufeffa b", "c d"]
    bom_refs = _write(tmp_path / "bom_refs.txt", "\ufeffa b\n\nc d\n")
    with pytest.warns(UserWarning, match=r"bom_refs\.txt starts with a UTF-8 byte-order mark"):
        load_inputs(bom_refs, _write(tmp_path / "p.txt", "a b\nc d\n"))
