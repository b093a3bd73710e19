"""Adapter files: only trainable tensors saved, exact round trip onto a fresh backbone, clear errors."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from solo.errors import SoloError
from solo.methods import apply_method, load_adapter, save_adapter
from tests.methods.methods_helpers import adamw_step, make_gpt2

CASES = [
    {"name": "solo", "rank": 6, "sparsity": 0.6, "mask_seed": 4, "dropout": 0.1},
    {"name": "solo", "rank": 6, "sparsity": 0.5, "train_encdec": False, "span": 2, "blocks": [2, 4]},
    {"name": "solo", "rank": 6, "homotopy": False, "v_init": "ones"},
    {"name": "lora", "rank": 2, "alpha": 16, "dropout": 0.1},
    {"name": "full_ft"},
]


@pytest.mark.parametrize("cfg", CASES, ids=lambda c: f"{c['name']}-{len(c)}")
def test_round_trip_reproduces_logits_exactly(cfg, tmp_path, tokens):
    torch.manual_seed(11)  # the solo init seed is drawn from the global RNG when not given
    model = make_gpt2()
    method = apply_method(model, cfg)
    adamw_step(method, model, tokens)
    expected = model(tokens).logits
    save_adapter(method, tmp_path / "adapter")

    saved = load_file(str(tmp_path / "adapter" / "adapter.safetensors"))
    assert set(saved) == set(method.adapter_state_dict())
    assert sum(t.numel() for t in saved.values()) >= method.num_trainable()  # masked zeros are stored too
    torch.manual_seed(12345)  # a different global RNG state must not matter on load
    fresh = make_gpt2()
    loaded = load_adapter(fresh, tmp_path / "adapter")
    assert loaded.name == cfg["name"] and loaded.num_trainable() == method.num_trainable()
    assert torch.equal(fresh(tokens).logits, expected)


def test_frozen_random_encoder_is_rebuilt_not_stored(tmp_path, tokens):
    model = make_gpt2()
    method = apply_method(model, {"name": "solo", "rank": 6, "train_encdec": False})
    save_adapter(method, tmp_path)
    saved = load_file(str(tmp_path / "adapter.safetensors"))
    assert "solo_adapter.encoder" not in saved and "solo_adapter.decoder" not in saved
    loaded = load_adapter(make_gpt2(), tmp_path)
    assert torch.equal(loaded.adapter.encoder, method.adapter.encoder)  # type: ignore[attr-defined]


def test_config_file_records_method_and_backbone(tmp_path):
    method = apply_method(make_gpt2(), {"name": "solo", "rank": 6, "sparsity": 0.5})
    save_adapter(method, tmp_path)
    meta = json.loads((tmp_path / "adapter_config.json").read_text())
    assert meta["method"]["mask_seed"] == 0 and isinstance(meta["method"]["init_seed"], int)
    assert meta["backbone"]["num_hidden_layers"] == 6 and meta["trainable"] == method.num_trainable()


def test_loading_onto_another_shape_fails_clearly(tmp_path):
    save_adapter(apply_method(make_gpt2(), {"name": "solo", "rank": 6}), tmp_path)
    other = make_gpt2(n_embd=48)
    with pytest.raises(SoloError, match="trained on gpt2 with 6 blocks, d=32.*d=48"):
        load_adapter(other, tmp_path)
    assert not hasattr(other, "solo_adapter")


def test_tampered_tensor_shape_fails_clearly(tmp_path):
    save_adapter(apply_method(make_gpt2(), {"name": "solo", "rank": 6}), tmp_path)
    meta = json.loads((tmp_path / "adapter_config.json").read_text())
    meta["method"]["rank"] = 7
    (tmp_path / "adapter_config.json").write_text(json.dumps(meta))
    with pytest.raises(SoloError, match="has shape"):
        load_adapter(make_gpt2(), tmp_path)


def test_refuses_to_overwrite_and_reports_missing_files(tmp_path):
    method = apply_method(make_gpt2(), {"name": "lora", "rank": 2})
    save_adapter(method, tmp_path)
    with pytest.raises(SoloError, match="already exists"):
        save_adapter(method, tmp_path)
    save_adapter(method, tmp_path, overwrite=True)
    with pytest.raises(SoloError, match="adapter_config.json not found"):
        load_adapter(make_gpt2(), tmp_path / "nothing")
