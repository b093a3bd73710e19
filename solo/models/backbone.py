"""Load the backbone: pretrained weights (hub name or local folder) or random weights from a config.

model_cfg keys: `name` (label), `pretrained` (hub name | local folder | `gguf:<package>/<file>`,
see solo.models.gguf | null), `config_file` (architecture JSON, used when `pretrained` is null),
`overrides` (config fields to change: for random weights any, e.g. n_layer for a
tiny model; for pretrained weights the dropout rates only, checked), `tokenizer` (hub name | local folder | `gguf:` spec), `format`
(the prompt/target format, see solo.data.tokenization; null = the GPT-2 recipe). The format is
attached to the returned tokenizer, so every encoder of the run (training, dev loss, decoding
prompts) uses the same one.

Random weights come from torch's global RNG: seed it before calling for reproducible models.
Offline, a hub name fails fast (a 3 s reachability probe, then the cache only, instead of the hub
client's ~50 s of retries) with a SoloError that says what was tried and which key to set.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from huggingface_hub import constants as hf_constants
from huggingface_hub import try_to_load_from_cache
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PretrainedConfig

from solo.config_values import config_value
from solo.data.tokenization import attach_format
from solo.errors import SoloError
from solo.models.gguf import ensure_converted, is_gguf_spec
from solo.paths import shared_data_dir

log = logging.getLogger(__name__)

# The GPT-2 family shares one vocabulary; the shared data ships it for offline machines.
_GPT2_TOKENIZER_NAMES = {"gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl", "openai-community/gpt2"}


def _hub_reachable(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError:
        return False
    return True


@contextlib.contextmanager
def _hub_offline():
    """Make the hub client use its cache only (it otherwise retries unreachable URLs for ~50 s)."""
    previous = hf_constants.HF_HUB_OFFLINE
    hf_constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        hf_constants.HF_HUB_OFFLINE = previous


def _from_hub_or_cache(loader: Any, name: str, probe_file: str) -> Any:
    """`loader(name)` from the hub if reachable, else from the local HF cache, else None."""
    if _hub_reachable():
        return loader(name)
    try:
        cached = try_to_load_from_cache(name, probe_file)
    except ValueError:  # not a valid repo id either
        return None
    if not isinstance(cached, str):
        return None
    with _hub_offline():
        return loader(name)


def random_config(config_file: str | Path | None, overrides: Mapping[str, Any] | None = None) -> PretrainedConfig:
    """The architecture config from a JSON file with `overrides` applied (unknown keys rejected)."""
    if not config_file:
        raise SoloError("model.config_file is not set; give an architecture JSON (e.g. ${shared:gpt2-configs/gpt2.json}) or set model.pretrained")
    path = Path(str(config_file))
    if not path.is_file():
        raise SoloError(f"model.config_file {path} does not exist; point it to an architecture JSON")
    try:
        fields = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise SoloError(f"{path}:{err.lineno}: invalid JSON ({err.msg})") from None
    model_type = fields.pop("model_type", None)
    if model_type is None:
        raise SoloError(f"{path} has no model_type; use a Hugging Face config.json")
    try:
        config = AutoConfig.for_model(model_type, **fields)
    except ValueError as err:
        raise SoloError(f"{path}: unknown model_type {model_type!r} ({err})") from None
    for key, value in dict(overrides or {}).items():
        if not hasattr(config, key):
            raise SoloError(f"model.overrides.{key} is not a field of the {model_type} config; check the spelling")
        setattr(config, key, value)
    return config


def build_random_model(config: PretrainedConfig, device: str | torch.device | None = None) -> torch.nn.Module:
    """A randomly initialised causal LM; `device="meta"` builds shapes only (for counting)."""
    if device is None:
        return AutoModelForCausalLM.from_config(config)
    with torch.device(device):
        return AutoModelForCausalLM.from_config(config)


def _load_pretrained(pretrained: str, overrides: Mapping[str, Any] | None = None, group: str = "model",
                     random_fallback: bool = True) -> torch.nn.Module:
    """`group`: the model config's name (configs/model/<group>.yaml), for the messages;
    `random_fallback`: whether model.config_file could build random weights instead."""
    # Overrides go to from_pretrained, so fields read at construction (dropout rates) take effect.
    overrides = dict(overrides or {})
    load = partial(AutoModelForCausalLM.from_pretrained, output_loading_info=True, **overrides)
    if is_gguf_spec(pretrained):
        pretrained = str(ensure_converted(pretrained))
    local = Path(pretrained).expanduser()
    source = str(local) if local.is_dir() else pretrained

    def checked_load(name: str) -> tuple[torch.nn.Module, dict]:
        # The saved config first: a refused override costs no weight loading.
        if any(not _free_to_override(key) for key in overrides):
            _check_overrides(AutoConfig.from_pretrained(name), overrides, source)
        return load(name)

    try:
        with _load_report_held():
            if local.is_dir():
                loaded = checked_load(str(local))
            else:
                loaded = _from_hub_or_cache(checked_load, pretrained, "config.json")
            model = None if loaded is None else _complete(*loaded, source)
    except TypeError as err:
        raise _bad_overrides(overrides, err, group) from None
    except RuntimeError as err:  # a weight of another shape than its config's
        raise _shape_error(err, source) from None
    except (OSError, ValueError) as err:
        if local.is_dir():
            raise SoloError(f"model.pretrained folder {local} has no loadable weights ({str(err).splitlines()[0]}); "
                            f"fix the folder or set model.pretrained") from None
        model, reason = None, str(err).splitlines()[0]
    else:
        reason = "not in the local Hugging Face cache and huggingface.co is unreachable"
    if model is None:
        instead = ", or to null for random weights from model.config_file" if random_fallback else ""
        raise SoloError(
            f"cannot load pretrained weights {pretrained!r}: tried local folder {local} (absent) and the "
            f"Hugging Face hub/cache ({reason}); set model.pretrained to a local folder holding the "
            f"weights{instead}"
        )
    return model


# Settings that may differ from a checkpoint's config.json: they change no tensor and no arithmetic
# the weights were trained for (dropout rates, layer drop, MoE jitter) or only how it is loaded.
_LOADING_SETTINGS = ("attn_implementation", "dtype", "torch_dtype", "use_cache")


def _free_to_override(key: str) -> bool:
    return any(word in key for word in ("dropout", "pdrop", "layerdrop", "jitter")) or key in _LOADING_SETTINGS


def _check_overrides(saved: PretrainedConfig, overrides: Mapping[str, Any], where: str) -> None:
    """profile=tiny's n_layer: 8 on a 4-block checkpoint would leave blocks random, n_layer: 1 drop
    some, n_head split them otherwise, and transformers says nothing of the last two."""
    for key, value in overrides.items():
        if _free_to_override(key):
            continue
        if not hasattr(saved, key):
            raise _not_this_architecture(where, overrides, f"{key} is absent from its config.json")
        if getattr(saved, key) != value:
            raise _not_this_architecture(where, overrides, f"{key} is {getattr(saved, key)!r} in its config.json")


def _complete(model: torch.nn.Module, info: Mapping[str, Any], where: str) -> torch.nn.Module:
    """The loaded model, if the weights filled all of it (else some tensors would stay random)."""
    missing = list(info.get("missing_keys") or ()) + [str(k[0]) if isinstance(k, tuple) else str(k)
                                                      for k in info.get("mismatched_keys") or ()]
    if missing:
        raise SoloError(f"model.pretrained {where}: {len(missing)} tensors of the model are not in its weights "
                        f"(e.g. {sorted(missing)[0]}), which would stay random; the checkpoint is incomplete "
                        f"or of another architecture")
    return model


@contextlib.contextmanager
def _load_report_held():
    """transformers' log lines while loading (its LOAD REPORT table) are held back, then shown if
    the load succeeds; when it fails, the SoloError that replaces its exception says it in a line."""
    library = logging.getLogger("transformers")
    held: list[logging.LogRecord] = []

    class Hold(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            held.append(record)

    handlers = library.handlers[:]
    library.handlers = [Hold()]
    try:
        yield
    finally:
        library.handlers = handlers
    for record in held:  # only reached when the body raised nothing
        library.handle(record)


def _shape_error(err: RuntimeError, where: str) -> Exception:
    # Overrides that change shapes were refused from config.json before loading: here the
    # checkpoint's own config.json and weight files disagree.
    if "mismatched_sizes" in str(err) or "size mismatch" in str(err):
        return SoloError(f"model.pretrained {where}: its weights have other shapes than its config.json describes; "
                         f"the folder's config.json and weight files disagree: save the model again, or fix "
                         f"config.json")
    return err


def _not_this_architecture(where: str, overrides: Mapping[str, Any], why: str) -> SoloError:
    return SoloError(f"model.pretrained {where}: model.overrides {dict(overrides)} change its architecture ({why}); "
                     f"on pretrained weights only dropout rates and loading settings ({', '.join(_LOADING_SETTINGS)}) "
                     f"may be overridden (profile=tiny's model=tiny sets n_layer, n_embd, ...: with your own "
                     f"weights use model=hf)")


def _bad_overrides(overrides: Mapping[str, Any], err: Exception | None, group: str) -> SoloError:
    why = f" ({str(err).splitlines()[0]})" if err else ""
    return SoloError(f"model.overrides {dict(overrides)} (from configs/model/{group}.yaml and the command line) "
                     f"are not all fields of the pretrained model's config{why}: for weights of another "
                     f"architecture use model=hf model.pretrained=... (its own tokenizer, no overrides); "
                     f"else check the keys' spelling")


def load_tokenizer(spec: str | None) -> Any:
    tokenizer = _load_tokenizer(spec)
    # transformers builds an empty tokenizer from a folder holding weights but no tokenizer files
    # (one token; all text encodes to nothing): a run would train on end tokens alone.
    if not tokenizer("The Eagle is a pub.", add_special_tokens=False)["input_ids"]:
        raise SoloError(f"model.tokenizer {spec}: no tokenizer there (it encodes every text to nothing; a "
                        f"folder of weights without tokenizer.json / vocab files?); set model.tokenizer to "
                        f"the model's tokenizer (a hub name or a folder holding its files)")
    return tokenizer


def _load_tokenizer(spec: str | None) -> Any:
    if not spec:
        raise SoloError("model.tokenizer is not set; give a hub name or a local tokenizer folder")
    if is_gguf_spec(spec):
        return AutoTokenizer.from_pretrained(str(ensure_converted(str(spec))))
    local = Path(str(spec)).expanduser()
    if local.is_dir():
        return AutoTokenizer.from_pretrained(str(local))
    try:
        tokenizer = _from_hub_or_cache(AutoTokenizer.from_pretrained, str(spec), "tokenizer_config.json")
    except (OSError, ValueError):
        tokenizer = None
    if tokenizer is None and str(spec) in _GPT2_TOKENIZER_NAMES and (shared_data_dir() / "gpt2-tokenizer").is_dir():
        tokenizer = AutoTokenizer.from_pretrained(str(shared_data_dir() / "gpt2-tokenizer"))
    if tokenizer is None:
        raise SoloError(
            f"cannot load tokenizer {spec!r}: not a local folder, not cached and the hub is unreachable; "
            f"set model.tokenizer to a local tokenizer folder (e.g. ${{shared:gpt2-tokenizer}})"
        )
    return tokenizer


def _warn_if_foreign(model: torch.nn.Module, tokenizer: Any, spec: Any) -> None:
    """A warning, not an error (some fine-tunes end on another token than their config names): a
    tokenizer whose end token is none of the model's is most likely another model's, e.g. GPT-2's
    beside Pythia weights, whose vocabulary is large enough for the size check above."""
    eos = getattr(model.config, "eos_token_id", None)
    ends = set(eos) if isinstance(eos, (list, tuple)) else {eos}
    if tokenizer.eos_token_id is not None and None not in ends and tokenizer.eos_token_id not in ends:
        log.warning("model.tokenizer %s ends text with token %d, but the model's config names %s as its end: "
                    "is it this model's tokenizer? (model=hf takes both from model.pretrained)",
                    spec, tokenizer.eos_token_id, sorted(ends))


def load_backbone(model_cfg: Any) -> tuple[torch.nn.Module, Any]:
    """(model, tokenizer) for `model_cfg` (DictConfig or mapping); see the module docstring."""
    pretrained = config_value(model_cfg, "pretrained")
    if pretrained:
        model = _load_pretrained(str(pretrained), config_value(model_cfg, "overrides"),
                                 str(config_value(model_cfg, "name", "model")),
                                 random_fallback=bool(config_value(model_cfg, "config_file")))
    else:
        config = random_config(config_value(model_cfg, "config_file"), config_value(model_cfg, "overrides"))
        model = build_random_model(config)
    tokenizer = load_tokenizer(config_value(model_cfg, "tokenizer"))
    if model.config.vocab_size < len(tokenizer):
        raise SoloError(
            f"model vocabulary ({model.config.vocab_size}) is smaller than the tokenizer's ({len(tokenizer)}); "
            f"use a matching model.tokenizer"
        )
    _warn_if_foreign(model, tokenizer, config_value(model_cfg, "tokenizer"))
    attach_format(tokenizer, config_value(model_cfg, "format"))
    return model, tokenizer
