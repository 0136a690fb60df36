"""Runs one fp8_gemm_nt for a profiler: `ncu -k regex:jaxgemm python scripts/profile_fp8.py M N K [config-json]`."""
import json
import sys

import jax
import jax.numpy as jnp

import jaxgemm

m, n, k = (int(v) for v in sys.argv[1:4])
config = json.loads(sys.argv[4]) if len(sys.argv) > 4 else None
x = jax.random.normal(jax.random.PRNGKey(0), (m, k), jnp.bfloat16)
w = jax.random.normal(jax.random.PRNGKey(1), (n, k), jnp.bfloat16)
a, b = jaxgemm.per_token_cast_to_fp8(x), jaxgemm.per_block_cast_to_fp8(w)
f = jax.jit(lambda a, b: jaxgemm.fp8_gemm_nt(a, b, config=config))
jax.block_until_ready(f(a, b))
jax.block_until_ready(f(a, b))
