"""The fixed-shape decode step (solo.decode.static_search, the fast engine's search) returns the
one-prompt references' tokens, whatever sync_every, and reads nothing on the host inside a window."""

from __future__ import annotations

import copy
import functools
import math

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

import solo.decode.static_search as static_search
from solo.decode import beam_search, top_k_low_index_first
from solo.decode.beam_search import BeamSettings, _start_batch
from solo.decode.engine import fast_beam_search
from solo.decode.gpt2_state import SharedPromptGPT2State
from solo.decode.static_search import StaticSearchReport, static_beam_search, top_k_flagged
from solo.errors import SoloError
from tests.decode.decode_models import small_gpt2, tied_bigram
from tests.decode.decode_reference import lora_reference_beam_search, reference_beam_search
from tests.decode.test_decode_beam_search import case, prompts_for, reference, settings


def static(name: str, num_beams: int, style: str, *, sync_every: int, batch_size: int = 7,
           model=None, report: StaticSearchReport | None = None) -> tuple:
    out = static_beam_search(model or case(name)["model"], prompts_for(name), pad_id=0,
                             batch_size=batch_size, sync_every=sync_every, report=report,
                             **settings(name, num_beams, style))
    return tuple(tuple(o) for o in out)


@pytest.mark.parametrize("sync_every", [1, 3, 64])
@pytest.mark.parametrize("num_beams", [3, 10])
@pytest.mark.parametrize("name", ["gpt2-ties", "gpt2-eos", "gpt2-two-stops", "trained"])
@pytest.mark.parametrize("style", ["lora", "hf"])
def test_static_search_equals_the_reference(style, name, num_beams, sync_every):
    for batch_size in (3, 7):
        assert static(name, num_beams, style, sync_every=sync_every,
                      batch_size=batch_size) == reference(name, num_beams, style)


@functools.cache
def fp32_case(name: str):
    return copy.deepcopy(case(name)["model"]).float()


@functools.cache
def fp32_reference(name: str, num_beams: int, style: str) -> tuple:
    kwargs = settings(name, num_beams, style)
    search = lora_reference_beam_search if kwargs.pop("style") == "lora" else reference_beam_search
    return tuple(tuple(search(fp32_case(name), p, **kwargs)) for p in prompts_for(name))


@pytest.mark.parametrize("sync_every", [1, 64])
@pytest.mark.parametrize("name", ["trained", "gpt2-eos"])
@pytest.mark.parametrize("style", ["lora", "hf"])
def test_static_search_in_fp32_equals_the_fp32_reference(style, name, sync_every):
    for num_beams in (3, 10):
        assert static(name, num_beams, style, sync_every=sync_every,
                      model=fp32_case(name)) == fp32_reference(name, num_beams, style)


@pytest.mark.parametrize("style", ["lora", "hf"])
def test_prompts_of_very_different_lengths_share_a_batch(style):
    model = case("gpt2-eos")["model"]
    generator = torch.Generator().manual_seed(7)
    prompts = [torch.randint(0, 15, (n,), generator=generator).tolist() + [15] for n in (0, 1, 58, 23, 4)]
    kwargs = dict(eos_id=15, num_beams=4, length_penalty=0.9, no_repeat_ngram_size=3, max_new_tokens=12)
    search = lora_reference_beam_search if style == "lora" else reference_beam_search
    expected = [search(model, p, **kwargs) for p in prompts]
    together = static_beam_search(model, prompts, pad_id=0, batch_size=5, style=style, sync_every=4,
                                  **kwargs)
    assert together == expected
    assert sum(len(o) > 0 for o in together) >= 3  # not trivially equal


@pytest.mark.parametrize("style", ["lora", "hf"])
def test_rows_where_every_token_is_banned(style):
    """Vocabulary 6, no-repeat unigrams, 9 steps: lora's slots run all 9 steps, so by pigeonhole
    each one bans its whole vocabulary before the end (a NaN softmax, read as -inf); under hf
    hypotheses with no possible token die, and prompts end early."""
    model = small_gpt2(6, seed=3, eos_bias=-6.0)
    prompts = [[0], [1, 2, 3, 4, 0], [2, 2]]
    kwargs = dict(eos_id=5, num_beams=3, length_penalty=0.8, no_repeat_ngram_size=1, max_new_tokens=9)
    search = lora_reference_beam_search if style == "lora" else reference_beam_search
    expected = [search(model, p, **kwargs) for p in prompts]
    report = StaticSearchReport()
    out = static_beam_search(model, prompts, pad_id=0, batch_size=3, style=style, sync_every=2,
                             report=report, **kwargs)
    assert out == expected
    assert (report.steps < 9) == (style == "hf")


def test_hf_prompts_finish_early_and_leave_the_batch():
    report = StaticSearchReport()
    assert static("gpt2-eos", 3, "hf", sync_every=1, report=report) == reference("gpt2-eos", 3, "hf")
    steps = case("gpt2-eos")["steps"]
    assert report.steps < steps and report.compactions > 0
    assert any(0 < len(o) < steps // 2 for o in reference("gpt2-eos", 3, "hf"))
    # lora never stops early: every window is run
    lora = StaticSearchReport()
    static("gpt2-eos", 3, "lora", sync_every=5, report=lora)
    assert lora.steps == steps and lora.host_reads == math.ceil(steps / 5)


@pytest.mark.parametrize("sync_every", [1, 2])
def test_under_graphs_done_prompts_leave_once_at_most_half_are_left(monkeypatch, sync_every):
    """The graphed search's compaction rule (a new shape costs a capture), run eagerly on the
    CPU: fewer compactions than eagerly, the same tokens, and each one leaves at most half."""
    eager = StaticSearchReport()
    expected = static("gpt2-eos", 3, "hf", sync_every=sync_every, report=eager)
    left: list[tuple[int, int]] = []
    original = static_search._compacts

    def recording(alive: int, rows: int, graphed: bool) -> bool:
        decided = original(alive, rows, graphed)
        if decided:
            left.append((alive, rows))
        return decided

    monkeypatch.setattr(static_search._StepRunner, "graphed", property(lambda self: True))
    monkeypatch.setattr(static_search, "_compacts", recording)
    graphed = StaticSearchReport()
    assert static("gpt2-eos", 3, "hf", sync_every=sync_every, report=graphed) == expected
    assert expected == reference("gpt2-eos", 3, "hf")
    assert 0 < graphed.compactions < eager.compactions
    assert left and all(2 * alive <= rows for alive, rows in left)


def test_a_tie_at_the_superset_edge_redoes_the_window_and_keeps_the_tokens(monkeypatch):
    # A superset of k + 1 cuts ties all the time: windows are redone with the exact top-k.
    monkeypatch.setattr(static_search, "superset_width", lambda k: k + 1)
    for style in ("lora", "hf"):
        report = StaticSearchReport()
        assert static("gpt2-ties", 10, style, sync_every=3, report=report) == reference("gpt2-ties", 10, style)
        assert report.windows_redone > 0


def test_no_window_redone_where_the_superset_holds_every_tie():
    # So the flagged top-k, not the redo, produced these (equal) tokens.
    report = StaticSearchReport()
    assert static("gpt2-ties", 10, "lora", sync_every=3, report=report) == reference("gpt2-ties", 10, "lora")
    assert report.windows_redone == 0 and report.host_reads == math.ceil(case("gpt2-ties")["steps"] / 3)


@pytest.mark.parametrize(("name", "num_beams", "style"), [("trained", 3, "lora"), ("gpt2-eos", 10, "hf")])
def test_ties_among_impossible_candidates_cost_no_redo(name, num_beams, style):
    """trained/lora/3: every slot of a prompt stops long before the end, so its candidates are all
    -inf from then on, tied at the k-th; gpt2-eos/hf/10: the first step has 16 possible
    candidates for 20 places. Neither order can change a result (static_search's tie_matters),
    so neither may cost a window's redo (beam_search's per-step loop pays a wider top-k there)."""
    report = StaticSearchReport()
    assert static(name, num_beams, style, sync_every=1, report=report) == reference(name, num_beams, style)
    assert report.windows_redone == 0


def test_top_k_flagged_flags_exactly_the_rows_whose_superset_may_cut_a_tie():
    generator = torch.Generator().manual_seed(0)
    k, width = 3, 400
    wide = static_search.superset_width(k)
    scores = torch.randn(4, width, generator=generator)
    scores[1, -(wide + 5):] = 5.0           # many ties above all: the top k are among them
    scores[2, :] = -1.0
    scores[2, :k - 1] = 2.0                 # k-th best ties with most of the row
    scores[3, 0] = float("-inf")
    values, columns, tie_free = top_k_flagged(scores, k)
    assert tie_free.tolist() == [True, False, False, True]
    exact_values, exact_columns = top_k_low_index_first(scores, k)
    for row in (0, 3):
        assert columns[row].tolist() == exact_columns[row].tolist()
        assert values[row].tolist() == exact_values[row].tolist()


# -- host reads ----------------------------------------------------------------------------------

# Ops that read a tensor on the host (bool(), int(), .item(), indexing with a 0-dim tensor) or whose
# output shape depends on tensor values: neither may run inside a window.
_HOST_READS = {"aten._local_scalar_dense.default", "aten.is_nonzero.default", "aten.item.default",
               "aten.nonzero.default", "aten.masked_select.default", "aten._unique2.default",
               "aten.unique_dim.default", "aten.unique_consecutive.default"}


class _OpLog(TorchDispatchMode):
    """Every aten op run, with its output shapes; and the ones that read the host."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[tuple[str, tuple]] = []
        self.host_reads: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func)
        boolean_index = name.startswith(("aten.index.", "aten.index_put")) and any(
            isinstance(t, torch.Tensor) and t.dtype == torch.bool for t in tree_leaves(args[1]))
        if name in _HOST_READS or boolean_index:
            self.host_reads.append(name)
        out = func(*args, **(kwargs or {}))
        self.ops.append((name, tuple(tuple(t.shape) for t in tree_leaves(out) if isinstance(t, torch.Tensor))))
        return out


def _steps_of(style: str, model, prompts, beams: int = 3, total: int = 8):
    """The fixed-shape steps of one batch (stop token 15), after the prompt pass."""
    settings_ = BeamSettings(num_beams=beams, max_new_tokens=total, style=style, length_penalty=0.9,
                             no_repeat_ngram_size=2, batch_size=len(prompts))
    device = next(model.parameters()).device
    state = SharedPromptGPT2State(model, beams, total)
    with torch.inference_mode():
        batch = _start_batch(state, device, prompts, 0, settings_)
    steps_type = static_search._LoraSteps if style == "lora" else static_search._HFSteps
    return steps_type(state, batch, torch.tensor([15], device=device), 0, settings_)


@pytest.mark.parametrize("style", ["lora", "hf"])
def test_every_step_runs_the_same_ops_on_the_same_shapes_without_host_reads(style):
    """What a CUDA graph needs: one step's kernels, shapes and addresses, replayed."""
    model = case("gpt2-eos")["model"]
    steps = _steps_of(style, model, prompts_for("gpt2-eos")[:4])
    logs = []
    with torch.inference_mode():
        for _ in range(8):
            with _OpLog() as log:
                steps.step()
            logs.append(log)
    assert all(log.host_reads == [] for log in logs)
    assert all(log.ops == logs[0].ops for log in logs[1:])
    assert len(logs[0].ops) > 100


def test_the_op_log_sees_the_per_step_searchs_host_reads_and_growing_shapes():
    # The check above can fail: beam_search's loop reads the host every step, and the state's
    # per-step `advance` cuts its cache to the steps so far.
    model = case("gpt2-eos")["model"]
    with _OpLog() as log, torch.inference_mode():
        beam_search(model, prompts_for("gpt2-eos")[:4], pad_id=0, batch_size=4,
                    state=functools.partial(SharedPromptGPT2State, max_new_tokens=8),
                    **{**settings("gpt2-eos", 3, "hf"), "max_new_tokens": 8})
    assert "aten.is_nonzero.default" in log.host_reads
    steps = _steps_of("lora", model, prompts_for("gpt2-eos")[:4])
    tokens, positions = torch.zeros(12, dtype=torch.long), torch.full((12,), 9)
    logs = []
    with torch.inference_mode():
        for _ in range(2):
            with _OpLog() as one:
                steps.state.advance(tokens, None, positions)
            logs.append(one.ops)
    assert logs[0] != logs[1]


@pytest.mark.parametrize("style", ["lora", "hf"])
def test_the_host_reads_once_per_window(style, monkeypatch):
    prompts, kwargs = prompts_for("gpt2-two-stops"), settings("gpt2-two-stops", 3, style)
    expected = reference("gpt2-two-stops", 3, style)
    reads = []
    real_tolist = torch.Tensor.tolist
    monkeypatch.setattr(torch.Tensor, "tolist", lambda self: reads.append(self.shape) or real_tolist(self))
    report = StaticSearchReport()
    with _OpLog() as log:
        out = static_beam_search(case("gpt2-two-stops")["model"], prompts, pad_id=0, batch_size=7,
                                 sync_every=2, report=report, **kwargs)
    assert tuple(map(tuple, out)) == expected
    assert report.windows_redone == 0  # else the exact top-k's reads would be expected below
    assert log.host_reads == []
    # One .tolist() of the flags per window; the results' two per batch and per compaction.
    assert report.host_reads == math.ceil(report.steps / 2)
    assert len(reads) == report.host_reads + 2 * (report.batches + report.compactions)
    if style == "hf":
        assert report.steps < case("gpt2-two-stops")["steps"] and report.compactions > 0


# -- settings ------------------------------------------------------------------------------------

def test_graph_and_sync_settings_are_checked():
    model = case("gpt2-eos")["model"]
    kwargs = dict(eos_id=15, pad_id=0, max_new_tokens=3, num_beams=2)
    with pytest.raises(SoloError, match=r"decode\.cuda_graph=true needs a CUDA device"):
        static_beam_search(model, [[1]], cuda_graph=True, **kwargs)
    with pytest.raises(SoloError, match=r"decode\.cuda_graph=true needs a GPT-2 model"):
        fast_beam_search(tied_bigram(12, seed=3), [[1]], cuda_graph=True, **{**kwargs, "eos_id": 11})
    with pytest.raises(SoloError, match=r"decode\.sync_every=0 must be an integer >= 1"):
        fast_beam_search(model, [[1]], sync_every=0, **kwargs)
    with pytest.raises(SoloError, match=r"decode\.cuda_graph='on' must be auto, true or false"):
        fast_beam_search(model, [[1]], cuda_graph="on", **kwargs)
    with pytest.raises(SoloError, match="GPT-2 only"):
        static_beam_search(tied_bigram(12, seed=3), [[1]], **{**kwargs, "eos_id": 11})


# -- CUDA ----------------------------------------------------------------------------------------

@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("style", ["lora", "hf"])
def test_cuda_graph_replays_give_the_eager_tokens(style):
    # float64 on the GPU too, so the CPU reference's tokens are the ones to expect.
    model = copy.deepcopy(case("trained")["model"]).cuda()
    prompts = prompts_for("trained")
    kwargs = dict(pad_id=0, batch_size=4, **settings("trained", 10, style))
    eager = static_beam_search(model, prompts, cuda_graph=False, **kwargs)
    report = StaticSearchReport()
    graphed = static_beam_search(model, prompts, cuda_graph=True, sync_every=3, report=report, **kwargs)
    assert graphed == eager == list(map(list, reference("trained", 10, style)))
    assert report.graphs_captured >= 2 and report.graph_replays > 0 and report.fallback is None
    # The eager step never synchronises either (CUDA's own check, stricter than the op log).
    steps = _steps_of(style, model, prompts[:3])
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        with torch.inference_mode():
            for _ in range(4):
                steps.step()
    finally:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_step_that_cannot_be_captured_falls_back_to_eager_steps():
    model = copy.deepcopy(case("trained")["model"]).cuda()

    def reads_the_host(_module, _args, out):
        out.sum().item()

    handle = model.transformer.h[0].register_forward_hook(reads_the_host)
    try:
        kwargs = dict(pad_id=0, batch_size=4, **settings("trained", 3, "lora"))
        report = StaticSearchReport()
        out = static_beam_search(model, prompts_for("trained"), report=report, **kwargs)
        assert out == list(map(list, reference("trained", 3, "lora")))
        assert report.fallback and "capturing the decode step failed" in report.fallback
        with pytest.raises(SoloError, match="decode.cuda_graph=true, but capturing"):
            static_beam_search(model, prompts_for("trained"), cuda_graph=True, **kwargs)
    finally:
        handle.remove()
