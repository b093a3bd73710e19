"""e2e_eval.cider: CIDEr-D with the reference side built once, against pycocoevalcap's Cider."""

from __future__ import annotations

import pytest
from pycocoevalcap.cider.cider import Cider

from e2e_eval.cider import CiderD

REFERENCES = [
    ["the eagle is a cheap pub near the river", "a pub called the eagle , cheap , by the river"],
    ["green man serves french food", "the green man is a french restaurant", "french food at the green man"],
    ["zizzi is family friendly"],
]


def _library(references, hypotheses) -> float:
    gts = {i: list(refs) for i, refs in enumerate(references)}
    res = {i: [hyp] for i, hyp in enumerate(hypotheses)}
    return float(Cider().compute_score(gts, res)[0])


@pytest.mark.parametrize(
    "hypotheses",
    [
        ["the eagle is a cheap pub by the river", "green man is a french restaurant", "zizzi is family friendly"],
        ["", "french", "a b c d e f g h i j k l m n o p"],  # empty, one word, no n-gram in any reference
        ["the the the the", "the green man the green man", "zizzi"],
    ],
)
def test_equals_pycocoevalcap_to_the_last_bit(hypotheses):
    assert CiderD(REFERENCES).score(hypotheses) == _library(REFERENCES, hypotheses)


def test_one_reference_side_scores_many_systems_as_fresh_ones():
    cider = CiderD(REFERENCES)
    systems = [["pub", "french food", "family"], ["the eagle", "green man", "zizzi is friendly"]]
    assert [cider.score(s) for s in systems] == [_library(REFERENCES, s) for s in systems]


def test_refuses_a_hypothesis_count_that_does_not_match():
    with pytest.raises(ValueError, match="2 hypotheses for 3 reference groups"):
        CiderD(REFERENCES).score(["a", "b"])
