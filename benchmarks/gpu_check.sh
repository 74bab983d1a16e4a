#!/usr/bin/env bash
# One short GPU check for a lent H100/H200 (issue 7, target 5): raw bf16 forward throughput of
# ViT-L-14 @224 and SigLIP2 ViT-L-16 @512 against the chip's measured matmul throughput, and the
# encoder service's throughput on the same card. About 4 minutes; prints one table.
#   bash benchmarks/gpu_check.sh            # results also in ${OUT:-/tmp}/gpu.json
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
if [ ! -x "$PY" ]; then
  # A lent GPU machine has python3 with torch and transformers but cannot download: carry the
  # missing wheels in .wheels/ (docs/performance.md, "GPU") and install them without an index.
  PY=python3
  if [ -d .wheels ]; then
    "$PY" -m pip install -q --no-index --find-links .wheels .wheels/*.whl
    "$PY" -m pip install -q --no-index --no-deps --no-build-isolation .
  fi
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
timeout 450 "$PY" -u benchmarks/gpu_throughput.py --seconds 15 --batch 128 --clients 8 --json "${OUT:-/tmp}/gpu.json"
