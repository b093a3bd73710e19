"""decode_mrs_with_stats: each unique MR decoded once, its prediction text made, settings from the
config."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

import solo.decode.engine as engine
from solo.data import encode_prompt
from solo.decode import BeamSettings, decode_mrs_with_stats, settings_from_config
from solo.decode.gpt2_state import SharedPromptGPT2State
from solo.decode.text import prediction_text
from solo.errors import SoloError
from solo.paths import REPO_ROOT


@pytest.fixture()
def never_ending_model(tiny_gpt2_config):
    """A random tiny GPT-2 that never emits eos, so every text has max_new_tokens tokens."""
    from transformers import GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(tiny_gpt2_config)
    with torch.no_grad():
        head = torch.nn.Linear(64, 50257, bias=True)
        head.weight.copy_(model.lm_head.weight)
        head.bias.zero_()
        head.bias[50256] = -1e4
        model.lm_head = head
        model.config.tie_word_embeddings = False
    return model.eval()


def test_unique_mrs_decoded_once_and_texts_stripped(never_ending_model, gpt2_tokenizer, monkeypatch):
    seen = []

    def spy(model, prompts, **kwargs):
        seen.append(prompts)
        return beam_search(model, prompts, **kwargs)

    beam_search = engine.beam_search
    monkeypatch.setattr(engine, "beam_search", spy)
    mrs = ["name[The Eagle], food[French]", "name[Alimentum]", "name[The Eagle], food[French]"]
    cfg = {"num_beams": 2, "max_new_tokens": 4, "batch_size": 2, "engine": "reference"}
    texts, stats = decode_mrs_with_stats(never_ending_model, gpt2_tokenizer, mrs, cfg)

    assert seen == [[encode_prompt(gpt2_tokenizer, mrs[0]), encode_prompt(gpt2_tokenizer, mrs[1])]]
    outputs = beam_search(never_ending_model, seen[0], eos_id=50256, pad_id=50256, num_beams=2,
                          max_new_tokens=4)
    expected = [prediction_text(gpt2_tokenizer, o) for o in outputs]
    assert texts == [expected[0], expected[1], expected[0]]
    assert texts[0] != texts[1]  # the two MRs' sentences differ, so a mix-up of the order would show
    assert all(text and text == text.strip() and "\n" not in text for text in texts)
    assert (stats.mrs, stats.unique_mrs, stats.generated_tokens) == (3, 2, 8)
    assert stats.mrs_per_s > 0 and stats.as_dict()["mrs_per_s"] == stats.mrs_per_s


def test_settings_from_the_decode_config_file():
    cfg = OmegaConf.load(REPO_ROOT / "configs" / "decode" / "default.yaml")
    # The paper-table recipe: microsoft/LoRA's E2E decoding.
    assert settings_from_config(cfg) == BeamSettings(num_beams=10, length_penalty=0.8,
                                                     no_repeat_ngram_size=4, max_new_tokens=64,
                                                     batch_size=None, engine="fast", style="lora",
                                                     extra_stop_tokens=("\n\n",))
    assert settings_from_config({}) == settings_from_config(cfg)


def test_fast_and_reference_engines_give_the_same_texts(never_ending_model, gpt2_tokenizer):
    model = never_ending_model.double()
    mrs = ["name[The Eagle], food[French]", "name[Alimentum], area[riverside]", "name[Zizzi]"]
    cfg = {"num_beams": 3, "max_new_tokens": 6}
    fast = decode_mrs_with_stats(model, gpt2_tokenizer, mrs, {**cfg, "engine": "fast"})[0]
    reference = decode_mrs_with_stats(model, gpt2_tokenizer, mrs, {**cfg, "engine": "reference"})[0]
    assert fast == reference and len(set(fast)) == 3


@pytest.mark.parametrize(("name", "starts"), [("fast", 1), ("reference", 0)])
def test_the_engine_named_is_the_engine_used(never_ending_model, gpt2_tokenizer, monkeypatch,
                                             name, starts):
    """`decode.engine=fast` decodes a GPT-2 through SharedPromptGPT2State's fixed-shape step,
    `reference` never uses that state."""
    calls = {"start": 0, "advance": 0, "advance_at": 0}

    def counting(method: str):
        real = getattr(SharedPromptGPT2State, method)

        def counted(self, *args):
            calls[method] += 1
            return real(self, *args)

        return counted

    for method in calls:
        monkeypatch.setattr(SharedPromptGPT2State, method, counting(method))
    cfg = {"num_beams": 2, "max_new_tokens": 3, "engine": name}
    decode_mrs_with_stats(never_ending_model, gpt2_tokenizer, ["name[Zizzi]"], cfg)
    # One batch: one start, then one fixed-shape forward per step (the step ends with the forward
    # of its tokens, the last one's unused), never the per-step `advance`.
    assert calls == {"start": starts, "advance": 0, "advance_at": 3 * starts}


def test_bad_decode_config_is_a_solo_error():
    with pytest.raises(SoloError, match=r"decode\.beams is not a decoding setting"):
        settings_from_config({"beams": 4})
    with pytest.raises(SoloError, match=r"decode\.max_new_tokens=-1"):
        settings_from_config({"max_new_tokens": -1})
    with pytest.raises(SoloError, match=r"decode\.engine='quick' must be one of fast, reference"):
        settings_from_config({"engine": "quick"})
    with pytest.raises(SoloError, match=r"decode\.batch_size=0"):
        settings_from_config({"batch_size": 0})
    with pytest.raises(SoloError, match=r"decode\.style='beam' must be one of lora, hf"):
        settings_from_config({"style": "beam"})
    with pytest.raises(SoloError, match=r"decode\.extra_stop_tokens='\\n\\n' must be a list"):
        settings_from_config({"extra_stop_tokens": "\n\n"})
    with pytest.raises(SoloError, match=r"decode\.sync_every=0 must be an integer >= 1"):
        settings_from_config({"sync_every": 0})
    for bad in ("yes", 1, None):
        with pytest.raises(SoloError, match=r"decode\.cuda_graph=.* must be auto, true or false"):
            settings_from_config({"cuda_graph": bad})
    assert settings_from_config({"cuda_graph": False, "sync_every": 3}).cuda_graph is False


@pytest.mark.parametrize("style", ["lora", "hf"])
def test_style_and_stop_tokens_reach_the_search(never_ending_model, gpt2_tokenizer, monkeypatch,
                                                style):
    seen = {}
    monkeypatch.setattr(engine, "beam_search", lambda model, prompts, **kw: seen.update(kw) or
                        [[] for _ in prompts])
    cfg = {"style": style, "extra_stop_tokens": ["\n\n"], "engine": "reference", "num_beams": 2}
    decode_mrs_with_stats(never_ending_model, gpt2_tokenizer, ["name[Zizzi]"], cfg)
    assert seen["style"] == style and list(seen["eos_id"]) == [50256, 628]
