"""Backbone loading: random weights from a config, local folders, and clear errors offline."""

from __future__ import annotations

import json
import time

import pytest
import torch
from omegaconf import OmegaConf

import solo.models.backbone as backbone
from solo.errors import SoloError
from solo.models import build_random_model, load_backbone, load_tokenizer, random_config

TINY = {"n_layer": 2, "n_embd": 32, "n_head": 4, "n_positions": 64}


def tiny_cfg(shared_data, **extra):
    return {
        "name": "tiny", "pretrained": None, "config_file": str(shared_data / "gpt2-configs" / "gpt2.json"),
        "overrides": dict(TINY), "tokenizer": str(shared_data / "gpt2-tokenizer"), **extra,
    }


def test_random_weights_from_config_with_overrides_are_seeded(shared_data):
    torch.manual_seed(0)
    model, tokenizer = load_backbone(OmegaConf.create(tiny_cfg(shared_data)))
    assert model.config.n_layer == 2 and model.config.n_embd == 32 and len(model.transformer.h) == 2
    assert model.config.vocab_size == len(tokenizer) == 50257
    torch.manual_seed(0)
    again = build_random_model(random_config(shared_data / "gpt2-configs" / "gpt2.json", TINY))
    assert torch.equal(model.transformer.h[0].attn.c_attn.weight, again.transformer.h[0].attn.c_attn.weight)


def test_local_pretrained_folder_round_trip(shared_data, tmp_path):
    model = build_random_model(random_config(shared_data / "gpt2-configs" / "gpt2.json", TINY))
    model.save_pretrained(tmp_path / "weights")
    loaded, _ = load_backbone(tiny_cfg(shared_data, pretrained=str(tmp_path / "weights")))
    ids = torch.tensor([[464, 3290, 318]])
    assert torch.equal(model.eval()(ids).logits, loaded.eval()(ids).logits)


def test_offline_hub_name_fails_fast_naming_the_key(shared_data, monkeypatch):
    monkeypatch.setattr(backbone, "_hub_reachable", lambda timeout=3.0: False)
    start = time.monotonic()
    with pytest.raises(SoloError, match=r"'gpt2'.*model\.pretrained") as err:
        load_backbone(tiny_cfg(shared_data, pretrained="gpt2"))
    assert "hub" in str(err.value) and "\n" not in str(err.value)
    assert time.monotonic() - start < 5


def test_empty_local_folder_is_reported(shared_data, tmp_path):
    with pytest.raises(SoloError, match=r"model\.pretrained folder"):
        load_backbone(tiny_cfg(shared_data, pretrained=str(tmp_path)))


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"overrides": {"n_layers": 2}}, r"model\.overrides\.n_layers"),
        ({"config_file": "/no/such/config.json"}, r"model\.config_file"),
        ({"config_file": None}, r"model\.config_file"),
        ({"tokenizer": None}, r"model\.tokenizer"),
    ],
)
def test_bad_model_config_rejected(shared_data, change, match):
    with pytest.raises(SoloError, match=match):
        load_backbone({**tiny_cfg(shared_data), **change})


def test_config_without_model_type_rejected(shared_data, tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"n_layer": 2}))
    with pytest.raises(SoloError, match="model_type"):
        load_backbone(tiny_cfg(shared_data, config_file=str(path)))


def test_gpt2_tokenizer_name_falls_back_to_shared_copy_offline(shared_data, monkeypatch):
    monkeypatch.setattr(backbone, "_hub_reachable", lambda timeout=3.0: False)
    monkeypatch.setattr(backbone, "try_to_load_from_cache", lambda *a, **k: None)
    tokenizer = load_tokenizer("gpt2")
    assert tokenizer.encode(" Aromi") == load_tokenizer(str(shared_data / "gpt2-tokenizer")).encode(" Aromi")
    with pytest.raises(SoloError, match=r"model\.tokenizer"):
        load_tokenizer("some-org/unknown-tokenizer")


def test_vocabulary_mismatch_rejected(shared_data):
    cfg = tiny_cfg(shared_data)
    cfg["overrides"]["vocab_size"] = 100
    with pytest.raises(SoloError, match="vocabulary"):
        load_backbone(cfg)


def _neox_folder(shared_data, folder):
    """A tiny GPT-NeoX (random weights) saved with its tokenizer, as a hub snapshot holds them."""
    from transformers import AutoModelForCausalLM, GPTNeoXConfig

    tokenizer = load_tokenizer(str(shared_data / "gpt2-tokenizer"))
    config = GPTNeoXConfig(vocab_size=len(tokenizer), hidden_size=32, num_attention_heads=4,
                           num_hidden_layers=2, intermediate_size=64)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _model_group(name: str, *overrides: str):
    from hydra import compose, initialize_config_dir

    import solo.config  # noqa: F401  (the ${shared:...} resolver of configs/model/*.yaml)
    from solo.paths import REPO_ROOT

    with initialize_config_dir(str(REPO_ROOT / "configs"), version_base="1.3"):
        return compose("train", overrides=[f"model={name}", *overrides]).model


def test_model_hf_loads_any_causal_lm_with_its_own_tokenizer(shared_data, tmp_path):
    folder = _neox_folder(shared_data, tmp_path / "neox")
    model, tokenizer = load_backbone(_model_group("hf", f"model.pretrained={folder}"))
    assert model.config.model_type == "gpt_neox"
    assert tokenizer.name_or_path == str(folder)


def test_gpt2_dropout_overrides_on_another_model_point_to_model_hf(shared_data, tmp_path):
    folder = _neox_folder(shared_data, tmp_path / "neox")
    with pytest.raises(SoloError, match=r"resid_pdrop.*use model=hf model\.pretrained="):
        load_backbone(_model_group("gpt2", f"model.pretrained={folder}"))


def test_a_folder_of_weights_without_tokenizer_files_is_no_tokenizer(shared_data, tmp_path):
    """transformers makes a one-token tokenizer of it that encodes all text to nothing."""
    folder = _neox_folder(shared_data, tmp_path / "neox")
    for name in folder.iterdir():
        if "token" in name.name or name.name in ("vocab.json", "merges.txt", "special_tokens_map.json"):
            name.unlink()
    with pytest.raises(SoloError, match=r"model\.tokenizer .*neox: no tokenizer there"):
        load_backbone(_model_group("hf", f"model.pretrained={folder}"))


@pytest.mark.parametrize(("change", "why"), [({"n_layer": 4}, r"n_layer is 2 in its config\.json"),
                                             ({"n_layer": 1}, r"n_layer is 2 in"),
                                             ({"n_head": 8}, r"n_head is 4 in"),
                                             ({"activation_function": "relu"}, r"activation_function is 'gelu_new' in"),
                                             ({"n_positions": 32}, r"n_positions is 64 in"),
                                             ({"rope_theta": 1e4}, r"rope_theta is absent from its config\.json")])
def test_architecture_overrides_on_pretrained_weights_are_refused(shared_data, tmp_path, monkeypatch, change, why):
    """profile=tiny's n_layer: 8 on a 4-block checkpoint trained 4 random blocks without a word."""
    model = build_random_model(random_config(shared_data / "gpt2-configs" / "gpt2.json", TINY))
    model.save_pretrained(tmp_path / "weights")
    cfg = tiny_cfg(shared_data, pretrained=str(tmp_path / "weights"))
    cfg["overrides"] = {"resid_pdrop": 0.0, **change}
    loads = []
    monkeypatch.setattr(backbone.AutoModelForCausalLM, "from_pretrained",
                        lambda *a, _real=backbone.AutoModelForCausalLM.from_pretrained, **k: loads.append(1) or _real(*a, **k))
    with pytest.raises(SoloError, match=rf"model\.overrides .* change its architecture \({why}"):
        load_backbone(cfg)
    assert not loads  # refused from config.json, before any weight is read
    # Dropout rates, layer drop and loading settings are no architecture: fine.
    cfg["overrides"] = {"resid_pdrop": 0.0, "use_cache": False, "attn_implementation": "eager"}
    assert load_backbone(cfg)[0].config.resid_pdrop == 0.0


def test_model_hf_offline_names_no_random_fallback(shared_data, monkeypatch):
    monkeypatch.setattr(backbone, "_hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(SoloError, match=r"cannot load pretrained weights 'some-org/some-model'") as err:
        load_backbone(_model_group("hf", "model.pretrained=some-org/some-model"))
    assert "config_file" not in str(err.value)  # model=hf has none to fall back on


def test_a_checkpoint_missing_tensors_is_refused(shared_data, tmp_path):
    from safetensors.torch import load_file, save_file

    model = build_random_model(random_config(shared_data / "gpt2-configs" / "gpt2.json", TINY))
    model.save_pretrained(tmp_path / "weights")
    path = tmp_path / "weights" / "model.safetensors"
    tensors = load_file(str(path))
    del tensors["transformer.h.1.mlp.c_fc.weight"]
    save_file(tensors, str(path), metadata={"format": "pt"})
    with pytest.raises(SoloError, match=r"1 tensors of the model are not in its weights \(e\.g\. transformer\.h\.1\.mlp\.c_fc\.weight\)"):
        load_backbone(tiny_cfg(shared_data, pretrained=str(tmp_path / "weights"), overrides={}))


def test_a_tokenizer_whose_end_token_is_not_the_models_is_warned_of(shared_data, tmp_path, caplog):
    """GPT-2's tokenizer beside Pythia weights passes the vocabulary-size check (50257 <= 50304)."""
    from transformers import AutoModelForCausalLM, GPTNeoXConfig

    config = GPTNeoXConfig(vocab_size=50304, hidden_size=32, num_attention_heads=4, num_hidden_layers=2,
                           intermediate_size=64, bos_token_id=0, eos_token_id=0)
    AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path / "pythia")
    cfg = {"name": "hf", "pretrained": str(tmp_path / "pythia"), "overrides": {},
           "tokenizer": str(shared_data / "gpt2-tokenizer")}
    with caplog.at_level("WARNING", logger="solo.models.backbone"):
        load_backbone(cfg)
    assert "ends text with token 50256, but the model's config names [0] as its end" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="solo.models.backbone"):
        load_backbone(tiny_cfg(shared_data))  # GPT-2 with its own tokenizer: no word
    assert "ends text" not in caplog.text


def test_weights_that_disagree_with_their_config_json_are_one_line_and_other_reports_still_show(
        shared_data, tmp_path, monkeypatch):
    """transformers logs its LOAD REPORT table, then raises; the line that replaces its error is
    all that shows. A load that succeeds still shows the table (here: a tensor the model lacks)."""
    import logging

    from safetensors.torch import load_file, save_file

    shown: list[str] = []

    class Shown(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            shown.append(record.getMessage())

    library = logging.getLogger("transformers")  # where transformers' own handler prints from
    monkeypatch.setattr(library, "handlers", [*library.handlers, Shown()])
    model = build_random_model(random_config(shared_data / "gpt2-configs" / "gpt2.json", TINY))
    model.save_pretrained(tmp_path / "weights")
    config = json.loads((tmp_path / "weights" / "config.json").read_text())
    (tmp_path / "weights" / "config.json").write_text(json.dumps({**config, "n_embd": 2 * config["n_embd"]}))
    with pytest.raises(SoloError, match=r"weights .*have other shapes than its config\.json describes; .*save the model again"):
        load_backbone(tiny_cfg(shared_data, pretrained=str(tmp_path / "weights"), overrides={}))
    assert not any("LOAD REPORT" in line for line in shown), shown

    (tmp_path / "weights" / "config.json").write_text(json.dumps(config))
    path = tmp_path / "weights" / "model.safetensors"
    tensors = load_file(str(path))
    save_file({**tensors, "transformer.extra.weight": torch.zeros(2)}, str(path), metadata={"format": "pt"})
    load_backbone(tiny_cfg(shared_data, pretrained=str(tmp_path / "weights"), overrides={}))
    assert any("LOAD REPORT" in line and "transformer.extra.weight" in line for line in shown), shown
