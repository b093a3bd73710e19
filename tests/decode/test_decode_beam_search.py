"""The batched, cached beam search returns exactly what the one-prompt references return, under
both search rules (decode.style lora and hf), and each rule decides some results."""

from __future__ import annotations

import functools
import importlib

import pytest
import torch

from solo.decode import ban_repeated_ngrams, beam_search, top_k_low_index_first
from solo.errors import SoloError
from tests.decode.decode_models import (
    PARA,
    SEP,
    BigramLM,
    cycle_example,
    random_prompts,
    small_gpt2,
    tied_bigram,
    trained_cycle_gpt2,
)
from tests.decode.decode_reference import (
    banned_tokens,
    lora_reference_beam_search,
    reference_beam_search,
)

NUM_PROMPTS = 7


@functools.cache
def case(name: str) -> dict:
    """Model and settings of one exactness case; models are built once per session."""
    if name == "gpt2-ties":  # tokens 3/4 and 5/6 always tie; eos is rare; bans bite with n=2
        model = small_gpt2(16, seed=1, duplicate_tokens=((3, 4), (5, 6)), eos_bias=-2.0)
        return dict(model=model, eos=15, ngram=2, length_penalty=0.9, steps=8)
    if name == "gpt2-eos":  # eos is likely, so hypotheses end early and the stop rule decides
        model = small_gpt2(16, seed=2, eos_bias=1.0, head_std=0.3)
        return dict(model=model, eos=15, ngram=3, length_penalty=0.9, steps=12)
    if name == "gpt2-two-stops":  # as gpt2-eos, and token 7 stops a hypothesis too
        return {**case("gpt2-eos"), "eos": (15, 7)}
    if name == "bigram":  # integer logits: exact ties in nearly every step
        return dict(model=tied_bigram(12, seed=3), eos=11, ngram=2, length_penalty=0.5, steps=8)
    if name == "trained":  # long, repetitive outputs; two stop ids, as GPT-2's 50256 and 628
        return dict(model=trained_cycle_gpt2(), eos=(SEP, PARA), ngram=4, length_penalty=0.8,
                    steps=24)
    raise KeyError(name)


CASES = ["gpt2-ties", "gpt2-eos", "gpt2-two-stops", "bigram", "trained"]
STYLES = ["lora", "hf"]


def prompts_for(name: str) -> list[list[int]]:
    if name == "trained":
        generator = torch.Generator().manual_seed(5)
        return [cycle_example(generator)[0] for _ in range(NUM_PROMPTS)]
    c = case(name)
    eos = c["eos"] if isinstance(c["eos"], int) else c["eos"][0]
    return random_prompts(eos + 1, NUM_PROMPTS, seed=5, end_with=eos)


def settings(name: str, num_beams: int, style: str = "hf") -> dict:
    c = case(name)
    return dict(eos_id=c["eos"], num_beams=num_beams, length_penalty=c["length_penalty"],
                no_repeat_ngram_size=c["ngram"], max_new_tokens=c["steps"], style=style)


@functools.cache
def reference(name: str, num_beams: int, style: str = "hf", **flags) -> tuple:
    """The reference search's outputs; `flags` swap one rule of the reference (see
    decode_reference.py)."""
    kwargs = settings(name, num_beams, style)
    search = lora_reference_beam_search if kwargs.pop("style") == "lora" else reference_beam_search
    return tuple(tuple(search(case(name)["model"], p, **kwargs, **flags)) for p in prompts_for(name))


def fast(name: str, num_beams: int, batch_size: int, style: str = "hf", **overrides) -> tuple:
    kwargs = {**settings(name, num_beams, style), **overrides}
    out = beam_search(case(name)["model"], prompts_for(name), pad_id=0, batch_size=batch_size,
                      **kwargs)
    return tuple(tuple(o) for o in out)


@pytest.mark.parametrize("batch_size", [1, 3, 7])
@pytest.mark.parametrize("num_beams", [1, 3, 10])
@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("style", STYLES)
def test_batched_search_equals_reference(style, name, num_beams, batch_size):
    assert fast(name, num_beams, batch_size, style) == reference(name, num_beams, style)


@pytest.mark.parametrize("style", STYLES)
def test_each_stop_id_ends_hypotheses(style):
    # The second stop id changes results, and no output contains either stop id.
    one, two = reference("gpt2-eos", 3, style), reference("gpt2-two-stops", 3, style)
    assert one != two
    assert any(7 in o for o in one) and not any(7 in o or 15 in o for o in two)
    # order and type do not matter
    assert fast("gpt2-two-stops", 3, 7, style, eos_id=[7, 15]) == two


@pytest.mark.parametrize("style", STYLES)
def test_both_stop_ids_of_the_trained_model_end_its_texts(style):
    # The trained model ends odd-start targets with PARA (as GPT-2 ends a text with "\n\n"):
    # with only the eos as a stop, those outputs run on through PARA.
    both, eos_only = fast("trained", 3, 7, style), fast("trained", 3, 7, style, eos_id=SEP)
    assert both == reference("trained", 3, style)
    assert not any(PARA in o or SEP in o for o in both)
    assert any(PARA in o for o in eos_only)
    assert all(len(o) < case("trained")["steps"] for o in both)  # every text stopped


def test_a_prompt_ngram_can_be_copied_under_lora_and_not_under_hf():
    n = case("trained")["ngram"]
    prompts = prompts_for("trained")

    def copied(outputs) -> int:
        return sum(bool(_ngrams(p[:-1], n) & _ngrams(list(o), n)) for p, o in zip(prompts, outputs, strict=True))

    assert copied(fast("trained", 10, 7, "lora")) == len(prompts)
    assert copied(fast("trained", 10, 7, "hf")) == 0


def _ngrams(tokens: list[int], n: int) -> set[tuple[int, ...]]:
    return {tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)}


@pytest.mark.slow  # slow one-prompt references for 3 models x 2 beam widths x 2 variants
@pytest.mark.parametrize("flag", ["bans_after_softmax", "prompt_ngrams", "expand_all_first"])
def test_each_lora_rule_decides_some_results(flag):
    # The engine equals the reference (above), and swapping any one of the reference's lora rules
    # for its HF counterpart changes some output of these models: so the engine follows each rule.
    changed = [name for name in ("trained", "gpt2-eos", "gpt2-ties")
               for beams in (3, 10)
               if reference(name, beams, "lora", **{flag: True}) != reference(name, beams, "lora")]
    assert changed, flag


@pytest.mark.parametrize("bad", [[], [1.5], -1, "15", [True]])
def test_bad_stop_ids_are_solo_errors(bad):
    with pytest.raises(SoloError, match="stop token ids"):
        beam_search(case("bigram")["model"], [[1]], eos_id=bad, pad_id=0, max_new_tokens=2)


def test_a_finished_beam_keeps_its_slot_under_lora():
    """Prompt [P]: the stop S is likeliest, then A, then C; after C, S is certain; after A,
    everything is equally likely. With two beams and length penalty 1, LoRA keeps S's slot
    (score -inf) and only A goes on, so the best text is the empty one (score -1.0); HF refills
    the slot with C, whose "C S" scores -1.2 / 2 = -0.6 and wins."""
    P, A, C, S = 0, 1, 3, 4
    table = torch.full((6, 6), 0.0)
    table[P] = -10.0
    table[P, [A, C, S]] = torch.tensor([1.9, 1.8, 2.0])
    table[C, S] = 10.0
    model = BigramLM(table)
    kwargs = dict(eos_id=S, pad_id=P, num_beams=2, max_new_tokens=3, length_penalty=1.0,
                  no_repeat_ngram_size=0)
    assert beam_search(model, [[P]], style="lora", **kwargs) == [[]]
    assert beam_search(model, [[P]], style="hf", **kwargs) == [[C]]
    lora_kwargs = {k: v for k, v in kwargs.items() if k != "pad_id"}
    assert lora_reference_beam_search(model, [P], **lora_kwargs) == []
    assert lora_reference_beam_search(model, [P], **lora_kwargs, refill_finished=True) == [C]


def test_lora_bans_renormalise_the_other_tokens():
    """Beam 2, length penalty 1, no-repeat bigrams. "Y S" (0.45 * 0.5, length 2) ends first.
    "X X" must not repeat its bigram, so X is banned after it: renormalised, S then has
    0.09 / 0.1 = 0.9 and "X X S" (0.5 * 0.9 * 0.9, length 3) wins; without renormalisation it has
    0.5 * 0.9 * 0.09 and "Y S" stays best."""
    P, X, Y, S, Z = range(5)
    probs = torch.full((5, 5), 0.2)
    probs[P] = torch.tensor([1e-9, 0.5, 0.45, 0.01, 0.04])
    probs[X] = torch.tensor([1e-9, 0.9, 1e-9, 0.09, 0.01])
    probs[Y] = torch.tensor([1e-9, 0.1, 1e-9, 0.5, 0.4])
    model = BigramLM(probs.log())
    kwargs = dict(eos_id=S, num_beams=2, max_new_tokens=3, length_penalty=1.0, no_repeat_ngram_size=2)
    assert beam_search(model, [[P]], pad_id=P, style="lora", **kwargs) == [[X, X]]
    assert lora_reference_beam_search(model, [P], **kwargs) == [X, X]
    assert lora_reference_beam_search(model, [P], **kwargs, bans_after_softmax=True) == [Y]


def rows_per_model_call(style: str) -> tuple[list[int], tuple]:
    """Rows of each model call of a gpt2-eos search (the prompt pass, then one call per step),
    and its outputs."""
    model = case("gpt2-eos")["model"]
    rows: list[int] = []
    handle = model.register_forward_hook(
        lambda module, args, kwargs, out: rows.append(kwargs["input_ids"].shape[0]), with_kwargs=True)
    try:
        out = fast("gpt2-eos", 3, NUM_PROMPTS, style)
    finally:
        handle.remove()
    return rows, out


def test_lora_always_runs_max_new_tokens_steps_with_every_slot():
    rows, out = rows_per_model_call("lora")
    steps = case("gpt2-eos")["steps"]
    assert rows == [NUM_PROMPTS] + [3 * NUM_PROMPTS] * (steps - 1)
    assert any(len(o) < steps // 2 for o in out)  # although texts had ended long before


@pytest.mark.parametrize("name", ["gpt2-ties", "bigram"])
def test_ties_decide_some_hf_results(name):
    # Otherwise the equality above would not show that ties are broken the same way.
    assert reference(name, 3, ties_to_high_token=True) != reference(name, 3)


def test_ngram_bans_change_some_results():
    assert fast("gpt2-ties", 3, 7) != fast("gpt2-ties", 3, 7, no_repeat_ngram_size=0)


def test_hf_stops_early_and_drops_done_prompts():
    rows, out = rows_per_model_call("hf")
    steps = case("gpt2-eos")["steps"]
    # No call follows the last step, so fewer than `steps` calls means the stop rule fired...
    assert len(rows) < steps
    # ...and prompts that were done left the batch while others went on.
    assert rows[1] == 3 * NUM_PROMPTS and len(set(rows[1:])) > 1
    assert any(0 < len(o) < steps for o in out)


def test_padding_never_changes_a_result(tiny_gpt2_config):
    torch.manual_seed(0)
    from transformers import GPT2LMHeadModel

    model = GPT2LMHeadModel(tiny_gpt2_config).double().eval()
    prompts = [[464, 3290, 50256], list(range(1000, 1030)) + [50256], [11, 12, 13, 14, 11, 12, 13]]
    kwargs = dict(eos_id=50256, pad_id=50256, num_beams=3, length_penalty=0.9,
                  no_repeat_ngram_size=4, max_new_tokens=6)
    together = beam_search(model, prompts, batch_size=3, **kwargs)
    alone = [beam_search(model, [p], batch_size=1, **kwargs)[0] for p in prompts]
    assert together == alone
    assert sum(len(o) > 0 for o in together) >= 2  # not trivially equal (all empty)


@pytest.mark.parametrize("num_beams", [1, 3, 10])
def test_hf_style_matches_hf_generate(tiny_gpt2_config, num_beams):
    """HF's beam search (early_stopping=False) has the hf rule's semantics on single prompts."""
    from transformers import GPT2LMHeadModel

    torch.manual_seed(1)
    model = GPT2LMHeadModel(tiny_gpt2_config)
    with torch.no_grad():
        # Spread the logits (random init makes them nearly equal, so fp32 ties would be common
        # and HF breaks ties in no fixed order) and make eos likely.
        head = torch.nn.Linear(64, 50257, bias=True)
        head.weight.copy_(model.lm_head.weight * 40)
        head.bias.zero_()
        head.bias[50256] = 3.0
        model.lm_head = head
        model.config.tie_word_embeddings = False
    model = model.double().eval()
    kwargs = dict(num_beams=num_beams, length_penalty=0.9, no_repeat_ngram_size=2, max_new_tokens=8)
    prompts = [[50256], [464, 3290, 318, 50256], [11, 12, 13, 11, 12, 13, 11, 50256]]
    ours = beam_search(model, prompts, eos_id=50256, pad_id=50256, batch_size=3, style="hf", **kwargs)
    theirs = []
    for prompt in prompts:
        out = model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                             do_sample=False, early_stopping=False, eos_token_id=50256,
                             pad_token_id=50256, **kwargs)[0, len(prompt):].tolist()
        theirs.append(out[:out.index(50256)] if 50256 in out else out)
    assert ours == theirs
    assert any(len(o) < 8 for o in ours)  # some hypotheses ended with eos



def test_top_k_low_index_first_breaks_ties_by_column():
    generator = torch.Generator().manual_seed(0)
    scores = torch.randint(-4, 1, (5, 40), generator=generator).float()
    scores[0, 3], scores[0, 7] = -0.0, 0.0  # -0.0 and +0.0 are equal scores
    scores[1, :20] = float("-inf")
    values, indices = top_k_low_index_first(scores, 12)
    for row in range(5):
        expected = sorted(range(40), key=lambda c: (-scores[row, c].item(), c))[:12]
        assert indices[row].tolist() == expected
        assert values[row].tolist() == scores[row, expected].tolist()


@pytest.mark.parametrize("tied, keyed_width", [(4, 48), (40, 384), (900, 3072), (4000, 5000)])
def test_top_k_low_index_first_on_wide_rows_with_ties_at_the_boundary(monkeypatch, tied, keyed_width):
    # `solo.decode.beam_search` the attribute is the function; the module is needed here.
    bs = importlib.import_module("solo.decode.beam_search")

    widths = []
    real_keys = bs._tie_free_keys
    monkeypatch.setattr(bs, "_tie_free_keys", lambda v, c: widths.append(v.shape[-1]) or real_keys(v, c))
    generator = torch.Generator().manual_seed(1)
    scores = torch.randn(3, 5000, generator=generator)
    k = 20
    for row in range(3):
        kth = scores[row].sort(descending=True).values[k - 1]
        scores[row, torch.randperm(5000, generator=generator)[:tied]] = kth  # ties across the cut
    values, indices = top_k_low_index_first(scores, k)
    # Keys are built once: for the first superset (48, 384, 3072, then the whole row) whose last
    # value is below the k-th.
    assert widths == [keyed_width]
    for row in range(3):
        expected = sorted(range(5000), key=lambda c: (-scores[row, c].item(), c))[:k]
        assert indices[row].tolist() == expected
        assert values[row].tolist() == scores[row, expected].tolist()


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_ban_repeated_ngrams_matches_reference(n):
    generator = torch.Generator().manual_seed(n)
    rows, width, vocab = 12, 15, 5
    tokens = torch.randint(0, vocab, (rows, width), generator=generator)
    first_real = torch.randint(0, width, (rows,), generator=generator)
    tokens[torch.arange(width)[None, :] < first_real[:, None]] = 4  # padding with a real token id
    log_probs = torch.zeros(rows, vocab)
    ban_repeated_ngrams(log_probs, tokens, first_real, n)
    some_banned = False
    for r in range(rows):
        expected = banned_tokens(tokens[r, first_real[r]:].tolist(), n)
        assert set((log_probs[r] == float("-inf")).nonzero().view(-1).tolist()) == expected
        assert (log_probs[r][log_probs[r] != float("-inf")] == 0).all()
        some_banned |= bool(expected)
    assert some_banned


def test_bad_settings_and_prompts_raise_solo_error():
    model = case("bigram")["model"]
    ok = dict(eos_id=11, pad_id=0)
    with pytest.raises(SoloError, match="num_beams"):
        beam_search(model, [[1]], num_beams=0, **ok)
    with pytest.raises(SoloError, match="prompt 1 is empty"):
        beam_search(model, [[1], []], **ok)
    gpt2 = case("gpt2-eos")["model"]  # 96 positions
    with pytest.raises(SoloError, match="max_new_tokens"):
        beam_search(gpt2, [[1] * 90], max_new_tokens=10, **ok)


def test_eval_mode_during_search_and_mode_restored():
    model = case("gpt2-eos")["model"]
    modes = []
    handle = model.register_forward_pre_hook(lambda module, args: modes.append(module.training))
    model.train()
    try:
        beam_search(model, [[1, 2]], eos_id=15, pad_id=0, num_beams=2, max_new_tokens=2)
    finally:
        handle.remove()
        training_after = model.training
        model.eval()
    assert modes and not any(modes)
    assert training_after


def test_zero_new_tokens_gives_empty_outputs():
    assert beam_search(case("bigram")["model"], [[1], [2, 3]], eos_id=11, pad_id=0,
                       max_new_tokens=0) == [[], []]
