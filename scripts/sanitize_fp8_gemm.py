"""Small FP8 GEMMs, checked, for compute-sanitizer: NT with tiles in turn (stages
reused across tiles, K over warpgroups or a cluster), the swapped kernel (B stored
[K, N], config swap_ab=1) and A stored [K, M] read as stored (config a_regs=1, with B
K-major or relaid out in shared memory).

    compute-sanitizer --tool memcheck python scripts/sanitize_fp8_gemm.py [case ...]
    JAXGEMM_JIT_DEFINES=JAXGEMM_RACECHECK_ALL_LANES_ARRIVE \
        compute-sanitizer --tool racecheck python scripts/sanitize_fp8_gemm.py [case ...]

(cases: indices into CASES; all by default). racecheck needs the define: a math warp
releases a stage by __syncwarp and lane 0's arrival, an order racecheck does not follow
(common/sm90_pipeline.cuh); the define makes every lane arrive.
"""
import sys

import jax
import jax.numpy as jnp
import numpy as np

import jaxgemm
from jaxgemm import reference

CASES = [
    ("nt", {"block_m": 64, "block_n": 80, "k_split": 1, "num_sms": 3}),
    ("nt", {"block_m": 128, "block_n": 128, "num_sms": 2}),
    ("nt", {"block_m": 64, "block_n": 64, "k_split": 2, "cluster_k": 2, "num_sms": 4}),
    ("nn", {"swap_ab": 1}),
    ("nn", {"swap_ab": 1, "block_m": 64, "block_n": 80, "cluster_k": 1, "num_sms": 3}),
    ("tt", {"a_regs": 1}),
    ("tt", {"a_regs": 1, "block_m": 128, "block_n": 64, "cluster_k": 2, "num_sms": 4}),
    ("tn", {"a_regs": 1, "relayout": 1, "block_m": 64, "block_n": 64, "k_split": 2, "num_sms": 3}),
]


def main():
    m, n, k = 80, 400, 640  # partial tiles in M (80 of 128 or 80), N (400 of 448) and K
    x = jax.random.normal(jax.random.PRNGKey(0), (m, k), jnp.float32).astype(jnp.bfloat16)
    w = jax.random.normal(jax.random.PRNGKey(1), (k, n), jnp.float32).astype(jnp.bfloat16)
    a_km = jaxgemm.per_token_cast_to_fp8(x)
    b_nk = jaxgemm.per_block_cast_to_fp8(w.T)
    chosen = [int(i) for i in sys.argv[1:]] or range(len(CASES))
    for layout, cfg in (CASES[i] for i in chosen):
        a_t, b_t = reference.LAYOUTS[layout]
        a = tuple(v.T for v in a_km) if a_t else a_km  # A stored [K, M], scales [ceil(K/128), M]
        b = tuple(v.T for v in b_nk) if b_t else b_nk  # B stored [K, N]
        f = getattr(jaxgemm, f"fp8_gemm_{layout}")
        out = jax.jit(lambda a, b, f=f, cfg=cfg: f(a, b, out_dtype=jnp.float32, config=cfg))(a, b)
        ref = np.asarray(reference.fp8_gemm(*a, *b, layout, None, jnp.float32))
        err = float(np.max(np.abs(np.asarray(out) - ref)) / np.max(np.abs(ref)))
        print(layout, cfg, "max rel err", err, flush=True)
        assert err < 1e-2


if __name__ == "__main__":
    main()
