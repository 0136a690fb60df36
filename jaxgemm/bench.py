"""`python -m jaxgemm.bench`: jaxgemm's FP8 GEMM against what a JAX user has today.

For each DeepSeek-V3 shape, in one run and on the same GPU:
  jaxgemm      jaxgemm.fp8_gemm_nt (block-scaled FP8, its scale relayout included)
  xla_bf16     XLA's bf16 dot on the dequantized inputs (cuBLAS)
  xla_fp8      XLA's FP8 dot with per-tensor f32 scales (cuBLASLt FP8; no block scales)
  xla_blockwise  the block-scaled recipe emulated in XLA: dequantize, then bf16 dot

Method: one jitted function applies the op to several distinct input sets whose
operands together exceed 4x the L2 cache, so that no run measures the cache; it is
called back to back after warm-up, the device is synchronised once at the end, and
the median over 5 repetitions is reported. Then the JIT cost: a cold NVCC compile,
a cold NVRTC compile, and the first call with a warm on-disk cache (each in a fresh
process). Timings are never asserted anywhere; BENCHMARKS.md records them.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp

import jaxgemm
from jaxgemm import reference

# DeepSeek-V3's dense GEMM shapes (N, K): the projections of one layer.
DEEPSEEK_V3_NK = [
    (2112, 7168),   # fused q_a / kv_a projection
    (24576, 1536),  # q_b projection
    (32768, 512),   # kv_b projection
    (7168, 16384),  # o projection
    (4096, 7168),   # shared-expert gate/up (per TP shard)
    (7168, 2048),   # shared-expert down
]
DEFAULT_MS = (128, 4096)
_L2_BYTES = 50 * 2**20
_REPS = 5


def _num_sets(bytes_per_set: int) -> int:
    return max(1, min(32, math.ceil(4 * _L2_BYTES / bytes_per_set)))


def _time_fn(fn, args) -> float:
    """Median seconds per call of `fn(*args)` (which covers len(sets) ops)."""
    jax.block_until_ready(fn(*args))  # compile + warm-up
    jax.block_until_ready(fn(*args))
    calls = 3
    times = []
    for _ in range(_REPS):
        t0 = time.perf_counter()
        for _ in range(calls):
            out = fn(*args)
        jax.block_until_ready(out)
        times.append((time.perf_counter() - t0) / calls)
    return statistics.median(times)


def _make_inputs(m, n, k, sets, key):
    xs, ws = [], []
    for i in range(sets):
        kx, kw = jax.random.split(jax.random.fold_in(key, i))
        xs.append(jax.random.normal(kx, (m, k), jnp.bfloat16))
        ws.append(jax.random.normal(kw, (n, k), jnp.bfloat16))
    return xs, ws


def time_jaxgemm(m, n, k, key, config=None) -> float:
    """TFLOPS of fp8_gemm_nt alone (for config sweeps)."""
    sets = _num_sets(m * k + n * k)
    xs, ws = _make_inputs(m, n, k, sets, key)
    a = [jaxgemm.per_token_cast_to_fp8(x) for x in xs]
    b = [jaxgemm.per_block_cast_to_fp8(w) for w in ws]
    f = jax.jit(lambda a, b: [jaxgemm.fp8_gemm_nt(ai, bi, config=config) for ai, bi in zip(a, b)])
    return 2.0 * m * n * k * sets / _time_fn(f, (a, b)) / 1e12


SWEEP_CONFIGS = [
    {"block_m": 128, "block_n": bn, "cluster_m": c} for bn in (128, 144, 160, 176, 192) for c in (1, 2)
]


def sweep(ms, key):
    """Every SWEEP_CONFIGS entry on every shape: what the heuristic should pick."""
    for m in ms:
        for n, k in DEEPSEEK_V3_NK:
            heur = jaxgemm.fp8_gemm_config(m, n, k)
            line = [f"M={m} N={n} K={k} heuristic {heur['block_m']}x{heur['block_n']}c{heur['cluster_m']}:"
                    f" {time_jaxgemm(m, n, k, key):.0f} |"]
            for cfg in SWEEP_CONFIGS:
                line.append(f"{cfg['block_n']}c{cfg['cluster_m']} {time_jaxgemm(m, n, k, key, cfg):.0f}")
            print(" ".join(line), flush=True)


def bench_shape(m, n, k, key, config=None):
    flops = 2.0 * m * n * k
    results = {}

    # jaxgemm: FP8 operands (1 byte) + scales.
    sets = _num_sets(m * k + n * k)
    xs, ws = _make_inputs(m, n, k, sets, key)
    a = [jaxgemm.per_token_cast_to_fp8(x) for x in xs]
    b = [jaxgemm.per_block_cast_to_fp8(w) for w in ws]
    f = jax.jit(lambda a, b: [jaxgemm.fp8_gemm_nt(ai, bi, config=config) for ai, bi in zip(a, b)])
    results["jaxgemm"] = flops * sets / _time_fn(f, (a, b))

    # Accuracy of this very run against the dequantized-input reference (float32 HIGHEST).
    got = f(a[:1], b[:1])[0]
    want = reference.fp8_gemm_nt(a[0][0], a[0][1], b[0][0], b[0][1], out_dtype=jnp.float32)
    results["calc_diff"] = jaxgemm.calc_diff(got, want)

    # XLA FP8 with per-tensor scales (cuBLASLt), same FP8 data.
    sa = [jnp.max(ai[1]) for ai in a]
    sb = [jnp.max(bi[1]) for bi in b]

    def fp8_dot(a8, sa, b8, sb):
        # The pattern XLA's GEMM rewriter turns into a cuBLASLt FP8 GEMM: convert,
        # multiply by a scalar f32 scale, dot.
        da = a8.astype(jnp.float32) * sa
        db = b8.astype(jnp.float32) * sb
        return jax.lax.dot_general(da, db, (((1,), (1,)), ((), ())),
                                   preferred_element_type=jnp.float32).astype(jnp.bfloat16)

    g = jax.jit(lambda a, sa, b, sb: [fp8_dot(x[0], s, y[0], t) for x, s, y, t in zip(a, sa, b, sb)])
    results["xla_fp8"] = flops * sets / _time_fn(g, (a, sa, b, sb))
    hlo = g.lower(a[:1], sa[:1], b[:1], sb[:1]).compile().as_text()
    results["xla_fp8_is_cublaslt_fp8"] = "__cublas$lt$matmul$f8" in hlo

    # XLA's blockwise emulation: dequantize with the block scales, bf16 dot.
    def blockwise(ai, bi):
        da = reference.dequant_per_token(*ai).astype(jnp.bfloat16)
        db = reference.dequant_per_block(*bi).astype(jnp.bfloat16)
        return jnp.dot(da, db.T, preferred_element_type=jnp.bfloat16)

    h = jax.jit(lambda a, b: [blockwise(ai, bi) for ai, bi in zip(a, b)])
    results["xla_blockwise"] = flops * sets / _time_fn(h, (a, b))
    del a, b, sa, sb

    # XLA bf16 dot on bf16 operands (2 bytes each).
    sets16 = _num_sets(2 * (m * k + n * k))
    xs, ws = xs[:sets16], ws[:sets16]
    if len(xs) < sets16:
        xs, ws = _make_inputs(m, n, k, sets16, key)
    d = jax.jit(lambda xs, ws: [jnp.dot(x, w.T, preferred_element_type=jnp.bfloat16) for x, w in zip(xs, ws)])
    results["xla_bf16"] = flops * sets16 / _time_fn(d, (xs, ws))
    return {k_: (v / 1e12 if isinstance(v, float) and k_ not in ("calc_diff",) else v)
            for k_, v in results.items()}


_JIT_PROBE = """
import json, sys, time
import jaxgemm._runtime as r
r.configure_jit()
r.device_info(0)  # the driver is initialised in any JAX process already: keep it out
cfg = json.loads(sys.argv[1])
t = time.perf_counter()
r.extension().load_fp8_gemm_kernel(cfg)
print(json.dumps({"seconds": time.perf_counter() - t}))
"""


def jit_costs(m, n, k) -> dict:
    """Cold NVCC, cold NVRTC and warm-cache first-call times for one kernel, each in a
    fresh process with its own cache folder."""
    cfg = jaxgemm.fp8_gemm_config(m, n, k)
    out = {"config": cfg}

    def probe(cache, nvrtc):
        env = dict(os.environ, JAXGEMM_JIT_CACHE_DIR=cache, JAXGEMM_JIT_USE_NVRTC="1" if nvrtc else "0")
        p = subprocess.run([sys.executable, "-c", _JIT_PROBE, json.dumps(cfg)], env=env,
                           capture_output=True, text=True)
        if p.returncode != 0:
            return f"failed: {p.stderr.strip().splitlines()[-1] if p.stderr.strip() else p.returncode}"
        return json.loads(p.stdout.strip().splitlines()[-1])["seconds"]

    with tempfile.TemporaryDirectory() as nvcc_cache, tempfile.TemporaryDirectory() as nvrtc_cache:
        out["cold_nvcc_s"] = probe(nvcc_cache, False)
        out["warm_cache_s"] = probe(nvcc_cache, False)
        out["cold_nvrtc_s"] = probe(nvrtc_cache, True)
    return out


def _fmt(v, digits=0):
    return f"{v:.{digits}f}" if isinstance(v, (int, float)) else str(v)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--m", type=int, nargs="*", default=list(DEFAULT_MS), help="M values")
    parser.add_argument("--json", help="write the results to this file")
    parser.add_argument("--no-jit", action="store_true", help="skip the JIT cost probes")
    parser.add_argument("--config", help="JSON dict pinning the kernel config for every shape")
    parser.add_argument("--sweep", action="store_true", help="time a grid of configs per shape, then stop")
    args = parser.parse_args(argv)
    config = json.loads(args.config) if args.config else None
    if args.sweep:
        sweep(args.m, jax.random.PRNGKey(0))
        return

    dev = jax.devices()[0]
    print(f"device: {dev.device_kind}  jax {jax.__version__}  jaxgemm {jaxgemm.__version__}", flush=True)
    key = jax.random.PRNGKey(0)
    rows = []
    for m in args.m:
        for n, k in DEEPSEEK_V3_NK:
            r = bench_shape(m, n, k, key, config)
            r.update(m=m, n=n, k=k, config=jaxgemm.fp8_gemm_config(m, n, k, config=config))
            rows.append(r)
            print(json.dumps(r, default=str), flush=True)

    jit = None if args.no_jit else jit_costs(4096, 7168, 16384)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"device": dev.device_kind, "jax": jax.__version__, "rows": rows, "jit": jit}, fh,
                      indent=1, default=str)

    print("\nTFLOPS (higher is better); ratio = jaxgemm / alternative")
    hdr = f"{'M':>5} {'N':>6} {'K':>6} | {'jaxgemm':>7} {'bf16':>6} {'fp8/t':>6} {'blkw':>6} | " \
          f"{'x bf16':>6} {'x fp8':>6} {'x blkw':>6} | {'calc_diff':>9} | config"
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        c = r["config"]
        print(f"{r['m']:>5} {r['n']:>6} {r['k']:>6} | {r['jaxgemm']:>7.0f} {r['xla_bf16']:>6.0f} "
              f"{r['xla_fp8']:>6.0f} {r['xla_blockwise']:>6.0f} | {r['jaxgemm'] / r['xla_bf16']:>6.2f} "
              f"{r['jaxgemm'] / r['xla_fp8']:>6.2f} {r['jaxgemm'] / r['xla_blockwise']:>6.2f} | "
              f"{r['calc_diff']:>9.2e} | {c['block_m']}x{c['block_n']}x{c['num_stages']} sms={c['num_sms']}")
    for m in args.m:
        sel = [r for r in rows if r["m"] == m]
        gm = {key: math.exp(statistics.mean(math.log(r[key]) for r in sel))
              for key in ("jaxgemm", "xla_bf16", "xla_fp8", "xla_blockwise")}
        print(f"geomean M={m}: jaxgemm {gm['jaxgemm']:.0f}  xla_bf16 {gm['xla_bf16']:.0f}  "
              f"xla_fp8 {gm['xla_fp8']:.0f}  xla_blockwise {gm['xla_blockwise']:.0f}")
    if rows:
        print(f"xla_fp8 lowered to cuBLASLt FP8: {all(r['xla_fp8_is_cublaslt_fp8'] for r in rows)}")
    if jit:
        print(f"JIT (4096x7168x16384 kernel): cold NVCC {_fmt(jit['cold_nvcc_s'], 2)} s, "
              f"cold NVRTC {_fmt(jit['cold_nvrtc_s'], 2)} s, warm-cache first load {_fmt(jit['warm_cache_s'], 3)} s")


if __name__ == "__main__":
    main()
