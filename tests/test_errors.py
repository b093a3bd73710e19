import pytest

from e2e_eval.errors import E2EEvalError
from solo.errors import SoloError, exit_on_solo_error


@pytest.mark.parametrize("error", [SoloError("data.lora_dir: no such folder"), E2EEvalError("java missing")])
def test_cli_wrapper_prints_one_line_and_exits_2(error, capsys):
    @exit_on_solo_error
    def cli():
        raise error

    with pytest.raises(SystemExit) as exit_info:
        cli()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err == f"error: {error}\n"


def test_cli_wrapper_lets_programming_errors_through():
    @exit_on_solo_error
    def cli():
        raise KeyError("bug")

    with pytest.raises(KeyError):
        cli()
