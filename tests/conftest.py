"""Fixtures shared by every test module: the shared data folder, the GPT-2 tokenizer, tiny models."""

from __future__ import annotations

from pathlib import Path

import pytest

from solo.paths import shared_data_dir


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tests run tiny models: one intra-op thread is faster for them, and on a busy 2-core machine
    competing OpenMP threads made them an order of magnitude slower."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if not (path / "e2e" / "devset.csv").exists():
        pytest.fail(f"shared data not found at {path}; set SOLO_SHARED_DATA to the shared/data folder")
    return path


@pytest.fixture(scope="session")
def gpt2_tokenizer(shared_data: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(shared_data / "gpt2-tokenizer"))


@pytest.fixture()
def tiny_gpt2_config():
    """A 4-block GPT-2 with the real vocabulary, small enough to train on 2 CPU cores."""
    from transformers import GPT2Config

    return GPT2Config(
        vocab_size=50257, n_positions=256, n_embd=64, n_layer=4, n_head=4,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
    )
