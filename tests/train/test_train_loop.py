"""The training loop on a toy GPT-2: resume equality, NaN stop, metrics, accumulation."""

from __future__ import annotations

import pytest
import torch

from solo.atomic import readable_directory
from solo.train.metrics import NonFiniteLoss
from tests.train.toy_loop import Interrupt, metric_records, run_toy, toy_model
from tests.train.toy_loop import toy_trainer as _trainer


def _model():
    return toy_model(dropout=0.1)  # dropout on: resuming must restore the dropout RNG too


def _run(run_dir, trainer_cfg, model=None, hook=None):
    return run_toy(run_dir, trainer_cfg, model or _model(), n_examples=22, hook=hook)


def _records(run_dir):
    return metric_records(run_dir)


# Checkpoints every 3 steps, metrics every 2: resuming from step 3 starts inside a log window.
@pytest.mark.parametrize("crash_step, resumed_from", [(8, 6), (5, 3), (2, None)])
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
    return metric_records(run_dir, drop=("tokens_per_s",))


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


@pytest.mark.parametrize("max_examples", [None, 6])
def test_the_dev_loss_does_not_depend_on_the_eval_batch_size(max_examples) -> None:
    """trainer.eval_batch_size is out of the run hash: the same examples, the same value up to
    rounding, at any batch size (eval_max_batches counts training-size batches)."""
    from solo.train.loop import dev_loss
    from tests.train.toy_loop import toy_batches

    model = toy_model(dropout=0.0).double()
    values = [dev_loss(model, toy_batches(22, batch_size=size, shuffle=False), torch.device("cpu"),
                       max_examples=max_examples) for size in (1, 4, 32)]
    assert values[1] == pytest.approx(values[0], rel=1e-12)
    assert values[2] == pytest.approx(values[0], rel=1e-12)
    everything = dev_loss(model, toy_batches(22, batch_size=4, shuffle=False), torch.device("cpu"))
    # A cap really drops examples (so the equality above is about which ones are kept).
    assert (values[0] != pytest.approx(everything, rel=1e-6)) == (max_examples is not None)
