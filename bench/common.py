"""What every benchmark shares: models with random weights, E2E-like batches, timing, tables.

Imports only torch and transformers (plus solo.* modules that avoid Hydra/OmegaConf/datasets at
import time), so the benchmarks run on a bare GPU image.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from solo.data.batching import TrainBatches
from solo.schema import COUNT_ARGUMENT, Number, argparse_type

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

# argparse types for the benchmarks' flags: a bad value is argparse's one line naming the flag.
COUNT = COUNT_ARGUMENT  # a count, a size, a length
AT_LEAST_0 = argparse_type(Number(integer=True, low=0))  # a seed, warm-up steps, 0 = the default
SECONDS = argparse_type(Number(low=0, open_low=True))

EOS = 50256
# Architectures by name; "tiny" is the CPU stand-in (real vocabulary, 4 small blocks).
SIZES = {
    "S": {"file": "gpt2.json", "n_layer": 12, "n_embd": 768, "n_head": 12},
    "M": {"file": "gpt2-medium.json", "n_layer": 24, "n_embd": 1024, "n_head": 16},
    "tiny": {"file": None, "n_layer": 4, "n_embd": 64, "n_head": 4},
}


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def gpt2_config(size: str, config_dir: str | None):
    """GPT-2 config for `size` from `config_dir/<file>` if present, else built from the known sizes."""
    from transformers import GPT2Config

    spec = SIZES[size]
    if config_dir and spec["file"] and (Path(config_dir) / spec["file"]).exists():
        config = GPT2Config.from_json_file(str(Path(config_dir) / spec["file"]))
    else:
        config = GPT2Config(n_layer=spec["n_layer"], n_embd=spec["n_embd"], n_head=spec["n_head"])
    config._attn_implementation = "sdpa"
    return config


def random_gpt2(size: str, config_dir: str | None, device: torch.device, seed: int = 0):
    """A GPT-2 with random weights, initialised directly on `device` (fast for GPT-2 M)."""
    from transformers import GPT2LMHeadModel

    torch.manual_seed(seed)
    with torch.device(device):
        model = GPT2LMHeadModel(gpt2_config(size, config_dir))
    model.config._attn_implementation = "sdpa"
    return model


def e2e_like_batches(count: int, batch_size: int, seed: int, low: int = 40, high: int = 110,
                     pad_to: int | None = None) -> list[dict[str, torch.Tensor]]:
    """Right-padded batches of random tokens, lengths uniform in [low, high]; targets = last 55%.

    E2E examples are an MR (~45% of the tokens) followed by the reference (the targets).
    """
    generator = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(count):
        lengths = torch.randint(low, high + 1, (batch_size,), generator=generator).tolist()
        examples = [(torch.randint(0, EOS, (n,), generator=generator).tolist(),
                     [0] * int(n * 0.45) + [1] * (n - int(n * 0.45))) for n in lengths]
        batches = TrainBatches(examples, batch_size, seed=0, pad_id=EOS,
                               bucket_lengths=[pad_to] if pad_to else None)
        out.append(batches.collate(range(batch_size)))
    return out


def random_prompts(count: int, seed: int, low: int = 20, high: int = 60) -> list[list[int]]:
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(low, high + 1, (count,), generator=generator).tolist()
    return [torch.randint(0, EOS, (n,), generator=generator).tolist() for n in lengths]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, fn: Callable[[], object]) -> float:
    """Seconds `fn` takes, the device drained before and after."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


@dataclass
class Row:
    name: str
    values: dict[str, object]


def print_table(title: str, columns: Sequence[str], rows: Sequence[Row], echo: bool = True) -> str:
    """A fixed-width table, returned as text and printed unless `echo` is false (partial reports)."""
    def fmt(v: object) -> str:
        if isinstance(v, float):
            return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.0f}"
        return "-" if v is None else str(v)

    header = ["variant", *columns]
    body = [[row.name, *(fmt(row.values.get(c)) for c in columns)] for row in rows]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    lines = [title, "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in body]
    text = "\n".join(lines)
    if echo:
        print(text, flush=True)
    return text


def save_report(path: str | None, report: dict, title: str, columns: Sequence[str],
                rows: Sequence[Row], echo: bool = True) -> None:
    """Put the table into `report` and write it: called after each part (echo=False), so a later
    timeout keeps what was measured, and once at the end to print it."""
    report["table"] = print_table(title, columns, rows, echo=echo)
    write_json(path, report)


def write_json(path: str | None, payload: dict) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(payload, indent=1, default=str))


def free_memory(device: torch.device) -> None:
    import gc

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def add_sweep_arguments(parser: argparse.ArgumentParser, *, counts_cuda: str,
                        counts_cpu: str = "1,2,4") -> None:
    """The options of a benchmark over N runs of one random GPT-2 (bench_packed*)."""
    parser.add_argument("--device", default="auto")
    parser.add_argument("--size", default=None, help="S or M (default: S on CUDA, tiny on the CPU)")
    parser.add_argument("--config-dir", default=None)
    parser.add_argument("--counts", default=None,
                        help=f"default {counts_cuda} on CUDA, {counts_cpu} on the CPU")
    parser.add_argument("--precision", default=None, help="bf16 or fp32 (default bf16 on CUDA, fp32 on the CPU)")
    parser.add_argument("--json", default=None)
    parser.set_defaults(counts_cuda=counts_cuda, counts_cpu=counts_cpu)


@dataclass
class Sweep:
    """`add_sweep_arguments`' options resolved for the device."""

    device: torch.device
    size: str
    counts: list[int]
    precision: str

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"


def sweep_setup(args: argparse.Namespace) -> Sweep:
    device = pick_device(args.device)
    cuda = device.type == "cuda"
    counts = args.counts or (args.counts_cuda if cuda else args.counts_cpu)
    return Sweep(device=device, size=args.size or ("S" if cuda else "tiny"),
                 counts=[int(c) for c in counts.split(",")],
                 precision=args.precision or ("bf16" if cuda else "fp32"))
