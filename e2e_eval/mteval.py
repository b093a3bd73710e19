"""BLEU and NIST as the official E2E scorer computes them, in either of its two implementations.

variant "perl" (the scorer's default): the scorer writes the references, predictions and dummy
sources into SGML files and runs its copy of NIST mteval-v13a (edited for a varying number of
references per MR) with the defaults: 11b-style tokenisation, ASCII lower-casing, the closest
reference length for BLEU's brevity penalty, smoothed BLEU, and NIST information weights
estimated from the whole reference set. `bleu_nist` reproduces that pipeline, including its
quirks (see README.md).

variant "python" (`measure_scores.py -p`, what microsoft/LoRA's README runs): the scorer's own
port, metrics/pymteval.py. Same tokenisation rules but Python's whitespace and Unicode
lower-casing; an empty segment is one empty token; unsmoothed BLEU (a zero count becomes 1e-15);
order-n lengths len - n + 1 per segment even where negative; NIST's expected length is the sum
of each MR's mean reference length, and its information weights have no Perl-truthiness quirk.
Where the port would divide by zero (an n-gram order absent from every prediction) that order
adds 0 to NIST instead of stopping.
BLEU agrees with Perl's on ordinary outputs; NIST differs where MRs have different numbers of
references (e.g. TGen-minus on the test set: 7.774 vs 7.962).
"""

from __future__ import annotations

import functools
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from e2e_eval.errors import E2EEvalError

# Perl's \s on UTF-8 strings (>= 5.18). Python's \s also matches \x1c-\x1f, which Perl's does not.
_PERL_SPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_SPACE_RUN = re.compile(f"[{_PERL_SPACE}]+")
# mteval's "tokenize punctuation" class: { | } ~ [ \ ] ^ _ ` space ! " # $ % & ( ) * + : ; < = > ? @ /
# (apostrophe, hyphen, period and comma are deliberately absent; the last two get their own rules).
_PUNCTUATION = str.maketrans(
    {c: f" {c} " for c in "{|}~[\\]^_` !\"#$%&()*+:;<=>?@/"}
)
_PERIOD_COMMA_AFTER_NON_DIGIT = re.compile(r"([^0-9])([.,])")
_PERIOD_COMMA_BEFORE_NON_DIGIT = re.compile(r"([.,])([^0-9])")
_DASH_AFTER_DIGIT = re.compile(r"([0-9])(-)")
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")

BLEU_ORDER = 4
NIST_ORDER = 5
MTEVAL_VARIANTS = ("perl", "python")
# pymteval's floors for a zero n-gram count and a zero length, which keep log() defined.
_PY_TINY, _PY_SMALL = 1e-15, 1e-9
_PY_SPACE_RUN = re.compile(r"\s+")


def mteval_tokenize(text: str) -> list[str]:
    """Words of one segment as mteval-v13a sees them after the SGML round trip."""
    # The SGML reader collapses every whitespace run of the document to one space before the
    # segment is cut out, so end-of-line hyphen joining can never fire on E2E data.
    text = _SPACE_RUN.sub(" ", text)
    text = text.replace("<skipped>", "")
    # The scorer writes raw text into SGML without escaping, so these entities in the *input*
    # text are turned into characters; order matters ("&amp;quot;" ends as "&quot;").
    text = text.replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")
    text = f" {text} ".translate(_ASCII_LOWER)  # only A-Z are lower-cased: "É" stays as it is
    text = text.translate(_PUNCTUATION)
    text = _PERIOD_COMMA_AFTER_NON_DIGIT.sub(r"\1 \2 ", text)
    text = _PERIOD_COMMA_BEFORE_NON_DIGIT.sub(r" \1 \2", text)
    text = _DASH_AFTER_DIGIT.sub(r"\1 \2 ", text)
    text = _SPACE_RUN.sub(" ", text).strip(" ")
    return text.split(" ") if text else []


def _ngram_counts(words: Sequence[str], max_order: int) -> Counter:
    counts: Counter = Counter()
    for n in range(1, max_order + 1):
        counts.update(zip(*(words[i:] for i in range(n)), strict=False))
    return counts


def _perl_true(ngram: tuple[str, ...]) -> bool:
    """Perl truth of the space-joined n-gram string: both "" and "0" are false."""
    return bool(ngram) and ngram != ("0",)


def _information_weights(ref_counts: Counter, total_ref_words: int) -> dict[tuple[str, ...], float]:
    """NIST info(w1..wn) = -log2(count(w1..wn) / count(w1..wn-1)) over all references.

    mteval tests the prefix with Perl truthiness, so a bigram whose first word is "0" is divided
    by the total word count instead of count("0"); we keep that quirk to match its numbers.
    """
    info = {}
    for ngram, count in ref_counts.items():
        prefix = ngram[:-1]
        denominator = ref_counts[prefix] if _perl_true(prefix) else total_ref_words
        info[ngram] = -math.log(count / denominator) / math.log(2)
    return info


def _closest_ref_length(hyp_len: int, ref_lens: Sequence[int]) -> int:
    """mteval's 'closest' reference length: ties go to the shorter one.

    References of length 0 are skipped, except the first one, which seeds the comparison.
    """
    candidates = [ref_lens[0]] + [n for n in ref_lens[1:] if n]
    return min(candidates, key=lambda n: (abs(hyp_len - n), n))


def _nist_length_penalty(ratio: float) -> float:
    if ratio >= 1:
        return 1.0
    if ratio <= 0:
        return 0.0
    beta = -math.log(0.5) / math.log(1.5) / math.log(1.5)  # penalty 0.5 at 2/3 of the length
    return math.exp(-beta * math.log(ratio) ** 2)


def bleu_nist(predictions: Sequence[str], references: Sequence[Sequence[str]],
              variant: str = "perl") -> tuple[float, float]:
    """Corpus BLEU (4-gram) and NIST (5-gram) as the official scorer reports them with `variant`
    ("perl": mteval-v13a, its default; "python": its -p option), at full precision."""
    if variant == "python":
        return _python_bleu_nist(predictions, references)
    if variant != "perl":
        raise E2EEvalError(f"mteval variant {variant!r} must be one of {', '.join(MTEVAL_VARIANTS)}")
    side = _reference_side(tuple(tuple(refs) for refs in references))
    max_order = max(BLEU_ORDER, NIST_ORDER)
    matches = [0] * (max_order + 1)
    hyp_ngrams = [0] * (max_order + 1)
    match_info = [0.0] * (max_order + 1)
    ref_length = 0
    for prediction, ref_max, ref_lens in zip(predictions, side.ref_max, side.ref_lens, strict=True):
        hyp = mteval_tokenize(prediction)
        for ngram, count in _ngram_counts(hyp, max_order).items():
            clipped = min(count, ref_max[ngram])
            if clipped:
                matches[len(ngram)] += clipped
                match_info[len(ngram)] += side.info[ngram] * clipped
        for n in range(1, max_order + 1):
            hyp_ngrams[n] += max(0, len(hyp) - n + 1)
        ref_length += _closest_ref_length(len(hyp), ref_lens)

    return (
        _bleu(matches, hyp_ngrams, ref_length),
        _nist(match_info, hyp_ngrams, side.total_ref_words, side.refs_per_segment),
    )


@dataclass(frozen=True)
class _ReferenceSide:
    """What mteval-v13a derives from the references alone: the same for every system scored
    against them, so it is computed once per reference set."""

    ref_max: list[Counter]  # per segment: each n-gram's largest count over its references
    ref_lens: list[list[int]]
    info: dict[tuple[str, ...], float]
    total_ref_words: int
    refs_per_segment: float


@functools.lru_cache(maxsize=4)
def _reference_side(references: tuple[tuple[str, ...], ...]) -> _ReferenceSide:
    ref_words = [[mteval_tokenize(r) for r in refs] for refs in references]
    # The E2E copy of mteval-v13a is edited for a varying number of references per MR: NIST's
    # length penalty compares with the mean length of the non-empty references (a reference that
    # tokenises to nothing counts like the empty padding the scorer writes for short MRs).
    refs_per_segment = sum(1 for refs in ref_words for words in refs if words) / len(ref_words)
    max_order = max(BLEU_ORDER, NIST_ORDER)
    ref_ngram_counts = [[_ngram_counts(words, max_order) for words in refs] for refs in ref_words]
    ref_counts: Counter = Counter()
    for per_ref in ref_ngram_counts:
        for counts in per_ref:
            ref_counts.update(counts)
    total_ref_words = sum(len(words) for refs in ref_words for words in refs)
    if total_ref_words == 0:
        raise E2EEvalError("the references contain no words; check the reference file")
    ref_max = []
    for per_ref in ref_ngram_counts:
        largest: Counter = Counter()
        for counts in per_ref:
            largest |= counts  # element-wise maximum: clipping uses the most generous reference
        ref_max.append(largest)
    return _ReferenceSide(ref_max, [[len(w) for w in refs] for refs in ref_words],
                          _information_weights(ref_counts, total_ref_words), total_ref_words,
                          refs_per_segment)


def _bleu(matches: list[int], hyp_ngrams: list[int], ref_length: int) -> float:
    """mteval's default (smoothed) BLEU; smoothing only bites when a whole order has no match."""
    brevity = math.exp(min(0.0, 1 - ref_length / hyp_ngrams[1])) if hyp_ngrams[1] > 0 else 0.0
    log_sum = 0.0
    smooth = 1
    for n in range(1, BLEU_ORDER + 1):
        if hyp_ngrams[n] == 0:
            continue  # mteval scores an order with no hypothesis n-grams as precision 1
        if matches[n] == 0:
            smooth *= 2
            log_sum += math.log(1 / (smooth * hyp_ngrams[n]))
        else:
            log_sum += math.log(matches[n] / hyp_ngrams[n])
    return math.exp(log_sum / BLEU_ORDER) * brevity


def _nist(
    match_info: list[float], hyp_ngrams: list[int], total_ref_words: int, refs_per_segment: float
) -> float:
    score = sum(match_info[n] / max(hyp_ngrams[n], 1) for n in range(1, NIST_ORDER + 1))
    return score * _nist_length_penalty(hyp_ngrams[1] / (total_ref_words / refs_per_segment))


def pymteval_tokenize(text: str) -> list[str]:
    """Words of one segment as the scorer's Python port (metrics/pymteval.py) sees them."""
    text = text.replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
    text = text.replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")
    text = f" {text} ".translate(_PUNCTUATION)
    text = _PERIOD_COMMA_AFTER_NON_DIGIT.sub(r"\1 \2 ", text)
    text = _PERIOD_COMMA_BEFORE_NON_DIGIT.sub(r" \1 \2", text)
    text = _DASH_AFTER_DIGIT.sub(r"\1 \2 ", text)
    # No "if text" guard: an empty segment is the one empty word, as in the port.
    return [word.lower() for word in _PY_SPACE_RUN.sub(" ", text).strip().split(" ")]


def _python_bleu_nist(predictions: Sequence[str],
                      references: Sequence[Sequence[str]]) -> tuple[float, float]:
    max_order = max(BLEU_ORDER, NIST_ORDER)
    hits = [0] * (max_order + 1)
    lengths = [0] * (max_order + 1)          # sum of len - n + 1, negative terms included
    info_hits: list[list[tuple[tuple[str, ...], int]]] = [[] for _ in range(max_order + 1)]
    ref_counts: Counter = Counter()          # n-gram counts over every reference, () = words
    bleu_ref_length = 0
    expected_length = 0.0                    # NIST: sum over MRs of the mean reference length
    for prediction, refs in zip(predictions, references, strict=True):
        hyp = pymteval_tokenize(prediction)
        ref_words = [pymteval_tokenize(r) for r in refs]
        hyp_counts = _ngram_counts(hyp, max_order)
        ref_max: Counter = Counter()
        for words in ref_words:
            counts = _ngram_counts(words, max_order)
            ref_max |= counts
            ref_counts.update(counts)
        for ngram, count in hyp_counts.items():
            clipped = min(count, ref_max[ngram])
            if clipped:
                hits[len(ngram)] += clipped
                info_hits[len(ngram)].append((ngram, clipped))
        for n in range(1, max_order + 1):
            lengths[n] += len(hyp) - n + 1
        bleu_ref_length += len(min(ref_words, key=lambda w: (abs(len(w) - len(hyp)), len(w))))
        words_in_refs = sum(len(w) for w in ref_words)
        ref_counts[()] += words_in_refs
        expected_length += words_in_refs / len(ref_words)

    brevity = 1.0
    if lengths[1] <= bleu_ref_length:
        brevity = math.exp(1.0 - bleu_ref_length / (lengths[1] if lengths[1] else 1e-5))
    log_precision = sum(math.log(max(hits[n], _PY_TINY) / max(lengths[n], _PY_SMALL))
                        for n in range(1, BLEU_ORDER + 1))
    bleu = brevity * math.exp(log_precision / BLEU_ORDER)

    nist = 0.0
    for n in range(1, NIST_ORDER + 1):
        information = sum(math.log(ref_counts[ngram[:-1]] / ref_counts[ngram], 2) * count
                          for ngram, count in info_hits[n])
        # The port divides by zero here (and stops) when the order has no n-grams in the whole
        # corpus, e.g. every prediction a single word; such an order adds nothing instead.
        nist += information / lengths[n] if lengths[n] else 0.0
    ratio = lengths[1] / expected_length
    return bleu, nist * (1.0 if ratio >= 1 else 0.0 if ratio <= 0 else _nist_length_penalty(ratio))
