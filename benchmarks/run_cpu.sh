#!/usr/bin/env bash
# The CPU benchmarks of docs/performance.md, one after the other (about 9 minutes on 2 cores).
# Results: JSON files under ${OUT:-/tmp/marsbench-bench}.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/marsbench-bench}
mkdir -p "$OUT"
.venv/bin/python -u benchmarks/encoder_overhead.py --json "$OUT/encoder_overhead.json"
.venv/bin/python -u benchmarks/indexing_throughput.py --json "$OUT/indexing_throughput.json"
.venv/bin/python -u benchmarks/preprocessing.py --model open_clip:ViT-B-32:random --json "$OUT/preprocessing.json"
