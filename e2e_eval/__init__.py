"""The official E2E NLG Challenge metrics (BLEU, NIST, METEOR, ROUGE_L, CIDEr), in-process.

`score(predictions, references)` reproduces tuetschek/e2e-metrics' measure_scores.py; see
README.md in this folder for every normalisation step.

The scorer is imported on first use, so `e2e_eval.errors` (which solo's errors build on) imports
nothing else: the GPU image, which has no pycocoevalcap, can import solo's training modules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from e2e_eval.errors import E2EEvalError

if TYPE_CHECKING:
    from e2e_eval.scoring import METRICS, Scorer, score, shared_scorer

__all__ = ["METRICS", "E2EEvalError", "Scorer", "score", "shared_scorer"]


def __getattr__(name: str) -> Any:
    if name in ("METRICS", "Scorer", "score", "shared_scorer"):
        from e2e_eval import scoring

        return getattr(scoring, name)
    raise AttributeError(f"module 'e2e_eval' has no attribute {name!r}")
