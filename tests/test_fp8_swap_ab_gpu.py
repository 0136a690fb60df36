"""The swapped FP8 kernel (config swap_ab=1) on an SM90 GPU: for B stored [K, N] at
M <= 128 it computes D^T = B^T A^T with B read into WGMMA's register operand
(kernels/sm90/fp8_gemm.cuh, SWAP_AB). Every element is checked against a float64
reference, with the output memory poisoned first.
"""

import jax
import jax.numpy as jnp
import pytest

import jaxgemm
from jaxgemm import reference

from _gpu_data import poison as _poison
from test_dense_gpu import _c, _check, _fp8_operands, _reference

pytestmark = pytest.mark.gpu

# The swapped kernel (swap_ab=1: D^T = B^T A^T, B stored [K, N] read into registers):
# the heuristic's tiles with K over 1, 2 or 4 CTAs, M of 1 (16 columns) and partial
# M, N and K, every output mode, and pinned tiles on few SMs (tiles run in turn).
SWAP_CASES = [
    (128, 7168, 2048, "nn", jnp.float32, jnp.float32, {}),
    (128, 2112, 7168, "nn", jnp.bfloat16, jnp.bfloat16, {}),
    (128, 4096, 7168, "tn", None, jnp.bfloat16, {}),
    (1, 7168, 2048, "nn", jnp.float32, jnp.float32, {}),
    (100, 2096, 1040, "nn", jnp.bfloat16, jnp.float32, {}),
    (48, 7168, 3088, "tn", None, jnp.float32, {}),
    (128, 1168, 1552, "nn", jnp.float32, jnp.float32,
     {"block_m": 64, "block_n": 128, "k_split": 2, "num_sms": 7}),
    (80, 1168, 1552, "nn", None, jnp.bfloat16, {"block_m": 128, "block_n": 80, "num_sms": 5}),
    (96, 1168, 4096, "nn", None, jnp.bfloat16, {"block_m": 64, "block_n": 96, "cluster_k": 2, "num_sms": 8}),
]


@pytest.mark.parametrize("m, n, k, layout, c_dtype, out_dtype, tiles", SWAP_CASES)
def test_fp8_gemm_swap_ab(m, n, k, layout, c_dtype, out_dtype, tiles):
    config = dict(tiles, swap_ab=1)
    cfg = jaxgemm.fp8_gemm_config(m, n, k, layout=layout, num_sms=132, config=config)
    assert cfg["swap_ab"] == 1 and cfg["b_mn_major"] == 1 and cfg["a_mn_major"] == 0, cfg
    a, b = _fp8_operands(m, n, k, layout, seed=13)
    c = _c(m, n, c_dtype, seed=m)
    ref = _reference(reference.fp8_gemm, *a, *b, layout, c, jnp.float64)
    _poison((m, n), out_dtype)
    f = getattr(jaxgemm, f"fp8_gemm_{layout}")
    out = jax.jit(lambda a, b, c: f(a, b, c, out_dtype=out_dtype, config=config))(a, b, c)
    _check(out, ref, out_dtype, 1e-3, rel=1e-2)


@pytest.mark.parametrize("b_batched", [False, True])
def test_fp8_gemm_swap_ab_batched(b_batched):
    """vmap over L, B batched or shared by all: the swapped kernel's A operand is B.
    (With B shared the batches fold into M: 3 x 40 rows.)"""
    l, m, n, k = 3, 40, 400, 640
    ops = [_fp8_operands(m, n, k, "nn", seed=30 + (i if b_batched else 0)) for i in range(l)]
    if not b_batched:  # one B, each batch its own A
        ops = [(_fp8_operands(m, n, k, "nn", seed=40 + i)[0], ops[0][1]) for i in range(l)]
    a = tuple(jnp.stack([o[0][j] for o in ops]) for j in range(2))
    f = lambda a, b: jaxgemm.fp8_gemm_nn(a, b, out_dtype=jnp.float32, config={"swap_ab": 1})  # noqa: E731
    if b_batched:
        b = tuple(jnp.stack([o[1][j] for o in ops]) for j in range(2))
        out = jax.jit(jax.vmap(f))(a, b)
    else:
        out = jax.jit(jax.vmap(f, in_axes=(0, None)))(a, ops[0][1])
    for i, (oa, ob) in enumerate(ops):
        ref = _reference(reference.fp8_gemm, *oa, *ob, "nn", None, jnp.float64)
        _check(out[i], ref, jnp.float32, 1e-3, rel=1e-2)
