"""Packed training (solo.train.packed): N runs over one backbone, one joint forward per step, give
each run the numbers it gives alone (fp64, dropout off: within 1e-9)."""

from __future__ import annotations

import copy
import json
import sys

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from solo.data import TrainBatches
from solo.data.buckets import concatenate_batches
from solo.errors import SoloError
from solo.methods import apply_method
from solo.methods.packing import PackedForward, shared_copy
from solo.train.lockstep import drive
from solo.train.loop import train, train_steps
from solo.train.packed import Packer, same_backbone
from solo.train.tracking import Tracker
from tests.train.toy_loop import toy_trainer

CPU = torch.device("cpu")

# Any mix of rank, sparsity, span, seed (data order, init), learning rate, batch size and
# accumulation, LoRA among them.
MEMBERS = [
    ({"name": "solo", "rank": 8, "sparsity": 0.5, "dropout": 0.0, "init_seed": 3},
     {"lr": 0.01}, 3, 4),
    ({"name": "solo", "rank": 4, "sparsity": 0.0, "span": 2, "dropout": 0.0, "init_seed": 4,
      "homotopy": False}, {"lr": 0.003, "label_smoothing": 0.0}, 4, 3),
    ({"name": "lora", "rank": 2, "alpha": 8, "dropout": 0.0},
     {"lr": 0.02, "grad_accum": 2, "grad_clip": None}, 5, 4),
]


@pytest.fixture(autouse=True)
def _fp64():
    """Backbone and adapters in fp64, so 1e-9 measures the packing, not fp32 rounding."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(before)


def backbone() -> GPT2LMHeadModel:
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=48, n_positions=40, n_embd=16, n_layer=4, n_head=2,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0,
                        eos_token_id=0)
    return GPT2LMHeadModel(config)


def batches(seed: int, batch_size: int, n_examples: int = 22) -> TrainBatches:
    gen = torch.Generator().manual_seed(seed)
    examples = []
    for n in range(n_examples):
        length = 4 + (n * 5 + seed) % 11  # lengths differ within and across runs
        ids = torch.randint(1, 48, (length,), generator=gen).tolist()
        examples.append((ids, [0, 0] + [1] * (length - 2)))
    return TrainBatches(examples, batch_size, seed=seed, pad_id=0, order="random")


def trainer(changes: dict, batch_size: int):
    return toy_trainer(**{"epochs": 2, "batch_size": batch_size, "eval_every": 5,
                          "ckpt_every": 3, "log_every": 1, **changes})


def _attach(model, method_cfg):
    torch.manual_seed(7)  # LoRA draws A from the global RNG
    return apply_method(model, method_cfg)


def run_alone(tmp_path, spec, index):
    method_cfg, changes, seed, batch_size = spec
    model = copy.deepcopy(backbone())
    method = _attach(model, method_cfg)
    train(model=model, params=method.trainable_parameters(),
          after_optimizer_step=method.after_optimizer_step,
          train_batches=batches(seed, batch_size), dev_batches=batches(seed + 10, 4),
          trainer_cfg=trainer(changes, batch_size), run_dir=tmp_path / f"alone{index}",
          tracker=Tracker(), device=CPU)
    return method


def run_packed(tmp_path, specs, name="packed", stop_after=None):
    """The runs packed, driven as solo.train.lockstep does with pack=True (solo.train.lockstep.drive)."""
    packer, shared = Packer(), backbone()
    runs, methods = [], []
    for index, (method_cfg, changes, seed, batch_size) in enumerate(specs):
        member = packer.member()
        model = member.join(copy.deepcopy(shared), CPU, "fp32")
        method = _attach(model, method_cfg)
        member.attach(method)
        steps = train_steps(
            model=model, params=method.trainable_parameters(),
            after_optimizer_step=method.after_optimizer_step,
            train_batches=batches(seed, batch_size), dev_batches=batches(seed + 10, 4),
            trainer_cfg=trainer(changes, batch_size), run_dir=tmp_path / f"{name}{index}",
            tracker=Tracker(), device=CPU, make_step=member.make_step,
            queue_dev_loss=member.dev_loss_queue())
        runs.append((member, steps))
        methods.append(method)
    outcomes = drive(packer, runs, max_rounds=stop_after)
    errors = {i: out for i, out in enumerate(outcomes) if isinstance(out, BaseException)}
    return methods, errors, packer


def _records(run_dir):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != "tokens_per_s"} for line in lines]


def _close_records(a, b, tol):
    assert len(a) == len(b) and a
    for left, right in zip(a, b, strict=True):
        assert left.keys() == right.keys()
        for key in left:
            if isinstance(left[key], float):
                assert abs(left[key] - right[key]) <= tol, (key, left, right)
            else:
                assert left[key] == right[key], key


def test_packed_runs_equal_the_runs_trained_alone(tmp_path):
    alone = [run_alone(tmp_path, spec, i) for i, spec in enumerate(MEMBERS)]
    packed, errors, packer = run_packed(tmp_path, MEMBERS)
    assert not errors and len(packer.packs) == 1  # one backbone for all of them
    for i, (a, p) in enumerate(zip(alone, packed, strict=True)):
        _close_records(_records(tmp_path / f"alone{i}"), _records(tmp_path / f"packed{i}"), 1e-9)
        left, right = a.adapter_state_dict(), p.adapter_state_dict()
        assert left.keys() == right.keys()
        for key in left:
            assert torch.allclose(left[key], right[key], rtol=0, atol=1e-9), (i, key)
            moved = left[key] - _attach(copy.deepcopy(backbone()), MEMBERS[i][0]).adapter_state_dict()[key]
            assert moved.abs().max() > 1e-4, (i, key)  # trained, so agreement means something
    # The runs differ from each other: each got its own adapter on its own rows.
    assert _records(tmp_path / "packed0") != _records(tmp_path / "packed1")


@pytest.mark.parametrize("eager_first", [False, True], ids=["graphed-first", "eager-first"])
def test_runs_taking_the_graphed_step_share_one_and_equal_the_runs_alone(tmp_path, eager_first):
    """trainer.fast_step=true: the pack's GraphedStep (eager on the CPU: same body, fused AdamW)
    for two runs; the LoRA run accumulates gradients, so it takes the eager pack step. With it
    first, the graphed runs' places in the GraphedStep (0, 1) are not their member indices (1, 2)."""
    specs = [(m, {**c, "fast_step": True}, s, b) for m, c, s, b in MEMBERS[:2]] + [MEMBERS[2]]
    if eager_first:
        specs = specs[2:] + specs[:2]
    alone = [run_alone(tmp_path, spec, i) for i, spec in enumerate(specs)]
    packed, errors, packer = run_packed(tmp_path, specs)
    assert not errors
    graphed = packer.packs[0]._graphed
    assert graphed is not None and len(graphed.parts) == 2 and graphed.eager_steps > 0
    for i, (a, p) in enumerate(zip(alone, packed, strict=True)):
        _close_records(_records(tmp_path / f"alone{i}"), _records(tmp_path / f"packed{i}"), 1e-9)
        for key, value in a.adapter_state_dict().items():
            assert torch.allclose(value, p.adapter_state_dict()[key], rtol=0, atol=1e-9), (i, key)


def test_a_diverging_run_drops_out_alone(tmp_path):
    diverging = ({"name": "solo", "rank": 4, "dropout": 0.0, "init_seed": 1},
                 {"lr": 1e12, "grad_clip": None}, 6, 4)
    specs = [MEMBERS[0], diverging, MEMBERS[2]]
    _, errors, _ = run_packed(tmp_path, specs)
    assert list(errors) == [1] and "loss is nan" in str(errors[1]).lower()
    for i in (0, 2):
        run_alone(tmp_path, specs[i], i)
        _close_records(_records(tmp_path / f"alone{i}"), _records(tmp_path / f"packed{i}"), 1e-9)


@pytest.mark.parametrize("dropout", [0.0, 0.2], ids=["dropout-off", "dropout-on"])
def test_an_interrupted_pack_resumes_to_the_uninterrupted_numbers(tmp_path, dropout):
    """With dropout on, the rebuilt pack must draw the masks the uninterrupted one drew."""
    specs = [({**m, "dropout": dropout}, c, s, b) for m, c, s, b in MEMBERS]
    whole, _, _ = run_packed(tmp_path, specs, name="whole")
    run_packed(tmp_path, specs, name="resumed", stop_after=8)  # past the checkpoint at step 3
    resumed, _, _ = run_packed(tmp_path, specs, name="resumed")
    for i, (a, b) in enumerate(zip(whole, resumed, strict=True)):
        assert _records(tmp_path / f"whole{i}") == _records(tmp_path / f"resumed{i}")
        for key, value in a.adapter_state_dict().items():
            assert torch.equal(value, b.adapter_state_dict()[key]), (i, key)


def test_a_run_interrupted_in_a_pack_resumes_alone(tmp_path):
    run_packed(tmp_path, MEMBERS, name="alone", stop_after=8)  # the alone runs' dirs, half done
    for i, spec in enumerate(MEMBERS):
        assert (tmp_path / f"alone{i}" / "checkpoint").is_dir()  # so the run below resumes
        resumed = run_alone(tmp_path, spec, i)  # picks up the packed checkpoint
        whole = run_alone(tmp_path / "whole", spec, i)
        _close_records(_records(tmp_path / "whole" / f"alone{i}"), _records(tmp_path / f"alone{i}"),
                       1e-9)
        for key, value in whole.adapter_state_dict().items():
            assert torch.allclose(value, resumed.adapter_state_dict()[key], rtol=0, atol=1e-9)


def test_with_dropout_on_packed_runs_are_reproducible_run_by_run(tmp_path):
    specs = [({**m, "dropout": 0.2}, c, s, b) for m, c, s, b in MEMBERS[:2]]
    run_packed(tmp_path, specs, name="first")
    run_packed(tmp_path, specs, name="second")
    for i in range(2):
        assert _records(tmp_path / f"first{i}") == _records(tmp_path / f"second{i}")


def test_llama_style_runs_pack_too(tmp_path, monkeypatch):
    """SmolLM2's architecture (rotary positions, separate q/v projections), tiny and random."""
    from transformers import LlamaConfig, LlamaForCausalLM

    def llama() -> LlamaForCausalLM:
        torch.manual_seed(0)
        return LlamaForCausalLM(LlamaConfig(
            vocab_size=48, hidden_size=16, intermediate_size=32, num_hidden_layers=4,
            num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=40,
            bos_token_id=0, eos_token_id=0, pad_token_id=0))

    monkeypatch.setattr(sys.modules[__name__], "backbone", llama)
    specs = [MEMBERS[0], ({"name": "lora", "rank": 2, "alpha": 8, "dropout": 0.0}, {"lr": 0.02}, 5, 4)]
    alone = [run_alone(tmp_path, spec, i) for i, spec in enumerate(specs)]
    packed, errors, _ = run_packed(tmp_path, specs)
    assert not errors
    for i, (a, p) in enumerate(zip(alone, packed, strict=True)):
        _close_records(_records(tmp_path / f"alone{i}"), _records(tmp_path / f"packed{i}"), 1e-9)
        for key, value in a.adapter_state_dict().items():
            assert torch.allclose(value, p.adapter_state_dict()[key], rtol=0, atol=1e-9), (i, key)


def test_runs_with_different_backbones_get_different_packs():
    packer = Packer()
    first, second, third = packer.member(), packer.member(), packer.member()
    base = backbone()
    tree = first.join(copy.deepcopy(base), CPU, "fp32")
    second.join(copy.deepcopy(base), CPU, "fp32")
    changed = copy.deepcopy(base)
    with torch.no_grad():
        changed.transformer.h[0].mlp.c_fc.weight[0, 0] += 1e-12
    third.join(changed, CPU, "fp32")
    assert first.pack is second.pack is not third.pack
    # The run's tree holds the pack's own tensors: no second copy of the backbone.
    assert all(a is b for a, b in zip(tree.parameters(), first.pack.backbone.parameters(), strict=True))
    assert not same_backbone(base, changed) and same_backbone(base, copy.deepcopy(base))


def test_a_method_that_changes_the_backbone_is_refused_in_a_pack():
    member = Packer().member()
    model = member.join(backbone(), CPU, "fp32")
    with pytest.raises(SoloError, match="cannot be packed"):
        member.attach(apply_method(model, {"name": "full_ft"}))


def test_the_packed_forward_applies_each_members_adapter_to_its_rows_only():
    base = backbone()
    forward = PackedForward(base)
    trees = [shared_copy(base) for _ in MEMBERS]
    methods = [_attach(tree, spec[0]) for tree, spec in zip(trees, MEMBERS, strict=True)]
    for index, method in enumerate(methods):
        with torch.no_grad():  # nonzero LoRA B and Solo λ·v, so every term shows
            for p in method.trainable_parameters():
                p.add_(0.05 * torch.randn_like(p)).abs_()  # λ > 0: the gate is open
        forward.add_member(index, method.packed_terms())
    rows = [batches(s, b).collate(list(range(b))) for _, _, s, b in MEMBERS]
    joint = concatenate_batches(rows)
    base.eval()
    with torch.no_grad(), forward.rows([(i, r["input_ids"].shape[0]) for i, r in enumerate(rows)]):
        logits = base(input_ids=joint["input_ids"], attention_mask=joint["attention_mask"]).logits
    start = 0
    for tree, batch in zip(trees, rows, strict=True):
        tree.eval()
        with torch.no_grad():
            alone = tree(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        n, width = batch["input_ids"].shape
        mask = batch["attention_mask"].bool()
        assert torch.allclose(logits[start:start + n, :width][mask], alone[mask], atol=1e-12)
        start += n
    # Outside rows(...), the backbone is the plain backbone.
    with torch.no_grad():
        plain = base(input_ids=rows[0]["input_ids"]).logits
        assert not torch.allclose(plain, trees[0](input_ids=rows[0]["input_ids"]).logits)


def test_a_packed_run_that_asks_for_torch_compile_is_told_it_runs_uncompiled(tmp_path):
    method_cfg, changes, seed, batch_size = MEMBERS[0]
    spec = (method_cfg, {**changes, "fast_step": True, "compile": True, "max_steps": 2}, seed,
            batch_size)
    with pytest.warns(UserWarning, match="trainer.compile=true does not apply to packed runs"):
        _, errors, _ = run_packed(tmp_path, [spec, MEMBERS[1]])
    assert not errors
