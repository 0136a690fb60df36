"""The FP8 kernel reading A stored [K, M] as stored (config a_regs=1) on an SM90 GPU:
TMA brings A's K blocks MN-major and the math warps build WGMMA's register
operand from them (kernels/sm90/fp8_gemm.cuh, A_REGS), so A is never transposed.
Every element is checked against a float64 reference, with the output memory
poisoned first.
"""

import jax
import jax.numpy as jnp
import pytest

import jaxgemm
from jaxgemm import reference

from _gpu_data import poison as _poison
from test_dense_gpu import _c, _check, _fp8_operands, _reference

pytestmark = pytest.mark.gpu

# The heuristic's tiles at M = 128 (64 rows with K on two warpgroups; 128 rows with
# K over 4 CTAs and B transposed in shared memory) and M = 4096-like (128 x 160, one
# accumulator set); M past the last full tile, M of 16 and partial N and K; every
# output mode; and pinned tiles on few SMs (tiles run in turn): one 64-row math
# warpgroup with two accumulator sets, 128 x 160 with B relaid out, K over a CTA pair.
A_REGS_CASES = [
    (128, 4096, 7168, "tt", None, jnp.bfloat16, {}),
    (128, 2112, 7168, "tn", jnp.float32, jnp.float32, {}),
    (1040, 2096, 2064, "tt", jnp.bfloat16, jnp.bfloat16, {"block_m": 128, "block_n": 160}),
    (4112, 1168, 1552, "tn", None, jnp.bfloat16, {}),
    (16, 7168, 3088, "tt", jnp.float32, jnp.float32, {}),
    (48, 1040, 1040, "tn", jnp.bfloat16, jnp.float32, {}),
    (336, 1168, 1552, "tt", jnp.float32, jnp.float32, {"block_m": 64, "block_n": 80, "num_sms": 5}),
    (336, 1168, 1552, "tn", None, jnp.bfloat16, {"block_m": 128, "block_n": 160, "relayout": 1, "num_sms": 7}),
    (208, 1168, 4096, "tt", None, jnp.bfloat16,
     {"block_m": 64, "block_n": 64, "k_split": 2, "cluster_k": 2, "num_sms": 8}),
]


@pytest.mark.parametrize("m, n, k, layout, c_dtype, out_dtype, tiles", A_REGS_CASES)
def test_fp8_gemm_a_regs(m, n, k, layout, c_dtype, out_dtype, tiles):
    config = dict(tiles, a_regs=1)
    cfg = jaxgemm.fp8_gemm_config(m, n, k, layout=layout, num_sms=132, config=config)
    assert cfg["a_regs"] == 1 and cfg["a_mn_major"] == 1 and cfg["swap_ab"] == 0, cfg
    a, b = _fp8_operands(m, n, k, layout, seed=17)
    c = _c(m, n, c_dtype, seed=m)
    ref = _reference(reference.fp8_gemm, *a, *b, layout, c, jnp.float64)
    _poison((m, n), out_dtype)
    f = getattr(jaxgemm, f"fp8_gemm_{layout}")
    out = jax.jit(lambda a, b, c: f(a, b, c, out_dtype=out_dtype, config=config))(a, b, c)
    _check(out, ref, out_dtype, 1e-3, rel=1e-2)


@pytest.mark.parametrize("config", [{"a_regs": 1}, {"a_regs": 1, "block_m": 64, "block_n": 64, "k_split": 2}])
def test_fp8_gemm_a_regs_1d1d(config):
    """The weight-gradient recipe (1x128 scales on both sides, FP32 C) with A stored
    [K, M]: the per-column B scales beside the register operand."""
    m, n, k = 336, 1160, 1536
    a, b = _fp8_operands(m, n, k, "tt", seed=7, per_row_b=True)
    c = _c(m, n, jnp.float32, seed=m)
    ref = _reference(reference.fp8_gemm, *a, *b, "tt", c, jnp.float64)
    _poison((m, n), jnp.float32)
    out = jax.jit(lambda a, b, c: jaxgemm.fp8_gemm_tt(a, b, c, out_dtype=jnp.float32, config=config))(a, b, c)
    _check(out, ref, jnp.float32, 1e-3, rel=1e-2)


@pytest.mark.parametrize("b_batched", [False, True])
def test_fp8_gemm_a_regs_batched(b_batched):
    """vmap over L, B batched or shared by all (with B shared the batches fold into
    M: 3 x 48 rows of A, read as stored)."""
    l, m, n, k = 3, 48, 400, 640
    ops = [_fp8_operands(m, n, k, "tt", seed=50 + (i if b_batched else 0)) for i in range(l)]
    if not b_batched:
        ops = [(_fp8_operands(m, n, k, "tt", seed=60 + i)[0], ops[0][1]) for i in range(l)]
    a = tuple(jnp.stack([o[0][j] for o in ops]) for j in range(2))
    f = lambda a, b: jaxgemm.fp8_gemm_tt(a, b, out_dtype=jnp.float32, config={"a_regs": 1})  # noqa: E731
    if b_batched:
        b = tuple(jnp.stack([o[1][j] for o in ops]) for j in range(2))
        out = jax.jit(jax.vmap(f))(a, b)
    else:
        out = jax.jit(jax.vmap(f, in_axes=(0, None)))(a, ops[0][1])
    for i, (oa, ob) in enumerate(ops):
        ref = _reference(reference.fp8_gemm, *oa, *ob, "tt", None, jnp.float64)
        _check(out[i], ref, jnp.float32, 1e-3, rel=1e-2)
