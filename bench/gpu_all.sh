#!/usr/bin/env bash
# The one script to run on a lent GPU: every device check and benchmark, within ~7 minutes.
#
#   PYTHONPATH=. bash bench/gpu_all.sh          # writes to $OUT (or ./bench_out), prints a summary
#
# Each part runs under `timeout`, so a hang costs that part only. Outputs (6 files):
#   log.txt (everything printed), summary.txt (the tables), gpu_check.json, train_step.json,
#   decode.json, concurrency.json.
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-bench_out}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error
PY="${PYTHON:-python3}"
LOG="$OUT/log.txt"
DEV="${DEVICE:-cuda}"  # DEVICE=cpu: a dry run of the whole script with tiny models
SIZES="--sizes M,S"; COUNTS="1,2,4"  # M first: its figures are the goals
[ "$DEV" = cpu ] && { SIZES=""; COUNTS="1,2"; }
CONFIGS=""
[ -d shared/data/gpt2-configs ] && CONFIGS="--config-dir shared/data/gpt2-configs"

part() {  # part NAME SECONDS COMMAND...
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  echo "=== $name (limit ${limit}s) ===" | tee -a "$LOG"
  timeout --kill-after=10 "$limit" "$@" >>"$LOG" 2>&1
  local rc=$?
  echo "=== $name: rc=$rc, $((SECONDS - t0)) s ===" | tee -a "$LOG"
}

{
  date -u
  nvidia-smi --query-gpu=name,memory.total,memory.used,clocks.sm,clocks.max.sm,power.draw --format=csv 2>&1
  $PY -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA device')" 2>&1
  $PY -c "import peft; print('peft', peft.__version__)" 2>&1
} | tee -a "$LOG"

part gpu_check 60 $PY bench/gpu_check.py --device "$DEV" --json "$OUT/gpu_check.json"
part train_step 140 $PY bench/bench_train_step.py --device "$DEV" $SIZES $CONFIGS --json "$OUT/train_step.json"
part decode 120 $PY bench/bench_decode.py --device "$DEV" $SIZES $CONFIGS --json "$OUT/decode.json"
part concurrency 90 $PY bench/bench_concurrency.py --device "$DEV" --counts "$COUNTS" --paths fast --seconds 4 --json "$OUT/concurrency.json"

$PY - "$OUT" > "$OUT/summary.txt" 2>&1 <<'PYEOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
for name in ("gpu_check", "train_step", "decode", "concurrency"):
    path = out / f"{name}.json"
    print(f"--- {name} ---")
    if not path.exists():
        print("(no result: see log.txt)")
        continue
    report = json.loads(path.read_text())
    print(report.get("table", "(no table)"))
PYEOF
echo "=== SUMMARY ==="
cat "$OUT/summary.txt"
grep -n "Traceback\|Error\|FAILED\|fast step:" "$LOG" | head -30
