"""`python -m solo.generate`: a finished run's sentences for new MRs, as the run decodes them."""

from __future__ import annotations

import io
import shutil
from types import SimpleNamespace

import pytest
import torch

from solo.data.mr_notation import in_notation
from solo.generate import generate, main
from tests.train.test_train_pipeline import compose_cfg, tiny_overrides


def _train(shared_data, run_root, *extra: str):
    import e2e_eval
    from solo.train.pipeline import run_experiment

    # fake_scorer is function-scoped; these runs are trained once for the module, scored the same way.
    scores = {"BLEU": 0.5, "NIST": 1.0, "METEOR": 0.25, "ROUGE_L": 0.5, "CIDEr": 0.1}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(e2e_eval, "shared_scorer", lambda: SimpleNamespace(score=lambda *a, **k: scores))
        return run_experiment(compose_cfg(tiny_overrides(shared_data, run_root, *extra)))


@pytest.fixture(scope="module")
def finished_run(shared_data, tmp_path_factory):
    return _train(shared_data, tmp_path_factory.mktemp("runs"))


@pytest.fixture(scope="module")
def official_run(shared_data, tmp_path_factory):
    return _train(shared_data, tmp_path_factory.mktemp("runs"), "data.setup=official",
                  f"data.official_dir={shared_data / 'e2e'}")


def _test_mrs(run_dir):
    from omegaconf import OmegaConf

    from solo.data import group_by_mr, load_split

    return [g.mr for g in group_by_mr(load_split(OmegaConf.load(run_dir / "config.yaml").data, "test"))]


def _predictions(run_dir) -> list[str]:
    """The run's own test-set sentences; each differs from the others, so equal lists mean the
    same MR got the same sentence."""
    texts = (run_dir / "predictions.txt").read_text(encoding="utf-8").splitlines()
    assert all(texts) and len(set(texts)) == len(texts), texts
    return texts


def test_the_test_mrs_give_the_runs_own_predictions_in_either_notation(finished_run):
    mrs = _test_mrs(finished_run)
    expected = _predictions(finished_run)
    assert generate(finished_run, mrs, device="cpu") == expected
    # A user writes the E2E release's notation; the lora-setup run gets LoRA's, as it trained.
    official = [in_notation(mr, "official") for mr in mrs]
    assert official != mrs and generate(finished_run, official, device="cpu") == expected


def test_an_official_setup_run_gets_the_release_notation(official_run):
    mrs = _test_mrs(official_run)
    expected = _predictions(official_run)
    lora = [in_notation(mr, "lora") for mr in mrs]
    assert lora != mrs and generate(official_run, lora, device="cpu") == expected


def test_cli_prints_one_sentence_per_mr_from_args_or_stdin(finished_run, capsys, monkeypatch):
    mrs = _test_mrs(finished_run)
    expected = _predictions(finished_run)
    main([str(finished_run), *mrs, "--device", "cpu"])
    assert capsys.readouterr().out.splitlines() == expected
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(mrs) + "\n\n"))
    main([str(finished_run), "--file", "-", "--tsv", "--device", "cpu", "--num-beams", "2"])
    assert capsys.readouterr().out.splitlines() == [f"{m}\t{p}" for m, p in zip(mrs, expected, strict=True)]


def test_decoding_flags_override_the_runs_settings_and_only_those(finished_run, capsys, monkeypatch):
    from omegaconf import OmegaConf

    import solo.decode

    own = OmegaConf.to_container(OmegaConf.load(finished_run / "config.yaml").decode, resolve=True)
    seen = []
    decode = solo.decode.decode_mrs_with_stats
    monkeypatch.setattr(solo.decode, "decode_mrs_with_stats",
                        lambda model, tok, prompts, cfg: seen.append(dict(cfg)) or decode(model, tok, prompts, cfg))
    mr = _test_mrs(finished_run)[0]
    main([str(finished_run), mr, "--device", "cpu"])
    main([str(finished_run), mr, "--device", "cpu", "--num-beams", "3", "--max-new-tokens", "5",
          "--length-penalty", "-0.5", "--no-repeat-ngram", "0"])
    assert seen[0] == own
    changed = {"num_beams": 3, "max_new_tokens": 5, "length_penalty": -0.5, "no_repeat_ngram_size": 0}
    assert seen[1] == {**own, **changed} and all(own[key] != value for key, value in changed.items())
    assert len(capsys.readouterr().out.splitlines()) == 2


class _Terminal(io.StringIO):
    """stdin as a terminal: what a user types, line by line."""

    def isatty(self) -> bool:
        return True


def test_on_a_terminal_each_mr_is_answered_as_typed_and_a_bad_one_does_not_end_it(finished_run, capsys, monkeypatch):
    import solo.models

    mrs = _test_mrs(finished_run)[:2]
    expected = _predictions(finished_run)[:2]
    loads = []
    load_backbone = solo.models.load_backbone
    monkeypatch.setattr(solo.models, "load_backbone", lambda *a: loads.append(1) or load_backbone(*a))
    monkeypatch.setattr("sys.stdin", _Terminal(f"{mrs[0]}\n\nname[X], foood[Y]\n{mrs[1]}\n"))
    main([str(finished_run), "--device", "cpu"])  # ends at end of input (Ctrl-D)
    out, err = capsys.readouterr()
    assert out.splitlines() == expected and len(loads) == 1  # the model loads once for the session
    assert "'foood' is not an E2E attribute" in err and "error: MR 'name[X]" in err and err.count("MR> ") == 5

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("builtins.input", interrupted)
    monkeypatch.setattr("sys.stdin", _Terminal(""))
    with pytest.raises(SystemExit) as exit_info:
        main([str(finished_run), "--device", "cpu"])
    assert exit_info.value.code == 130 and capsys.readouterr().err.strip().endswith("interrupted")


def test_piped_mrs_need_no_flag_and_an_empty_pipe_is_one_line(finished_run, capsys, monkeypatch):
    mrs = _test_mrs(finished_run)[:2]
    expected = _predictions(finished_run)[:2]
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(mrs)))
    main([str(finished_run), "--device", "cpu"])
    assert capsys.readouterr().out.splitlines() == expected
    monkeypatch.setattr("sys.stdin", io.StringIO("\n \n"))
    with pytest.raises(SystemExit) as exit_info:
        main([str(finished_run), "--device", "cpu"])
    assert exit_info.value.code == 2 and "no MR given" in capsys.readouterr().err.strip().splitlines()[-1]


def test_bad_input_is_one_line_and_exit_2(finished_run, tmp_path, capsys):
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    shutil.copy(finished_run / "config.yaml", unfinished / "config.yaml")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "config.yaml").write_text("lr: 0.1\n", encoding="utf-8")  # some other tool's config
    cases = [
        ([str(foreign), "name[X]"], "config.yaml is not a run's config (no model, method, data, trainer, decode)"),
        ([str(tmp_path / "nope"), "name[X]"], "no such run dir"),
        ([str(tmp_path), "name[X]"], "config.yaml is missing"),
        ([str(unfinished), "name[X]"], "has no trained adapter yet"),
        ([str(finished_run), "name[X], foood[Y]"], "'foood' is not an E2E attribute"),
        ([str(finished_run), "name[X]", "--num-beams", "0"], "--num-beams: 0 is not allowed; give an integer >= 1"),
        ([str(finished_run), "name[X]", "--device", "tpu"], "--device tpu: give cpu, cuda, cuda:N or auto"),
        ([str(finished_run), "name[X]", "--length-penalty", "nan"], "--length-penalty: nan is not allowed"),
        ([str(finished_run), "name[X]", "--no-repeat-ngram", "-1"], "--no-repeat-ngram: -1 is not allowed"),
    ]
    for argv, line in cases:
        with pytest.raises(SystemExit) as exit_info:
            main(argv if "--device" in argv else [*argv, "--device", "cpu"])
        err = capsys.readouterr().err.strip().splitlines()
        assert exit_info.value.code == 2 and line in err[-1], (argv, err)


def test_the_default_device_is_the_runs_own():
    """The demo trains with trainer.device=cpu; on a GPU machine its sentences come from the CPU too."""
    from omegaconf import OmegaConf

    from solo.generate import _device

    def cfg(device):
        return OmegaConf.create({"trainer": {"device": device}})

    assert _device(cfg("cpu"), None) == "cpu" and _device(cfg("auto"), None) == "auto"
    assert _device(cfg("cuda"), None) == ("cuda" if torch.cuda.is_available() else "auto")
    assert _device(cfg("cuda:99"), None) == "auto"  # a GPU index this machine does not have
    assert _device(cfg("cpu"), "auto") == "auto"  # the flag wins


def test_a_bad_mr_is_named_before_the_weights_load_and_ctrl_c_is_one_line(finished_run, monkeypatch, capsys):
    import solo.generate
    import solo.models
    from solo.errors import SoloError

    monkeypatch.setattr(solo.models, "load_backbone", lambda *a: pytest.fail("weights loaded for a bad MR"))
    with pytest.raises(SoloError, match="'foood' is not an E2E attribute"):
        generate(finished_run, ["name[X], foood[Y]"], device="cpu")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(solo.generate, "generate", interrupted)
    with pytest.raises(SystemExit) as exit_info:
        main([str(finished_run), "name[X]", "--device", "cpu"])
    assert exit_info.value.code == 130 and capsys.readouterr().err.strip() == "interrupted; nothing decoded"
