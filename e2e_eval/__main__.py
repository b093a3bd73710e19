"""`python -m e2e_eval REFS PREDS [--json OUT] [--mteval perl|python]`: print the five official E2E
scores."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

from e2e_eval.errors import E2EEvalError
from e2e_eval.mteval import MTEVAL_VARIANTS
from e2e_eval.readers import load_inputs
from e2e_eval.scoring import METRICS, score


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m e2e_eval",
        description="Official E2E NLG Challenge metrics (BLEU, NIST, METEOR, ROUGE_L, CIDEr).",
    )
    parser.add_argument("refs", help="references: blank-line-separated blocks (one per MR), or CSV/TSV with mr,ref")
    parser.add_argument("preds", help="predictions: one per line, or CSV/TSV with mr,output")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the full-precision scores here (must not exist)")
    parser.add_argument("--mteval", choices=MTEVAL_VARIANTS, default="perl",
                        help="BLEU/NIST implementation: the official scorer's Perl mteval (its default) "
                             "or its Python port (its -p option, what microsoft/LoRA's README runs)")
    return parser.parse_args(argv)


def run(argv: list[str] | None = None) -> dict[str, float]:
    args = _parse(argv)
    if args.json is not None and args.json.exists():
        raise E2EEvalError(f"{args.json} already exists; choose a new --json path (results are never overwritten)")
    inputs = load_inputs(args.refs, args.preds)
    scores = score(inputs.predictions, inputs.references, args.mteval)
    print("SCORES:\n==============")
    for metric in METRICS:
        print(f"{metric}: {scores[metric]:.4f}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        with open(args.json, "x", encoding="utf-8") as out:  # "x": fail rather than overwrite
            json.dump({**scores, "mteval": args.mteval}, out, indent=2)
            out.write("\n")
    return scores


def main(argv: list[str] | None = None) -> None:
    try:
        # A command line's warning is one line, not Python's source location and code.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            try:
                run(argv)
            finally:
                for warning in caught:
                    print(f"warning: {warning.message}", file=sys.stderr)
    except E2EEvalError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:  # the Java helpers are children: the same Ctrl-C stops them
        print("e2e_eval: interrupted; no scores written", file=sys.stderr)
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
