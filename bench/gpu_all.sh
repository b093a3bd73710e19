#!/usr/bin/env bash
# The one script to run on a lent GPU: every figure issues 7 and 14 still need, side by side, in one run.
#
#   PYTHONPATH=. bash bench/gpu_all.sh          # writes to $OUT (or ./bench_out), prints a summary
#   DEVICE=cpu PYTHON=.venv/bin/python bash bench/gpu_all.sh    # dry run with tiny models
#
# Parts (each under `timeout`; limits sum to 480 s, issue 14's 8 minutes, so `run` with
# timeout_s=600 returns in time; every benchmark writes its JSON after each row, so a part that
# hits its limit keeps its rows):
#   gpu_check    fast step == plain step in fp32 (< 1e-4), packed runs == the runs alone (fp32,
#                < 1e-4), then the compiled step (fp32; compiling is slow, so last)
#   train_step   GPT-2 M, batch 8, bf16: the peft anchor, our fast step, and the compiled step
#                for Solo and LoRA (one length bucket, so each compiles once, ~50 s)
#   decode       630 MRs on M and S: generate (anchor), exact search, and the fast search in bf16
#                and fp32 as a CUDA graph (all 630), as the same fixed-shape step eagerly and with
#                host checks every step (one batch each); every variant's tokens checked against
#                the exact search (fp32 is the meaningful check). M first: if S runs past the
#                limit, M's rows are kept
#   packed       GPT-2 S, batch 4 per run, bf16: N = 1, 2, 4, 8, 11 of Table 2's runs packed over
#                one backbone vs the same runs one after another (plain and graphed steps)
#   packed_decode  GPT-2 S, bf16, 210 MRs per run: N = 1, 4, 11 of Table 2's adapters decoded in
#                one search vs one after another (CUDA graphs), tokens compared with alone's
#   concurrency  N = 1, 4 runs in one process in lockstep on CUDA streams (bf16)
#   estimate     the whole paper's wall time recomputed from this run's JSONs (CPU arithmetic,
#                bench/estimate_paper.py over the committed run plan: no Hydra needed)
# Outputs: log.txt, summary.txt and one JSON per part.
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-bench_out}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error
# Inductor: compile on all cores, no max-autotune (no per-kernel GEMM benchmarking).
export TORCHINDUCTOR_COMPILE_THREADS="${TORCHINDUCTOR_COMPILE_THREADS:-16}" TORCHINDUCTOR_MAX_AUTOTUNE=0
PY="${PYTHON:-python3}"
LOG="$OUT/log.txt"
DEV="${DEVICE:-cuda}"
SIZES="--sizes M,S"; TRAIN_SIZES="--sizes M"; COUNTS="1,4"; PACKED="1,2,4,8,11"; PACKED_DECODE="1,4,11"; P=bf16; COMPILE="--compile fp32"; STEPS=10; DP="bf16,fp32"  # M first: it carries the goals
[ "$DEV" = cpu ] && { SIZES=""; TRAIN_SIZES=""; COUNTS="1,2"; PACKED="1,2"; PACKED_DECODE="1,2"; P=fp32; COMPILE=""; STEPS=3; DP=fp32; }
CONFIGS=""
[ -d shared/data/gpt2-configs ] && CONFIGS="--config-dir shared/data/gpt2-configs"

part() {  # part NAME SECONDS COMMAND...
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  echo "=== $name (limit ${limit}s) ===" | tee -a "$LOG"
  timeout --kill-after=5 "$limit" "$@" >>"$LOG" 2>&1
  local rc=$?
  echo "=== $name: rc=$rc, $((SECONDS - t0)) s ===" | tee -a "$LOG"
}

{
  date -u
  nvidia-smi --query-gpu=name,memory.total,memory.used,clocks.sm,clocks.max.sm,power.draw --format=csv 2>&1
  $PY -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA device')" 2>&1
  $PY -c "import peft; print('peft', peft.__version__)" 2>&1
} | tee -a "$LOG"

part gpu_check 70 $PY bench/gpu_check.py --device "$DEV" --steps $STEPS --precisions fp32 $COMPILE \
  --json "$OUT/gpu_check.json"
part train_step 150 $PY bench/bench_train_step.py --device "$DEV" $TRAIN_SIZES $CONFIGS --precisions $P \
  --buckets 112 --compile --variants "anchor,fast-solo-$P,fast-solo-$P-compile,fast-lora-$P-compile" \
  --json "$OUT/train_step.json"
# A cache that grows a little every step fragments the caching allocator; expandable segments
# let it grow in place.
PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True \
part decode 100 $PY bench/bench_decode.py --device "$DEV" $SIZES $CONFIGS --precisions "$DP" \
  --variants graph,eager,per-step --json "$OUT/decode.json"
part packed 80 $PY bench/bench_packed.py --device "$DEV" --counts "$PACKED" $CONFIGS \
  --json "$OUT/packed.json"
part packed_decode 40 $PY bench/bench_packed_decode.py --device "$DEV" --counts "$PACKED_DECODE" $CONFIGS \
  --json "$OUT/packed_decode.json"
part concurrency 30 $PY bench/bench_concurrency.py --device "$DEV" --counts "$COUNTS" --paths fast \
  --modes lockstep --precision $P --seconds 2 --json "$OUT/concurrency.json"
part estimate 10 $PY bench/estimate_paper.py --from-plan --measured "$OUT" --markdown "$OUT/estimate.md"

$PY - "$OUT" > "$OUT/summary.txt" 2>&1 <<'PYEOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
for name in ("gpu_check", "train_step", "decode", "packed", "packed_decode", "concurrency"):
    path = out / f"{name}.json"
    print(f"--- {name} ---")
    if not path.exists():
        print("(no result: see log.txt)")
        continue
    report = json.loads(path.read_text())
    print(report.get("table", "(no table)"))
print("--- estimate (the whole paper, from this run's figures) ---")
estimate = out / "estimate.md"
print(estimate.read_text() if estimate.exists() else "(no result: see log.txt)")
PYEOF
echo "=== SUMMARY ==="
cat "$OUT/summary.txt"
grep -n "Traceback\|Error\|FAILED\|fast step:" "$LOG" | head -30
