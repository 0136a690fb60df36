"""Times bf16_gemm in a few layouts for a list of pinned configs against XLA's bf16
dot, at M=4096 on the DeepSeek-V3 shapes (a tuning aid; the benchmark of record is
`python -m jaxgemm.bench`).

    python scripts/bf16_sweep.py '[{"block_n": 256, "cluster_m": 2}, {}]' [layouts]
"""
import json
import statistics
import sys

import jax
import jax.numpy as jnp

import jaxgemm
from quick_perf import NK, timeit


def main():
    configs = json.loads(sys.argv[1])
    layouts = (sys.argv[2] if len(sys.argv) > 2 else "nt,nn").split(",")
    m = 4096
    results = {}
    for n, k in NK:
        flops = 2 * m * n * k
        nsets = max(1, min(16, -(-200 * 2**20 // ((m + n) * k * 2))))
        keys = jax.random.split(jax.random.PRNGKey(0), 2 * nsets)
        xs = [jax.random.normal(keys[2 * i], (m, k), jnp.bfloat16) for i in range(nsets)]
        ws = [jax.random.normal(keys[2 * i + 1], (n, k), jnp.bfloat16) for i in range(nsets)]
        xla = flops / timeit(lambda x, w: x @ w.T, list(zip(xs, ws))) / 1e12
        results.setdefault("xla", []).append(xla)
        line = f"N={n:5d} K={k:5d} xla {xla:5.0f}"
        for layout in layouts:
            sets = [(x.T if layout[0] == "t" else x, w.T if layout[1] == "n" else w) for x, w in zip(xs, ws)]
            fn = getattr(jaxgemm, f"bf16_gemm_{layout}")
            for i, cfg in enumerate(configs):
                try:
                    t = flops / timeit(lambda a, b, cfg=cfg: fn(a, b, config=cfg or None), sets) / 1e12
                except ValueError:  # a config this layout cannot take
                    continue
                results.setdefault((layout, i), []).append(t)
                line += f" | {layout}{i} {t:5.0f}"
        print(line, flush=True)
    for key, vals in results.items():
        name = key if isinstance(key, str) else f"{key[0]} {configs[key[1]]}"
        geo = statistics.geometric_mean(vals)
        print(f"GEO {name}: {geo:.0f} ({geo / statistics.geometric_mean(results['xla']):.3f}x XLA)")


if __name__ == "__main__":
    main()
