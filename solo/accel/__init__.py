"""Fast paths for GPU runs: a CUDA-graphed training step over fixed length buckets, and fast decoding.

Every fast path computes the same function as the plain path (solo.train's step, solo.decode's
beam search) and falls back to eager execution on the CPU, where tests check the equivalence.
Nothing here imports Hydra, OmegaConf or datasets, so the GPU benchmarks run on a bare image.
"""

from solo.accel.buckets import DEFAULT_BUCKETS, pick_bucket
from solo.accel.fast_decode import decode_batch_size, fast_beam_search
from solo.accel.gpt2_decode import SharedPromptGPT2State
from solo.accel.graphed_step import FastTrainStep
from solo.accel.precision import apply_precision, use_sdpa

__all__ = [
    "DEFAULT_BUCKETS", "FastTrainStep", "SharedPromptGPT2State", "apply_precision",
    "decode_batch_size", "fast_beam_search", "pick_bucket", "use_sdpa",
]
