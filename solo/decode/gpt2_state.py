"""A decoding state for GPT-2 that never copies its key/value cache: the fast path of beam search.

`solo.decode.beam_search` with Hugging Face's DynamicCache is bound by cache copies, not by
arithmetic: every step concatenates the new keys to the whole cache and reorders every row for
the beam shuffle, and each of the K beams of a prompt holds its own copy of the prompt's keys.
On an H200 that made GPT-2 M decoding 1.9x `generate` at best (bench/README.md). This state
computes the same logits with three changes:

- the prompt's keys and values are stored once per prompt, not once per beam (prompts are about
  as long as the generated text, so this halves the cache and its traffic);
- the generated keys and values go into a buffer preallocated for max_new_tokens, written in place
  at slot (step, beam) and never moved; each row instead keeps its ancestry (which beam slot held
  its hypothesis at each earlier step), a [prompts, beams, steps] integer table that the beam
  shuffle reorders for almost nothing;
- attention reads that buffer once per step: scores of each beam's query against every beam slot
  of its prompt come from one batched matmul, and the ancestry picks the ones on the row's own
  history (K times the dot products of the exact gather, but no copy of the cache).

Each block still runs through `block(...)` (its forward replaced for the search), so forward hooks
(Solo Connection) and replaced projections (LoRA's `c_attn`) act as in training. Scores are
computed in the model's dtype, softmax in fp32; the MLP's tanh-GELU is torch's one-kernel form.
About 27 kernels a block per step, so the host's launch time is of the order of the GPU's work.
`advance_at` is the same step with every shape fixed (the whole buffer, later slots masked, the
step a device tensor): solo.decode.static_search captures it in a CUDA graph.
Only GPT-2 (`model_type == "gpt2"`, self-attention only) is supported; `unsupported_reason` says
why another model is not, and solo.decode.engine.fast_beam_search then uses the plain state.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn


def unsupported_reason(model: nn.Module) -> str | None:
    """None if this state can decode `model`, else why not (one line)."""
    config = getattr(model, "config", None)
    if getattr(config, "model_type", None) != "gpt2":
        return f"not a GPT-2 model (model_type={getattr(config, 'model_type', None)!r})"
    if not hasattr(model, "transformer") or not hasattr(model, "lm_head"):
        return f"{type(model).__name__} is not a GPT2LMHeadModel-like model (transformer + lm_head)"
    if getattr(config, "add_cross_attention", False):
        return "the model has cross-attention"
    return None


class SharedPromptGPT2State:
    """solo.decode.DecoderState for GPT-2 with a shared prompt cache and an in-place beam cache."""

    def __init__(self, model: nn.Module, num_beams: int, max_new_tokens: int) -> None:
        reason = unsupported_reason(model)
        if reason is not None:
            raise ValueError(f"SharedPromptGPT2State cannot decode this model: {reason}")
        self.model = model
        self.blocks = model.transformer.h
        config = model.config
        self.beams = num_beams
        self.max_steps = max_new_tokens
        self.heads = config.n_head
        self.head_dim = config.n_embd // config.n_head
        base = self.head_dim ** -0.5 if getattr(config, "scale_attn_weights", True) else 1.0
        by_layer = getattr(config, "scale_attn_by_inverse_layer_idx", False)
        self.scales = [base / (i + 1) if by_layer else base for i in range(len(self.blocks))]
        self.step = 0  # generated tokens whose keys/values are in the buffer
        self.prompt_keys: list[torch.Tensor] = []    # per layer [P, H, W, hd]
        self.prompt_values: list[torch.Tensor] = []
        self.beam_keys: list[torch.Tensor] = []      # per layer [P, H, T*K, hd], slot = step*K + beam
        self.beam_values: list[torch.Tensor] = []
        self.prompt_mask = torch.empty(0)            # [P, W] bool, False on left padding
        self.prompt_padding = torch.empty(0)         # [P, 1, 1, W] bool, True on left padding
        self.ancestry = torch.empty(0)               # [P, K, T] beam slot of each row's history

    # -- DecoderState ----------------------------------------------------------------------------

    def start(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        prompts, width = ids.shape
        self.prompt_mask = mask.bool()
        self.prompt_padding = ~self.prompt_mask[:, None, None, :]
        self.ancestry = torch.zeros(prompts, self.beams, max(self.max_steps, 1), dtype=torch.long,
                                    device=ids.device)
        # Causal attention that never looks at padding; a padding position sees itself only, so
        # its (unused) output stays finite.
        causal = torch.ones(width, width, dtype=torch.bool, device=ids.device).tril()
        allowed = (causal & self.prompt_mask[:, None, :]) | torch.eye(width, dtype=torch.bool,
                                                                      device=ids.device)
        hidden = self._run_blocks(self._embed(ids, positions), partial(self._prompt_attention,
                                                                       allowed[:, None]))
        return self._logits(hidden[:, -1])

    def reorder(self, rows: torch.Tensor) -> None:
        prompts = self.ancestry.shape[0]
        parents = rows.view(prompts, self.beams) % self.beams
        index = parents[:, :, None].expand(-1, -1, self.ancestry.shape[2])
        self.ancestry.copy_(self.ancestry.gather(1, index))  # in place: a CUDA graph holds its address

    def select(self, rows: torch.Tensor) -> None:
        keep = rows.view(-1, self.beams)[:, 0] // self.beams
        self.prompt_mask = self.prompt_mask[keep]
        self.prompt_padding = self.prompt_padding[keep]
        self.ancestry = self.ancestry[keep]
        for cache in (self.prompt_keys, self.prompt_values, self.beam_keys, self.beam_values):
            cache[:] = [layer[keep] for layer in cache]

    def advance(self, tokens: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        if self.step >= self.max_steps:
            raise RuntimeError(f"advance called more than max_new_tokens={self.max_steps} times")
        logits = self._advance(tokens, positions, self.step)
        self.step += 1
        return logits

    def advance_at(self, tokens: torch.Tensor, positions: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
        """`advance` as a function of fixed-shape tensors: `step` (a 0-dim int64 tensor on the
        model's device) says which slot the tokens' keys and values go to, attention reads the
        whole buffer with the later slots masked, and nothing is read on the host. The caller
        keeps the step count (`self.step` is not used); steps past max_new_tokens are its error."""
        return self._advance(tokens, positions, step)

    def _advance(self, tokens: torch.Tensor, positions: torch.Tensor,
                 step: int | torch.Tensor) -> torch.Tensor:
        # At this step each row's own token is in its own beam's slot.
        own = torch.arange(self.beams, device=tokens.device)[:, None]
        at_step = torch.arange(self.ancestry.shape[2], device=tokens.device) == step
        self.ancestry.copy_(torch.where(at_step, own, self.ancestry))
        hidden = self._run_blocks(self._embed(tokens[:, None], positions[:, None]),
                                  partial(self._beam_attention, step))
        return self._logits(hidden[:, -1])

    # -- the model ---------------------------------------------------------------------------------

    def _embed(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        transformer = self.model.transformer
        return transformer.drop(transformer.wte(ids) + transformer.wpe(positions))

    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.model.lm_head(self.model.transformer.ln_f(hidden))

    def _run_blocks(self, hidden: torch.Tensor, attention) -> torch.Tensor:
        with _block_forwards(self.blocks, partial(_block_forward, attention)):
            for block in self.blocks:
                hidden = block(hidden)
        return hidden

    def _split(self, block: nn.Module, hidden: torch.Tensor):
        rows, length, _ = hidden.shape
        qkv = block.attn.c_attn(hidden).view(rows, length, 3, self.heads, self.head_dim)
        return qkv.permute(2, 0, 3, 1, 4).unbind(0)  # q, k, v: [rows, H, length, hd]

    def _prompt_attention(self, allowed: torch.Tensor, block: nn.Module, layer: int,
                          hidden: torch.Tensor) -> torch.Tensor:
        q, k, v = self._split(block, hidden)
        if layer == 0:
            self._reset_caches(q)
        # Contiguous copies, once: views into c_attn's output would keep q alive and make every
        # step's batched matmul copy them.
        self.prompt_keys[layer], self.prompt_values[layer] = k.contiguous(), v.contiguous()
        return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, scale=self.scales[layer])

    def _reset_caches(self, q: torch.Tensor) -> None:
        layers, prompts = len(self.blocks), q.shape[0]
        shape = (prompts, self.heads, max(self.max_steps, 1) * self.beams, self.head_dim)
        self.prompt_keys, self.prompt_values = [None] * layers, [None] * layers
        # Zeros, not garbage: advance_at reads every slot, and a later slot's weight 0 times a
        # NaN left in uninitialised memory would be NaN.
        self.beam_keys = [q.new_zeros(shape) for _ in range(layers)]
        self.beam_values = [q.new_zeros(shape) for _ in range(layers)]
        self.step = 0

    def _beam_attention(self, step: int | torch.Tensor, block: nn.Module, layer: int,
                        hidden: torch.Tensor) -> torch.Tensor:
        """Attention of each row's new token over its prompt and its own history. `step` an int:
        the buffer is cut after this step's slots; a 0-dim tensor: every slot is read, later
        steps masked (fixed shapes for a CUDA graph; same logits up to rounding)."""
        prompts, beams, heads = self.prompt_mask.shape[0], self.beams, self.heads
        q, k, v = self._split(block, hidden)                   # [P*K, H, 1, hd]
        # [P, H, K, hd], contiguous once for the two matmuls below
        q = q.reshape(prompts, beams, heads, -1).transpose(1, 2).contiguous()
        keys, values = self.beam_keys[layer], self.beam_values[layer]
        k = k.reshape(prompts, beams, heads, -1).transpose(1, 2)
        v = v.reshape(prompts, beams, heads, -1).transpose(1, 2)
        if isinstance(step, int):
            slots = slice(step * beams, (step + 1) * beams)
            keys[:, :, slots], values[:, :, slots] = k, v
            seen = step + 1
            keys, values = keys[:, :, :seen * beams], values[:, :, :seen * beams]
        else:
            slots = step * beams + torch.arange(beams, device=step.device)
            keys.index_copy_(2, slots, k)
            values.index_copy_(2, slots, v)
            seen = keys.shape[2] // beams

        scale = self.scales[layer]
        accurate = torch.promote_types(q.dtype, torch.float32)  # fp32, or fp64 for fp64 models
        prompt_scores = (q @ self.prompt_keys[layer].transpose(-1, -2)).to(accurate) * scale
        prompt_scores.masked_fill_(self.prompt_padding, float("-inf"))
        # Every beam's query against every beam slot, then each row keeps its own history.
        history = self.ancestry[:, None, :, :seen, None].expand(-1, heads, -1, -1, 1)
        all_scores = (q @ keys.transpose(-1, -2)).view(prompts, heads, beams, seen, beams)
        own_scores = all_scores.gather(4, history).squeeze(4).to(accurate) * scale
        if not isinstance(step, int):
            later = torch.arange(seen, device=step.device) > step
            own_scores.masked_fill_(later, float("-inf"))

        width = prompt_scores.shape[-1]
        weights = torch.cat([prompt_scores, own_scores], dim=-1).softmax(dim=-1).to(values.dtype)
        spread = weights.new_zeros(prompts, heads, beams, seen, beams)
        spread.scatter_(4, history, weights[..., width:, None])
        out = weights[..., :width] @ self.prompt_values[layer]
        out = out + spread.view(prompts, heads, beams, -1) @ values     # [P, H, K, hd]
        return out.transpose(1, 2).reshape(prompts * beams, heads, 1, -1)


def _block_forward(attention, block: nn.Module, layer: int, hidden: torch.Tensor) -> torch.Tensor:
    """GPT2Block.forward (eval mode, self-attention only) with `attention` over our caches."""
    normed = block.ln_1(hidden)
    heads_out = attention(block, layer, normed)                  # [rows, H, length, hd]
    rows, _, length, _ = heads_out.shape
    merged = heads_out.transpose(1, 2).reshape(rows, length, -1)
    hidden = hidden + block.attn.resid_dropout(block.attn.c_proj(merged))
    return hidden + _mlp(block.mlp, block.ln_2(hidden))


# GPT-2's activation is the tanh approximation of GELU, which HF writes as eight elementwise
# kernels and torch computes in one (equal up to rounding); other activations run as they are.
_TANH_GELUS = ("NewGELUActivation", "PytorchGELUTanh", "GELUTanh")


def _mlp(mlp: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    inner = mlp.c_fc(hidden)
    if type(mlp.act).__name__ in _TANH_GELUS:
        inner = F.gelu(inner, approximate="tanh")
    else:
        inner = mlp.act(inner)
    return mlp.dropout(mlp.c_proj(inner))


@contextlib.contextmanager
def _block_forwards(blocks: nn.ModuleList, forward) -> Iterator[None]:
    """Swap each block's forward for ours while keeping `block(...)`, so its hooks still fire."""
    for layer, block in enumerate(blocks):
        block.forward = partial(forward, block, layer)
    try:
        yield
    finally:
        for block in blocks:
            del block.forward
