"""The training loop on a toy GPT-2: resume equality, NaN stop, metrics, accumulation."""

from __future__ import annotations

import json

import pytest
import torch
from omegaconf import OmegaConf
from transformers import GPT2Config, GPT2LMHeadModel

from solo.data import TrainBatches
from solo.train.checkpoint import readable_directory
from solo.train.loop import NonFiniteLoss, train
from solo.train.tracking import Tracker


class Interrupt(Exception):
    """Stands in for a crash at a chosen optimiser step."""


def _model() -> GPT2LMHeadModel:
    torch.manual_seed(0)
    # Dropout on: resuming must restore the dropout RNG to give the same result.
    config = GPT2Config(
        vocab_size=40,
        n_positions=32,
        n_embd=16,
        n_layer=2,
        n_head=2,
        resid_pdrop=0.1,
        embd_pdrop=0.1,
        attn_pdrop=0.1,
        bos_token_id=0,
        eos_token_id=0,
    )
    model = GPT2LMHeadModel(config)
    model.transformer.wte.weight.requires_grad_(False)  # a frozen part, like a backbone
    return model


def _batches(batch_size: int = 4) -> TrainBatches:
    gen = torch.Generator().manual_seed(1)
    examples = []
    for n in range(22):
        length = 5 + n % 7
        ids = torch.randint(1, 40, (length,), generator=gen).tolist()
        mask = [0, 0] + [1] * (length - 2)
        examples.append((ids, mask))
    return TrainBatches(examples, batch_size, seed=3, pad_id=0)


def _trainer(**changes):
    base = {
        "epochs": 2,
        "max_steps": None,
        "batch_size": 4,
        "lr": 0.01,
        "weight_decay": 0.01,
        "warmup_steps": 2,
        "label_smoothing": 0.1,
        "grad_clip": 1.0,
        "grad_accum": 1,
        "eval_every": 4,
        "eval_max_batches": 2,
        "ckpt_every": 3,
        "log_every": 2,
        "precision": "fp32",
        "device": "cpu",
    }
    return OmegaConf.create({**base, **changes})


def _run(run_dir, trainer_cfg, model=None, hook=None):
    model = model or _model()
    params = [p for p in model.parameters() if p.requires_grad]
    steps = {"n": 0}

    def after_step() -> None:
        steps["n"] += 1
        if hook:
            hook(steps["n"], model)

    outcome = train(
        model=model,
        params=params,
        after_optimizer_step=after_step,
        train_batches=_batches(),
        dev_batches=TrainBatches(_batches().examples, 4, 0, 0, shuffle=False),
        trainer_cfg=trainer_cfg,
        run_dir=run_dir,
        tracker=Tracker(),
        device=torch.device("cpu"),
    )
    return model, outcome


def _records(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("crash_step, resumed_from", [(8, 6), (2, None)])
def test_interrupted_and_resumed_run_is_bitwise_identical(
    tmp_path, crash_step, resumed_from
) -> None:
    straight, outcome = _run(tmp_path / "a", _trainer())
    assert outcome.steps == 12 and outcome.resumed_from is None  # 2 epochs x 6 batches

    def crash(step, _model):
        if step == crash_step:
            raise Interrupt

    with pytest.raises(Interrupt):
        _run(tmp_path / "b", _trainer(), hook=crash)
    resumed, outcome = _run(tmp_path / "b", _trainer())
    assert outcome.resumed_from == resumed_from  # the last checkpoint before the crash, if any
    for (name, a), b in zip(straight.named_parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b), name
    # The resumed metrics replay the lost steps instead of duplicating them.
    assert _without_timing(tmp_path / "b") == _without_timing(tmp_path / "a")


def _without_timing(run_dir) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "tokens_per_s"} for r in _records(run_dir)]


def test_grad_accumulation_counts_optimizer_steps(tmp_path) -> None:
    _, outcome = _run(tmp_path, _trainer(grad_accum=3, ckpt_every=None, eval_every=None))
    assert outcome.steps == 4  # 12 micro-batches / 3
    records = _records(tmp_path)
    assert [r["step"] for r in records] == [2, 4]
    assert {"step", "epoch", "loss", "lr", "tokens_per_s"} <= set(records[0])


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path) -> None:
    def poison_at_7(step, model):
        if step == 7:
            with torch.no_grad():
                model.lm_head.weight.fill_(float("nan"))  # tied to wte, which is frozen here

    model = _model()
    with pytest.raises(
        NonFiniteLoss, match=r"loss is nan at optimiser step 8 .*step 6 in .*checkpoint"
    ):
        _run(tmp_path, _trainer(), model=model, hook=poison_at_7)
    state = torch.load(readable_directory(tmp_path / "checkpoint") / "state.pt", weights_only=False)
    assert state["position"]["step"] == 6
    assert all(r["step"] <= 7 for r in _records(tmp_path))


def test_bf16_autocast_trains_fp32_parameters(tmp_path) -> None:
    model, dtypes = _model(), []
    model.lm_head.register_forward_hook(lambda _m, _i, out: dtypes.append(out.dtype))
    model, outcome = _run(
        tmp_path,
        _trainer(precision="bf16", max_steps=2, eval_every=None, ckpt_every=None),
        model=model,
    )
    assert outcome.steps == 2
    assert dtypes == [torch.bfloat16, torch.bfloat16]  # the forward ran under autocast
    assert all(p.dtype == torch.float32 for p in model.parameters())
    losses = [r["loss"] for r in _records(tmp_path)]
    assert losses and all(loss == loss and loss < 10 for loss in losses)  # finite, near ln(40)


@pytest.mark.parametrize(
    "key, value",
    [
        ("precision", "fp16"),
        ("grad_accum", 0),
        ("device", "tpu"),
        ("ckpt_every", 0),
        ("label_smoothing", 1.0),
    ],
)
def test_bad_trainer_settings_are_one_line_errors(key, value) -> None:
    from solo.errors import SoloError
    from solo.train.loop import check_trainer_config

    check_trainer_config(_trainer())
    with pytest.raises(SoloError, match=f"trainer.{key}"):
        check_trainer_config(_trainer(**{key: value}))
