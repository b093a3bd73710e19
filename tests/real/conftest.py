"""Real pretrained weights for the tests here: SmolLM2-135M-Instruct and the first dev-set pairs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from solo.paths import REPO_ROOT

STEPS = 30
BATCH = 4


@pytest.fixture(scope="module")
def backbone():
    from solo.models import load_backbone

    torch.manual_seed(0)
    return load_backbone(OmegaConf.load(REPO_ROOT / "configs" / "model" / "smollm2-135m.yaml"))


@pytest.fixture(scope="module")
def pairs(shared_data: Path):
    """(train, held out): the shortest references of the first dev MRs, split by MR."""
    from solo.data import read_lora_txt

    pairs = read_lora_txt(shared_data / "lora-format" / "valid.txt")[:400]
    mrs = list(dict.fromkeys(p.mr for p in pairs))
    held = set(mrs[-4:])
    train = sorted((p for p in pairs if p.mr not in held), key=lambda p: len(p.mr) + len(p.ref))
    dev = sorted((p for p in pairs if p.mr in held), key=lambda p: len(p.ref))
    return train[: STEPS * BATCH], dev[:8]


def trainer_config(**settings):
    """configs/trainer/default.yaml for a short CPU run without evaluation or checkpoints."""
    return OmegaConf.merge(OmegaConf.load(REPO_ROOT / "configs" / "trainer" / "default.yaml"), {
        "batch_size": BATCH, "eval_every": None, "ckpt_every": None, "device": "cpu", "fast_step": False,
        **settings,
    })
