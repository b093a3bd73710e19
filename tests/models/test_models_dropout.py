"""The LoRA recipe trains the backbone without dropout, pretrained or random, while the method's own
dropout (LoRA's lora_dropout, Solo Connection's f_d) stays on."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from solo.errors import SoloError
from solo.methods import apply_method
from solo.models import build_random_model, load_backbone, random_config
from solo.paths import REPO_ROOT

TINY = {"n_layer": 3, "n_embd": 32, "n_head": 4, "n_positions": 64}
METHODS = [{"name": "lora", "rank": 4, "alpha": 32, "dropout": 0.1},
           {"name": "solo", "rank": 8, "dropout": 0.1, "lambda_init": 1.0, "init_seed": 0}]


def recipe_overrides(model: str) -> dict:
    return dict(OmegaConf.to_container(OmegaConf.load(REPO_ROOT / "configs" / "model" / f"{model}.yaml"))["overrides"])


@pytest.fixture(scope="module")
def pretrained_folder(shared_data, tmp_path_factory):
    """Tiny 'pretrained' GPT-2 weights whose config has GPT-2's 0.1 dropout rates."""
    torch.manual_seed(0)
    config = random_config(shared_data / "gpt2-configs" / "gpt2.json", TINY)
    assert config.resid_pdrop == config.embd_pdrop == config.attn_pdrop == 0.1
    folder = tmp_path_factory.mktemp("weights")
    build_random_model(config).save_pretrained(folder)
    return folder


def load(shared_data, folder, overrides: dict):
    cfg = {"name": "tiny", "pretrained": str(folder), "config_file": None,
           "overrides": {**TINY, **overrides}, "tokenizer": str(shared_data / "gpt2-tokenizer")}
    return load_backbone(cfg)[0]


def two_training_forwards(model) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.tensor([[464, 3290, 318, 257, 1310, 13]])
    model.train()
    torch.manual_seed(1)
    first = model(ids).logits
    return first, model(ids).logits


def test_the_model_configs_turn_the_backbone_dropout_off():
    for model in ("gpt2", "gpt2-medium"):
        assert recipe_overrides(model) == {"resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0}
    tiny = recipe_overrides("tiny")
    assert tiny["resid_pdrop"] == tiny["embd_pdrop"] == tiny["attn_pdrop"] == 0.0


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m["name"])
def test_pretrained_backbone_has_no_dropout_in_training_and_the_method_has(shared_data,
                                                                          pretrained_folder, method):
    as_saved = load(shared_data, pretrained_folder, {})
    first, second = two_training_forwards(as_saved)
    assert not torch.equal(first, second)  # the folder's own config drops

    model = load(shared_data, pretrained_folder, recipe_overrides("gpt2"))
    assert all(m.p == 0.0 for m in model.modules() if isinstance(m, torch.nn.Dropout))
    first, second = two_training_forwards(model)
    assert torch.equal(first, second)  # training mode, and yet no backbone dropout

    attached = apply_method(model, method)
    with torch.no_grad():  # LoRA's B starts at zero: give the adapter an output to drop
        for p in attached.trainable_parameters():
            p.add_(torch.randn_like(p) * 0.1)
    dropouts = [m for n, m in model.named_modules() if isinstance(m, torch.nn.Dropout) and m.p > 0]
    assert dropouts and all(m.p == 0.1 for m in dropouts)
    first, second = two_training_forwards(model)
    assert not torch.equal(first, second)  # the method's dropout is on
    model.eval()
    assert torch.equal(model(torch.tensor([[464, 3290]])).logits, model(torch.tensor([[464, 3290]])).logits)


def test_a_misspelt_override_of_a_pretrained_model_is_a_solo_error(shared_data, pretrained_folder):
    with pytest.raises(SoloError, match=r"model\.overrides .*resid_drop"):
        load(shared_data, pretrained_folder, {"resid_drop": 0.0})
