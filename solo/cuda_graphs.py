"""CUDA graph capture on the model's own device, leaving the caller's stream current when it fails.

`torch.cuda.graph` captures on the *current* device's streams and, when `capture_end` raises (a
capture invalidated by a synchronising call), never leaves its capture stream: the process goes
on running there. Both capture sites (solo.train.graphed_step, solo.decode.static_search) use
`capture` so a model on `cuda:1` is captured on device 1, and a failed capture costs nothing but
the eager fallback.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

# One capture stream per device (torch's own default is one stream, made on whichever device
# was current at its first use).
_capture_streams: dict[int, torch.cuda.Stream] = {}


def on_device(device: torch.device) -> contextlib.AbstractContextManager:
    """Make `device` the current CUDA device inside (a no-op off CUDA): streams, graph captures
    and replays all act on the current device."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


def _capture_stream(device: torch.device) -> torch.cuda.Stream:
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index not in _capture_streams:
        _capture_streams[index] = torch.cuda.Stream(device=index)
    return _capture_streams[index]


@contextlib.contextmanager
def capture(graph: torch.cuda.CUDAGraph, device: torch.device, pool: Any = None) -> Iterator[None]:
    """`torch.cuda.graph(graph, pool)` on `device`; on any failure the stream current before
    the capture is current again, and the error propagates."""
    with torch.cuda.device(device):
        previous = torch.cuda.current_stream()
        try:
            with torch.cuda.graph(graph, pool=pool, stream=_capture_stream(device)):
                yield
        except BaseException:
            torch.cuda.set_stream(previous)
            raise
