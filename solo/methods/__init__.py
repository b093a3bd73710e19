"""Fine-tuning methods: Solo Connection (with its ablations), LoRA, full fine-tuning.

    method = apply_method(model, method_cfg)     # freezes the backbone (except full_ft), attaches
    optimizer = AdamW(method.trainable_parameters(), ...)
    ... optimizer.step(); method.after_optimizer_step()
    save_adapter(method, run_dir / "adapter"); load_adapter(fresh_model, run_dir / "adapter")
"""

from solo.methods.adapter_io import load_adapter, save_adapter
from solo.methods.base import Method
from solo.methods.full_ft import FullFineTune
from solo.methods.lora import LoRA
from solo.methods.registry import apply_method
from solo.methods.solo_connection import SoloConnection

__all__ = [
    "FullFineTune", "LoRA", "Method", "SoloConnection", "apply_method", "load_adapter", "save_adapter",
]
