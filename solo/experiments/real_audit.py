"""`make audit`'s rows for the real-weights lane: LoRA and Solo counts on SmolLM2-135M's shapes."""

from __future__ import annotations

from pathlib import Path

from solo.methods import apply_method
from solo.methods.placement import connection_groups, find_blocks
from solo.methods.solo_connection import kept_entries
from solo.models.backbone import build_random_model, random_config

REAL_MODEL_CONFIG = Path(__file__).resolve().parent.parent / "models" / "smollm2-135m.json"
# The real-weights lane (make real): LoRA on Llama's q_proj/v_proj, Solo on every other block.
REAL_METHODS = (
    ("lora r=8 (q_proj, v_proj)", {"name": "lora", "rank": 8, "alpha": 32}),
    ("solo r=128 s=0.6", {"name": "solo", "rank": 128, "sparsity": 0.6, "init_seed": 0}),
)


def real_model_rows() -> list[tuple[str, int, int, str]]:
    """(method, measured, formula, where) on SmolLM2-135M's shapes (meta device, no weights)."""
    model = build_random_model(random_config(REAL_MODEL_CONFIG), device="meta")
    c = model.config
    d, n, kv = c.hidden_size, c.num_hidden_layers, c.num_key_value_heads * c.head_dim
    groups = connection_groups(len(find_blocks(model)), None, 1)
    rows = []
    for label, cfg in REAL_METHODS:
        method = apply_method(model, cfg)
        measured = method.num_trainable()
        method.detach()
        if cfg["name"] == "lora":
            r = cfg["rank"]
            formula, where = n * (r * (d + d) + r * (d + kv)), f"{n} blocks × (q {d}→{d}, v {d}→{kv})"
        else:
            r, t = cfg["rank"], len(groups)
            formula = 2 * kept_entries(r * d, cfg["sparsity"]) + t * (r + d + 1)
            where = "D" + ", D".join(str(first) for first, _ in groups)
        rows.append((label, measured, formula, where))
    return rows


def format_real_rows(rows: list[tuple[str, int, int, str]]) -> str:
    lines = ["SmolLM2-135M (Llama, 30 blocks, d=576; make real): measured vs formula"]
    for label, measured, formula, where in rows:
        mark = "ok" if measured == formula else "MISMATCH"
        lines.append(f"  {label:<28} {measured:>9,}  formula {formula:>9,}  {mark}  ({where})")
    return "\n".join(lines)




def real_model_audit() -> str:
    return format_real_rows(real_model_rows())
