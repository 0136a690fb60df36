"""One small swapped FP8 GEMM (config swap_ab=1), checked, for compute-sanitizer:

    compute-sanitizer --tool memcheck python scripts/sanitize_swap_ab.py
    compute-sanitizer --tool racecheck python scripts/sanitize_swap_ab.py
"""
import jax
import jax.numpy as jnp
import numpy as np

import jaxgemm
from jaxgemm import reference


def main():
    m, n, k = 80, 400, 640  # partial tiles in M (80 of 80), N (400 of 448) and K
    x = jax.random.normal(jax.random.PRNGKey(0), (m, k), jnp.float32).astype(jnp.bfloat16)
    w = jax.random.normal(jax.random.PRNGKey(1), (k, n), jnp.float32).astype(jnp.bfloat16)
    a = jaxgemm.per_token_cast_to_fp8(x)
    b = tuple(v.T for v in jaxgemm.per_block_cast_to_fp8(w.T))  # B stored [K, N]
    for cfg in ({"swap_ab": 1}, {"swap_ab": 1, "block_m": 64, "block_n": 80, "cluster_k": 1, "num_sms": 3}):
        out = jax.jit(lambda a, b, cfg=cfg: jaxgemm.fp8_gemm_nn(a, b, out_dtype=jnp.float32, config=cfg))(a, b)
        ref = np.asarray(reference.fp8_gemm(*a, *b, "nn", None, jnp.float32))
        err = float(np.max(np.abs(np.asarray(out) - ref)) / np.max(np.abs(ref)))
        print(cfg, "max rel err", err)
        assert err < 1e-2


if __name__ == "__main__":
    main()
