"""Several experiments in one process, advanced in lockstep, each on its own CUDA stream.

Why: N training processes on one GPU only time-slice it. On an H200, N processes each running a
CUDA-graphed step (solo.train.graphed_step.GraphedStep) gave 0.93x the throughput of one run in total for
N=2 and N=4, where issue 7 asks >= 0.8*N x. Graph launches of one process on different CUDA
streams can run on the GPU at the same time, so the runs go into one process: one optimiser step
of run 1, then one of run 2, ..., round robin on one thread (a fixed, deterministic order), the
GPU work of run k enqueued on stream k.

Each run is `solo.train.pipeline.experiment_steps`: its own model (backbone loaded per run),
method, optimiser, data order, run directory and lock, checkpoints, metrics and wandb run, exactly
as alone; finished runs are skipped, unfinished ones resume. What a process shares is swapped per
run around every advance: Python's `random`, numpy's global RNG, torch's CPU RNG, the CUDA
generators (each run gets its own generator state object, so CUDA graphs a run captures replay
with its draws and never race with another run's) and the TF32 switches of trainer.precision.

Determinism: a run trained in lockstep produces the numbers it produces alone with the same config
and seed (metrics, adapter, predictions; on the CPU bitwise, tests/train/test_train_lockstep.py).

A failing run (a SoloError such as a non-finite loss, or any other exception) stops alone; the
others go on, and the failures are reported at the end, one line per run.

With `pack=True` (`launcher=packed`) runs that share a backbone also share each step: every run's
advance queues its batch, and after each round `Packer.flush` runs one forward and backward for
all of them (solo.train.packed). Packed runs use no streams of their own: they are one step.

OmegaConf and the pipeline are imported inside `run_lockstep`, so the GPU image (no Hydra) can
import `RunState` and `on_stream` (bench/bench_concurrency.py measures with them).
"""

from __future__ import annotations

import contextlib
import sys
import traceback
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from solo.errors import SoloError
from solo.train.interrupt import Interrupted, stop_on_signals
from solo.train.loop import PROGRESS_LINE, resolve_device
from solo.train.rng import RunState

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from solo.train.packed import Packer, PackMember


@dataclass
class LockstepResult:
    """One job's end: its run dir (None if its config names none) and, if it failed, why."""

    label: str  # the run dir, or the job's overrides when it has none
    run_dir: Path | None = None
    error: str | None = None
    exception: BaseException | None = None
    value: Any = None  # what the run's generator returned


class LockstepFailed(SoloError):
    """Some runs of a lockstep group failed; the message has one line per failed run."""


@dataclass
class _Run:
    index: int
    steps: Generator[int, None, Path]
    state: RunState
    stream: torch.cuda.Stream | None
    result: LockstepResult
    sharers: list[int] = field(default_factory=list)  # later jobs with the same run dir
    pack: PackMember | None = None

    def advance(self) -> bool:
        """One optimiser step (or the rest of the run once training is over); False when done."""
        self.state.restore()
        line = PROGRESS_LINE.set(self.index)  # each run's progress bar on its own line
        try:
            with on_stream(self.stream):
                next(self.steps)
            return True
        except StopIteration as done:
            self.result.value = done.value
            self.leave_pack()
            return False
        except Exception as err:  # noqa: BLE001 - one run's failure must not stop the others
            self.fail(err)
            return False
        finally:
            PROGRESS_LINE.reset(line)
            self.state.capture()

    def fail(self, err: BaseException) -> None:
        self.result.error, self.result.exception = _reason(err), err
        if not isinstance(err, SoloError):
            traceback.print_exception(err, file=sys.stderr)  # a bug: keep its traceback
        # The result keeps the exception until the launch ends; its frames' locals (the run's
        # model, optimiser, graphs) need not live that long.
        traceback.clear_frames(err.__traceback__)
        self.leave_pack()

    def leave_pack(self) -> None:
        if self.pack is not None:
            self.pack.leave()


def on_stream(stream: torch.cuda.Stream | None) -> contextlib.AbstractContextManager:
    """Enqueue GPU work on `stream` (after what is queued on the default stream); None: no-op."""
    if stream is None:  # torch.cuda.stream(None) would initialise CUDA, which CPU builds cannot
        return contextlib.nullcontext()
    stream.wait_stream(torch.cuda.default_stream(stream.device))  # e.g. a caller's set-up
    return torch.cuda.stream(stream)


def _reason(err: BaseException) -> str:
    message = str(err).strip().splitlines()
    text = message[0] if message else ""
    return text if isinstance(err, SoloError) else f"{type(err).__name__}: {text}"


def _describe(overrides: Sequence[str]) -> str:
    return " ".join(overrides) if overrides else "(no overrides)"


def run_lockstep(
    cfgs: Sequence[DictConfig], overrides_list: Sequence[Sequence[str]] | None = None,
    *, pack: bool = False,
) -> list[LockstepResult]:
    """Run every config's experiment in lockstep; one result per config, failures included.
    `pack`: runs that share a backbone train packed (solo.train.packed), one backbone pass per
    step for all of them. Where some run will score and the scorer cannot start (no Java), its
    error is raised before any run starts."""
    from solo.train.packed import Packer
    from solo.train.pipeline import check_scorer, experiment_steps
    from solo.train.rundir import is_finished, run_dir_for

    overrides_list = list(overrides_list) if overrides_list is not None else [[] for _ in cfgs]
    if len(overrides_list) != len(cfgs):
        raise SoloError(
            f"run_lockstep got {len(cfgs)} configs but {len(overrides_list)} override lists; "
            "pass one override list per config"
        )
    results = [
        LockstepResult(label=f"job {i} ({_describe(o)})") for i, o in enumerate(overrides_list)
    ]
    runs: list[_Run] = []
    by_dir: dict[Path, _Run] = {}
    packer = Packer() if pack else None
    will_score = False
    for index, (cfg, overrides) in enumerate(zip(cfgs, overrides_list, strict=True)):
        try:
            run_dir = run_dir_for(cfg)
            device = resolve_device(str(cfg.trainer.device))
        except Exception as err:  # noqa: BLE001 - e.g. a bad interpolation: this job only
            results[index].error, results[index].exception = _reason(err), err
            continue
        results[index].run_dir, results[index].label = run_dir, str(run_dir)
        will_score = will_score or not is_finished(run_dir)
        if run_dir in by_dir:  # e.g. a sweep over logger.*: one run, reported for both jobs
            by_dir[run_dir].sharers.append(index)
            continue
        cuda = device.type == "cuda"
        member = packer.member() if packer is not None else None
        run = _Run(
            index=index,
            steps=experiment_steps(cfg, list(overrides), pack=member),
            state=RunState(cuda),
            # Packed runs share one batched step: more streams would only split it.
            stream=torch.cuda.Stream(device=device) if cuda and not pack else None,
            result=results[index],
            pack=member,
        )
        runs.append(run)
        by_dir[run_dir] = run

    if will_score:
        # Once for all: without Java every run would load its backbone, then fail the same way.
        check_scorer()
    if sum(str(cfg.logger.get("mode", "offline")) != "disabled" for cfg in cfgs) > 1:
        _separate_wandb_runs()
    outer = RunState(cuda=any(run.stream is not None for run in runs), own=False)
    active = list(runs)
    try:
        with stop_on_signals():  # Ctrl-C: every run checkpoints after its current step and stops
            _rounds(active, packer)
    finally:
        for run in active:  # interrupted (e.g. Ctrl-C): release locks, close trackers
            run.steps.close()
        outer.restore()
        if any(run.stream is not None for run in runs):
            torch.cuda.synchronize()
    for run in runs:
        for index in run.sharers:
            results[index].error = run.result.error
            results[index].exception = run.result.exception
    return results


def drive(packer: Packer, runs: Sequence[tuple[PackMember, Generator[Any, None, Any]]],
          max_rounds: int | None = None) -> list[Any]:
    """What `run_lockstep(pack=True)` does, for step generators built by the caller (`train_steps`
    or `experiment_steps` with each run's member): each run advanced in turn with its own random
    state, then the packs flushed, until every run ends. Returns each run's return value, or the
    exception it failed with (it leaves its pack, the others go on). `max_rounds`: stop early,
    closing the unfinished runs (a crash, in tests)."""
    cuda = any(m.pack is not None and m.pack.device.type == "cuda" for m, _ in runs)
    results = [LockstepResult(label=f"run {i}") for i in range(len(runs))]
    active = [_Run(index=i, steps=steps, state=RunState(cuda), stream=None, result=results[i],
                   pack=member) for i, (member, steps) in enumerate(runs)]
    outer = RunState(cuda, own=False)
    try:
        _rounds(active, packer, max_rounds)
    finally:
        for run in active:
            run.steps.close()
        outer.restore()
    return [r.exception if r.exception is not None else r.value for r in results]


def _rounds(active: list[_Run], packer: Packer | None, max_rounds: int | None = None) -> None:
    """Advance every run in `active` once, in order, then flush the packs; again until none is
    left (or after `max_rounds`). `active` is updated in place, so a caller interrupted by a
    signal knows which runs to close."""
    rounds = 0
    while active and (max_rounds is None or rounds < max_rounds):
        active[:] = [run for run in active if run.advance()]
        if packer is not None:
            _flush(packer, active)
        rounds += 1


def _flush(packer: Packer, active: list[_Run]) -> None:
    """The packed update of every run that queued a step; if it fails, so do its pack's runs."""
    for pack in packer.packs:
        try:
            pack.flush()
        except Exception as err:  # noqa: BLE001 - other packs go on
            failed = [run for run in active if run.pack is not None and run.pack.pack is pack]
            for run in failed:
                run.steps.close()
                run.fail(err)
                active.remove(run)


def finished_run_dirs(results: Sequence[LockstepResult]) -> list[Path]:
    """The run dirs of `run_lockstep`'s results, in order; LockstepFailed (one line per failed
    run) if any failed."""
    failed = [r for r in results if r.error is not None]
    if failed:
        lines = [f"{r.label}: {r.error}" for r in failed]
        error = LockstepFailed(
            f"{len(failed)} of {len(results)} lockstep runs failed:\n" + "\n".join(lines)
        )
        # Stopped by a signal: exit as the signal asks (130/143), not as for bad input.
        codes = [r.exception.exit_code for r in failed if isinstance(r.exception, Interrupted)]
        if codes:
            error.exit_code = codes[0]  # type: ignore[attr-defined]
        raise error
    return [r.run_dir for r in results if r.run_dir is not None]


def _separate_wandb_runs() -> None:
    """Let each run keep its own wandb run: by default a second wandb.init in a process returns
    (or finishes) the active run instead of starting another."""
    import wandb

    wandb.setup(wandb.Settings(reinit="create_new"))
