"""`score()`: the five official E2E metrics for a list of predictions and their references."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from e2e_eval.errors import E2EEvalError
from e2e_eval.java import Meteor, java_executable, ptb_tokenize
from e2e_eval.mteval import MTEVAL_VARIANTS, bleu_nist

METRICS = ("BLEU", "NIST", "METEOR", "ROUGE_L", "CIDEr")


def score(predictions: Sequence[str], references: Sequence[Sequence[str]],
          mteval: str = "perl") -> dict[str, float]:
    """Score one system: `predictions[i]` is the output for the MR whose references are `references[i]`.

    Returns {"BLEU", "NIST", "METEOR", "ROUGE_L", "CIDEr"} as the official E2E scorer computes
    them (BLEU, METEOR, ROUGE_L and CIDEr as fractions), at full precision; the official script
    prints four decimals. `mteval` picks its BLEU/NIST implementation: "perl" (its default) or
    "python" (its -p option); see e2e_eval.mteval.
    """
    predictions, references = _checked(predictions, references)  # bad arguments fail before Java starts
    check_mteval(mteval)
    with Scorer() as scorer:
        return scorer.score(predictions, references, mteval)


class Scorer:
    """Scores several systems with one METEOR process (its start-up dominates the run time).

    `with Scorer() as s: s.score(p1, refs); s.score(p2, refs)` gives the same numbers as
    calling `score()` twice.
    """

    def __init__(self) -> None:
        java_executable()  # fail before any work when Java is missing
        self._meteor: Meteor | None = None

    def score(self, predictions: Sequence[str], references: Sequence[Sequence[str]],
              mteval: str = "perl") -> dict[str, float]:
        predictions, references = _checked(predictions, references)
        check_mteval(mteval)
        if self._meteor is None:
            self._meteor = Meteor()  # loads its paraphrase table while the work below runs
        # The PTB tokenizer JVM runs while this thread computes BLEU and NIST.
        with ThreadPoolExecutor(max_workers=1) as pool:
            tokenizing = pool.submit(ptb_tokenize, [r for refs in references for r in refs] + predictions)
            bleu, nist = bleu_nist(predictions, references, mteval)
            tokenized = tokenizing.result()
        gts, start = {}, 0
        for i, refs in enumerate(references):
            gts[i] = tokenized[start : start + len(refs)]
            start += len(refs)
        res = {i: [tokenized[start + i]] for i in range(len(predictions))}
        rouge_l, cider = _rouge_cider(gts, res)
        meteor = self._meteor.corpus_score([res[i][0] for i in res], [gts[i] for i in gts])
        return {"BLEU": bleu, "NIST": nist, "METEOR": meteor, "ROUGE_L": rouge_l, "CIDEr": cider}

    def close(self) -> None:
        if self._meteor is not None:
            self._meteor.close()
            self._meteor = None

    def __enter__(self) -> Scorer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _rouge_cider(gts: dict[int, list[str]], res: dict[int, list[str]]) -> tuple[float, float]:
    # pycocoevalcap's own scorers (ROUGE-L with beta 1.2, CIDEr-D with sigma 6) on PTB tokens.
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    rouge_l, _ = Rouge().compute_score(gts, res)
    cider, _ = Cider().compute_score(gts, res)
    return float(rouge_l), float(cider)


def _checked(
    predictions: Sequence[str], references: Sequence[Sequence[str]]
) -> tuple[list[str], list[list[str]]]:
    if isinstance(predictions, str) or isinstance(references, str):
        raise E2EEvalError("predictions must be a list of strings and references a list of lists of strings")
    predictions = list(predictions)
    references = [[refs] if isinstance(refs, str) else list(refs) for refs in references]
    if len(predictions) != len(references):
        raise E2EEvalError(
            f"{len(predictions)} predictions but references for {len(references)} MRs; give one prediction per MR"
        )
    if not predictions:
        raise E2EEvalError("nothing to score: no predictions given")
    if not all(isinstance(p, str) for p in predictions):
        raise E2EEvalError("predictions must be strings")
    for i, refs in enumerate(references):
        if not refs:
            raise E2EEvalError(f"MR {i} has no references; every MR needs at least one")
        if not all(isinstance(r, str) for r in refs):
            raise E2EEvalError(f"MR {i}: references must be strings")
    return predictions, references


def check_mteval(mteval: str) -> None:
    if mteval not in MTEVAL_VARIANTS:
        raise E2EEvalError(f"mteval={mteval!r} must be one of {', '.join(MTEVAL_VARIANTS)} (BLEU/NIST "
                           "as the official scorer's Perl mteval, or as its Python port, -p)")
