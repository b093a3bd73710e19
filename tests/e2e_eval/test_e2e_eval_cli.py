"""CLI and API failure modes that need no Java: one `error:` line and exit status 2."""

from __future__ import annotations

from pathlib import Path

import pytest

import e2e_eval
from e2e_eval import E2EEvalError
from e2e_eval.__main__ import main


def _files(tmp_path: Path, refs: str, preds: str) -> tuple[str, str]:
    (tmp_path / "refs.txt").write_text(refs, encoding="utf-8")
    (tmp_path / "preds.txt").write_text(preds, encoding="utf-8")
    return str(tmp_path / "refs.txt"), str(tmp_path / "preds.txt")


def _run(argv: list[str], capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    return exit_info.value.code, capsys.readouterr().err


def test_count_mismatch_exits_2_with_one_error_line(tmp_path, capsys):
    code, err = _run(list(_files(tmp_path, "a\n\nb\n", "x\n")), capsys)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and "2 MRs" in err and "1 predictions" in err


def test_existing_json_output_is_never_overwritten(tmp_path, capsys):
    refs, preds = _files(tmp_path, "a\n", "a\n")
    out = tmp_path / "scores.json"
    out.write_text("earlier results", encoding="utf-8")
    code, err = _run([refs, preds, "--json", str(out)], capsys)
    assert code == 2 and "already exists" in err
    assert out.read_text(encoding="utf-8") == "earlier results"


@pytest.fixture()
def no_java(monkeypatch, tmp_path):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


def test_missing_java_names_what_to_install(no_java):
    with pytest.raises(E2EEvalError, match="default-jre-headless") as err:
        e2e_eval.score(["a cafe"], [["a cafe"]])
    assert "\n" not in str(err.value)


def test_missing_java_exits_2_from_the_cli(no_java, tmp_path, capsys):
    code, err = _run(list(_files(tmp_path, "a\n", "a\n")), capsys)
    assert code == 2 and err.count("\n") == 1 and "java" in err.lower()


@pytest.mark.parametrize(
    ("predictions", "references", "message"),
    [
        (["a", "b"], [["a"]], "2 predictions but references for 1 MRs"),
        (["a"], [[]], "MR 0 has no references"),
        ([], [], "no predictions"),
        ("a", [["a"]], "list of strings"),
        ([None], [["a"]], "predictions must be strings"),
    ],
)
def test_score_rejects_malformed_arguments_before_starting_java(predictions, references, message, no_java):
    with pytest.raises(E2EEvalError, match=message):
        e2e_eval.score(predictions, references)


def test_a_ctrl_c_is_one_line_and_writes_no_scores(tmp_path, capsys, monkeypatch):
    """A Ctrl-C while METEOR ran was a KeyboardInterrupt traceback through concurrent.futures."""
    import e2e_eval.__main__ as cli

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "score", interrupted)
    refs, preds = _files(tmp_path, "a\n", "a\n")
    code, err = _run([refs, preds, "--json", str(tmp_path / "scores.json")], capsys)
    assert code == 130 and err == "e2e_eval: interrupted; no scores written\n"
    assert not (tmp_path / "scores.json").exists()


def test_a_warning_is_one_line_beside_the_error(tmp_path, capsys):
    code, err = _run(list(_files(tmp_path, "a\n\nb\n", "\ufeffx\n")), capsys)
    lines = err.splitlines()
    assert code == 2 and len(lines) == 2
    assert lines[0].startswith("warning: ") and "byte-order mark" in lines[0]
    assert lines[1].startswith("error: ") and "1 predictions" in lines[1]


def test_a_helper_process_closes_its_pipes(tmp_path):
    from e2e_eval.java import _LineProcess

    helper = _LineProcess(["cat"], failure="cat stopped")
    assert helper.exchange(["a line", "another"], expected=2) == ["a line", "another"]
    helper.close()
    # Left open, each is a ResourceWarning per helper JVM when the scorer is collected.
    assert helper._process.stdin.closed and helper._process.stdout.closed
