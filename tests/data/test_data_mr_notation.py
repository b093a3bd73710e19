"""MR notation: the E2E release's `attr[value], ...` and microsoft/LoRA's `attr : value | ...`."""

from __future__ import annotations

import csv

import pytest

from solo.data.mr_notation import in_notation, notation
from solo.errors import SoloError


def _unique(values):
    return list(dict.fromkeys(values))


@pytest.mark.parametrize(("csv_name", "lora_name"), [("testset.csv", "test.txt"), ("devset.csv", "valid.txt")])
def test_every_release_mr_is_the_lora_files_mr_and_back(shared_data, csv_name, lora_name):
    with open(shared_data / "e2e" / csv_name, newline="", encoding="utf-8") as handle:
        official = _unique((row.get("MR") or row["mr"]).strip() for row in csv.DictReader(handle))
    lora_lines = (shared_data / "lora-format" / lora_name).read_text(encoding="utf-8").splitlines()
    lora = _unique(line.split("||")[0].strip() for line in lora_lines if line.strip())
    assert len(official) == len(lora) > 500
    assert [in_notation(mr, "lora") for mr in official] == lora
    assert [in_notation(mr, "official") for mr in lora] == official
    assert all(in_notation(mr, "official") == mr for mr in official)  # already in the target's notation


def test_prices_are_tokenised_as_the_lora_files_write_them():
    assert in_notation("name[Zizzi], priceRange[£20-25], eatType[pub]", "lora") == \
        "name : Zizzi | price : £ 20 - 25 | Type : pub"
    assert in_notation("name : Zizzi | price : less than £ 20", "official") == "name[Zizzi], priceRange[less than £20]"


def test_spacing_is_free_and_the_target_notation_is_normalised():
    """`name: X | Type: pub` was taken for free text, `name : X|Type : pub` for one attribute."""
    for typed in ("name: The Eagle | Type: pub", "name : The Eagle|Type : pub", "name :The Eagle | Type : pub |"):
        assert in_notation(typed, "official") == "name[The Eagle], eatType[pub]"
        assert in_notation(typed, "lora") == "name : The Eagle | Type : pub"
    # Already in the target's notation, still written as the run's data are: prices tokenised.
    assert in_notation("name : X | price : £20-25", "lora") == "name : X | price : £ 20 - 25"
    assert in_notation("name[X],priceRange[£ 20 - 25]", "official") == "name[X], priceRange[£20-25]"
    # Within one notation any attribute is kept (a run trained on its own MR||ref files).
    assert in_notation("dish: soup | spice : hot", "lora") == "dish : soup | spice : hot"


def test_free_text_is_passed_on_and_bad_mrs_are_named():
    assert notation("Tell me about The Eagle") is None
    assert in_notation("  Tell me about The Eagle ", "lora") == "Tell me about The Eagle"
    for text in ("Tell me: what is The Eagle?", "Menu: soup"):  # a colon makes no MR
        assert in_notation(text, "official") == in_notation(text, "lora") == text
    with pytest.raises(SoloError, match=r"is not `attribute : value`.*or attribute\[value\], \.\.\. throughout"):
        in_notation("name: X, eatType[pub]", "official")  # the two notations mixed
    with pytest.raises(SoloError, match=r"'foood' is not an E2E attribute; known: name, eatType"):
        in_notation("name[The Eagle], foood[French]", "lora")
    with pytest.raises(SoloError, match=r"cannot read it from ' food French' on"):
        in_notation("name[The Eagle], food French", "lora")
    with pytest.raises(SoloError, match=r"'Typ' is not an E2E attribute"):
        in_notation("name : The Eagle | Typ : pub", "official")
