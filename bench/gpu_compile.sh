#!/usr/bin/env bash
# One short device run: does torch.compile inside the CUDA-graphed step bring GPT-2 M under 11 ms?
#
#   PYTHONPATH=. bash bench/gpu_compile.sh      # writes log.txt and train_step_compile.json to $OUT
#
# GPT-2 M, batch 8, lengths 40-110, bf16, ONE length bucket (112) so each compiled variant compiles
# once: the peft anchor (fp32, per-batch padding), our fast Solo step uncompiled, then compiled
# Solo and compiled LoRA (inductor default mode, static shapes; the CUDA graph stays ours).
# Hard wall time: the benchmark runs under a 215 s timeout and writes its JSON after every
# variant, so a timeout during the last compile keeps the rows measured before it.
# DEVICE=cpu PYTHON=.venv/bin/python: a dry run with the tiny model (fp32 instead of bf16).
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-bench_out}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error
# Inductor: compile Triton kernels on all 16 cores; no max-autotune (the default), so no
# per-kernel benchmarking of GEMM templates; graph breaks are logged for the next round.
export TORCHINDUCTOR_COMPILE_THREADS="${TORCHINDUCTOR_COMPILE_THREADS:-16}" TORCHINDUCTOR_MAX_AUTOTUNE=0
export TORCH_LOGS="${TORCH_LOGS:-graph_breaks,recompiles}"
PY="${PYTHON:-python3}"
DEV="${DEVICE:-cuda}"
P=bf16; SIZE="--sizes M"
[ "$DEV" = cpu ] && { P=fp32; SIZE=""; }
LOG="$OUT/log.txt"
JSON="$OUT/train_step_compile.json"
{
  date -u
  nvidia-smi --query-gpu=name,memory.used,clocks.sm,clocks.max.sm --format=csv 2>&1
  $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" 2>&1
  $PY -c "import triton; print('triton', triton.__version__)" 2>&1
} | tee -a "$LOG"
t0=$SECONDS
timeout --kill-after=5 215 $PY bench/bench_train_step.py --device "$DEV" $SIZE --precisions $P \
  --buckets 112 --compile --variants "anchor,fast-solo-$P,fast-solo-$P-compile,fast-lora-$P-compile" \
  --json "$JSON" 2>&1 | tee -a "$LOG" | grep -v "^  *warnings.warn\|FutureWarning"
echo "=== bench rc=${PIPESTATUS[0]}, $((SECONDS - t0)) s ===" | tee -a "$LOG"
$PY - "$JSON" <<'PYEOF' 2>&1 | tee -a "$LOG"
import json, sys
from pathlib import Path
path = Path(sys.argv[1])
if not path.exists():
    sys.exit("no JSON written: see log.txt")
for size, entry in json.loads(path.read_text())["sizes"].items():
    for row in entry["rows"]:
        cells = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items() if k != "name")
        print(f"{size} | {row['name']} | {cells}")
PYEOF
