"""LoRA as microsoft/LoRA applies it to GPT-2 (loralib `MergedLinear`, `enable_lora=[True, False, True]`).

GPT-2 computes Q, K and V with one fused transformers `Conv1D` (`c_attn`, weight [d, 3d], i.e.
[in, out]). LoRA adapts only the enabled slices: A is [n·r, d] and B is [n·d, r] for n enabled
slices, each slice s getting ΔW_s = B_s A_s (a grouped product, loralib's grouped conv1d), scaled
by α/r and added to the output of the frozen layer. Dropout applies to the input of the LoRA path
only. A is Kaiming-uniform with a = √5 (nn.Linear's default, as loralib), B is zero, so the model
starts exactly at the backbone. Bias stays frozen (loralib's `mark_only_lora_as_trainable`, bias
'none').

Llama-style models have separate `q_proj`/`k_proj`/`v_proj` `nn.Linear`s; each target gets a
plain LoRA pair there. Models that fuse Q, K and V into one `nn.Linear` (GPT-NeoX/Pythia, Bloom,
Falcon, GPT-BigCode, Phi-3) get loralib's merged form on it as on GPT-2, on the output rows their
attention reads as Q, K or V: interleaved per head (GPT-NeoX, Bloom), per key/value group (Falcon's
new architecture) or concatenated (Phi-3, multi-query Falcon and BigCode), so the slices are index
sets read from the model's config (`fused_qkv_layout`), not thirds.
Trainable count, GPT-2: n_layer · 2 · (2·r·d) → S r=4: 147,456; M r=4: 393,216.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers.pytorch_utils import Conv1D

from solo.errors import SoloError
from solo.methods.base import Method, check_dropout, check_positive_int, config_from_dict, freeze
from solo.methods.packing import PackedTerm

log = logging.getLogger(__name__)

_SLICES = ("q", "k", "v")
_LINEAR_NAMES = {"q": "q_proj", "k": "k_proj", "v": "v_proj"}
# Names of one nn.Linear computing Q, K and V together: GPT-NeoX, Bloom, Falcon / Phi-3 /
# GPT-BigCode / MPT, Qwen (v1), ChatGLM... Which rows are which is the model type's business.
_FUSED_LINEAR_NAMES = ("query_key_value", "qkv_proj", "c_attn", "Wqkv")


@dataclass(frozen=True)
class LoRAConfig:
    rank: int = 4
    alpha: float = 32
    dropout: float = 0.1
    targets: tuple[str, ...] = ("q", "v")

    @classmethod
    def from_dict(cls, cfg: dict[str, Any]) -> LoRAConfig:
        return config_from_dict(cls, cfg, "lora", tuple_fields=("targets",))

    def validate(self) -> None:
        check_positive_int(self.rank, "rank")
        if not isinstance(self.alpha, (int, float)) or self.alpha <= 0:
            raise SoloError(f"method.alpha must be positive, got {self.alpha!r}")
        check_dropout(self.dropout)
        bad = [t for t in self.targets if t not in _SLICES]
        if bad or not self.targets or len(set(self.targets)) != len(self.targets):
            raise SoloError(f"method.targets must be distinct entries of [q, k, v], got {list(self.targets)}")

    @property
    def scaling(self) -> float:
        return self.alpha / self.rank

    def to_dict(self) -> dict[str, Any]:
        return {"name": "lora", **dataclasses.asdict(self), "targets": list(self.targets)}


@dataclass(frozen=True)
class FusedQKV:
    """Where Q, K and V sit in a fused projection's output: `groups` repeats of the slots `roles`
    (each "q", "k" or "v"), each slot `head_dim` rows wide."""

    groups: int
    roles: tuple[str, ...]
    head_dim: int

    @property
    def width(self) -> int:
        return self.groups * len(self.roles) * self.head_dim

    def rows(self, role: str) -> torch.Tensor:
        """The output rows of `role`, in output order."""
        slots = torch.arange(self.width).view(self.groups, len(self.roles), self.head_dim)
        return slots[:, [i for i, r in enumerate(self.roles) if r == role]].reshape(-1)


# The model types whose fused QKV row layout fused_qkv_layout knows.
FUSED_LAYOUT_TYPES = ("gpt_neox", "bloom", "falcon", "gpt_bigcode", "phi3")


def _concatenated(heads: int, kv_heads: int, head_dim: int) -> FusedQKV:
    return FusedQKV(1, ("q",) * heads + ("k",) * kv_heads + ("v",) * kv_heads, head_dim)


def fused_qkv_layout(config: Any) -> FusedQKV | None:
    """The Q/K/V row layout of a fused QKV `nn.Linear` in a model of this config, as its attention
    splits the output (transformers' modeling_<type>.py); None for a model type not known here."""
    kind = getattr(config, "model_type", None)
    if kind not in FUSED_LAYOUT_TYPES:
        return None
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    per_head = FusedQKV(heads, _SLICES, head_dim)  # [heads, 3, head_dim]
    if kind == "phi3":
        return _concatenated(heads, config.num_key_value_heads, head_dim)
    if kind == "gpt_bigcode":
        return _concatenated(heads, 1, head_dim) if config.multi_query else per_head
    if kind == "falcon":
        if config.new_decoder_architecture:  # [kv groups, the group's queries + its key + its value, head_dim]
            groups = config.num_kv_heads
            return FusedQKV(groups, ("q",) * (heads // groups) + ("k", "v"), head_dim)
        return _concatenated(heads, 1, head_dim) if config.multi_query else per_head
    return per_head


class _LoRAWrapper(nn.Module):
    """What the wrappers share: the frozen projection plus `delta(x)`, and merging
    `delta_weight()` (scaled, in the frozen weight's layout) into the frozen weight."""

    weight: nn.Parameter
    bias: nn.Parameter | None
    merged: bool

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def delta_weight(self) -> torch.Tensor:
        raise NotImplementedError

    def frozen(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.frozen(x)
        if self.merged:
            return out
        return out + self.delta(x)

    @torch.no_grad()
    def merge(self) -> None:
        """Fold B·A into the frozen weight (changes the backbone weight in place)."""
        if not self.merged:
            self.weight += self.delta_weight()
            self.merged = True


class LoRAFusedConv1D(_LoRAWrapper):
    """A GPT-2 fused QKV `Conv1D` plus LoRA on the enabled slices.

    It takes over the original `weight` and `bias` Parameters (same objects, same state-dict keys)
    and adds `lora_A`, `lora_B`.
    """

    def __init__(self, base: Conv1D, cfg: LoRAConfig) -> None:
        super().__init__()
        self.nx, self.nf = base.nx, base.nf
        if self.nf % len(_SLICES):
            raise SoloError(f"fused c_attn output {self.nf} is not 3·d; LoRA expects GPT-2's fused QKV")
        self.weight, self.bias = base.weight, base.bias
        self.width = self.nf // len(_SLICES)
        self.enabled = [s in cfg.targets for s in _SLICES]
        n, r = sum(self.enabled), cfg.rank
        self.rank, self.scaling = r, cfg.scaling
        self.lora_dropout = nn.Dropout(cfg.dropout) if cfg.dropout > 0 else nn.Identity()
        self.lora_A = nn.Parameter(self.weight.new_empty(n * r, self.nx))
        self.lora_B = nn.Parameter(self.weight.new_zeros(n * self.width, r))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.merged = False

    def delta_slices(self, x: torch.Tensor) -> torch.Tensor:
        """[..., n, width]: the scaled LoRA output of each enabled slice."""
        n = sum(self.enabled)
        after_a = F.linear(self.lora_dropout(x), self.lora_A).unflatten(-1, (n, self.rank))
        b = self.lora_B.view(n, self.width, self.rank)
        return torch.einsum("...nr,nwr->...nw", after_a, b) * self.scaling

    def delta_weight(self) -> torch.Tensor:
        """ΔW in Conv1D layout [in, out], zero on disabled slices."""
        n = sum(self.enabled)
        a = self.lora_A.view(n, self.rank, self.nx)
        b = self.lora_B.view(n, self.width, self.rank)
        per_slice = torch.einsum("nwr,nrx->nxw", b, a) * self.scaling  # [n, in, width]
        full = self.weight.new_zeros(self.nx, len(_SLICES), self.width)
        full[:, torch.tensor(self.enabled)] = per_slice.permute(1, 0, 2)
        return full.reshape(self.nx, self.nf)

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        """What LoRA adds to the fused output: the enabled slices' terms, zeros elsewhere."""
        slices = self.delta_slices(x)
        pieces, used = [], 0
        for on in self.enabled:
            if on:
                pieces.append(slices[..., used, :])
                used += 1
            else:
                pieces.append(slices.new_zeros(()).expand(*x.shape[:-1], self.width))
        return torch.cat(pieces, dim=-1)

    def frozen(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addmm(self.bias, x.reshape(-1, self.nx), self.weight).view(*x.shape[:-1], self.nf)


class LoRALinear(_LoRAWrapper):
    """An `nn.Linear` projection (Llama-style q_proj/v_proj) plus one LoRA pair."""

    def __init__(self, base: nn.Linear, cfg: LoRAConfig) -> None:
        super().__init__()
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight, self.bias = base.weight, base.bias
        self.rank, self.scaling = cfg.rank, cfg.scaling
        self.lora_dropout = nn.Dropout(cfg.dropout) if cfg.dropout > 0 else nn.Identity()
        self.lora_A = nn.Parameter(self.weight.new_empty(cfg.rank, self.in_features))
        self.lora_B = nn.Parameter(self.weight.new_zeros(self.out_features, cfg.rank))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.merged = False

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(F.linear(self.lora_dropout(x), self.lora_A), self.lora_B) * self.scaling

    def delta_weight(self) -> torch.Tensor:
        return (self.lora_B @ self.lora_A) * self.scaling


class LoRAFusedLinear(_LoRAWrapper):
    """A fused QKV `nn.Linear` plus LoRA on the enabled slices (loralib's `MergedLinear`), each slice
    being the rows `layout` gives it: A is [n·r, in], B is [Σ slice widths, r] (the widths differ
    under grouped-query attention)."""

    def __init__(self, base: nn.Linear, layout: FusedQKV, cfg: LoRAConfig) -> None:
        super().__init__()
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight, self.bias = base.weight, base.bias
        roles = [s for s in _SLICES if s in cfg.targets]
        rows = [layout.rows(role) for role in roles]
        self.widths = [len(r) for r in rows]
        self.rank, self.scaling = cfg.rank, cfg.scaling
        self.lora_dropout = nn.Dropout(cfg.dropout) if cfg.dropout > 0 else nn.Identity()
        self.lora_A = nn.Parameter(self.weight.new_empty(len(roles) * cfg.rank, self.in_features))
        self.lora_B = nn.Parameter(self.weight.new_zeros(sum(self.widths), cfg.rank))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        # For each output row, its row among the adapted ones, or sum(widths): a zero row appended.
        source = torch.full((self.out_features,), sum(self.widths), dtype=torch.long)
        source[torch.cat(rows)] = torch.arange(sum(self.widths))
        self.register_buffer("_source", source.to(self.weight.device), persistent=False)
        self.merged = False

    def _spread(self, adapted: torch.Tensor, dim: int) -> torch.Tensor:
        """Adapted rows (along `dim`) placed at their output rows, zeros at the others."""
        shape = list(adapted.shape)
        shape[dim] = 1
        return torch.cat([adapted, adapted.new_zeros(shape)], dim).index_select(dim, self._source)

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        after_a = F.linear(self.lora_dropout(x), self.lora_A).split(self.rank, dim=-1)
        pieces = [F.linear(a, b) for a, b in zip(after_a, self.lora_B.split(self.widths), strict=True)]
        return self._spread(torch.cat(pieces, dim=-1), -1) * self.scaling

    def delta_weight(self) -> torch.Tensor:
        a = self.lora_A.split(self.rank)
        per_slice = [b @ a_s for a_s, b in zip(a, self.lora_B.split(self.widths), strict=True)]
        return self._spread(torch.cat(per_slice), 0) * self.scaling


class LoRA(Method):
    name = "lora"

    def __init__(self, model: nn.Module, cfg: LoRAConfig) -> None:
        super().__init__(model, cfg)
        freeze(model)
        # (parent module, attribute, original module): what detach() puts back.
        self._replaced: list[tuple[nn.Module, str, nn.Module]] = []
        self.layers: list[LoRAFusedConv1D | LoRALinear | LoRAFusedLinear] = []
        targets = {_LINEAR_NAMES[t] for t in cfg.targets}
        kind = getattr(getattr(model, "config", None), "model_type", type(model).__name__)
        layout = fused_qkv_layout(getattr(model, "config", None))  # one for all its blocks
        unknown_fused: list[str] = []  # fused QKV layers whose row layout is not known here
        for parent in list(model.modules()):
            for attr, child in list(parent.named_children()):
                if attr == "c_attn" and isinstance(child, Conv1D):
                    wrapped: nn.Module = LoRAFusedConv1D(child, cfg)
                elif attr in targets and isinstance(child, nn.Linear):
                    wrapped = LoRALinear(child, cfg)
                elif attr in _FUSED_LINEAR_NAMES and isinstance(child, nn.Linear):
                    if layout is None:
                        unknown_fused.append(attr)
                        continue
                    if layout.width != child.out_features:
                        raise SoloError(
                            f"{kind}'s fused `{attr}` has {child.out_features} outputs but its config gives "
                            f"{layout.width} Q/K/V rows; LoRA cannot tell the slices apart"
                        )
                    wrapped = LoRAFusedLinear(child, layout, cfg)
                else:
                    continue
                wrapped.train(child.training)
                setattr(parent, attr, wrapped)
                self._replaced.append((parent, attr, child))
                self.layers.append(wrapped)  # type: ignore[arg-type]
        if unknown_fused and not self.layers:
            raise SoloError(
                f"LoRA does not know which rows of {kind}'s fused `{unknown_fused[0]}` are Q, K and V (it "
                f"knows {', '.join(FUSED_LAYOUT_TYPES)}); method=solo trains on this model"
            )
        if unknown_fused:  # e.g. MiniMax: q_proj/v_proj in its full-attention blocks, qkv_proj in the others
            log.warning("LoRA: %d fused `%s` layers of %s left unadapted (their Q/K/V row layout is not "
                        "known here); %d projections adapted", len(unknown_fused), unknown_fused[0], kind,
                        len(self.layers))
        if not self.layers:
            raise SoloError(
                f"LoRA found no attention projection in {type(model).__name__} (looked for GPT-2 "
                f"`c_attn` Conv1D, Llama-style {sorted(targets)} Linear layers and fused QKV Linear "
                f"layers named {', '.join(_FUSED_LINEAR_NAMES)})"
            )

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for layer in self.layers for p in (layer.lora_A, layer.lora_B)]

    def packed_terms(self) -> list[PackedTerm]:
        """One term per adapted projection: its input, through B·A, added to its output
        (solo.methods.packing). A merged layer has no term left to pack."""
        if any(layer.merged for layer in self.layers):
            return None  # type: ignore[return-value]
        names = {id(module): name for name, module in self.model.named_modules()}
        return [PackedTerm(reads=names[id(layer)], adds_to=names[id(layer)], term=layer.delta)
                for layer in self.layers]

    def merge(self) -> None:
        for layer in self.layers:
            layer.merge()

    def detach(self) -> None:
        for parent, attr, original in self._replaced:
            setattr(parent, attr, original)
        self._replaced.clear()


def apply_lora(model: nn.Module, cfg: dict[str, Any]) -> LoRA:
    return LoRA(model, LoRAConfig.from_dict(cfg))
