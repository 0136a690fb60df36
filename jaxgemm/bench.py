"""`python -m jaxgemm.bench`: jaxgemm's dense GEMMs against what a JAX user has today.

For each DeepSeek-V3 (N, K) shape and each M, in one run and on the same GPU:
  fp8       jaxgemm.fp8_gemm_{nt,nn,tn,tt} (1D2D recipe, BF16 output), each fed operands
            stored in its layout (the op's own relayout timed, nothing else), against
              xla_bf16       XLA's bf16 dot on bf16 operands (cuBLAS)
              xla_fp8        XLA's FP8 dot with per-tensor f32 scales (cuBLASLt FP8; no
                             block scales)
              xla_blockwise  the block-scaled recipe emulated in XLA: dequantize, bf16 dot
            (ratios: each layout / nt, the bar being >= 0.9x; nt / each XLA baseline)
  fp8_1d1d  fp8_gemm_nt with 1x128 scales on both operands, FP32 output and an FP32 C
            (D = C + A @ B^T, the weight-gradient recipe); C is donated and D fed back as
            the next call's C, as in gradient accumulation, so XLA copies nothing
  bf16      jaxgemm.bf16_gemm_{nt,nn,tn,tt} against XLA's bf16 dot_general on the same
            operands in the same layout (XLA picks its best kernel for that layout)
  jit       one FP8 and one BF16 kernel: cold NVCC, cold NVRTC and first load with a warm
            on-disk cache, each in a fresh process with its own cache folder (GPU only)

Method: one jitted function applies the op to several distinct input sets whose
operands together exceed 4x the 50 MB L2 cache, so that no run measures the cache, and
returns one element of each output (behind an optimization barrier), so that the
outputs are XLA temporaries at fixed addresses, as inside a model, and XLA replays its
CUDA graph without re-recording it (`_outputs_as_temporaries`). It is called back to
back after a warm-up of at least 0.3 s (the GPU's clocks ramp up from idle); each
repetition runs it for at least 50 ms with the device synchronised once at the end, and
the median over 5 repetitions is reported. The jaxgemm kernels of the whole run are
compiled first, in parallel (`jaxgemm.precompile`), so that no timed call and no warm-up
waits on NVCC. calc_diff is each jaxgemm output (first input set) against a float32 HIGHEST
reference of the dequantized inputs, computed on the device as sum((x-y)^2) /
sum(x^2 + y^2) (DeepGEMM's metric, rewritten without cancellation). Timings are never
asserted anywhere; BENCHMARKS.md records them. The summary table comes last.
"""

from __future__ import annotations

import argparse
import functools
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
SECTIONS = ("fp8", "fp8_1d1d", "bf16", "jit")
LAYOUTS = ("nt", "nn", "tn", "tt")
LAYOUT_BAR = 0.9       # every FP8 layout should reach this fraction of nt
_L2_BYTES = 50 * 2**20
_REPS = 5              # repetitions; the median is reported
_MIN_CALLS = 3         # back-to-back calls per repetition, at least...
_MIN_REP_S = 0.05      # ...and as many as last this long
_WARMUP_S = 0.3        # untimed calls before the first repetition
_CPU_NUM_SMS = 132     # without a GPU, configs are shown as an H100 SXM would get them
_JIT_SHAPE = (4096, 7168, 16384)

_FP8_OPS = {layout: getattr(jaxgemm, f"fp8_gemm_{layout}") for layout in LAYOUTS}
_BF16_OPS = {layout: getattr(jaxgemm, f"bf16_gemm_{layout}") for layout in LAYOUTS}
# XLA's dot_general contracting dims for A and B stored as in each layout
# (A [M, K] or [K, M], B [N, K] or [K, N]); the result is [M, N] in every case.
_XLA_CONTRACT = {"nt": ((1,), (1,)), "nn": ((1,), (0,)), "tn": ((0,), (0,)), "tt": ((0,), (1,))}


# ----------------------------------------------------------------------------- helpers

def _on_gpu() -> bool:
    return jax.devices()[0].platform == "gpu"


def _num_sms():
    """None on a GPU (the heuristic asks the device), else a fixed H100 count."""
    return None if _on_gpu() else _CPU_NUM_SMS


def _num_sets(bytes_per_set: int) -> int:
    return max(1, min(32, math.ceil(4 * _L2_BYTES / bytes_per_set)))


def _fp8_bytes(m, n, k, b_rows=False) -> int:
    """Bytes one FP8 GEMM reads: 1-byte data plus f32 scales (1x128 for A; 128x128 for B,
    or 1x128 when `b_rows`)."""
    kb = -(-k // 128)
    return m * k + n * k + 4 * kb * (m + (n if b_rows else -(-n // 128)))


def _geomean(values):
    values = [v for v in values if isinstance(v, (int, float)) and v > 0]
    return math.exp(statistics.mean(math.log(v) for v in values)) if values else None


def _outputs_as_temporaries(fn):
    """`fn` returning only one element of each of its outputs, as a float32 vector.

    The GEMMs' outputs then live in XLA's temporary buffer, as they would inside a model,
    at the same addresses from call to call, and XLA launches its CUDA graph as recorded.
    Returned from the jitted function they are fresh allocations per call: whenever one
    lands at a new address (the last call's outputs are freed only once the GPU is done
    with them), XLA re-records every GEMM of the graph on the host first, ~20 us per GEMM
    on an H100 host, more than a GEMM at M=128 takes (scripts/host_cost.py). The
    optimization barrier keeps XLA from narrowing its own dots to the element returned."""
    @jax.jit
    def first_elements(*args):
        outs = jax.lax.optimization_barrier(jax.tree.leaves(fn(*args)))
        return jnp.stack([x[(0,) * x.ndim].astype(jnp.float32) for x in outs])

    return first_elements


def _time_loop(step, first=None):
    """Median seconds per call of `step(box)`, which makes one call while `box[0]` holds
    the previous call's outputs (their only reference; `first()`'s, or None, before the
    first call) and returns its own. The calls run back to back after a warm-up of
    _WARMUP_S, each of _REPS repetitions for at least _MIN_REP_S, synchronised once."""
    box = [first() if first is not None else None]
    warm, t0 = 0, time.perf_counter()
    while True:
        box[0] = jax.block_until_ready(step(box))
        warm += 1
        spent = time.perf_counter() - t0
        if spent >= _WARMUP_S:
            break
    calls = max(_MIN_CALLS, math.ceil(_MIN_REP_S / (spent / warm)))
    times = []
    for _ in range(_REPS):
        t0 = time.perf_counter()
        for _ in range(calls):
            box[0] = step(box)
        jax.block_until_ready(box[0])
        times.append((time.perf_counter() - t0) / calls)
    return statistics.median(times)


def _time_fn(fn, args, *, check=None, carry=None):
    """(median seconds per call of `fn(*args)`, `check(first output)`). Each call covers
    every input set. With `carry=i` each call's output becomes `args[i]` for the next
    call (a donated accumulator, whose address XLA keeps), so `check` runs before the
    output is consumed; otherwise the calls timed return one element of each output
    (`_outputs_as_temporaries`)."""
    args = list(args)
    out = jax.block_until_ready(fn(*args))  # compile + first run
    checked = check(out) if check is not None else None
    if carry is not None:
        args[carry] = out
        timed = fn
    else:
        timed = _outputs_as_temporaries(fn)
    del out

    def step(box):
        box[0] = None  # the last call's outputs are not needed while this one runs
        out = timed(*args)
        if carry is not None:
            args[carry] = out
        return out

    return _time_loop(step), checked


@jax.jit
def _calc_diff_dev(x, y):
    """DeepGEMM's calc_diff, 1 - 2 sum(xy) / sum(x^2 + y^2), written as
    sum((x - y)^2) / sum(x^2 + y^2): the same value, with no cancellation, so float32
    on the device suffices (a float64 host copy of a 4096x32768 output takes seconds)."""
    x, y = x.astype(jnp.float32), y.astype(jnp.float32)
    return jnp.sum(jnp.square(x - y)) / jnp.sum(x * x + y * y)


def _diff(got, want) -> float:
    return float(_calc_diff_dev(got, want))


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _gen_bf16(key, m, n, k):
    kx, kw = jax.random.split(key)
    return jax.random.normal(kx, (m, k), jnp.bfloat16), jax.random.normal(kw, (n, k), jnp.bfloat16)


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4))
def _gen_fp8(key, m, n, k, b_rows):
    """One FP8 input set: A per token, B per 128x128 block (or per row when `b_rows`)."""
    x, w = _gen_bf16(key, m, n, k)
    b = jaxgemm.per_token_cast_to_fp8(w) if b_rows else jaxgemm.per_block_cast_to_fp8(w)
    return jaxgemm.per_token_cast_to_fp8(x), b


@functools.partial(jax.jit, static_argnums=(1,))
def _gen_f32(key, shape):
    return jax.random.normal(key, shape, jnp.float32)


# Transposes a (data, scales) pair or an array: the operand stored in the other layout.
_swap = jax.jit(lambda t: jax.tree.map(lambda x: x.T, t))


@jax.jit
def _ref_fp8(a, b, c=None):
    return reference.fp8_gemm_nt(a[0], a[1], b[0], b[1], c, jnp.float32)


@jax.jit
def _ref_bf16(x, w):
    return reference.bf16_gemm(x, w, "nt", out_dtype=jnp.float32)


def _set_keys(key, tag, sets):
    return [jax.random.fold_in(jax.random.fold_in(key, tag), i) for i in range(sets)]


def _config(config_fn, m, n, k, **kw) -> dict:
    """The kernel config the heuristic picks (as the lowering would), or {"error": ...}."""
    try:
        return config_fn(m, n, k, num_sms=_num_sms(), **kw)
    except Exception as e:  # noqa: BLE001
        return {"error": f"{type(e).__name__}: {e}"}


def _flags(c) -> str:
    """c2: B multicast (cluster_m=2), a2: A multicast (cluster_n=2), k2: K split over two
    warpgroups (k_split=2), K2 / K4: K split over a cluster of CTAs (cluster_k), pp:
    BF16 ping-pong (pingpong=1)."""
    return (("c2" if c.get("cluster_m", 1) > 1 else "") + ("a2" if c.get("cluster_n", 1) > 1 else "")
            + ("k2" if c.get("k_split", 1) > 1 else "")
            + (f"K{c['cluster_k']}" if c.get("cluster_k", 1) > 1 else "")
            + ("pp" if c.get("pingpong", 0) else ""))


def _cfg_str(c) -> str:
    return "?" if "error" in c else f"{c['block_m']}x{c['block_n']}x{c['num_stages']}" + _flags(c)


# ----------------------------------------------------------------------------- sections

def _measure(errors, name, flops, fn, args, *, check=None, carry=None):
    """(TFLOPS, check's value) of `_time_fn(fn, args)`, `flops` covering one call; on an
    exception (None, None) with the error kept under `errors[name]`: one broken op
    must not cost the whole run."""
    try:
        t, checked = _time_fn(fn, args, check=check, carry=carry)
    except Exception as e:  # noqa: BLE001
        msg = str(e).strip().splitlines()
        errors[name] = f"{type(e).__name__}: {msg[0] if msg else ''}"[:240]
        print(f"  ERROR {name}: {errors[name]}", flush=True)
        return None, None
    return flops / t / 1e12, checked


def bench_fp8(m, n, k, key, config=None, xla_bf16=None) -> dict:
    """fp8_gemm_{nt,nn,tn,tt} and the XLA FP8 baselines; TFLOPS. `xla_bf16` (TFLOPS of
    XLA's bf16 nt dot, timed with the BF16 section's inputs) is reported alongside."""
    a, b = _sweep_operands(m, n, k, key)
    sets = len(a)
    flops = 2.0 * m * n * k * sets
    want = _ref_fp8(a[0], b[0])
    r = {"sets": sets, "calc_diff": {}, "errors": {}}
    # Operands as stored in each layout: a "t" A is [K, M] with scales [ceil(K/128), M],
    # an "n" B is [K, N] with block scales [ceil(K/128), ceil(N/128)]. Made outside the
    # timed function, so that only the op's own relayout is timed.
    a_km = [_swap(p) for p in a]
    b_kn = [_swap(p) for p in b]
    for layout in LAYOUTS:
        a_t, b_t = reference.LAYOUTS[layout]
        op = _FP8_OPS[layout]
        f = jax.jit(lambda a, b, op=op: [op(x, y, config=config) for x, y in zip(a, b)])
        r[layout], diff = _measure(r["errors"], layout, flops, f, (a_km if a_t else a, b_kn if b_t else b),
                                   check=lambda out: _diff(out[0], want))
        if diff is not None:
            r["calc_diff"][layout] = diff
    del a_km, b_kn

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
    r["xla_fp8"], _ = _measure(r["errors"], "xla_fp8", flops, g, (a, sa, b, sb))
    if r["xla_fp8"] is not None:
        # Same arguments as timed: JAX reuses the executable, nothing is compiled again.
        r["xla_fp8_is_cublaslt_fp8"] = "__cublas$lt$matmul$f8" in g.lower(a, sa, b, sb).compile().as_text()

    # XLA's blockwise emulation: dequantize with the block scales, bf16 dot.
    def blockwise(ai, bi):
        da = reference.dequant_per_token(*ai).astype(jnp.bfloat16)
        db = reference.dequant_per_block(*bi).astype(jnp.bfloat16)
        return jnp.dot(da, db.T, preferred_element_type=jnp.bfloat16)

    h = jax.jit(lambda a, b: [blockwise(ai, bi) for ai, bi in zip(a, b)])
    r["xla_blockwise"], _ = _measure(r["errors"], "xla_blockwise", flops, h, (a, b))
    r["xla_bf16"] = xla_bf16
    r["config"] = _config(jaxgemm.fp8_gemm_config, m, n, k, config=config)
    return r


def bench_fp8_1d1d(m, n, k, key) -> dict:
    """fp8_gemm_nt, 1x128 scales on A and B, D = C + A @ B^T in FP32; TFLOPS."""
    # The L2 rule on A and B alone (C, M*N*4 bytes per set, comes on top).
    sets = _num_sets(_fp8_bytes(m, n, k, b_rows=True))
    a, b = map(list, zip(*(_gen_fp8(s, m, n, k, True) for s in _set_keys(key, 2, sets))))
    cs = [_gen_f32(s, (m, n)) for s in _set_keys(key, 3, sets)]
    want = _ref_fp8(a[0], b[0], cs[0])
    f = jax.jit(lambda a, b, cs: [jaxgemm.fp8_gemm_nt(x, y, c, out_dtype=jnp.float32)
                                  for x, y, c in zip(a, b, cs)], donate_argnums=2)
    r = {"sets": sets, "errors": {}}
    r["tflops"], r["calc_diff"] = _measure(r["errors"], "1d1d", 2.0 * m * n * k * sets, f, (a, b, cs),
                                           carry=2, check=lambda out: _diff(out[0], want))
    r["config"] = _config(jaxgemm.fp8_gemm_config, m, n, k, out_dtype=jnp.float32, sfb_per_row=True,
                          c_dtype=jnp.float32)
    return r


def bench_bf16(m, n, k, key, config=None, jaxgemm_ops=True) -> dict:
    """bf16_gemm_{nt,nn,tn,tt} against XLA's dot_general in the same layout; TFLOPS.
    With `jaxgemm_ops=False` only XLA's nt dot (the FP8 section's bf16 baseline)."""
    sets = _num_sets(2 * (m * k + n * k))
    flops = 2.0 * m * n * k * sets
    xs, ws = map(list, zip(*(_gen_bf16(s, m, n, k) for s in _set_keys(key, 4, sets))))
    r = {"sets": sets, "jaxgemm": {}, "xla": {}, "ratio": {}, "calc_diff": {}, "config": {}, "errors": {}}
    layouts = LAYOUTS if jaxgemm_ops else ("nt",)
    want = _ref_bf16(xs[0], ws[0]) if jaxgemm_ops else None
    xs_km = [_swap(x) for x in xs] if jaxgemm_ops else None  # A stored [K, M]
    ws_kn = [_swap(w) for w in ws] if jaxgemm_ops else None  # B stored [K, N]
    for layout in layouts:
        a_t, b_t = reference.LAYOUTS[layout]
        args = (xs_km if a_t else xs, ws_kn if b_t else ws)
        dims = (_XLA_CONTRACT[layout], ((), ()))
        d = jax.jit(lambda xs, ws, dims=dims: [
            jax.lax.dot_general(x, w, dims, preferred_element_type=jnp.bfloat16) for x, w in zip(xs, ws)])
        r["xla"][layout], _ = _measure(r["errors"], f"xla_{layout}", flops, d, args)
        if not jaxgemm_ops:
            continue
        op = _BF16_OPS[layout]
        f = jax.jit(lambda xs, ws, op=op: [op(x, w, config=config) for x, w in zip(xs, ws)])
        r["jaxgemm"][layout], diff = _measure(r["errors"], layout, flops, f, args,
                                              check=lambda out: _diff(out[0], want))
        if diff is not None:
            r["calc_diff"][layout] = diff
        if r["jaxgemm"][layout] and r["xla"][layout]:
            r["ratio"][layout] = r["jaxgemm"][layout] / r["xla"][layout]
        r["config"][layout] = _config(jaxgemm.bf16_gemm_config, m, n, k, layout=layout, config=config)
    return r


# ----------------------------------------------------------------------------- sweep

def _sweep_operands(m, n, k, key, sets=None):
    """[[A...], [B...]]: the FP8 section's input sets for an nt GEMM (A per token, B per
    128x128 block), as many as the benchmark uses unless `sets` says."""
    sets = sets or _num_sets(_fp8_bytes(m, n, k))
    return list(map(list, zip(*(_gen_fp8(s, m, n, k, False) for s in _set_keys(key, 1, sets)))))


def time_jaxgemm(m, n, k, key, config=None, operands=None) -> float:
    """TFLOPS of fp8_gemm_nt alone (for config sweeps)."""
    a, b = operands if operands is not None else _sweep_operands(m, n, k, key)
    f = jax.jit(lambda a, b: [jaxgemm.fp8_gemm_nt(ai, bi, config=config) for ai, bi in zip(a, b)])
    return 2.0 * m * n * k * len(a) / _time_fn(f, (a, b))[0] / 1e12


def sweep_configs(m):
    """The FP8 configs `--sweep` times at this M, each without and with A multicast."""
    if m <= 256:
        tiles = [(64, 32), (64, 64), (128, 32), (128, 64), (128, 96)]
    else:
        tiles = [(128, 128), (128, 160), (128, 192)]
    return [{"block_m": bm, "block_n": bn, "cluster_n": cn} for bm, bn in tiles for cn in (1, 2)]


def _config_label(c):
    return f"{c['block_m']}x{c['block_n']}" + _flags(c)


def sweep(ms, shapes, key):
    """Every `sweep_configs(m)` entry on every shape: what the heuristic should pick.
    Labels: BMxBN, then c2 for B multicast (cluster_m=2), a2 for A multicast (cluster_n=2)."""
    for m in ms:
        for n, k in shapes:
            ops = _sweep_operands(m, n, k, key)
            heur = jaxgemm.fp8_gemm_config(m, n, k, num_sms=_num_sms())
            line = [(f"M={m} N={n} K={k} heuristic {_config_label(heur)}:"
                     f" {time_jaxgemm(m, n, k, key, operands=ops):.0f} |")]
            for cfg in sweep_configs(m):
                line.append(f"{_config_label(cfg)} {time_jaxgemm(m, n, k, key, cfg, ops):.0f}")
            print(" ".join(line), flush=True)
            del ops


# ----------------------------------------------------------------------------- JIT cost

_JIT_PROBE = """
import json, sys, time
import jaxgemm._runtime as r
r.configure_jit()
r.device_info(0)  # the driver is initialised in any JAX process already: keep it out
op, cfg = sys.argv[1], json.loads(sys.argv[2])
load = r.extension().load_fp8_gemm_kernel if op == "fp8" else r.extension().load_bf16_gemm_kernel
t = time.perf_counter()
load(cfg)
print(json.dumps({"seconds": time.perf_counter() - t}))
"""


def jit_costs(op, m, n, k) -> dict:
    """Cold NVCC, cold NVRTC and warm-cache first-call times for one kernel ("fp8": the
    1D2D nt kernel, "bf16": the nt kernel), each in a fresh process with its own cache."""
    if op == "fp8":
        cfg = jaxgemm.fp8_gemm_config(m, n, k)
    else:
        cfg = jaxgemm.bf16_gemm_config(m, n, k)
    out = {"config": cfg}

    def probe(cache, nvrtc):
        env = dict(os.environ, JAXGEMM_JIT_CACHE_DIR=cache, JAXGEMM_JIT_USE_NVRTC="1" if nvrtc else "0")
        p = subprocess.run([sys.executable, "-c", _JIT_PROBE, op, json.dumps(cfg)], env=env,
                           capture_output=True, text=True, check=False)
        if p.returncode != 0:
            return f"failed: {p.stderr.strip().splitlines()[-1] if p.stderr.strip() else p.returncode}"[:120]
        return json.loads(p.stdout.strip().splitlines()[-1])["seconds"]

    with tempfile.TemporaryDirectory() as nvcc_cache, tempfile.TemporaryDirectory() as nvrtc_cache:
        out["cold_nvcc_s"] = probe(nvcc_cache, False)
        out["warm_cache_s"] = probe(nvcc_cache, False)
        out["cold_nvrtc_s"] = probe(nvrtc_cache, True)
    return out


def _precompile(sections, ms, shapes, config, bf16_config):
    """Fills the JIT cache with every jaxgemm kernel the run will launch, in parallel
    (the specs are those the ops bind). Returns (kernel count or error text, seconds)."""
    from jaxgemm.ops.gemm_primitive import GemmSpec, normalize_config
    from jaxgemm.precompile import precompile

    t0 = time.perf_counter()
    try:
        fp8_cfg = normalize_config(config, "fp8_gemm_nt")
        bf16_cfg = normalize_config(bf16_config, "bf16_gemm_nt")
        gemms = []
        for m in ms:
            for n, k in shapes:
                if "fp8" in sections:
                    for layout in LAYOUTS:
                        a_t, b_t = reference.LAYOUTS[layout]
                        gemms.append((GemmSpec("fp8", "bfloat16", a_stored_mn_major=a_t,
                                               b_stored_mn_major=b_t, config=fp8_cfg), m, n, k, 1))
                if "fp8_1d1d" in sections:
                    gemms.append((GemmSpec("fp8", "float32", True, "float32", sfb_per_row=True), m, n, k, 1))
                if "bf16" in sections:
                    for layout in LAYOUTS:
                        a_t, b_t = reference.LAYOUTS[layout]
                        gemms.append((GemmSpec("bf16", "bfloat16", a_mn_major=a_t, b_mn_major=b_t,
                                               config=bf16_cfg), m, n, k, 1))
        count = precompile(gemms) if gemms else 0
    except Exception as e:  # noqa: BLE001 - the run still works: kernels compile on first use
        return f"none (failed: {type(e).__name__}: {e}; kernels compile on first use)", time.perf_counter() - t0
    return count, time.perf_counter() - t0


# ----------------------------------------------------------------------------- report

def _ratio(x, y):
    return x / y if x and y else None


def _flat(row) -> dict:
    """The numbers of one (M, N, K) row under flat keys, for tables and geomeans (None
    where a measurement failed)."""
    out = {}
    fp8, d11, bf = row.get("fp8"), row.get("fp8_1d1d"), row.get("bf16")
    if fp8:
        for layout in LAYOUTS:
            out[f"fp8.{layout}"] = fp8[layout]
            if layout != "nt":
                out[f"fp8.{layout}/nt"] = _ratio(fp8[layout], fp8["nt"])
        for base in ("xla_bf16", "xla_fp8", "xla_blockwise"):
            out[f"fp8.{base}"] = fp8[base]
            out[f"fp8.nt/{base}"] = _ratio(fp8["nt"], fp8[base])
        out["fp8.calc_diff"] = _worst(fp8["calc_diff"].values())
        out["fp8.config"] = _cfg_str(fp8["config"])
    if d11:
        out["1d1d"] = d11["tflops"]
        if fp8:
            out["1d1d/nt"] = _ratio(d11["tflops"], fp8["nt"])
        out["1d1d.calc_diff"] = d11["calc_diff"]
        out["1d1d.config"] = _cfg_str(d11["config"])
    if bf and bf["config"]:
        for layout in LAYOUTS:
            out[f"bf16.{layout}"] = bf["jaxgemm"].get(layout)
            out[f"bf16.xla_{layout}"] = bf["xla"].get(layout)
            out[f"bf16.{layout}/xla"] = bf["ratio"].get(layout)
        out["bf16.calc_diff"] = _worst(bf["calc_diff"].values())
        out["bf16.config"] = " ".join(_cfg_str(bf["config"][layout]) for layout in LAYOUTS)
    return out


def _worst(diffs):
    """The largest calc_diff, NaN counting as the worst; None if there is none."""
    diffs = list(diffs)
    return max(diffs, key=lambda v: math.inf if math.isnan(v) else v) if diffs else None


def _geomeans(rows, ms) -> dict:
    """Per M: the geomean of every TFLOPS and ratio key over the shapes."""
    out = {}
    for m in ms:
        flats = [_flat(r) for r in rows if r["m"] == m]
        keys = [key for key in (flats[0] if flats else {})
                if not key.endswith(("calc_diff", "config"))]
        out[str(m)] = {key: _geomean([f.get(key) for f in flats]) for key in keys}
    return out


def _print_table(title, cols, rows, geo, ms):
    """cols: (header, flat key, width, format). Rows then one geomean row per M; columns
    whose key has no value print '-'."""
    def cell(value, width, fmt):
        if value is None:
            return f"{'-':>{width}}"
        return f"{value:>{width}{fmt}}" if isinstance(value, (int, float)) else f"{value:<{width}}"

    hdr = f"{'M':>5} {'N':>6} {'K':>6} |" + "".join(f" {h:>{w}}" if h != "|" else " |" for h, _, w, _ in cols)
    print(f"\n{title}")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        f = _flat(r)
        print(f"{r['m']:>5} {r['n']:>6} {r['k']:>6} |" +
              "".join(" |" if h == "|" else " " + cell(f.get(key), w, fmt) for h, key, w, fmt in cols))
    for m in ms:
        g = geo.get(str(m), {})
        print(f"{'geo':>5} {'M=' + str(m):>13} |" +
              "".join(" |" if h == "|" else " " + cell(g.get(key) if key in g else None, w, fmt)
                      for h, key, w, fmt in cols))


_SEP = ("|", None, 1, "")


def _detail_tables(rows, geo, ms):
    if any("fp8" in r for r in rows):
        _print_table(
            "FP8 1D2D, BF16 output: TFLOPS; layout / nt (bar >= 0.9); nt / XLA baseline",
            [("nt", "fp8.nt", 5, ".0f"), ("nn", "fp8.nn", 5, ".0f"), ("tn", "fp8.tn", 5, ".0f"),
             ("tt", "fp8.tt", 5, ".0f"), _SEP,
             ("nn/nt", "fp8.nn/nt", 5, ".2f"), ("tn/nt", "fp8.tn/nt", 5, ".2f"), ("tt/nt", "fp8.tt/nt", 5, ".2f"),
             _SEP, ("bf16", "fp8.xla_bf16", 5, ".0f"), ("fp8/t", "fp8.xla_fp8", 5, ".0f"),
             ("blkw", "fp8.xla_blockwise", 5, ".0f"), _SEP,
             ("xbf16", "fp8.nt/xla_bf16", 5, ".2f"), ("xfp8", "fp8.nt/xla_fp8", 5, ".2f"),
             ("xblkw", "fp8.nt/xla_blockwise", 5, ".2f"), _SEP,
             ("calc_diff", "fp8.calc_diff", 9, ".2e"), ("config", "fp8.config", 10, "")],
            rows, geo, ms)
    if any("fp8_1d1d" in r for r in rows):
        _print_table(
            "FP8 1D1D (1x128 scales on A and B), D = C + A @ B^T in FP32: TFLOPS; / FP8 1D2D nt",
            [("1d1d", "1d1d", 5, ".0f"), ("/nt", "1d1d/nt", 5, ".2f"), _SEP,
             ("calc_diff", "1d1d.calc_diff", 9, ".2e"), ("config", "1d1d.config", 10, "")],
            rows, geo, ms)
    if any(r.get("bf16", {}).get("config") for r in rows):
        cols = []
        for layout in LAYOUTS:
            cols += [(layout, f"bf16.{layout}", 5, ".0f"), ("xla", f"bf16.xla_{layout}", 5, ".0f"),
                     ("x", f"bf16.{layout}/xla", 4, ".2f"), _SEP]
        cols += [("calc_diff", "bf16.calc_diff", 9, ".2e"), ("configs nt nn tn tt", "bf16.config", 19, "")]
        _print_table("BF16: jaxgemm TFLOPS, XLA dot_general TFLOPS (same layout), x = jaxgemm / XLA",
                     cols, rows, geo, ms)


def _summary(rows, geo, ms, jit, run_times, notes):
    """The compact table, printed last (<= ~30 lines for 12 rows)."""
    def has(sec):
        return any(sec in r and (sec != "bf16" or r["bf16"]["config"]) for r in rows)

    cols = []
    if has("fp8"):
        cols += [("fp8nt", "fp8.nt", 5, ".0f"), ("nn/nt", "fp8.nn/nt", 5, ".2f"), ("tn/nt", "fp8.tn/nt", 5, ".2f"),
                 ("tt/nt", "fp8.tt/nt", 5, ".2f"), ("xbf16", "fp8.nt/xla_bf16", 5, ".2f"),
                 ("xfp8", "fp8.nt/xla_fp8", 5, ".2f"), ("xblkw", "fp8.nt/xla_blockwise", 5, ".2f"), _SEP]
    if has("fp8_1d1d"):
        cols += [("1d1d", "1d1d", 5, ".0f"), _SEP]
    if has("bf16"):
        cols += [(f"b{layout}", f"bf16.{layout}", 5, ".0f") for layout in LAYOUTS]
        cols += [(f"x{layout}", f"bf16.{layout}/xla", 4, ".2f") for layout in LAYOUTS]
    if cols:
        if cols[-1] is _SEP:
            cols.pop()
        legend = []
        if has("fp8"):
            legend.append("fp8nt FP8 nt TFLOPS, nn/nt.. layout/nt (bar 0.9), xbf16 xfp8 xblkw nt/XLA "
                          "(bf16, FP8 per-tensor, blockwise)")
        if has("fp8_1d1d"):
            legend.append("1d1d FP8 1D1D f32+C TFLOPS")
        if has("bf16"):
            legend.append("bnt.. BF16 TFLOPS, xnt.. BF16/XLA same layout")
        _print_table("== SUMMARY (detail tables above)\n" + "; ".join(legend), cols, rows, geo, ms)
    flats = [_flat(r) for r in rows]
    ratios = [(f[f"fp8.{lay}/nt"], lay, r) for f, r in zip(flats, rows) for lay in LAYOUTS[1:]
              if f.get(f"fp8.{lay}/nt") is not None]
    if ratios:
        below = sorted((x for x in ratios if x[0] < LAYOUT_BAR), key=lambda x: x[0])
        worst = min(ratios, key=lambda x: x[0])
        line = (f"FP8 layouts >= {LAYOUT_BAR}x nt: {len(ratios) - len(below)}/{len(ratios)}; "
                f"worst {worst[1]} {worst[0]:.2f} at {worst[2]['m']}x{worst[2]['n']}x{worst[2]['k']}")
        if below:
            line += "; below: " + ", ".join(f"{lay} {x:.2f} ({r['m']}x{r['n']}x{r['k']})"
                                            for x, lay, r in below[:4])
            line += f" (+{len(below) - 4} more)" if len(below) > 4 else ""
        print(line)
    checks = []
    for key, label, bar in (("fp8.calc_diff", "fp8", 1e-3), ("1d1d.calc_diff", "1d1d", 1e-3),
                            ("bf16.calc_diff", "bf16", 1e-5)):
        worst = _worst(f[key] for f in flats if f.get(key) is not None)
        if worst is not None:
            checks.append(f"{label} {worst:.1e}{'' if worst < bar else ' FAIL(bar ' + format(bar, '.0e') + ')'}")
    if checks:
        line = "max calc_diff: " + ", ".join(checks)
        lt = [r["fp8"]["xla_fp8_is_cublaslt_fp8"] for r in rows if "xla_fp8_is_cublaslt_fp8" in r.get("fp8", {})]
        if lt:
            line += f"; xla_fp8 is cuBLASLt FP8: {all(lt)}"
        print(line)
    errors = [(f"{sec} {name} {r['m']}x{r['n']}x{r['k']}", msg) for r in rows for sec in ("fp8", "fp8_1d1d", "bf16")
              for name, msg in r.get(sec, {}).get("errors", {}).items()]
    if errors:
        print(f"ERRORS ({len(errors)} measurements failed; all in the log and --json): "
              + "; ".join(f"{where}: {msg[:100]}" for where, msg in errors[:2]))
    if isinstance(jit, dict):
        for op, j in jit.items():
            print(f"JIT {op} kernel ({'x'.join(map(str, _JIT_SHAPE))}, {_cfg_str(j['config'])}): "
                  f"cold NVCC {_fmt(j['cold_nvcc_s'], 2)} s, cold NVRTC {_fmt(j['cold_nvrtc_s'], 2)} s, "
                  f"warm-cache first load {_fmt(j['warm_cache_s'], 4)} s")
    elif jit:
        print(f"JIT: {jit}")
    for note in notes:
        print(note)
    print("wall time: " + ", ".join(f"{key} {v:.0f} s" for key, v in run_times.items()))


def _n(v, fmt=".0f"):
    return "-" if v is None else format(v, fmt)


def _fmt(v, digits=0):
    return f"{v:.{digits}f}" if isinstance(v, (int, float)) else str(v)


# ----------------------------------------------------------------------------- main

def _parse_shapes(text):
    shapes = []
    for item in text.split(","):
        try:
            n, k = (int(v) for v in item.lower().split("x"))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected NxK[,NxK...], got {item!r}") from None
        shapes.append((n, k))
    return shapes


def _parse_sections(text):
    sections = [s.strip() for s in text.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown {sorted(unknown)}; choose from {SECTIONS}")
    return sections


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--m", type=int, nargs="*", default=list(DEFAULT_MS), help="M values")
    parser.add_argument("--sections", type=_parse_sections, default=list(SECTIONS),
                        help=f"comma-separated subset of {','.join(SECTIONS)} (default: all)")
    parser.add_argument("--shapes", type=_parse_shapes, default=DEEPSEEK_V3_NK,
                        help="comma-separated NxK shapes (default: DeepSeek-V3's six), e.g. 256x256 "
                             "for a quick check on CPU")
    parser.add_argument("--json", help="write the results to this file")
    parser.add_argument("--no-jit", action="store_true", help="skip the JIT cost probes (= no 'jit' section)")
    parser.add_argument("--no-precompile", action="store_true",
                        help="do not compile the kernels in parallel first (each compiles on first use)")
    parser.add_argument("--config", help="JSON dict pinning the FP8 kernel config (fp8 section) for every shape")
    parser.add_argument("--bf16-config", help="JSON dict pinning the BF16 kernel config (bf16 section)")
    parser.add_argument("--sweep", action="store_true", help="time a grid of FP8 configs per shape, then stop")
    args = parser.parse_args(argv)
    config = json.loads(args.config) if args.config else None
    bf16_config = json.loads(args.bf16_config) if args.bf16_config else None
    sections = [s for s in args.sections if not (s == "jit" and args.no_jit)]
    key = jax.random.PRNGKey(0)
    if args.sweep:
        sweep(args.m, args.shapes, key)
        return

    t_start = time.perf_counter()
    dev = jax.devices()[0]
    gpu = _on_gpu()
    print(f"device: {dev.device_kind}  jax {jax.__version__}  jaxgemm {jaxgemm.__version__}  "
          f"sections: {','.join(sections)}", flush=True)
    notes = []
    if not gpu:
        notes.append(f"NOTE: no GPU ({dev.platform}): the ops ran their jnp reference lowering; the "
                     f"timings mean nothing; configs are shown for {_CPU_NUM_SMS} SMs.")
        print(notes[-1], flush=True)
    run_times = {}
    gemm_sections = [s for s in sections if s != "jit"]

    if gpu and gemm_sections and not args.no_precompile:
        count, secs = _precompile(gemm_sections, args.m, args.shapes, config, bf16_config)
        run_times["precompile"] = secs
        if isinstance(count, str):
            notes.append(f"NOTE: precompile {count}")
            print(notes[-1], flush=True)
        else:
            print(f"precompiled {count} kernels in {secs:.1f} s", flush=True)

    rows = []
    for m in args.m:
        for n, k in args.shapes:
            row = {"m": m, "n": n, "k": k}
            tag = f"M={m} N={n} K={k}"
            xla_bf16 = None
            if "bf16" in sections or "fp8" in sections:
                t0 = time.perf_counter()
                bf = bench_bf16(m, n, k, key, bf16_config, jaxgemm_ops="bf16" in sections)
                xla_bf16 = bf["xla"]["nt"]
                # Without the bf16 section, only the FP8 section's bf16 baseline ran.
                sec = "bf16" if "bf16" in sections else "fp8"
                run_times[sec] = run_times.get(sec, 0.0) + time.perf_counter() - t0
                if "bf16" in sections:
                    row["bf16"] = bf
                    print(f"[bf16] {tag}: " + "  ".join(
                        f"{lay} {_n(bf['jaxgemm'].get(lay))}/{_n(bf['xla'].get(lay))}" for lay in LAYOUTS) +
                        f"  (jaxgemm/XLA)  calc_diff {_n(_worst(bf['calc_diff'].values()), '.1e')}"
                        f"  [{time.perf_counter() - t0:.1f} s]", flush=True)
            if "fp8" in sections:
                t0 = time.perf_counter()
                r = bench_fp8(m, n, k, key, config, xla_bf16)
                run_times["fp8"] = run_times.get("fp8", 0.0) + time.perf_counter() - t0
                row["fp8"] = r
                print(f"[fp8] {tag}: " + " ".join(f"{lay} {_n(r[lay])}" for lay in LAYOUTS) +
                      f" | xla bf16 {_n(r['xla_bf16'])} fp8/t {_n(r['xla_fp8'])} blkw {_n(r['xla_blockwise'])}"
                      f"  calc_diff {_n(_worst(r['calc_diff'].values()), '.1e')}"
                      f"  [{time.perf_counter() - t0:.1f} s]", flush=True)
            if "fp8_1d1d" in sections:
                t0 = time.perf_counter()
                r = bench_fp8_1d1d(m, n, k, key)
                run_times["fp8_1d1d"] = run_times.get("fp8_1d1d", 0.0) + time.perf_counter() - t0
                row["fp8_1d1d"] = r
                print(f"[fp8_1d1d] {tag}: {_n(r['tflops'])}  calc_diff {_n(r['calc_diff'], '.1e')}"
                      f"  [{time.perf_counter() - t0:.1f} s]", flush=True)
            if len(row) > 3:
                rows.append(row)

    jit = None
    if "jit" in sections:
        if gpu:
            t0 = time.perf_counter()
            jit = {op: jit_costs(op, *_JIT_SHAPE) for op in ("fp8", "bf16")}
            run_times["jit"] = time.perf_counter() - t0
        else:
            jit = f"section skipped: it needs a CUDA GPU (device 0 is {dev.platform})"
            print(f"JIT cost {jit}", flush=True)
    run_times["total"] = time.perf_counter() - t_start

    geo = _geomeans(rows, args.m)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"device": dev.device_kind, "jax": jax.__version__, "jaxgemm": jaxgemm.__version__,
                       "argv": sys.argv[1:] if argv is None else list(argv), "sections": sections,
                       "rows": rows, "geomeans": geo, "jit": jit, "wall_s": run_times}, fh,
                      indent=1, default=str)

    if rows:
        _detail_tables(rows, geo, args.m)
    _summary(rows, geo, args.m, jit, run_times, notes)


if __name__ == "__main__":
    main()
