"""Solo Connection: one shared sparse encoder/decoder pair feeding a gated residual at chosen blocks.

For connection t spanning blocks (first, last), with x the hidden state entering block `first`:

    out_last += f_h(f_sd(f_ev(f_se(f_d(x)))))
    f_d  = dropout                         (no parameters)
    f_se = x @ (E ⊙ M_E)^T                 E: [r, d], shared by every connection, no bias
    f_ev = · + e_t                         e_t: [r], one per connection
    f_sd = · @ (D ⊙ M_D)^T                 D: [d, r], shared, no bias
    f_h  = clamp(λ_t, 0, 1) · v_t ⊙ ·      λ_t scalar, v_t: [d]   (homotopy: false -> v_t ⊙ ·)

Choices the paper leaves open, made here:
- λ is kept in [0, 1] twice: the forward uses clamp(λ, 0, 1), and `after_optimizer_step` projects
  the stored λ back into [0, 1]. The projection keeps λ from drifting outside the box where the
  clamp would zero its gradient and freeze it; the clamp keeps the forward correct even if the
  trainer forgets the projection.
- Sparsity: the masks keep exactly round((1 − s)·numel) entries of E and of D, drawn with
  `torch.randperm` from a generator seeded with `mask_seed` (E's mask first). Masked entries are
  stored as 0 and the forward multiplies by the mask, so their gradient is exactly 0; with a zero
  gradient and zero weight, AdamW (moments and decoupled weight decay) leaves them at 0, and
  `after_optimizer_step` re-applies the masks so any other optimiser cannot revive them either.
- Initialisation: E and D Kaiming-uniform (fan_in, ReLU gain), e_t zeros, v_t ~ N(0, 1) (`v_init:
  random`) or ones, λ_t = `lambda_init`. All random draws use a generator seeded with `init_seed`;
  when the config leaves it null, one seed is drawn from torch's global RNG (so the run's seed
  decides it) and written back into the method's settings, which makes frozen random encoders
  (`train_encdec: false`) rebuildable from the adapter file without storing them.
- Attachment is by forward hooks on the blocks (no library code edited, backbone state-dict keys
  unchanged). The connection is position-wise, so KV-cached generation needs nothing special. For
  span > 1 the input of the group's first block is kept until the next forward (not popped) so a
  block recomputed under gradient checkpointing still finds it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from solo.errors import SoloError
from solo.methods.base import Method, check_dropout, check_positive_int, config_from_dict, freeze
from solo.methods.packing import PackedTerm, add_to_output, module_input
from solo.methods.placement import connection_groups, find_blocks, hidden_size

ADAPTER_ATTR = "solo_adapter"


@dataclass(frozen=True)
class SoloConfig:
    rank: int = 128
    sparsity: float = 0.0
    span: int = 1
    blocks: tuple[int, ...] | None = None
    dropout: float = 0.1
    mask_seed: int = 0
    init_seed: int | None = None
    lambda_init: float = 0.001
    homotopy: bool = True
    train_encdec: bool = True
    v_init: str = "random"

    @classmethod
    def from_dict(cls, cfg: dict[str, Any]) -> SoloConfig:
        return config_from_dict(cls, cfg, "solo", tuple_fields=("blocks",))

    def validate(self) -> None:
        check_positive_int(self.rank, "rank")
        if not isinstance(self.sparsity, (int, float)) or not 0.0 <= self.sparsity < 1.0:
            raise SoloError(f"method.sparsity is the masked fraction and must be in [0, 1), got {self.sparsity!r}")
        check_dropout(self.dropout)
        if not isinstance(self.lambda_init, (int, float)) or not 0.0 <= self.lambda_init <= 1.0:
            raise SoloError(f"method.lambda_init must be in [0, 1], got {self.lambda_init!r}")
        if self.v_init not in ("random", "ones"):
            raise SoloError(f"method.v_init must be 'random' or 'ones', got {self.v_init!r}")
        for key in ("mask_seed", "init_seed"):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise SoloError(f"method.{key} must be an integer, got {value!r}")
        for key in ("homotopy", "train_encdec"):
            if not isinstance(getattr(self, key), bool):
                raise SoloError(f"method.{key} must be true or false, got {getattr(self, key)!r}")

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["blocks"] = list(self.blocks) if self.blocks is not None else None
        return {"name": "solo", **out}


def kept_entries(numel: int, sparsity: float) -> int:
    """Entries a mask keeps: round((1 − s)·numel)."""
    return round((1.0 - sparsity) * numel)


def check_kept_entries(cfg: SoloConfig, d: int) -> None:
    """A mask that keeps no entry gives a dead adapter (E, D identically zero): refuse it."""
    numel = cfg.rank * d
    if cfg.sparsity > 0 and kept_entries(numel, cfg.sparsity) == 0:
        raise SoloError(
            f"method.sparsity={cfg.sparsity} keeps 0 of the {numel} entries of E and D "
            f"(r·d = {cfg.rank}·{d}), a dead adapter; lower method.sparsity so that "
            f"round((1 - s)·{numel}) >= 1"
        )


def random_mask(shape: tuple[int, int], sparsity: float, generator: torch.Generator) -> torch.Tensor:
    """A boolean mask with exactly `kept_entries` True entries at positions drawn from `generator`."""
    numel = math.prod(shape)
    keep = torch.randperm(numel, generator=generator)[: kept_entries(numel, sparsity)]
    mask = torch.zeros(numel, dtype=torch.bool)
    mask[keep] = True
    return mask.view(shape)


class SoloAdapter(nn.Module):
    """The parameters of all T connections of one model and the per-connection function."""

    def __init__(self, d: int, n_connections: int, cfg: SoloConfig) -> None:
        super().__init__()
        r, t = cfg.rank, n_connections
        self.homotopy = cfg.homotopy
        self.dropout = nn.Dropout(cfg.dropout)
        init = torch.Generator().manual_seed(cfg.init_seed if cfg.init_seed is not None else 0)
        encoder = torch.empty(r, d)
        decoder = torch.empty(d, r)
        nn.init.kaiming_uniform_(encoder, generator=init)
        nn.init.kaiming_uniform_(decoder, generator=init)
        v = torch.randn(t, d, generator=init) if cfg.v_init == "random" else torch.ones(t, d)

        self.masked = cfg.sparsity > 0
        if self.masked:
            masks = torch.Generator().manual_seed(cfg.mask_seed)
            # Not persistent: rebuilt from mask_seed, so adapter files hold trainable values only.
            self.register_buffer("encoder_mask", random_mask((r, d), cfg.sparsity, masks), persistent=False)
            self.register_buffer("decoder_mask", random_mask((d, r), cfg.sparsity, masks), persistent=False)
            encoder.masked_fill_(~self.encoder_mask, 0.0)
            decoder.masked_fill_(~self.decoder_mask, 0.0)
        self.kept_encoder = kept_entries(r * d, cfg.sparsity) if self.masked else r * d
        self.kept_decoder = kept_entries(r * d, cfg.sparsity) if self.masked else r * d

        self.encoder = nn.Parameter(encoder, requires_grad=cfg.train_encdec)
        self.decoder = nn.Parameter(decoder, requires_grad=cfg.train_encdec)
        self.encodings = nn.Parameter(torch.zeros(t, r))
        self.v = nn.Parameter(v)
        if self.homotopy:
            self.lam = nn.Parameter(torch.full((t,), float(cfg.lambda_init)))

    def masked_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.masked:
            return self.encoder, self.decoder
        return self.encoder * self.encoder_mask, self.decoder * self.decoder_mask

    def forward(self, x: torch.Tensor, index: int) -> torch.Tensor:
        encoder, decoder = self.masked_weights()
        h = self.dropout(x.to(encoder.dtype))
        z = F.linear(F.linear(h, encoder) + self.encodings[index], decoder)
        gate = self.v[index]
        if self.homotopy:
            gate = self.lam[index].clamp(0.0, 1.0) * gate
        return (gate * z).to(x.dtype)

    @torch.no_grad()
    def project(self) -> None:
        if self.homotopy:
            self.lam.clamp_(0.0, 1.0)
        if self.masked:
            self.encoder.mul_(self.encoder_mask)
            self.decoder.mul_(self.decoder_mask)


class SoloConnection(Method):
    name = "solo"

    def __init__(self, model: nn.Module, cfg: SoloConfig) -> None:
        if hasattr(model, ADAPTER_ATTR):
            raise SoloError("this model already has a Solo Connection attached; load a fresh backbone")
        if cfg.init_seed is None:
            cfg = dataclasses.replace(cfg, init_seed=int(torch.randint(0, 2**31 - 1, ()).item()))
        super().__init__(model, cfg)
        blocks = find_blocks(model)
        self.groups = connection_groups(len(blocks), cfg.blocks, cfg.span)
        check_kept_entries(cfg, hidden_size(model))
        freeze(model)
        reference = next(blocks.parameters())
        self.adapter = SoloAdapter(hidden_size(model), len(self.groups), cfg).to(device=reference.device)
        self.adapter.train(model.training)
        model.add_module(ADAPTER_ATTR, self.adapter)
        self._inputs: dict[int, torch.Tensor] = {}
        self._handles = []
        for index, (first, last) in enumerate(self.groups):
            if first != last:
                self._handles.append(
                    blocks[first - 1].register_forward_pre_hook(partial(self._capture, index), with_kwargs=True)
                )
            self._handles.append(
                blocks[last - 1].register_forward_hook(partial(self._add, index, first == last), with_kwargs=True)
            )

    def _capture(self, index: int, module: nn.Module, args: tuple, kwargs: dict) -> None:
        self._inputs[index] = module_input(args, kwargs)

    def _add(self, index: int, same_block: bool, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
        x = module_input(args, kwargs) if same_block else self._inputs[index]
        return add_to_output(output, self.adapter(x, index))

    def packed_terms(self) -> list[PackedTerm]:
        """One term per connection: the input of block `first` feeds the adapter, whose output
        is added to the output of block `last` (solo.methods.packing)."""
        names = {id(block): name for name, block in self.model.named_modules()}
        blocks = find_blocks(self.model)
        return [
            PackedTerm(reads=names[id(blocks[first - 1])], adds_to=names[id(blocks[last - 1])],
                       term=partial(self.adapter, index=index))
            for index, (first, last) in enumerate(self.groups)
        ]

    def summary(self) -> dict[str, str]:
        spans = [f"D{first}" if first == last else f"D{first}-D{last}" for first, last in self.groups]
        return {"connections": f"[{', '.join(spans)}]"}

    @property
    def n_connections(self) -> int:
        return len(self.groups)

    def trainable_parameters(self) -> list[nn.Parameter]:
        a = self.adapter
        params = [a.encoder, a.decoder] if self.settings.train_encdec else []
        params += [a.encodings, a.v]
        if self.settings.homotopy:
            params.append(a.lam)
        return params

    def num_trainable(self) -> int:
        """kept(E) + kept(D) (if trained) + T·r + T·d + T (λ, if homotopy)."""
        a, t = self.adapter, self.n_connections
        count = (a.kept_encoder + a.kept_decoder) if self.settings.train_encdec else 0
        count += t * self.settings.rank + t * a.v.shape[1]
        return count + (t if self.settings.homotopy else 0)

    def after_optimizer_step(self) -> None:
        self.adapter.project()

    def rebuilt_tensors(self) -> dict[str, torch.Tensor]:
        a, out = self.adapter, {}
        if a.masked:
            out.update(encoder_mask=a.encoder_mask, decoder_mask=a.decoder_mask)
        if not self.settings.train_encdec:  # Table 5: frozen at their seeded random init
            out.update(encoder=a.encoder, decoder=a.decoder)
        return out

    def stored_masks(self) -> dict[str, torch.Tensor]:
        a = self.adapter
        if not (a.masked and self.settings.train_encdec):
            return {}
        return {f"{ADAPTER_ATTR}.encoder": a.encoder_mask, f"{ADAPTER_ATTR}.decoder": a.decoder_mask}

    @torch.no_grad()
    def diagnostics(self) -> dict[str, float]:
        """Per connection (named by its block, e.g. `solo/D4/lambda`): the gate λ as the forward
        uses it (clamped), ‖λ·v‖ (the gate's size: how much the connection can add) and ‖e_t‖;
        for the shared pair, the Frobenius norms of the masked encoder and decoder."""
        a = self.adapter
        encoder, decoder = a.masked_weights()
        out = {"solo/encoder_norm": float(encoder.norm()), "solo/decoder_norm": float(decoder.norm())}
        lam = a.lam.clamp(0.0, 1.0) if self.settings.homotopy else torch.ones(self.n_connections)
        gate_norms = (lam.to(a.v.dtype)[:, None] * a.v).norm(dim=1)
        for index, (first, last) in enumerate(self.groups):
            key = f"solo/D{first}" if first == last else f"solo/D{first}-{last}"
            if self.settings.homotopy:
                out[f"{key}/lambda"] = float(lam[index])
            out[f"{key}/gate_norm"] = float(gate_norms[index])
            out[f"{key}/encoding_norm"] = float(a.encodings[index].norm())
        return out

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._inputs.clear()
        if getattr(self.model, ADAPTER_ATTR, None) is self.adapter:
            delattr(self.model, ADAPTER_ATTR)


def apply_solo(model: nn.Module, cfg: dict[str, Any]) -> SoloConnection:
    return SoloConnection(model, SoloConfig.from_dict(cfg))
