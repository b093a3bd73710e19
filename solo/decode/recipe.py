"""A run's decoding and scoring recipe: the choices besides model, method and training data that
change its numbers, recorded in its run dir (`recipe.json`) and in every results table built from
it. README.md ("Reproduction notes") gives the source of each choice in microsoft/LoRA.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from solo.decode.predict import settings_from_config
from solo.errors import SoloError

RECIPE_FILE = "recipe.json"
TEXT_RULE = "decoded without special tokens, cut at the first blank line, one line, stripped"
# The model.overrides keys that set GPT-2's dropout rates.
_DROPOUT_KEYS = ("resid_pdrop", "embd_pdrop", "attn_pdrop")


def run_recipe(cfg: DictConfig) -> dict[str, Any]:
    """The recipe of the run `cfg` describes (JSON-able)."""
    decode = settings_from_config(OmegaConf.to_container(cfg.decode, resolve=True))  # type: ignore[arg-type]
    overrides = OmegaConf.select(cfg, "model.overrides", default=None) or {}
    return {
        "decode": {
            "style": decode.style,
            "num_beams": decode.num_beams,
            "length_penalty": decode.length_penalty,
            "no_repeat_ngram_size": decode.no_repeat_ngram_size,
            "max_new_tokens": decode.max_new_tokens,
            "stop_tokens": ["<eos>", *decode.extra_stop_tokens],
            "text": TEXT_RULE,
        },
        "score": {"mteval": str(OmegaConf.select(cfg, "score.mteval", default="perl"))},
        "train": {
            "batch_order": str(OmegaConf.select(cfg, "data.batch_order", default=None) or "bucketed"),
            "backbone_dropout": {k: overrides[k] for k in _DROPOUT_KEYS if k in overrides} or "model config",
        },
    }


def recipe_line(recipe: Mapping[str, Any], parts: tuple[str, ...] = ("decode", "score", "train")) -> str:
    """One line for a table header: the recipe's `parts`, in that order."""
    d, s, t = recipe["decode"], recipe["score"], recipe["train"]
    stops = " + ".join(repr(x) if x != "<eos>" else "eos" for x in d["stop_tokens"])
    mteval = {"python": "python (the scorer's -p)", "perl": "perl (the scorer's default)"}.get(
        s["mteval"], s["mteval"])
    dropout = t["backbone_dropout"]
    if isinstance(dropout, Mapping):
        dropout = "off" if not any(dropout.values()) else ", ".join(f"{k} {v}" for k, v in dropout.items())
    text = {
        "decode": (f"decode {d['style']} rule, beam {d['num_beams']}, length penalty {d['length_penalty']:g}, "
                   f"no-repeat {d['no_repeat_ngram_size']}-gram, <= {d['max_new_tokens']} new tokens, stops "
                   f"{stops}; text {d['text']}"),
        "score": f"score: official E2E metrics, BLEU/NIST by mteval {mteval}",
        "train": f"train: batch order {t['batch_order']}, backbone dropout {dropout}",
    }
    return " | ".join(text[part] for part in parts)


def read_recipe(run_dir: Path) -> dict[str, Any] | None:
    """The recipe recorded in `run_dir`, or None if the run predates recipe files."""
    path = Path(run_dir) / RECIPE_FILE
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise SoloError(f"{path}:{err.lineno}: damaged recipe file ({err.msg}); move the run dir out of the run root") from None


def recorded_mteval(run_dir: Path) -> str:
    """The BLEU/NIST variant the run dir's recipe names (what its scores.json must use)."""
    recipe = read_recipe(run_dir)
    if recipe is None:
        raise SoloError(f"{Path(run_dir) / RECIPE_FILE} is missing; the run dir is damaged, move it out of the run root")
    return str(recipe["score"]["mteval"])
