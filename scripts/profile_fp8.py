"""Runs one FP8 GEMM for a profiler:
`ncu -k regex:jaxgemm python scripts/profile_fp8.py M N K [config-json] [layout]` (layout nt
unless given)."""
import json
import sys

import jax
import jax.numpy as jnp

import jaxgemm

m, n, k = (int(v) for v in sys.argv[1:4])
config = json.loads(sys.argv[4]) if len(sys.argv) > 4 else None
layout = sys.argv[5] if len(sys.argv) > 5 else "nt"
x = jax.random.normal(jax.random.PRNGKey(0), (m, k), jnp.bfloat16)
w = jax.random.normal(jax.random.PRNGKey(1), (n, k), jnp.bfloat16)
a, b = jaxgemm.per_token_cast_to_fp8(x), jaxgemm.per_block_cast_to_fp8(w)
a = tuple(v.T for v in a) if layout[0] == "t" else a  # stored [K, M]
b = tuple(v.T for v in b) if layout[1] == "n" else b  # stored [K, N]
op = getattr(jaxgemm, f"fp8_gemm_{layout}")
f = jax.jit(lambda a, b: op(a, b, config=config))
jax.block_until_ready(f(a, b))
jax.block_until_ready(f(a, b))
