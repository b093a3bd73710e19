"""The five scores against the official scorer's figures (needs Java: METEOR, PTB tokenizer).

Each corpus is scored once per session; METEOR is started once for all of them, except for the
CLI run, which exercises the one-shot `score()` path end to end.
"""

from __future__ import annotations

import json

import pytest

from e2e_eval import METRICS, Scorer
from e2e_eval.__main__ import main
from e2e_eval.readers import Inputs
from tests.e2e_eval.e2e_eval_figures import (
    EXAMPLE,
    EXAMPLE_ODD,
    EXAMPLE_ODD_PREDICTION,
    OFFICIAL,
    PYMTEVAL,
)

pytestmark = pytest.mark.java


@pytest.fixture(scope="module")
def scored(system_inputs, example_inputs) -> dict[str, dict[str, float]]:
    odd = list(example_inputs.predictions)
    odd[3] = ""  # an empty prediction line
    odd[5] = EXAMPLE_ODD_PREDICTION  # non-ASCII, an SGML entity, quotes, brackets and "|||"
    corpora = {name: inputs for name, inputs in system_inputs.items()}
    corpora["example-odd"] = Inputs(odd, example_inputs.references)
    with Scorer() as scorer:
        return {name: scorer.score(c.predictions, c.references) for name, c in corpora.items()}


@pytest.fixture(scope="module")
def example_cli(shared_data, tmp_path_factory) -> tuple[str, dict[str, float]]:
    folder = shared_data / "e2e-metrics-example"
    out = tmp_path_factory.mktemp("cli") / "scores.json"
    import contextlib
    import io

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        main([str(folder / "devel-conc.txt"), str(folder / "baseline-output.txt"), "--json", str(out)])
    return printed.getvalue(), json.loads(out.read_text("utf-8"))


@pytest.mark.slow
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("system", ["tgen-std", "tgen-minus"])
def test_test_set_scores_match_the_official_scorer_to_4_decimals(scored, system, metric):
    assert abs(scored[system][metric] - OFFICIAL[system][metric]) < 5e-5
    assert round(scored[system][metric], 4) == round(OFFICIAL[system][metric], 4)


@pytest.mark.parametrize("metric", METRICS)
def test_empty_and_non_ascii_predictions_score_as_the_official_pipeline(scored, metric):
    assert scored["example-odd"][metric] == pytest.approx(EXAMPLE_ODD[metric], abs=1e-9)


@pytest.mark.slow
@pytest.mark.parametrize("metric", METRICS)
def test_cli_scores_the_example_files_and_writes_json(example_cli, metric):
    _, written = example_cli
    assert written[metric] == pytest.approx(EXAMPLE[metric], abs=1e-9)


def test_cli_prints_the_scores_like_the_official_script(example_cli):
    printed, written = example_cli
    expected = ["SCORES:", "=============="] + [f"{m}: {written[m]:.4f}" for m in METRICS]
    assert printed.splitlines() == expected


@pytest.mark.parametrize("system", ["tgen-std", "tgen-minus"])
def test_all_five_scores_equal_the_official_figures_to_their_last_decimal(scored, system):
    # OFFICIAL holds 12 decimals; the cut paraphrase table and the cached CIDEr side change none.
    for metric in METRICS:
        assert scored[system][metric] == pytest.approx(OFFICIAL[system][metric], abs=1e-12)


@pytest.mark.slow
def test_without_the_compiled_helpers_the_official_way_gives_the_same_scores(example_inputs, monkeypatch, scored):
    # A Java runtime without the jdk.compiler module: a tokenizer JVM per call, METEOR on the whole table.
    import e2e_eval.java
    import e2e_eval.scoring

    monkeypatch.setattr(e2e_eval.java, "helper_classes", lambda: None)
    monkeypatch.setattr(e2e_eval.scoring, "helper_classes", lambda: None)
    odd = list(example_inputs.predictions)
    odd[3], odd[5] = "", EXAMPLE_ODD_PREDICTION
    with Scorer() as scorer:
        assert scorer.score(odd, example_inputs.references) == scored["example-odd"]


@pytest.mark.slow  # its own METEOR start-up
def test_cli_mteval_python_scores_and_records_the_variant(shared_data, tmp_path, capsys):
    folder = shared_data / "e2e-metrics-example"
    out = tmp_path / "scores.json"
    main([str(folder / "devel-conc.txt"), str(folder / "baseline-output.txt"), "--mteval", "python",
          "--json", str(out)])
    written = json.loads(out.read_text("utf-8"))
    assert written["mteval"] == "python"
    assert written["NIST"] == pytest.approx(PYMTEVAL["example"]["NIST"], abs=1e-9)
    assert written["BLEU"] == pytest.approx(PYMTEVAL["example"]["BLEU"], abs=1e-9)
    assert written["METEOR"] == pytest.approx(EXAMPLE["METEOR"], abs=1e-9)  # the others unchanged
    assert f"NIST: {PYMTEVAL['example']['NIST']:.4f}" in capsys.readouterr().out


def test_meteor_split_over_several_processes_gives_the_same_corpus_score(example_inputs):
    """Each worker scores a share of the segments; one EVAL over all their statistics."""
    from e2e_eval.java import Meteor

    hyps = [h.lower() for h in example_inputs.predictions]
    refs = [[r.lower() for r in group] for group in example_inputs.references]
    flat = [r for group in refs for r in group]
    scores, started = [], []
    for workers in (1, 2, 3):
        meteor = Meteor(flat, workers=workers)
        try:
            scores.append(meteor.corpus_score(hyps, refs))
            started.append(len(meteor._processes))
        finally:
            meteor.close()
    assert scores[0] == scores[1] == scores[2] and 0 < scores[0] < 1
    assert started[1:] == [2, 3]  # the cut table is cached by now, so the workers really split


def test_the_first_system_is_split_too_while_the_table_is_being_cut(example_inputs):
    """References whose cut table is not cached yet: a second worker waits for the first's cut,
    then shares the first system's segments, with the one-process score."""
    import uuid

    from e2e_eval.java import Meteor

    hyps = [h.lower() for h in example_inputs.predictions]
    refs = [[r.lower() for r in group] for group in example_inputs.references]
    # One reference no other test uses: a table of its own, not in the cache.
    flat = [r for group in refs for r in group] + [f"a reference {uuid.uuid4().hex} of its own"]
    split = Meteor(flat, workers=2)
    try:
        assert split._table is not None and not split._table.exists()
        first = split.corpus_score(hyps, refs)
        assert len(split._processes) == 2
    finally:
        split.close()
    alone = Meteor(flat, workers=1)
    try:
        assert alone.corpus_score(hyps, refs) == first
    finally:
        alone.close()
        split._table.unlink(missing_ok=True)  # a table no later run can use


def test_threads_asking_for_the_helpers_at_once_compile_them_once(tmp_path, monkeypatch):
    import subprocess
    import threading

    import e2e_eval.java as java

    monkeypatch.setenv("E2E_EVAL_CACHE", str(tmp_path))  # an empty cache: they must be compiled
    compiles = []
    run = subprocess.run

    def counting(args, *rest, **options):
        if "jdk.compiler/com.sun.tools.javac.Main" in args:
            compiles.append(args)
        return run(args, *rest, **options)

    monkeypatch.setattr(subprocess, "run", counting)
    start, found = threading.Barrier(3), []

    def ask() -> None:
        start.wait()
        found.append(java.helper_classes())

    # cache_dir() is cached too: an earlier test may have fixed it on a cache that holds the classes
    java.cache_dir.cache_clear()
    java._compiled_helpers.cache_clear()
    try:
        threads = [threading.Thread(target=ask) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        java.cache_dir.cache_clear()  # the other tests' cache, not this tmp_path
        java._compiled_helpers.cache_clear()
    assert len(compiles) == 1 and len(found) == 3 and len(set(found)) == 1
