"""Figures the e2e_eval tests compare against, and where each one comes from."""

# The official scorer (tuetschek/e2e-metrics, default Perl mteval) on the original E2E test set
# (testset_w_refs.csv) and the system outputs in shared/data/system-outputs (issue 4).
OFFICIAL = {
    "tgen-std": {"BLEU": 0.661611571056, "NIST": 8.544574367881, "METEOR": 0.450377196615,
                 "ROUGE_L": 0.691407458149, "CIDEr": 2.231178075404},
    "tgen-minus": {"BLEU": 0.637975017335, "NIST": 7.962300102444, "METEOR": 0.422577481439,
                   "ROUGE_L": 0.689266262924, "CIDEr": 2.008428298163},
}

# The e2e-metrics example (devel-conc.txt vs baseline-output.txt), and the same with prediction 4
# emptied and prediction 6 replaced by EXAMPLE_ODD_PREDICTION. BLEU/NIST: the official scorer's
# own Perl mteval (tuetschek/e2e-metrics at commit 1b9c4d8, mteval/mteval-v13a-sig.pl with Debian's
# libxml-twig-perl), driven as measure_scores.py drives it: `src, refs, outs =
# measure_scores.load_data(REFS, PREDS)` (outs edited as above for "odd"), then
# `measure_scores.run_mteval(refs, outs, src)`, with the script's final printf (line 1096) widened
# from %.4f to %.12f; its unwidened output is NIST 7.8212 / BLEU 0.7203 and NIST 6.7705 / BLEU
# 0.5875. The OFFICIAL BLEU/NIST above come out of the same run to the last printed digit.
# METEOR/ROUGE_L/CIDEr: pycocoevalcap's own PTBTokenizer, Meteor, Rouge and Cider wrapper classes
# (the code path of the official scorer).
EXAMPLE = {"BLEU": 0.720292849432, "NIST": 7.821151927456, "METEOR": 0.4800716745732023,
           "ROUGE_L": 0.7909526131515365, "CIDEr": 2.303943135258847}
EXAMPLE_ODD_PREDICTION = 'Le Café Über costs £20-25 &amp; "more" (ÉCOLE) |||  x'
EXAMPLE_ODD = {"BLEU": 0.587483123317, "NIST": 6.770500230272, "METEOR": 0.39488112241988477,
               "ROUGE_L": 0.6112684711140357, "CIDEr": 1.653022218774248}

# BLEU and NIST of the official scorer's Python port (`measure_scores.py -p`, the scoring command
# of microsoft/LoRA's examples/NLG/README.md), from tuetschek/e2e-metrics at commit 1b9c4d8
# (2020-08-17), run with Python 3.12 and the `future` package it imports: for each case,
# `src, refs, outs = measure_scores.load_data(REFS, PREDS)` then
# `measure_scores.run_pymteval(refs, outs)` (the -p code path; the COCO metrics are not involved).
# REFS = e2e/testset_w_refs.csv, PREDS = system-outputs/<system>.run0.txt; "example" is
# e2e-metrics-example/devel-conc.txt vs baseline-output.txt, "example-odd" the same with outs[3]
# emptied and outs[5] = EXAMPLE_ODD_PREDICTION.
PYMTEVAL = {
    "tgen-std": {"BLEU": 0.6616115710561832, "NIST": 8.544574367881472},
    "tgen-minus": {"BLEU": 0.6379750173347122, "NIST": 7.77402899630848},
    "tgen-plus": {"BLEU": 0.66716938314187, "NIST": 8.571960966507456},
    "sclstm": {"BLEU": 0.41748894724351876, "NIST": 6.171864358673305},
    "example": {"BLEU": 0.7202928494322162, "NIST": 7.788887609555574},
    "example-odd": {"BLEU": 0.5946014805414755, "NIST": 6.584348789255185},
}
