"""One experiment end to end: train -> decode the test MRs -> score -> DONE, in one run directory.

Each stage leaves a file behind (`adapter/`, `predictions.txt`, `scores.json`), so rerunning an
interrupted experiment skips what is done and resumes training from its last checkpoint.

`experiment_steps` is the same experiment as a generator that yields after every optimiser step,
so solo.train.lockstep can advance several experiments in lockstep; `run_experiment` drains it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from omegaconf import DictConfig, OmegaConf

from solo.atomic import (
    atomic_directory,
    readable_directory,
    write_json_atomic,
    write_text_atomic,
)
from solo.decode.recipe import RECIPE_FILE, recorded_mteval, run_recipe
from solo.errors import SoloError
from solo.schema import Number
from solo.train import meta as run_meta
from solo.train.checkpoint import intact_copy
from solo.train.interrupt import deferred, stop_on_signals
from solo.train.loop import check_trainer_config, drain, resolve_device, train_steps
from solo.train.precision import apply_precision
from solo.train.rng import seed_everything
from solo.train.rundir import (
    DONE_FILE,
    check_complete,
    claimed,
    config_hash,
    is_finished,
    refuse_if_claimed,
    run_dir_for,
    seed_group,
    write_error,
)
from solo.train.tracking import check_login, logger_settings, start_tracking

if TYPE_CHECKING:
    from solo.data import MRGroup, TrainBatches
    from solo.methods import Method
    from solo.train.packed import PackMember


def check_config(cfg: DictConfig) -> None:
    """Every config group checked before a run directory exists or a weight is loaded: the trainer,
    data, decode and logger schemas, the method's settings, the scorer's mteval variant; the model
    group is checked by loading it."""
    from e2e_eval.scoring import check_mteval
    from solo.data.settings import data_settings
    from solo.decode.predict import settings_from_config
    from solo.methods import check_method_config

    check_complete(cfg)
    check_known_keys(cfg)
    check_seed(cfg.get("seed"))
    check_trainer_config(cfg.trainer)
    data_settings(cfg.data)
    decode = settings_from_config(OmegaConf.to_container(cfg.decode, resolve=True))  # type: ignore[arg-type]
    if decode.max_new_tokens == 0:  # the search allows it; a run would score empty sentences
        raise SoloError("decode.max_new_tokens=0 would make every prediction empty; use an integer >= 1 "
                        "(the paper's recipe: 64)")
    check_method_config(cfg.method)
    check_mteval(str(OmegaConf.select(cfg, "score.mteval", default="perl")))
    logger_settings(cfg.get("logger"))


# The keys no group schema checks (trainer, data, decode, method and logger check their own): an
# added `+sed=3` or `+model.tokeniser=...` would otherwise change the run hash and nothing else.
KNOWN_KEYS = {
    "": ("name", "seed", "run_root", "experiment_id", "smoke", "cited", "model", "method", "data",
         "trainer", "decode", "score", "logger", "hydra"),
    "model": ("name", "pretrained", "config_file", "overrides", "tokenizer", "format"),
    "score": ("mteval",),
}


def check_known_keys(cfg: DictConfig) -> None:
    for group, known in KNOWN_KEYS.items():
        node = OmegaConf.select(cfg, group) if group else cfg
        if not isinstance(node, DictConfig):
            continue
        unknown = sorted(set(node.keys()) - set(known))
        if unknown:
            what = f"{group}.{unknown[0]} is not a {group} setting" if group else f"{unknown[0]} is not a setting"
            shown = ", ".join(sorted(k for k in known if k != "hydra"))
            raise SoloError(f"{what}; known: {shown} (python -m solo.train --cfg job lists every setting)")


# torch, numpy and Python's random take the run's seed; numpy's legacy seeding only up to 2**32 - 1.
SEED = Number(integer=True, low=0, high=2**32 - 1)


def check_seed(seed: Any) -> None:
    if not SEED.accepts(seed):
        shown = repr(seed) if isinstance(seed, str) else seed
        raise SoloError(f"seed={shown} is not allowed; allowed: {SEED.describe()} (default 1)")


def check_scorer() -> None:
    """Start the process-wide scorer every run ends with now: without Java a run stops here, with
    the scorer's own line, before its run directory exists or a step is trained (not hours later,
    after decoding). A scorer that needs no Java (tests fake `e2e_eval.shared_scorer`) passes."""
    from e2e_eval import shared_scorer

    shared_scorer()


def build_batches(cfg: DictConfig, tokenizer, split: str, *, shuffle: bool, batch_size: int | None = None):
    """`split`'s examples in batches of `batch_size` (default: trainer.batch_size)."""
    from solo.data import TrainBatches, encode_pairs, load_split

    pairs = load_split(cfg.data, split)
    examples = encode_pairs(tokenizer, pairs, cfg.data.max_length)
    return TrainBatches(
        examples,
        int(batch_size or cfg.trainer.batch_size),
        int(cfg.seed),
        pad_id=_pad_id(tokenizer),
        bucket_lengths=cfg.data.get("bucket_lengths"),
        shuffle=shuffle,
        order=cfg.data.get("batch_order") or "bucketed",
    )


def _pad_id(tokenizer) -> int:
    # GPT-2 has no pad token; padded positions are masked out, so eos serves.
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def decode_test_set(
    model: torch.nn.Module, tokenizer, cfg: DictConfig, groups: list | None = None
) -> tuple[list[str], list, dict]:
    """Beam-search one prediction per unique test MR (order of first appearance), with timing."""
    from solo.data import group_by_mr, load_split
    from solo.decode import decode_mrs_with_stats

    groups = groups if groups is not None else group_by_mr(load_split(cfg.data, "test"))
    # The matmul mode is process-wide: set the run's own, or a run resumed after training (or
    # decoding after another run in the same process) would search in another precision.
    apply_precision(str(cfg.trainer.precision), next(model.parameters()).device)
    model.eval()
    with torch.no_grad():
        texts, stats = decode_mrs_with_stats(
            model,
            tokenizer,
            [group.mr for group in groups],
            OmegaConf.to_container(cfg.decode, resolve=True),  # type: ignore[arg-type]
        )
    return texts, groups, stats.as_dict()


@dataclasses.dataclass
class Inputs:
    """Everything a run reads, loaded (and so known good) before its run directory is made.
    `method` is None when an earlier attempt saved the trained adapter (then already loaded)."""

    model: torch.nn.Module
    tokenizer: Any
    method: Method | None
    train_batches: TrainBatches | None
    dev_batches: TrainBatches | None
    test_groups: list[MRGroup]


def load_inputs(cfg: DictConfig, run_dir: Path, pack: PackMember | None = None) -> Inputs:
    """Backbone, method (or the saved adapter), data: any bad input fails here, writing nothing.
    `pack`: the run's place among packed runs (its backbone may then be shared)."""
    from solo.data import group_by_mr, load_split
    from solo.decode.predict import settings_from_config
    from solo.decode.text import stop_token_ids
    from solo.methods import apply_method, load_adapter
    from solo.methods.base import named
    from solo.models import load_backbone

    # The backbone may be randomly initialised (tests, smoke runs): seed first so a resumed
    # process rebuilds the very same frozen weights.
    seed_everything(int(cfg.seed))
    model, tokenizer = pack.load_backbone(cfg) if pack is not None else load_backbone(cfg.model)
    # The stop tokens depend on the tokenizer: a decode.extra_stop_tokens entry that is not one
    # token fails now, not after training.
    stop_token_ids(tokenizer, settings_from_config(
        OmegaConf.to_container(cfg.decode, resolve=True)).extra_stop_tokens)  # type: ignore[arg-type]
    finished_adapter = readable_directory(run_dir / "adapter")
    if finished_adapter is not None:
        trained = load_adapter(model, finished_adapter)
        if pack is not None:  # trained before a crash: it still decodes with its pack's runs
            pack.attach(trained)
        method, train_batches, dev_batches = None, None, None
    else:
        method = apply_method(model, cfg.method)
        if pack is not None:
            pack.attach(method)
        # A damaged checkpoint fails (or falls back to its intact old copy) before anything is
        # written; the loop reads it again to resume.
        intact_copy(run_dir / "checkpoint", named(model, method.trainable_parameters()))
        train_batches = build_batches(cfg, tokenizer, "train", shuffle=True)
        dev_batches = (
            build_batches(cfg, tokenizer, "valid", shuffle=False,
                          batch_size=cfg.trainer.get("eval_batch_size"))
            if cfg.trainer.get("eval_every")
            else None
        )
    test_groups = group_by_mr(load_split(cfg.data, "test"))
    return Inputs(model, tokenizer, method, train_batches, dev_batches, test_groups)


def run_experiment(cfg: DictConfig, overrides: list[str] | None = None) -> Path:
    """Train, decode and score one config into its run directory; returns that directory.
    SIGINT/SIGTERM stop it after the current optimiser step with a checkpoint (exit 130/143)."""
    with stop_on_signals():
        return drain(experiment_steps(cfg, overrides))


def experiment_steps(
    cfg: DictConfig, overrides: list[str] | None = None, pack: PackMember | None = None
) -> Generator[int, None, Path]:
    """`run_experiment` as a generator: yields the step count after every optimiser step (the
    run-dir lock held throughout), decodes and scores (alone: without yielding), returns the run dir.
    Nothing runs before the first `next()`. `pack`: train packed with other runs
    (solo.train.packed); then it also yields once per step with the step's batch queued, and
    (0) while it waits for the pack to decode the test set for all its runs at once."""
    run_dir = run_dir_for(cfg)
    if is_finished(run_dir):
        print(f"already finished, not rerun: results in {run_dir} (scores.json)")
        return run_dir
    # Bad settings and bad inputs fail here, before a run directory exists for them.
    check_config(cfg)
    refuse_if_claimed(run_dir)
    inputs = load_inputs(cfg, run_dir, pack)
    check_scorer()  # after the inputs: a bad command line is named before the machine's Java
    check_login(cfg.logger)
    try:
        with claimed(run_dir):
            if is_finished(run_dir):  # another process finished it between the check and the lock
                print(f"already finished, not rerun: results in {run_dir} (scores.json)")
                return run_dir
            yield from _run_stages(cfg, run_dir, overrides or [], inputs, pack)
    except OSError as err:
        explained = write_error(err, run_dir)
        if explained is err:
            raise
        raise explained from None
    print(f"done: results in {run_dir}")
    return run_dir


def _run_stages(
    cfg: DictConfig, run_dir: Path, overrides: list[str], inputs: Inputs, pack: PackMember | None
) -> Generator[int, None, None]:
    from solo.data import setup_description

    config_path = run_dir / "config.yaml"
    if not config_path.exists():  # a resumed run keeps the config it started with
        write_text_atomic(config_path, OmegaConf.to_yaml(cfg, resolve=True))
    recipe_path = run_dir / RECIPE_FILE
    if not recipe_path.exists():  # as config.yaml: a resumed run keeps the recipe it started with
        write_json_atomic(recipe_path, run_recipe(cfg))
    device = resolve_device(str(cfg.trainer.device))
    sha, dirty = run_meta.git_state()
    meta_path = run_dir / "meta.json"
    run_meta.update_meta(
        meta_path,
        name=str(cfg.name),
        seed=int(cfg.seed),
        setup=setup_description(cfg.data),
        git_sha=sha,
        git_dirty=dirty,
        machine=run_meta.machine_description(),
        torch=torch.__version__,
        device=run_meta.device_description(device),
        overrides=overrides,
        started=run_meta.utc_now(),
    )

    run_id = f"{cfg.data.setup}-{config_hash(cfg)}"
    tracker = start_tracking(
        cfg.logger,
        run_dir=run_dir,
        run_id=run_id,
        name=f"{cfg.name}/{run_id}",
        config=OmegaConf.to_container(cfg, resolve=True),  # type: ignore[arg-type]
        group=seed_group(cfg),
        job_type=OmegaConf.select(cfg, "method.name"),
    )
    try:
        yield from _train_stage(cfg, run_dir, inputs, device, tracker, pack)
        texts = yield from _decode_stage(cfg, run_dir, inputs, pack)
        _score_stage(run_dir, texts, inputs.test_groups, tracker)
    except BaseException:
        tracker.finish(exit_code=1)
        raise
    tracker.finish(exit_code=0)
    run_meta.update_meta(meta_path, finished=run_meta.utc_now())
    write_text_atomic(run_dir / DONE_FILE, run_meta.utc_now() + "\n")


def _train_stage(
    cfg: DictConfig, run_dir: Path, inputs: Inputs, device: torch.device, tracker,
    pack: PackMember | None,
) -> Generator[int, None, None]:
    """Train and save `adapter/` (unless an earlier attempt did: then `load_inputs` loaded it)."""
    from solo.methods import save_adapter

    model, method = inputs.model, inputs.method
    model.to(device)
    if method is None:
        return
    run_meta.write_params(run_dir / "params.json", model, method.num_trainable())
    with deferred():  # a signal stops training after the current step, with a checkpoint
        outcome = yield from train_steps(
            model=model,
            params=list(method.trainable_parameters()),
            after_optimizer_step=method.after_optimizer_step,
            diagnostics=method.diagnostics,
            train_batches=inputs.train_batches,
            dev_batches=inputs.dev_batches,
            trainer_cfg=cfg.trainer,
            run_dir=run_dir,
            tracker=tracker,
            device=device,
            **({"make_step": pack.make_step, "queue_dev_loss": pack.dev_loss_queue()}
               if pack is not None else {}),
        )
    with atomic_directory(run_dir / "adapter") as staging:
        save_adapter(method, staging)
    run_meta.update_meta(
        run_dir / "meta.json", steps=outcome.steps, final_dev_loss=outcome.final_dev_loss
    )


def _decode_stage(
    cfg: DictConfig, run_dir: Path, inputs: Inputs, pack: PackMember | None
) -> Generator[int, None, list[str]]:
    """Write predictions.txt and references.txt (unless an earlier attempt did); return the texts.
    A packed run queues its decoding with its pack's and yields until the pack has decoded."""
    from solo.decode import write_predictions, write_references

    predictions, references = run_dir / "predictions.txt", run_dir / "references.txt"
    if predictions.exists() and references.exists():
        return predictions.read_text(encoding="utf-8").splitlines()
    if pack is None or not pack.packed:
        texts, groups, decode_stats = decode_test_set(
            inputs.model, inputs.tokenizer, cfg, inputs.test_groups
        )
    else:
        groups = inputs.test_groups
        pending = pack.queue_decode(inputs.tokenizer, [group.mr for group in groups],
                                    OmegaConf.to_container(cfg.decode, resolve=True))
        while pending.result is None:
            yield 0  # the driver's flush decodes once the pack's runs have all finished training
        texts, stats = pending.result
        decode_stats = stats.as_dict()
    run_meta.update_meta(run_dir / "meta.json", decode=decode_stats)
    # The writers are atomic and refuse to overwrite: a crash between the two leaves references
    # only, and the rerun writes the predictions beside them.
    if not references.exists():
        write_references(references, groups)
    write_predictions(predictions, texts)
    return texts


def _score_stage(run_dir: Path, texts: list[str], groups: list, tracker) -> None:
    from e2e_eval import shared_scorer

    mteval = recorded_mteval(run_dir)
    scores = shared_scorer().score(texts, [list(group.refs) for group in groups], mteval=mteval)
    write_json_atomic(run_dir / "scores.json", {**scores, "mteval": mteval})
    tracker.summary({f"test/{key}": value for key, value in scores.items()})
    print(f"scores (BLEU/NIST by mteval {mteval}): "
          + ", ".join(f"{key} {value:.4f}" for key, value in scores.items()))
