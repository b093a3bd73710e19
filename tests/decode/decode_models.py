"""Tiny causal LMs for the decoding tests: random GPT-2s with a small vocabulary, and a bigram
table whose integer logits make exact ties the rule rather than the exception.

The GPT-2s run in float64 so that the cached, padded, batched forward and the reference's full
recomputation give the same fp32 logits; the search itself (fp32 log-probs) is what is tested.
"""

from __future__ import annotations

import functools
from types import SimpleNamespace

import torch
from torch import nn
from transformers import GPT2Config, GPT2LMHeadModel


def small_gpt2(vocab: int, seed: int, *, duplicate_tokens: tuple[tuple[int, int], ...] = (),
               eos_bias: float | None = None, head_std: float | None = None) -> GPT2LMHeadModel:
    """A 2-block GPT-2 over `vocab` tokens, eos = vocab - 1, in float64 and eval mode.

    duplicate_tokens: pairs (a, b) whose embeddings (and output rows) are made identical, so a
    and b always get exactly equal logits. eos_bias: added to the eos logit (the head becomes an
    untied copy with a bias). head_std: the head's weights are instead drawn with this std, which
    gives peaked next-token distributions that do not just copy the last token.
    """
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=vocab, n_positions=96, n_embd=32, n_layer=2, n_head=2,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                        bos_token_id=vocab - 1, eos_token_id=vocab - 1, pad_token_id=vocab - 1)
    model = GPT2LMHeadModel(config)
    with torch.no_grad():
        for a, b in duplicate_tokens:
            model.transformer.wte.weight[b] = model.transformer.wte.weight[a]
        if eos_bias is not None:
            head = nn.Linear(config.n_embd, vocab, bias=True)
            if head_std is None:
                head.weight.copy_(model.lm_head.weight)
            else:
                head.weight.normal_(0.0, head_std)
            head.bias.zero_()
            head.bias[vocab - 1] = eos_bias
            model.lm_head = head
            model.config.tie_word_embeddings = False
    return model.double().eval()


class BigramLM(nn.Module):
    """logits(next | sequence) = table[last token]; accepts and ignores an HF cache."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.table = nn.Parameter(table.float(), requires_grad=False)
        self.config = None

    def forward(self, input_ids, attention_mask=None, position_ids=None, use_cache=None,
                past_key_values=None, **kwargs):
        return SimpleNamespace(logits=self.table[input_ids])


def tied_bigram(vocab: int, seed: int) -> BigramLM:
    """Integer logits in {0, -1, -2}: many tokens share a log-prob in every row."""
    generator = torch.Generator().manual_seed(seed)
    return BigramLM(-torch.randint(0, 3, (vocab, vocab), generator=generator).float())


def random_prompts(vocab: int, count: int, seed: int, max_length: int = 12,
                   end_with: int | None = None) -> list[list[int]]:
    """`count` prompts of lengths cycling through 1..max_length, optionally ending with `end_with`
    (E2E prompts end with eos)."""
    generator = torch.Generator().manual_seed(seed)
    prompts = []
    for i in range(count):
        length = 1 + (i * 5 + seed) % max_length
        ids = torch.randint(0, vocab, (length,), generator=generator).tolist()
        prompts.append(ids + [end_with] if end_with is not None else ids)
    return prompts


# The trained model's language: tokens 0..7 go round a cycle (next = this + 1 mod 8); a prompt is
# a stretch of the cycle then the separator SEP; the target continues the cycle (so it soon
# repeats 4-grams of the prompt and of itself) and ends with PARA after an odd token, with SEP
# (the eos) after an even one: two stop tokens, like GPT-2's "\n\n" and <|endoftext|>.
CYCLE, PARA, SEP = 8, 10, 11


def cycle_example(generator: torch.Generator) -> tuple[list[int], list[int]]:
    """One (prompt, target) pair of the trained model's language."""
    start, prompt_length, target_length = (int(torch.randint(low, high, (), generator=generator))
                                           for low, high in ((0, CYCLE), (4, 7), (6, 19)))
    prompt = [(start + i) % CYCLE for i in range(prompt_length)]
    target = [(start + prompt_length + i) % CYCLE for i in range(target_length)]
    return prompt + [SEP], target + [PARA if target[-1] % 2 else SEP]


@functools.cache
def trained_cycle_gpt2(steps: int = 300) -> GPT2LMHeadModel:
    """A 2-block GPT-2 (vocabulary 12) trained for `steps` AdamW steps on the cycle language (a few
    seconds on one CPU thread), returned in float64 and eval mode. Its outputs are long and
    repetitive, so n-gram bans, stop tokens and length normalisation all decide results."""
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=SEP + 1, n_positions=96, n_embd=32, n_layer=2, n_head=2,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                        bos_token_id=SEP, eos_token_id=SEP, pad_token_id=SEP)
    model = GPT2LMHeadModel(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(steps):
        pairs = [cycle_example(generator) for _ in range(32)]
        width = max(len(p) + len(t) for p, t in pairs)
        ids = torch.full((len(pairs), width), SEP)
        labels = torch.full((len(pairs), width), -100)
        for row, (prompt, target) in enumerate(pairs):
            ids[row, :len(prompt) + len(target)] = torch.tensor(prompt + target)
            labels[row, len(prompt):len(prompt) + len(target)] = torch.tensor(target)
        loss = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.double().eval()
