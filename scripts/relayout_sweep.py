"""FP8 nn with the in-kernel relayout (relayout=1) over pinned tile shapes, beside NT and
the heuristic's pick, at one M over the DeepSeek-V3 shapes (a development aid for the
relayout heuristic; the benchmark's timing method).

    python scripts/relayout_sweep.py [M]     (default 128)
"""
import sys

import jax

import jaxgemm
from jaxgemm import bench

CANDIDATES = [None, {"block_m": 128, "block_n": 64}, {"block_m": 128, "block_n": 64, "cluster_k": 2},
              {"block_m": 128, "block_n": 64, "cluster_k": 4}, {"block_m": 128, "block_n": 32},
              {"block_m": 128, "block_n": 32, "cluster_k": 2}, {"block_m": 64, "block_n": 48}]
# At M <= 64 one 64-row tile covers M.
CANDIDATES_64 = [None, {"block_m": 64, "block_n": 64}, {"block_m": 64, "block_n": 64, "cluster_k": 2},
                 {"block_m": 64, "block_n": 64, "k_split": 2}, {"block_m": 64, "block_n": 32, "k_split": 2},
                 {"block_m": 64, "block_n": 32, "cluster_k": 2}, {"block_m": 64, "block_n": 112}]


def main():
    m = int(sys.argv[1]) if len(sys.argv) > 1 else 128
    key = jax.random.PRNGKey(0)
    for n, k in bench.DEEPSEEK_V3_NK:
        sets = bench._num_sets(bench._fp8_bytes(m, n, k))
        flops = 2.0 * m * n * k * sets
        a, b = map(list, zip(*(bench._gen_fp8(s, m, n, k, False) for s in bench._set_keys(key, 1, sets))))
        b_kn = [bench._swap(p) for p in b]
        row = []
        nt = jax.jit(lambda a, b: [jaxgemm.fp8_gemm_nt(x, y) for x, y in zip(a, b)])
        t, _ = bench._time_fn(nt, (a, b))
        row.append(f"nt {flops / t / 1e12:.0f}")
        for cand in CANDIDATES_64 if m <= 64 else CANDIDATES:
            cfg = dict(cand or {}, relayout=1)
            try:
                f = jax.jit(lambda a, b, cfg=cfg: [jaxgemm.fp8_gemm_nn(x, y, config=cfg) for x, y in zip(a, b)])
                t, _ = bench._time_fn(f, (a, b_kn))
                v = f"{flops / t / 1e12:.0f}"
            except Exception as e:  # noqa: BLE001 - a config the kernel rejects
                v = f"error ({str(e).splitlines()[0][:60]})"
            name = "heur" if cand is None else \
                f"{cand['block_m']}x{cand['block_n']}k{cand.get('cluster_k', 1)}s{cand.get('k_split', 1)}"
            row.append(f"{name} {v}")
        del a, b, b_kn
        print(f"M={m} N={n} K={k}: " + " ".join(row), flush=True)


if __name__ == "__main__":
    main()
