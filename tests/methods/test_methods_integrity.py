"""Adapter integrity: what is rebuilt from seeds is checked against hashes stored at save time, and a
stored nonzero entry outside its sparsity mask is refused; bad method values are one-line errors."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

import solo.methods.solo_connection as solo_connection
from solo.errors import SoloError
from solo.methods import apply_method, check_method_config, load_adapter, save_adapter
from tests.methods.methods_helpers import adamw_step, make_gpt2

SPARSE = {"name": "solo", "rank": 6, "sparsity": 0.6, "mask_seed": 4, "init_seed": 3}
FROZEN = {"name": "solo", "rank": 6, "train_encdec": False, "init_seed": 3}


def _saved(tmp_path, cfg, tokens):
    model = make_gpt2()
    method = apply_method(model, cfg)
    adamw_step(method, model, tokens)
    save_adapter(method, tmp_path)
    return method


def _files(tmp_path) -> dict:
    return {p.name: p.read_bytes() for p in tmp_path.iterdir()}


def test_hashes_of_masks_and_frozen_weights_are_stored(tmp_path, tokens):
    _saved(tmp_path / "sparse", SPARSE, tokens)
    _saved(tmp_path / "frozen", FROZEN, tokens)
    sparse = json.loads((tmp_path / "sparse" / "adapter_config.json").read_text())["rebuilt"]
    frozen = json.loads((tmp_path / "frozen" / "adapter_config.json").read_text())["rebuilt"]
    assert set(sparse) == {"encoder_mask", "decoder_mask"}
    assert set(frozen) == {"encoder", "decoder"}
    assert all(len(h) == 64 for h in [*sparse.values(), *frozen.values()])


def test_a_mask_rebuilt_differently_is_refused(tmp_path, tokens, monkeypatch):
    _saved(tmp_path, SPARSE, tokens)
    before = _files(tmp_path)
    real = solo_connection.random_mask

    def other_stream(shape, sparsity, generator):  # as if torch's randperm had changed
        generator.manual_seed(generator.initial_seed() + 1)
        return real(shape, sparsity, generator)

    monkeypatch.setattr(solo_connection, "random_mask", other_stream)
    fresh = make_gpt2()
    with pytest.raises(SoloError) as err:
        load_adapter(fresh, tmp_path)
    message = str(err.value)
    assert "\n" not in message and "decoder_mask rebuilt from the method's seeds differs" in message
    assert "adapter_config.json" in message and "torch version" in message
    assert not hasattr(fresh, "solo_adapter")  # the backbone is left as it was
    assert _files(tmp_path) == before


def test_frozen_encoder_rebuilt_differently_is_refused(tmp_path, tokens, monkeypatch):
    _saved(tmp_path, FROZEN, tokens)
    fresh = make_gpt2()
    real = torch.nn.init.kaiming_uniform_

    def shifted(tensor, *args, **kwargs):  # as if torch's uniform_ drew other numbers
        with torch.no_grad():
            return real(tensor, *args, **kwargs).add_(1e-3)

    monkeypatch.setattr(torch.nn.init, "kaiming_uniform_", shifted)
    with pytest.raises(SoloError, match=r"decoder rebuilt from the method's seeds differs"):
        load_adapter(fresh, tmp_path)


def test_nonzero_entry_outside_the_mask_is_refused(tmp_path, tokens):
    method = _saved(tmp_path, SPARSE, tokens)
    path = tmp_path / "adapter.safetensors"
    tensors = load_file(str(path))
    outside = (~method.adapter.encoder_mask).nonzero()[0]  # type: ignore[attr-defined]
    tensors["solo_adapter.encoder"][tuple(outside)] = 0.5
    save_file(tensors, str(path))
    with pytest.raises(SoloError, match=r"solo_adapter\.encoder has 1 nonzero entries outside its sparsity mask"):
        load_adapter(make_gpt2(), tmp_path)


def test_truncated_adapter_file_is_one_line(tmp_path, tokens):
    _saved(tmp_path, SPARSE, tokens)
    path = tmp_path / "adapter.safetensors"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(SoloError, match=r"adapter\.safetensors is unreadable .*restore it or retrain") as err:
        load_adapter(make_gpt2(), tmp_path)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        ({"name": "solo", "rank": 8, "sparsity": 0.9999},
         r"method\.sparsity=0\.9999 keeps 0 of the 256 entries of E and D \(r·d = 8·32\)"),
        ({"name": "solo", "rank": 8, "blocks": 5}, r"method\.blocks must be a list \(e\.g\. \[5\]\) or null, got 5"),
        ({"name": "lora", "targets": "q"}, r"method\.targets must be a list"),
        ({"name": "solo", "rank": 8, "span": 2, "blocks": [2, 3]},
         r"method\.blocks 2 and 3 with span 2 overlap \(D2-D3 and D3-D4 share a block\)"),
        ({"name": "full_ft", "rank": 4},
         r"method\.rank is not a setting of method 'full_ft', which takes none besides `name`"),
    ],
    ids=["sparsity-keeps-nothing", "blocks-int", "targets-str", "overlapping-spans", "full-ft-rank"],
)
def test_bad_method_values_are_one_line_errors(cfg, message):
    model = make_gpt2()
    with pytest.raises(SoloError, match=message) as err:
        check_method_config(cfg)
        apply_method(model, cfg)  # the checks that need the model's width and depth
    assert "\n" not in str(err.value) and "allowed: ," not in str(err.value)
    assert not str(err.value).endswith("allowed: ")
    assert not hasattr(model, "solo_adapter")


def test_the_largest_sparsity_that_keeps_an_entry_is_accepted():
    # r·d = 256: round(0.998·256 → 0.512) = 1 entry kept; 0.999 keeps round(0.256) = 0.
    method = apply_method(make_gpt2(), {"name": "solo", "rank": 8, "sparsity": 0.998})
    assert int(method.adapter.encoder_mask.sum()) == 1  # type: ignore[attr-defined]
