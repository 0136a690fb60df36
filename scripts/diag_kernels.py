"""Where the time of one benchmark call goes: the kernels a layout's jitted function
launches, with their durations (a development aid).

    python scripts/diag_kernels.py M N K [layout ...] [--trace]

Builds the benchmark's function (one op per distinct input set), times it as the
benchmark does and writes its optimized HLO under $OUT; with --trace it also lists the
kernels of a few calls with their durations, from a jax.profiler trace (ncu crashed
on JAX programs).
"""
import collections
import glob
import gzip
import json
import os
import re
import statistics
import sys

import jax
import jax.numpy as jnp

import jaxgemm
from jaxgemm import bench


def _fresh(x, zero):
    """A copy of FP8 `x` that XLA cannot elide (adds a runtime zero to its bytes)."""
    return jax.lax.bitcast_convert_type(jax.lax.bitcast_convert_type(x, jnp.uint8) + zero, x.dtype)


# Variants of nt: "ntS" gets A's scales stored [kb, M], so that their transpose in the
# op cancels the lowering's (no scale fusion); "ntA" reads a fresh copy of A's data.
VARIANTS = {
    "ntS": lambda a, b: [jaxgemm.fp8_gemm_nt((x, s.T), y) for (x, s), y in zip(a, b)],
    "ntA": lambda a, b, z: [jaxgemm.fp8_gemm_nt((_fresh(x, z), s), y) for (x, s), y in zip(a, b)],
    # XLA's FP8 dot with per-tensor scales (cuBLASLt), as the benchmark times it.
    "xla8": lambda a, b: [jax.lax.dot_general(x.astype(jnp.float32) * s[0, 0], y.astype(jnp.float32) * t[0, 0],
                                              (((1,), (1,)), ((), ())), preferred_element_type=jnp.float32
                                              ).astype(jnp.bfloat16) for (x, s), (y, t) in zip(a, b)],
}


def main(argv):
    trace = "--trace" in argv
    argv = [x for x in argv if x != "--trace"]
    m, n, k = map(int, argv[:3])
    layouts = argv[3:] or ["nt", "tt"]
    out_dir = os.environ.get("OUT", "gpu-out")
    os.makedirs(out_dir, exist_ok=True)
    a, b = bench._sweep_operands(m, n, k, jax.random.PRNGKey(0))
    sets = len(a)
    a_km, b_kn = [bench._swap(p) for p in a], [bench._swap(p) for p in b]
    a_sk = [(x, s.T) for x, s in a]  # A scales stored [kb, M]
    zero = jnp.zeros((), jnp.uint8)
    for layout in layouts:
        if layout in VARIANTS:
            f, args = jax.jit(VARIANTS[layout]), {"ntS": (a_sk, b), "ntA": (a, b, zero), "xla8": (a, b)}[layout]
        else:
            a_t, b_t = bench.reference.LAYOUTS[layout]
            op = bench._FP8_OPS[layout]
            f = jax.jit(lambda a, b, op=op: [op(x, y) for x, y in zip(a, b)])
            args = (a_km if a_t else a, b_kn if b_t else b)
        with open(f"{out_dir}/{layout}_{m}x{n}x{k}.hlo", "w") as fh:
            fh.write(f.lower(*args).compile().as_text())
        t, _ = bench._time_fn(f, args)
        print(f"{layout} M={m} N={n} K={k}: {sets} sets, {t / sets * 1e6:.2f} us per op, "
              f"{2 * m * n * k * sets / t / 1e12:.0f} TFLOPS", flush=True)
        if trace:
            gpu_trace(f, args, f"{out_dir}/trace_{layout}_{m}x{n}x{k}")


def gpu_kernel_events(trace_dir, prefix=""):
    """The GPU kernel events (dicts with name, ts, dur in us) of the newest perfetto trace
    under `trace_dir`, in time order; only kernels whose name starts with `prefix`."""
    path = max(glob.glob(f"{trace_dir}/**/perfetto_trace.json.gz", recursive=True), key=os.path.getmtime)
    events = json.load(gzip.open(path))
    events = events["traceEvents"] if isinstance(events, dict) else events
    gpu_pids = {e["pid"] for e in events if e.get("ph") == "M" and e.get("name") == "process_name"
                and "GPU" in str(e.get("args", {}).get("name", ""))}
    return sorted((e for e in events if e.get("ph") == "X" and e["pid"] in gpu_pids and e.get("dur", 0) > 0
                   and e["name"].startswith(prefix)), key=lambda e: e["ts"])


def gpu_trace(f, args, trace_dir, calls=5):
    """Traces `calls` back-to-back calls with jax.profiler and prints, from the GPU
    events, each kernel's count and mean duration and how busy the GPU was: a GPU idle
    between kernels means the host, not the kernels, sets the pace."""
    jax.block_until_ready(f(*args))
    with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
        outs = [f(*args) for _ in range(calls)]
        jax.block_until_ready(outs)
    kernels = gpu_kernel_events(trace_dir)
    if not kernels:
        print("  no GPU events in the trace")
        return
    by_name = collections.defaultdict(list)
    for e in kernels:
        by_name[e["name"][:60]].append(e["dur"])
    for name, durs in sorted(by_name.items(), key=lambda kv: -sum(kv[1]))[:6]:
        print(f"  {len(durs):4d} x {statistics.mean(durs):8.2f} us ({min(durs):.1f}-{max(durs):.1f})  {name}")
    start = min(e["ts"] for e in kernels)
    end = max(e["ts"] + e["dur"] for e in kernels)
    busy = sum(e["dur"] for e in kernels)
    print(f"  GPU span {end - start:.0f} us, kernels {busy:.0f} us ({busy / (end - start):.0%} busy)", flush=True)
    print_host_events(trace_dir, calls)


def print_host_events(trace_dir, calls, top=25):
    """The host-side events of the trace (XLA's thunks, driver calls, ...) by total time
    per traced call: where the host spends a call when the GPU waits for it."""
    path = max(glob.glob(f"{trace_dir}/**/perfetto_trace.json.gz", recursive=True), key=os.path.getmtime)
    events = json.load(gzip.open(path))
    events = events["traceEvents"] if isinstance(events, dict) else events
    gpu_pids = {e["pid"] for e in events if e.get("ph") == "M" and e.get("name") == "process_name"
                and "GPU" in str(e.get("args", {}).get("name", ""))}
    by_name = collections.defaultdict(list)
    for e in events:
        if e.get("ph") == "X" and e.get("pid") not in gpu_pids and e.get("dur", 0) > 0:
            by_name[re.sub(r"[0-9]+", "#", e["name"])[:70]].append(e["dur"])
    print(f"  host events (per traced call, {calls} calls): total us, count, mean us")
    for name, durs in sorted(by_name.items(), key=lambda kv: -sum(kv[1]))[:top]:
        print(f"    {sum(durs) / calls:9.1f} {len(durs) / calls:7.1f} {statistics.mean(durs):8.2f}  {name}")


if __name__ == "__main__":
    main(sys.argv[1:])
