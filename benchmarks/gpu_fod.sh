#!/usr/bin/env bash
# One GPU, no internet, at most ~9 minutes: train `fod-gpu` from scratch on the real data (5 min budget),
# score val, measure speed and memory, then the full 1440x2560 training speed.
#   prepare once here:  mkdir -p .device_data && cp -r ../shared/foreign_object_dataset .device_data/
#   run there:          bash benchmarks/gpu_fod.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-runs/gpu_fod}}"
data="${DATA_ROOT:-.device_data/foreign_object_dataset}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
timeout 540 python3 -m benchmarks.gpu_fod --data-root "$data" --out "$out" --train-minutes "${TRAIN_MINUTES:-5}" \
    2>&1 | tr '\r' '\n' | grep -v "batch/s" | tee "$out.log"
mkdir -p "$out" && mv "$out.log" "$out/run.log"
