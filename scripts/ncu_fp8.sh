#!/usr/bin/env bash
# Nsight Compute of one FP8 GEMM launch (the first jaxgemm kernel of the call), with
# per-SASS-instruction stall samples:
#   bash scripts/ncu_fp8.sh M N K [config-json] [layout]   (after scripts/gpu_check.sh has built)
# Writes $OUT/ncu.{ncu-rep,details.csv,source.csv}.
set -uo pipefail
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
export XLA_PYTHON_CLIENT_PREALLOCATE=false JAXGEMM_JIT_CACHE_DIR=${JAXGEMM_JIT_CACHE_DIR:-/tmp/jaxgemm-jit}
[ -d /tmp/cutlass ] && export JAXGEMM_CUTLASS_INCLUDE=/tmp/cutlass/cutlass_library/source/include
ncu -f -o "$OUT/ncu" -k regex:jaxgemm -c 1 --import-source no \
  --section SpeedOfLight --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis \
  --section WarpStateStats --section SourceCounters --section SchedulerStats --section Occupancy \
  python3 scripts/profile_fp8.py "$@" > "$OUT/ncu.log" 2>&1 || { tail -20 "$OUT/ncu.log"; exit 1; }
ncu -i "$OUT/ncu.ncu-rep" --page details --csv > "$OUT/ncu.details.csv"
ncu -i "$OUT/ncu.ncu-rep" --page source --csv --print-source sass > "$OUT/ncu.source.csv" 2>&1
ncu -i "$OUT/ncu.ncu-rep" --page details | grep -E "Throughput|Busy|Active|Stall|Issue|Pipe|Warp Cycles|Eligible|Bank" | head -60
