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
# emptied and prediction 6 replaced by EXAMPLE_ODD_PREDICTION. BLEU/NIST were derived once with a
# line-by-line Perl transcription of the E2E copy of mteval-v13a-sig.pl run on SGML written as
# measure_scores.py writes it; METEOR/ROUGE_L/CIDEr with pycocoevalcap's own PTBTokenizer,
# Meteor, Rouge and Cider wrapper classes (the code path of the official scorer).
EXAMPLE = {"BLEU": 0.720292849432, "NIST": 7.821151927456, "METEOR": 0.4800716745732023,
           "ROUGE_L": 0.7909526131515365, "CIDEr": 2.303943135258847}
EXAMPLE_ODD_PREDICTION = 'Le Café Über costs £20-25 &amp; "more" (ÉCOLE) |||  x'
EXAMPLE_ODD = {"BLEU": 0.587483123317, "NIST": 6.770500230272, "METEOR": 0.39488112241988477,
               "ROUGE_L": 0.6112684711140357, "CIDEr": 1.653022218774248}
