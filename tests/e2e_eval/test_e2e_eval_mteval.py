"""BLEU/NIST: mteval-v13a's tokenisation and scoring rules, the official scorer's Python port
(-p), and both variants' figures on the test set."""

from __future__ import annotations

import math

import pytest

from e2e_eval.mteval import (
    _closest_ref_length,
    _information_weights,
    _nist_length_penalty,
    bleu_nist,
    mteval_tokenize,
    pymteval_tokenize,
)
from e2e_eval.readers import load_inputs
from tests.e2e_eval.e2e_eval_figures import EXAMPLE_ODD_PREDICTION, OFFICIAL, PYMTEVAL


def test_tokenizer_splits_punctuation_but_keeps_numbers_and_non_ascii_together():
    assert mteval_tokenize("The Café costs £20-25, in the centre.") == [
        "the", "café", "costs", "£20", "-", "25", ",", "in", "the", "centre", ".",
    ]
    assert mteval_tokenize("3.5 stars, x.y 1,000") == ["3.5", "stars", ",", "x", ".", "y", "1,000"]
    assert mteval_tokenize("it's kid-friendly") == ["it's", "kid-friendly"]


def test_tokenizer_lowercases_ascii_only():
    assert mteval_tokenize("ÉCOLE Über ABC") == ["École", "Über", "abc"]


def test_tokenizer_decodes_sgml_entities_and_drops_skipped_tags():
    assert mteval_tokenize("A&amp;B &quot;x&quot; <skipped>y") == ["a", "&", "b", '"', "x", '"', "y"]
    # only one level of entities is decoded, as in the Perl script
    assert mteval_tokenize("&amp;quot;") == ["&", "quot", ";"]


def test_tokenizer_uses_perls_whitespace_not_pythons():
    assert mteval_tokenize("a\u00a0b\u2028c") == ["a", "b", "c"]  # Perl \s matches these
    assert mteval_tokenize("a\x1cb") == ["a\x1cb"]  # ...but not the ASCII separators
    assert mteval_tokenize("") == [] and mteval_tokenize(" \t ") == []


def test_closest_reference_length_prefers_shorter_on_ties_and_skips_empty_references():
    assert _closest_ref_length(7, [11, 8, 6, 7]) == 7
    assert _closest_ref_length(7, [11, 8, 6]) == 6
    assert _closest_ref_length(3, [9, 0, 0]) == 9  # empty (padding) references never count
    assert _closest_ref_length(3, [0, 9]) == 0  # ...except the first one, which seeds the search


def test_information_weight_of_a_bigram_after_the_word_0_uses_the_total_word_count():
    counts = {("0",): 2, ("0", "x"): 1, ("a",): 4, ("a", "x"): 1, ("x",): 2}
    info = _information_weights(counts, total_ref_words=8)
    assert info[("a", "x")] == pytest.approx(math.log2(4 / 1))
    assert info[("0", "x")] == pytest.approx(math.log2(8 / 1))  # Perl treats the prefix "0" as false
    assert info[("a",)] == pytest.approx(math.log2(8 / 4))


def test_nist_length_penalty_is_half_at_two_thirds_of_the_reference_length():
    assert _nist_length_penalty(2 / 3) == pytest.approx(0.5)
    assert _nist_length_penalty(1.0) == 1.0 and _nist_length_penalty(0.0) == 0.0


def test_nist_length_penalty_uses_the_mean_length_of_non_empty_references():
    # 4 references of 4 words over 2 MRs: 2 references per MR on average, so the expected output
    # length is 16 / 2 = 8 words and 2 + 2 words give ratio 0.5. Dividing by the number of padded
    # reference sets (3) instead would expect 16/3 words and penalise less.
    refs = [["a b c d"], ["a b c d", "e f g h", "i j k l"]]
    _, nist = bleu_nist(["a b", "a b"], refs)
    # matched unigrams a, b: info = log2(16 words / 2 occurrences) each; bigram "a b": log2(2/2) = 0
    unigram_term = 4 * math.log2(16 / 2) / 4
    assert nist == pytest.approx(unigram_term * _nist_length_penalty(0.5), rel=1e-12)


def test_bleu_smooths_orders_without_matches_and_uses_the_closest_reference_length():
    # hypothesis "a b x y": 2/4 unigrams, 1/3 bigrams, no trigram or 4-gram match
    bleu, _ = bleu_nist(["a b x y"], [["a b c d e f", "a b c d"]])
    expected = math.exp((math.log(2 / 4) + math.log(1 / 3) + math.log(1 / (2 * 2)) + math.log(1 / (4 * 1))) / 4)
    assert bleu == pytest.approx(expected, rel=1e-12)  # closest ref has 4 words: no brevity penalty
    short, _ = bleu_nist(["a b"], [["a b c d"]])
    assert short == pytest.approx(math.exp(1 - 4 / 2), rel=1e-12)  # precisions 1; order 3, 4 empty


def test_empty_prediction_adds_the_closest_reference_length_but_no_ngrams():
    bleu_with_empty, _ = bleu_nist(["a b c d", ""], [["a b c d"], ["e f", "e f g h"]])
    assert bleu_with_empty == pytest.approx(math.exp(1 - (4 + 2) / 4), rel=1e-12)


@pytest.mark.parametrize("system", ["tgen-std", "tgen-minus"])
def test_bleu_and_nist_match_the_official_scorer_on_the_test_set(system, system_inputs):
    inputs = system_inputs[system]
    bleu, nist = bleu_nist(inputs.predictions, inputs.references)
    assert bleu == pytest.approx(OFFICIAL[system]["BLEU"], abs=1e-9)
    assert nist == pytest.approx(OFFICIAL[system]["NIST"], abs=1e-9)


@pytest.mark.parametrize("case", sorted(PYMTEVAL))
def test_python_variant_matches_the_official_scorers_python_port(case, shared_data):
    if case.startswith("example"):
        folder = shared_data / "e2e-metrics-example"
        inputs = load_inputs(folder / "devel-conc.txt", folder / "baseline-output.txt")
    else:
        inputs = load_inputs(shared_data / "e2e" / "testset_w_refs.csv",
                             shared_data / "system-outputs" / f"{case}.run0.txt")
    predictions = list(inputs.predictions)
    if case == "example-odd":
        predictions[3], predictions[5] = "", EXAMPLE_ODD_PREDICTION
    bleu, nist = bleu_nist(predictions, inputs.references, "python")
    assert bleu == pytest.approx(PYMTEVAL[case]["BLEU"], abs=1e-9)
    assert nist == pytest.approx(PYMTEVAL[case]["NIST"], abs=1e-9)


def test_the_variants_differ_where_the_official_ones_do(system_inputs):
    # TGen-minus: NIST 7.774 (Python) vs 7.962 (Perl), as the official scorer prints them.
    inputs = system_inputs["tgen-minus"]
    perl, python = (bleu_nist(inputs.predictions, inputs.references, v) for v in ("perl", "python"))
    assert perl[0] == pytest.approx(python[0], abs=1e-12)
    assert round(perl[1], 3) == 7.962 and round(python[1], 3) == 7.774


def test_python_tokenizer_lowercases_unicode_and_keeps_an_empty_segment_as_one_word():
    assert pymteval_tokenize("ÉCOLE Über, 3.5") == ["école", "über", ",", "3.5"]
    assert pymteval_tokenize("") == [""] and pymteval_tokenize(" \t ") == [""]
    assert pymteval_tokenize("a\x1cb") == ["a", "b"]  # Python's whitespace, not Perl's


def test_unknown_variant_is_an_e2e_eval_error():
    from e2e_eval import E2EEvalError

    with pytest.raises(E2EEvalError, match="mteval variant 'java' must be one of perl, python"):
        bleu_nist(["a"], [["a"]], "java")


def test_python_variant_scores_one_word_predictions_where_the_port_would_stop():
    # Every prediction is one word: no bigrams at all (the port divides by zero); NIST is the
    # unigram term alone.
    bleu, nist = bleu_nist(["a", "b"], [["a b"], ["c"]], "python")
    unigram = math.log2(3 / 1) / 2  # "a" matched: 3 reference words, 1 occurrence; 2 predicted
    assert nist == pytest.approx(unigram * _nist_length_penalty(2 / (2 / 1 + 1 / 1)), rel=1e-12)
    # unsmoothed: the empty orders count 1e-15 hits over max(0 n-grams, 1e-9)
    expected = math.exp(1 - 3 / 2) * math.exp((math.log(1 / 2) + 3 * math.log(1e-15 / 1e-9)) / 4)
    assert bleu == pytest.approx(expected, rel=1e-12)
