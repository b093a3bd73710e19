"""The trainer and data schemas: one set of defaults (the YAML states the same values), every
field's type and range checked with one line naming the key."""

from __future__ import annotations

import dataclasses

import pytest
from omegaconf import OmegaConf

from solo.data.settings import DataSettings, data_settings
from solo.errors import SoloError
from solo.paths import REPO_ROOT
from solo.train.settings import TrainerSettings, trainer_settings


def _defaults(cls) -> dict:
    return {f.name: f.default for f in dataclasses.fields(cls)}


def test_the_trainer_yaml_states_exactly_the_schema_defaults():
    yaml = OmegaConf.to_container(OmegaConf.load(REPO_ROOT / "configs" / "trainer" / "default.yaml"))
    assert trainer_settings(yaml) == TrainerSettings()
    assert set(yaml) == set(_defaults(TrainerSettings))


def test_the_data_yaml_states_the_schema_defaults():
    yaml = OmegaConf.to_container(OmegaConf.load(REPO_ROOT / "configs" / "data" / "e2e.yaml"))
    assert data_settings(yaml) == DataSettings()
    assert set(yaml) <= set(_defaults(DataSettings))


def test_absent_keys_take_their_defaults_and_lists_become_tuples():
    settings = trainer_settings(OmegaConf.create({"lr": 1e-3, "betas": [0.8, 0.9]}))
    assert settings.lr == 1e-3 and settings.betas == (0.8, 0.9) and settings.eps == 1e-6
    assert trainer_settings(None) == TrainerSettings()


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("lr", 0, "a number > 0"),
        ("lr", float("nan"), "a number > 0"),
        ("lr", True, "a number > 0"),
        ("epochs", 1.5, "an integer >= 1"),
        ("max_steps", 0, "an integer >= 1 or null"),
        ("label_smoothing", 1.0, "a number >= 0 and < 1"),
        ("betas", [0.9, 1.0], "a list of 2 items, each a number >= 0 and < 1"),
        ("grad_clip", -1, "a number > 0 or null"),
        ("fast_step", "yes", "one of auto, true, false"),
        ("precision", "fp16", "one of fp32, tf32, bf16"),
    ],
)
def test_each_trainer_field_is_range_checked(key, value, allowed):
    with pytest.raises(SoloError) as err:
        trainer_settings({key: value})
    message = str(err.value)
    assert message.startswith(f"trainer.{key}=") and f"allowed: {allowed} (default " in message
    assert "\n" not in message


def test_trainer_combinations_and_device():
    with pytest.raises(SoloError, match=r"trainer\.device='tpu' is not allowed; allowed: auto, cpu, cuda or cuda:N"):
        trainer_settings({"device": "tpu"})
    assert trainer_settings({"device": "cuda:1"}).device == "cuda:1"
    with pytest.raises(SoloError, match=r"trainer\.fast_step=true needs trainer\.grad_accum=1"):
        trainer_settings({"fast_step": True, "grad_accum": 2})


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("train_split", "test", "one of train, valid"),
        ("max_test_mrs", 0, "an integer >= 1 or null"),
        ("bucket_lengths", [64, 32], "increasing"),
        ("lora_dir", 3, "a string or null"),
    ],
)
def test_each_data_field_is_checked(key, value, allowed):
    with pytest.raises(SoloError, match=rf"^data\.{key}=.* is not allowed; allowed: .*{allowed}"):
        data_settings({key: value})


def test_unknown_keys_are_refused_with_the_known_ones():
    with pytest.raises(SoloError, match=r"^trainer\.learning_rate is not a trainer setting; known: .*lr"):
        trainer_settings({"learning_rate": 1e-3})
    with pytest.raises(SoloError, match=r"^data\.max_len is not a data setting"):
        data_settings({"max_len": 3})


def test_the_lr_limit_is_where_adamws_first_step_overflows_float32():
    import torch

    from solo.train.settings import FLOAT32_MAX

    assert FLOAT32_MAX == torch.finfo(torch.float32).max
    assert trainer_settings({"lr": 1e12}).lr == 1e12  # the tests' diverging runs stay valid
    for lr, betas in [(0.09 * FLOAT32_MAX, (0.9, 0.999)), (0.11 * FLOAT32_MAX, (0.9, 0.999)),
                      (0.9 * FLOAT32_MAX, (0.0, 0.999))]:
        try:
            trainer_settings({"lr": lr, "betas": list(betas)})
            accepted = True
        except SoloError as err:
            assert str(err).startswith(f"trainer.lr={lr:g} is too large: AdamW's first step")
            accepted = False
        param = torch.nn.Parameter(torch.ones(2))
        param.grad = torch.ones(2)
        try:
            # The optimiser solo.train.optim builds, but without its check of the settings.
            torch.optim.AdamW([param], lr=lr, betas=betas, eps=1e-6, weight_decay=0.01).step()
            overflowed = False
        except RuntimeError as err:
            assert "overflow" in str(err)
            overflowed = True
        assert accepted != overflowed, (lr, betas)

