#!/usr/bin/env bash
# One call on a GPU machine: build, GPU tests, benchmark; a short table last.
#
#   [TEST_PATHS=tests/x.py] bash scripts/gpu_check.sh [pytest args...]
#
# Expects the nvidia-cutlass wheel in .carry/ where the machine has no network
# (the device tool carries that git-ignored folder). Writes logs under $OUT
# (or ./gpu-out). Set SKIP_TESTS=1 or SKIP_BENCH=1 to leave a part out,
# QUICK_PERF=<M> for scripts/quick_perf.py;
# BENCH_ARGS passes arguments to `python -m jaxgemm.bench`.
set -uo pipefail
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
export JAXGEMM_JIT_CACHE_DIR=${JAXGEMM_JIT_CACHE_DIR:-/tmp/jaxgemm-jit}

if ! $PY -c "import importlib.util as u; assert u.find_spec('cutlass_library')" 2>/dev/null; then
  whl=$(ls .carry/nvidia_cutlass-*.whl 2>/dev/null | head -1)
  [ -n "$whl" ] || { echo "no nvidia-cutlass: pip install it or put its wheel in .carry/"; exit 1; }
  rm -rf /tmp/cutlass && mkdir -p /tmp/cutlass && (cd /tmp/cutlass && $PY -m zipfile -e "$OLDPWD/$whl" .)
  export JAXGEMM_CUTLASS_INCLUDE=/tmp/cutlass/cutlass_library/source/include
fi

nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu --format=csv,noheader
# The distribution's g++, whatever $CXX says: a toolchain that links libstdc++
# statically crashes in iostreams inside the extension (seen on the device image).
[ -n "${CLEAN_BUILD:-}" ] && rm -rf build
CXX=${JAXGEMM_BUILD_CXX:-/usr/bin/g++} $PY -m pip install --no-build-isolation --no-deps -v -e . \
  > "$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
so=$($PY -c "import jaxgemm._C as c; print(c.__file__)")
readelf -d "$so" | grep -q "libstdc++.so.6" || { echo "ERROR: $so links libstdc++ statically"; exit 1; }

rc=0
if [ -z "${SKIP_TESTS:-}" ]; then
  # A kernel that deadlocks blocks in the driver where pytest-timeout cannot reach
  # it: bound the whole run and kill it outright.
  timeout -s KILL "${TEST_TIMEOUT:-400}" $PY -m pytest ${TEST_PATHS:-tests} -q -x -rs "$@" 2>&1 | tee "$OUT/pytest.log" | tail -25
  rc=${PIPESTATUS[0]}
fi
if [ -n "${QUICK_PERF:-}" ]; then
  timeout -s KILL 300 $PY scripts/quick_perf.py $QUICK_PERF 2>&1 | tee "$OUT/quick_perf.log" | tail -8
fi
if [ -z "${SKIP_BENCH:-}" ]; then
  timeout -s KILL "${BENCH_TIMEOUT:-400}" $PY -m jaxgemm.bench --json "$OUT/bench.json" ${BENCH_ARGS:-} 2>&1 \
    | tee "$OUT/bench.log" | grep -v '^{' | tail -30
fi
exit $rc
