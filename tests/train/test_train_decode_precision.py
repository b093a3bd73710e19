"""Decoding searches in the run's own matmul mode (trainer.precision), whatever the process last
set: a run resumed after training, or one decoding after another run of a lockstep or packed
launch, would otherwise search in another precision on CUDA (tf32 vs fp32 matmuls)."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf

import solo.decode
import solo.decode.predict
from solo.train.packed import Pack, PendingDecode
from solo.train.pipeline import decode_test_set


@pytest.fixture
def restore_tf32():
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def _flags() -> tuple[bool, bool]:
    return torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32


@pytest.mark.parametrize("precision, left_by_the_last_run, searched", [
    ("tf32", False, (True, True)),
    ("fp32", True, (False, False)),
    ("bf16", True, (False, False)),  # bf16 autocasts training only; the search runs fp32 weights
])
def test_a_run_decodes_in_its_own_precision(monkeypatch, restore_tf32, precision,
                                            left_by_the_last_run, searched):
    seen = []

    def recording(model, tokenizer, mrs, decode_cfg):
        seen.append(_flags())
        return [""] * len(mrs), SimpleNamespace(as_dict=dict)

    monkeypatch.setattr(solo.decode, "decode_mrs_with_stats", recording)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = left_by_the_last_run
    cfg = OmegaConf.create({"trainer": {"precision": precision}, "decode": {}})
    groups = [SimpleNamespace(mr="name[x]")]
    decode_test_set(torch.nn.Linear(2, 2), tokenizer=None, cfg=cfg, groups=groups)
    assert seen == [searched]


class _Tokenizer:
    name_or_path = "fake"

    def __len__(self) -> int:
        return 10


@pytest.mark.parametrize("precision, left_by_the_last_run, searched", [
    ("tf32", False, (True, True)),
    ("fp32", True, (False, False)),
])
def test_a_pack_decodes_in_its_runs_precision(monkeypatch, restore_tf32, precision,
                                              left_by_the_last_run, searched):
    seen = []

    def recording(backbone, packed, tokenizer, mrs, decode_cfg):
        seen.append(_flags())
        return [([""] * len(mrs), None) for _ in packed.members]

    monkeypatch.setattr(solo.decode.predict, "decode_mrs_packed", recording)
    # solo.decode.beam_search is also the name of a function: the module, from sys.modules
    monkeypatch.setattr(sys.modules["solo.decode.beam_search"], "PackedDecoding",
                        lambda forward, members: SimpleNamespace(members=members))
    pack = Pack(torch.nn.Linear(2, 2), torch.device("cpu"), precision)
    members = [SimpleNamespace(index=i, model=torch.nn.Linear(2, 2)) for i in range(2)]
    pending = [PendingDecode(m, _Tokenizer(), ["name[x]"], {}) for m in members]  # type: ignore[arg-type]
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = left_by_the_last_run
    pack._decode(pending)
    assert seen == [searched]
    assert all(p.result is not None for p in pending)
