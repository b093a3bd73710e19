"""Speed of e2e_eval on the full E2E test set (630 predictions x 4,693 references); goal <= 30 s.

    PYTHONPATH=. python bench/bench_e2e_eval.py                 # ours only
    PYTHONPATH=. python bench/bench_e2e_eval.py --anchor        # also pycocoevalcap's own wrappers

Ours: `e2e_eval.score` (BLEU/NIST in Python, one PTB-tokenizer JVM, one METEOR JVM started first
so it loads while the rest runs). Anchor: the official scorer's COCO path through pycocoevalcap's
wrapper classes (PTBTokenizer run once for references and once for outputs, Meteor, Rouge, Cider);
its BLEU/NIST come from Perl mteval, which the anchor leaves out. Prints wall and CPU seconds
(this process plus its Java children) and the scores side by side.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

PATHS = {
    "refs": Path("e2e/testset_w_refs.csv"),
    "tgen-std": Path("system-outputs/tgen-std.run0.txt"),
}
GOAL_S = 30.0


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _timed(fn):
    wall, cpu = time.perf_counter(), _cpu_seconds()
    result = fn()
    return result, time.perf_counter() - wall, _cpu_seconds() - cpu


def _anchor(predictions: list[str], references: list[list[str]]) -> dict[str, float]:
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    gts = {f"inst-{i}": [{"caption": r} for r in refs] for i, refs in enumerate(references)}
    res = {f"inst-{i}": [{"caption": p}] for i, p in enumerate(predictions)}
    tokenizer = PTBTokenizer()
    gts, res = tokenizer.tokenize(gts), tokenizer.tokenize(res)
    return {name: float(scorer.compute_score(gts, res)[0])
            for scorer, name in ((Meteor(), "METEOR"), (Rouge(), "ROUGE_L"), (Cider(), "CIDEr"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--system", default="tgen-std", help="system output in shared/data/system-outputs")
    parser.add_argument("--anchor", action="store_true", help="also time pycocoevalcap's own wrappers")
    args = parser.parse_args()

    from e2e_eval import METRICS, score
    from e2e_eval.readers import load_inputs
    from solo.paths import shared_data_dir

    data = shared_data_dir()
    inputs = load_inputs(data / PATHS["refs"], data / "system-outputs" / f"{args.system}.run0.txt")
    n_refs = sum(len(r) for r in inputs.references)
    print(f"{args.system}: {len(inputs.predictions)} predictions x {n_refs} references")

    ours, wall, cpu = _timed(lambda: score(inputs.predictions, inputs.references))
    rows = [("e2e_eval.score", wall, cpu, ours)]
    if args.anchor:
        anchor, a_wall, a_cpu = _timed(lambda: _anchor(inputs.predictions, inputs.references))
        rows.append(("pycocoevalcap wrappers (no BLEU/NIST)", a_wall, a_cpu, anchor))

    print(f"{'run':40s} {'wall s':>8s} {'cpu s':>8s} " + " ".join(f"{m:>8s}" for m in METRICS))
    for name, w, c, scores in rows:
        cells = " ".join(f"{scores[m]:8.4f}" if m in scores else f"{'-':>8s}" for m in METRICS)
        print(f"{name:40s} {w:8.1f} {c:8.1f} {cells}")
    verdict = "meets" if wall <= GOAL_S else "MISSES"
    print(f"e2e_eval {verdict} the {GOAL_S:.0f} s goal ({wall:.1f} s wall; machine load shows in wall time, not cpu)")


if __name__ == "__main__":
    main()
