"""The graphed training step (eager on the CPU) against the plain step (solo.train.step.PlainStep)."""

from __future__ import annotations

import pytest
import torch

from solo.data.buckets import pick_bucket
from solo.errors import SoloError
from solo.train.graphed_step import GraphedStep
from solo.train.step import PlainStep
from tests.train.step_helpers import LORA, PAD, SOLO, STEPS, attach


def plain_curve(backbone, method_cfg, batches):
    model, method, optimizer, scheduler = attach(backbone, method_cfg)
    model.train()
    step = PlainStep(model, method.after_optimizer_step, optimizer, scheduler, label_smoothing=0.1)
    losses = [step.step(batch).item() for batch in batches]
    return losses, method.adapter_state_dict()


def fast_curve(backbone, method_cfg, batches, buckets=(24, 40)):
    model, method, optimizer, scheduler = attach(backbone, method_cfg)
    step = GraphedStep(model, method.after_optimizer_step, optimizer, scheduler, pad_id=PAD,
                       label_smoothing=0.1, buckets=buckets)
    losses = [step.step(batch).item() for batch in batches]
    return losses, method, step


@pytest.mark.parametrize("method_cfg", [SOLO, LORA], ids=["solo", "lora"])
def test_fast_step_matches_plain_trainer_step(backbone, batches, method_cfg):
    plain_losses, plain_adapter = plain_curve(backbone, method_cfg, batches)
    fast_losses, method, step = fast_curve(backbone, method_cfg, batches)
    fast_adapter = method.adapter_state_dict()

    assert step.eager_steps == STEPS and not step.graphed
    # The curve must move, or equal curves would prove nothing.
    assert abs(plain_losses[-1] - plain_losses[0]) > 1e-3
    assert max(abs(a - b) for a, b in zip(plain_losses, fast_losses, strict=True)) < 1e-4
    assert plain_adapter.keys() == fast_adapter.keys()
    for name, value in plain_adapter.items():
        torch.testing.assert_close(fast_adapter[name], value, rtol=1e-4, atol=1e-5, msg=name)
    # The optimiser really was switched to the fused kernel the CUDA graph uses.
    assert all(group["fused"] for group in step.optimizer.param_groups)
    if method_cfg is SOLO:
        adapter = method.adapter
        assert torch.all(adapter.encoder[~adapter.encoder_mask] == 0)
        assert torch.all((adapter.lam >= 0) & (adapter.lam <= 1))


def test_bucket_padding_does_not_change_the_loss(backbone, batches):
    """The same first step at its own length and padded to two larger buckets."""
    first = batches[:1]
    reference, _, _ = fast_curve(backbone, SOLO, first, buckets=None)
    for buckets in [(64,), (40, 96)]:
        padded, _, _ = fast_curve(backbone, SOLO, first, buckets=buckets)
        assert abs(padded[0] - reference[0]) < 1e-5


def test_left_padded_batch_is_refused(backbone, batches):
    model, method, optimizer, _ = attach(backbone, SOLO)
    step = GraphedStep(model, method.after_optimizer_step, optimizer, pad_id=PAD)
    batch = {k: v.flip(1) for k, v in batches[0].items()}
    with pytest.raises(SoloError, match="right-padded"):
        step.step(batch)


def test_non_finite_loss_is_flagged_without_stopping(backbone, batches):
    model, method, optimizer, _ = attach(backbone, SOLO)
    step = GraphedStep(model, method.after_optimizer_step, optimizer, pad_id=PAD)
    step.step(batches[0])
    assert step.check_finite()
    with torch.no_grad():
        method.adapter.encodings.fill_(float("nan"))
    loss = step.step(batches[1])
    assert torch.isnan(loss)
    assert not step.check_finite()
    assert step.check_finite()  # the flag resets once read


def test_cuda_graphs_requested_on_cpu_fall_back_to_eager(backbone, batches):
    model, method, optimizer, _ = attach(backbone, SOLO)
    with torch.no_grad():
        method.adapter.lam.fill_(-0.5)  # outside [0, 1]: the projection must pull it back
    with pytest.warns(UserWarning, match="CUDA graphs need a CUDA device"):
        step = GraphedStep(model, method.after_optimizer_step, optimizer, pad_id=PAD, cuda_graphs=True)
    assert not step.graphed
    assert torch.isfinite(step.step(batches[0]))
    assert torch.all(method.adapter.lam >= 0)


def test_pick_bucket():
    buckets = (64, 96, 128)
    assert [pick_bucket(n, buckets) for n in (1, 64, 65, 96, 128)] == [64, 64, 96, 96, 128]
    assert pick_bucket(129, buckets) == 192 and pick_bucket(200, buckets) == 256
    assert pick_bucket(77, None) == 77


def test_bf16_autocast_follows_the_fp32_curve(backbone, batches):
    """The tiny-model check behind offering bf16: same curve as fp32 up to bf16 rounding."""
    fp32, _, _ = fast_curve(backbone, SOLO, batches)
    model, method, optimizer, scheduler = attach(backbone, SOLO)
    step = GraphedStep(model, method.after_optimizer_step, optimizer, scheduler, pad_id=PAD,
                       label_smoothing=0.1, precision="bf16")
    bf16 = [step.step(batch).item() for batch in batches]
    gap = max(abs(a - b) for a, b in zip(fp32, bf16, strict=True))
    assert 0.0 < gap < 5e-3  # > 0: autocast really ran in bf16


def test_a_step_traced_or_captured_keeps_sdpa_causal_without_a_mask(backbone, batches, monkeypatch):
    """While a CUDA stream captures (or dynamo traces), transformers cannot read whether the rows
    hold packed sequences and would build an explicit mask; the step tells it they never do."""
    import transformers.masking_utils as masking_utils

    seen = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def spy(*args, **kwargs):
        mask = kwargs.get("attn_mask", args[3] if len(args) > 3 else None)
        seen.append((mask is None, bool(kwargs.get("is_causal", False))))
        return sdpa(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    monkeypatch.setattr(masking_utils, "is_tracing", lambda *args, **kwargs: True)  # as under capture
    model, method, optimizer, scheduler = attach(backbone, SOLO)
    model.train()
    with torch.no_grad():
        model(input_ids=batches[0]["input_ids"], use_cache=False)
    if not seen or seen[-1] == (True, True):
        pytest.skip("this transformers neither calls SDPA here nor builds a mask while tracing")
    assert seen[-1] == (False, False)  # what a captured step would run without the fix

    seen.clear()
    step = GraphedStep(model, method.after_optimizer_step, optimizer, scheduler, pad_id=PAD,
                       label_smoothing=0.1, buckets=(40,))
    step.step(batches[0])
    n_layer = backbone.config.n_layer
    assert seen == [(True, True)] * n_layer


def test_the_capture_snapshot_puts_the_random_generator_back(backbone):
    """Warm-up steps before a capture draw dropout masks; the restore must undo that too, or a
    run that captures after a resume would draw other masks than the uninterrupted run."""
    model, method, optimizer, scheduler = attach(backbone, SOLO)
    step = GraphedStep(model, method.after_optimizer_step, optimizer, scheduler, pad_id=PAD)
    before = torch.get_rng_state()
    snapshot = step._snapshot()
    expected = torch.rand(4)
    torch.set_rng_state(before)
    torch.rand(16)  # what a warm-up step's dropout would draw
    step._restore(snapshot)
    assert torch.equal(torch.rand(4), expected)
