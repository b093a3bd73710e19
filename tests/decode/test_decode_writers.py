"""Prediction and reference files read back the way the official E2E scorer reads them."""

from __future__ import annotations

import pytest

from solo.data import MRGroup
from solo.decode import write_predictions, write_references
from solo.errors import SoloError


def read_like_e2e_metrics(path, multi_ref: bool):
    """The reading logic of e2e-metrics' measure_scores.read_lines (plain-text files)."""
    blocks: list = [[]] if multi_ref else []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if multi_ref and not line:
                blocks.append([])
            elif multi_ref:
                blocks[-1].append(line)
            else:
                blocks.append(line)
    if multi_ref and not blocks[-1]:
        del blocks[-1]
    return blocks


def test_predictions_one_line_per_mr(tmp_path):
    texts = ["The Eagle is a pub.", "", "Two\nlines  here ", "Über café"]
    path = write_predictions(tmp_path / "predictions.txt", texts)
    assert read_like_e2e_metrics(path, multi_ref=False) == [
        "The Eagle is a pub.", "", "Two lines  here", "Über café"]
    assert path.read_text(encoding="utf-8").count("\n") == len(texts)


def test_references_blank_line_separated_blocks(tmp_path):
    groups = [MRGroup(mr="a", refs=("One.", "Two\r\nparts.")), MRGroup(mr="b", refs=("Three.",)),
              ["Four.", "Five."]]
    path = write_references(tmp_path / "references.txt", groups)
    assert read_like_e2e_metrics(path, multi_ref=True) == [
        ["One.", "Two parts."], ["Three."], ["Four.", "Five."]]
    assert path.read_text(encoding="utf-8") == "One.\nTwo parts.\n\nThree.\n\nFour.\nFive.\n"


def test_never_overwrites(tmp_path):
    path = write_predictions(tmp_path / "predictions.txt", ["first"])
    with pytest.raises(SoloError, match="already exists"):
        write_predictions(path, ["second"])
    with pytest.raises(SoloError, match="already exists"):
        write_references(path, [["second"]])
    assert path.read_text(encoding="utf-8") == "first\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["predictions.txt"]  # no temp files left


@pytest.mark.parametrize("refs", [(), ("ok", "  ")])
def test_empty_reference_block_or_line_is_an_error(tmp_path, refs):
    with pytest.raises(SoloError, match="group 1"):
        write_references(tmp_path / "references.txt", [["fine"], refs])
    assert not (tmp_path / "references.txt").exists()
