"""`score()`: the five official E2E metrics for a list of predictions and their references."""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from e2e_eval.cider import CiderD
from e2e_eval.errors import E2EEvalError
from e2e_eval.java import Meteor, PtbTokenizer, helper_classes, java_executable
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
    """Scores several systems with one PTB tokenizer and one METEOR process (Java starts once).

    `with Scorer() as s: s.score(p1, refs); s.score(p2, refs)` gives the same numbers as
    calling `score()` twice. Texts are tokenized once per scorer (the PTB tokenizer treats each
    line on its own), CIDEr's reference side is built once per reference set, and METEOR keeps
    running while the references stay among those it was started for (its paraphrase table is
    cut to them). Calls from several threads take turns.
    """

    def __init__(self) -> None:
        java_executable()  # fail before any work when Java is missing
        self._tokenizer: PtbTokenizer | None = None
        self._meteor: Meteor | None = None
        self._tokens: dict[str, str] = {}
        self._cider: tuple[tuple[tuple[str, ...], ...], CiderD] | None = None
        self._lock = threading.Lock()

    def score(self, predictions: Sequence[str], references: Sequence[Sequence[str]],
              mteval: str = "perl") -> dict[str, float]:
        predictions, references = _checked(predictions, references)
        check_mteval(mteval)
        with self._lock:
            return self._score(predictions, references, mteval)

    def _score(self, predictions: list[str], references: list[list[str]],
               mteval: str) -> dict[str, float]:
        # Compiling the Java helpers (once per cache) and the PTB tokenizer JVM run while this
        # thread computes BLEU and NIST.
        with ThreadPoolExecutor(max_workers=1) as pool:
            tokenizing = pool.submit(self._java_side, [r for refs in references for r in refs] + predictions)
            bleu, nist = bleu_nist(predictions, references, mteval)
            tokenized = tokenizing.result()
        gts, start = {}, 0
        for i, refs in enumerate(references):
            gts[i] = tokenized[start : start + len(refs)]
            start += len(refs)
        res = {i: [tokenized[start + i]] for i in range(len(predictions))}
        meteor = self._meteor_for([r for refs in gts.values() for r in refs])
        # METEOR scores in its JVM while this thread computes ROUGE-L and CIDEr.
        with ThreadPoolExecutor(max_workers=1) as pool:
            meteoring = pool.submit(meteor.corpus_score, [res[i][0] for i in res], [gts[i] for i in gts])
            rouge_l = _rouge_l(gts, res)
            cider = self._cider_for(tuple(tuple(refs) for refs in gts.values())).score([res[i][0] for i in res])
            meteor_score = meteoring.result()
        return {"BLEU": bleu, "NIST": nist, "METEOR": meteor_score, "ROUGE_L": rouge_l, "CIDEr": cider}

    def _java_side(self, texts: list[str]) -> list[str]:
        if self._meteor is None and helper_classes() is None:
            self._meteor = Meteor()  # the whole table: start it first, it loads while the rest runs
        return self._tokenized(texts)

    def _tokenized(self, texts: list[str]) -> list[str]:
        missing = list(dict.fromkeys(t for t in texts if t not in self._tokens))
        if missing:
            if self._tokenizer is None:
                self._tokenizer = PtbTokenizer()
            self._tokens.update(zip(missing, self._tokenizer.tokenize(missing), strict=True))
        return [self._tokens[t] for t in texts]

    def _cider_for(self, references: tuple[tuple[str, ...], ...]) -> CiderD:
        if self._cider is None or self._cider[0] != references:
            self._cider = (references, CiderD(references))
        return self._cider[1]

    def _meteor_for(self, references: list[str]) -> Meteor:
        if self._meteor is not None and not self._meteor.covers(references):
            self._meteor.close()
            self._meteor = None
        if self._meteor is None:
            self._meteor = Meteor(references)
        return self._meteor

    def close(self) -> None:
        for tool in (self._tokenizer, self._meteor):
            if tool is not None:
                tool.close()
        self._tokenizer = self._meteor = None

    def __enter__(self) -> Scorer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_shared: tuple[int, Scorer] | None = None
_shared_lock = threading.Lock()


def shared_scorer() -> Scorer:
    """The process-wide Scorer: every run a process scores (a table, the lockstep launcher) shares
    one tokenizer and one METEOR JVM. Closed at exit; a forked child gets a scorer of its own."""
    global _shared
    with _shared_lock:
        if _shared is None or _shared[0] != os.getpid():
            _shared = (os.getpid(), Scorer())
            atexit.register(_shared[1].close)
        return _shared[1]


def _rouge_l(gts: dict[int, list[str]], res: dict[int, list[str]]) -> float:
    # pycocoevalcap's own scorer (ROUGE-L with beta 1.2) on PTB tokens; CIDEr-D is e2e_eval.cider.
    from pycocoevalcap.rouge.rouge import Rouge

    rouge_l, _ = Rouge().compute_score(gts, res)
    return float(rouge_l)


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
