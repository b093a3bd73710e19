"""The official E2E NLG Challenge metrics (BLEU, NIST, METEOR, ROUGE_L, CIDEr), in-process.

`score(predictions, references)` reproduces tuetschek/e2e-metrics' measure_scores.py; see
README.md in this folder for every normalisation step.
"""

from e2e_eval.errors import E2EEvalError
from e2e_eval.scoring import METRICS, Scorer, score, shared_scorer

__all__ = ["METRICS", "E2EEvalError", "Scorer", "score", "shared_scorer"]
