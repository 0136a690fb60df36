"""FP8 layouts with the relayout in the kernel (relayout=1, "fused"), against
jaxgemm's transpose kernel first (relayout=0, "tb") and XLA's transposes first
(relayout=0 with JAXGEMM_XLA_TRANSPOSE=1, "xla"), beside NT, over the DeepSeek-V3
shapes (a development aid; the benchmark of record is `python -m jaxgemm.bench`, whose
method and helpers this uses).

    python scripts/relayout_perf.py [M ...]     (default 128 4096)
"""
import os
import sys

import jax

import jaxgemm
from jaxgemm import bench, reference


def main():
    ms = [int(v) for v in sys.argv[1:]] or [128, 4096]
    key = jax.random.PRNGKey(0)
    for m in ms:
        ratios = {}
        for n, k in bench.DEEPSEEK_V3_NK:
            a, b = bench._sweep_operands(m, n, k, key)
            sets = len(a)
            flops = 2.0 * m * n * k * sets
            a_km, b_kn = [bench._swap(p) for p in a], [bench._swap(p) for p in b]
            row = {}
            for layout in bench.LAYOUTS:
                a_t, b_t = reference.LAYOUTS[layout]
                op = getattr(jaxgemm, f"fp8_gemm_{layout}")
                for mode in (("",) if layout == "nt" else ("_fused", "_tb", "_xla")):
                    cfg = None if not mode else {"relayout": int(mode == "_fused")}
                    # Read at lowering time, which the first (timed-apart) call does.
                    os.environ["JAXGEMM_XLA_TRANSPOSE"] = str(int(mode == "_xla"))
                    f = jax.jit(lambda a, b, op=op, cfg=cfg: [op(x, y, config=cfg) for x, y in zip(a, b)])
                    t, _ = bench._time_fn(f, (a_km if a_t else a, b_kn if b_t else b))
                    row[layout + mode] = flops / t / 1e12
            del a, b, a_km, b_kn
            for name, v in row.items():
                ratios.setdefault(name, []).append(v / row["nt"])
            print(f"M={m} N={n} K={k}: " + " ".join(f"{name} {v:.0f}" for name, v in row.items()), flush=True)
        print(f"M={m} geomean ratio to nt: " +
              " ".join(f"{name} {bench._geomean(v):.3f}" for name, v in ratios.items()), flush=True)


if __name__ == "__main__":
    main()
