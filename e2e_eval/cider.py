"""CIDEr-D as pycocoevalcap's `Cider` computes it, with the reference side computed once.

pycocoevalcap rebuilds the references' n-gram counts, document frequencies and tf-idf vectors for
every system it scores; they depend on the references only, so `CiderD(references)` builds them
once and `score(hypotheses)` does the hypothesis side. Every operation is the library's, in its
order and in double precision (Python floats where it adds, multiplies and divides NumPy
scalars: the same IEEE arithmetic; its logarithms, powers, roots and means stay NumPy's), so the scores are equal to the last bit
(tests/e2e_eval compare with `Cider().compute_score` exactly).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pycocoevalcap.cider.cider_scorer import precook

# CIDEr-D as the COCO code and the E2E scorer use it: 1- to 4-grams, Gaussian length penalty σ = 6.
N = 4
SIGMA = 6.0
# A term frequency-inverse document frequency vector per n-gram order, their norms, and the
# "length" the library compares (its count of bigrams).
_Vector = tuple[list[dict[tuple[str, ...], float]], list[float], int]


class CiderD:
    """The reference side of CIDEr-D for one reference set; `score` gives the corpus score."""

    def __init__(self, references: Sequence[Sequence[str]]) -> None:
        cooked = [[precook(ref, N) for ref in refs] for refs in references]
        document_frequency: dict[tuple[str, ...], float] = {}
        for refs in cooked:
            for ngram in {ngram for ref in refs for ngram in ref}:
                document_frequency[ngram] = document_frequency.get(ngram, 0.0) + 1
        self._log_ref_count = np.log(float(len(cooked)))
        self._log_df = {ngram: np.log(max(1.0, df)) for ngram, df in document_frequency.items()}
        self._unseen_log_df = np.log(1.0)  # an n-gram no reference has: the library's max(1, 0)
        self._references = [[self._vector(ref) for ref in refs] for refs in cooked]

    def score(self, hypotheses: Sequence[str]) -> float:
        """Corpus CIDEr-D of `hypotheses[i]` against the i-th reference group."""
        if len(hypotheses) != len(self._references):
            raise ValueError(f"{len(hypotheses)} hypotheses for {len(self._references)} reference groups")
        scores = []
        for hypothesis, refs in zip(hypotheses, self._references, strict=True):
            vector = self._vector(precook(hypothesis, N))
            total = np.array([0.0 for _ in range(N)])
            for ref in refs:
                total += self._similarity(vector, ref)
            segment = np.mean(total)
            segment /= len(refs)
            segment *= 10.0
            scores.append(segment)
        return float(np.mean(np.array(scores)))

    def _vector(self, counts: dict[tuple[str, ...], int]) -> _Vector:
        vector: list[dict[tuple[str, ...], float]] = [{} for _ in range(N)]
        norm = [0.0 for _ in range(N)]
        length = 0
        for ngram, term_frequency in counts.items():
            order = len(ngram) - 1
            weight = float(term_frequency) * float(self._log_ref_count - self._log_df.get(ngram, self._unseen_log_df))
            vector[order][ngram] = weight
            norm[order] += pow(np.float64(weight), 2)  # NumPy's power, as the library squares
            if order == 1:
                length += term_frequency
        return vector, [float(np.sqrt(n)) for n in norm], length

    @staticmethod
    def _similarity(hypothesis: _Vector, reference: _Vector) -> np.ndarray:
        (vec_hyp, norm_hyp, length_hyp), (vec_ref, norm_ref, length_ref) = hypothesis, reference
        delta = float(length_hyp - length_ref)
        penalty = np.e ** (-(delta**2) / (2 * SIGMA**2))
        value = [0.0 for _ in range(N)]
        for order in range(N):
            ref_weights = vec_ref[order]
            for ngram, weight in vec_hyp[order].items():
                ref_weight = ref_weights.get(ngram, 0.0)
                value[order] += min(weight, ref_weight) * ref_weight
            if norm_hyp[order] != 0 and norm_ref[order] != 0:
                value[order] /= norm_hyp[order] * norm_ref[order]
            value[order] *= penalty
        return np.array(value)
