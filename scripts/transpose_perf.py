"""Bandwidth of jaxgemm's FP8 transpose kernel against a copy of the same bytes, on the
operands the FP8 layouts transpose at the DeepSeek-V3 shapes (B stored [K, N]; A
stored [K, M]). A development aid, with the benchmark's timing method.

XLA's own transpose is compared inside the GEMMs (scripts/relayout_perf.py, mode
"xla"): timed alone here, its output is an XLA temporary (the benchmark's method)
that may take the transposed layout, so that no bytes move (6-11 TB/s "measured" so
with jax 0.11).

    python scripts/transpose_perf.py [M ...]     (default 128 4096)
"""
import sys

import jax
import jax.numpy as jnp

from jaxgemm import _runtime, bench
from jaxgemm.ops.transpose import transpose_bytes


def main():
    _runtime.ensure_cuda()
    ms = [int(v) for v in sys.argv[1:]] or [128, 4096]
    shapes = sorted({(k, n) for n, k in bench.DEEPSEEK_V3_NK} | {(k, m) for _, k in bench.DEEPSEEK_V3_NK for m in ms})
    ours = jax.jit(lambda xs: [transpose_bytes(x) for x in xs])
    # The copy ceiling: an elementwise op that reads and writes the same bytes (as
    # 32-bit words, which XLA vectorizes; on 1-byte elements it does not).
    copy = jax.jit(lambda xs: [jax.lax.bitcast_convert_type(x.reshape(*x.shape[:-1], -1, 4), jnp.uint32) ^ 1
                               for x in xs])
    rates = {"jaxgemm": [], "copy": []}
    for r, c in shapes:
        sets = bench._num_sets(r * c)
        xs = [jax.random.bits(key, (1, r, c), jnp.uint8).view(jnp.float8_e4m3fn)
              for key in bench._set_keys(jax.random.PRNGKey(0), 2, sets)]
        moved = 2.0 * r * c * sets  # read once, written once
        row = {}
        for name, f in (("jaxgemm", ours), ("copy", copy)):
            t, _ = bench._time_fn(f, (xs,))
            row[name] = moved / t / 1e12
            rates[name].append(row[name])
        print(f"[{r}, {c}] -> [{c}, {r}] x{sets}: " + " ".join(f"{k} {v:.2f} TB/s" for k, v in row.items()),
              flush=True)
    print("geomean: " + " ".join(f"{k} {bench._geomean(v):.2f} TB/s" for k, v in rates.items()), flush=True)


if __name__ == "__main__":
    main()
