"""Quick TFLOPS probe of the dense ops at M=4096 (a development aid; the benchmark of
record is `python -m jaxgemm.bench`). Same method: distinct input sets beyond L2,
back-to-back calls, median of 5."""
import statistics
import sys
import time

import jax
import jax.numpy as jnp

import jaxgemm

NK = [(2112, 7168), (24576, 1536), (32768, 512), (7168, 16384), (4096, 7168), (7168, 2048)]


def timeit(fn, sets):
    f = jax.jit(lambda sets: [fn(*s) for s in sets])
    jax.block_until_ready(f(sets))
    ts = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(3):
            out = f(sets)
        jax.block_until_ready(out)
        ts.append((time.perf_counter() - t0) / (3 * len(sets)))
    return statistics.median(ts)


def main():
    m = int(sys.argv[1]) if len(sys.argv) > 1 else 4096
    rows = []
    for n, k in NK:
        flops = 2 * m * n * k
        nsets = max(1, min(16, -(-200 * 2**20 // ((m + n) * k))))
        keys = jax.random.split(jax.random.PRNGKey(0), 2 * nsets)
        xs = [jax.random.normal(keys[2 * i], (m, k), jnp.bfloat16) for i in range(nsets)]
        ws = [jax.random.normal(keys[2 * i + 1], (n, k), jnp.bfloat16) for i in range(nsets)]
        r = {}
        fp8 = [(jaxgemm.per_token_cast_to_fp8(x), jaxgemm.per_block_cast_to_fp8(w)) for x, w in zip(xs, ws)]
        r["fp8_nt"] = flops / timeit(jaxgemm.fp8_gemm_nt, fp8) / 1e12
        r["bf16_nt"] = flops / timeit(jaxgemm.bf16_gemm_nt, list(zip(xs, ws))) / 1e12
        r["bf16_nn"] = flops / timeit(jaxgemm.bf16_gemm_nn, [(x, w.T) for x, w in zip(xs, ws)]) / 1e12
        r["bf16_tn"] = flops / timeit(jaxgemm.bf16_gemm_tn, [(x.T, w.T) for x, w in zip(xs, ws)]) / 1e12
        r["xla_bf16"] = flops / timeit(lambda x, w: x @ w.T, list(zip(xs, ws))) / 1e12
        del fp8, xs, ws
        rows.append(r)
        print(f"M={m} N={n} K={k}: " + "  ".join(f"{key} {v:6.0f}" for key, v in r.items()), flush=True)
    geo = {key: statistics.geometric_mean([r[key] for r in rows]) for key in rows[0]}
    print("GEOMEAN " + "  ".join(f"{key} {v:6.0f}" for key, v in geo.items()))


if __name__ == "__main__":
    main()
