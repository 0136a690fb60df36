"""The FP8 kernels whose WGMMA A operand comes from registers, built from an MN-major
K block (kernels/common/sm90_fp8_mn_major_a.cuh), on an SM90 GPU:
  - swap_ab=1: for B stored [K, N] at M <= 128 the kernel computes D^T = B^T A^T with
    B read into registers (SWAP_AB);
  - a_regs=1: A stored [K, M] read as stored into registers, everything else NT's
    (A_REGS).
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

# The swapped kernel: the heuristic's tiles with K over 1, 2 or 4 CTAs, M of 1 (16
# columns) and partial M, N and K, every output mode, and pinned tiles on few SMs
# (tiles run in turn).
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
    (96, 1168, 4096, "nn", None, jnp.bfloat16, {"block_m": 64, "block_n": 48, "cluster_k": 2, "num_sms": 8}),
]

# A read as stored: the heuristic's tiles at M = 128 (128 rows with K over a CTA pair;
# with K over 4 CTAs and B transposed in shared memory), 128 x 160 (one accumulator
# set), M past the last full tile, M of 16 and partial N and K, every output mode, and
# pinned tiles on few SMs: one 64-row math warpgroup with two accumulator sets,
# 128 x 160 with B relaid out, K over two warpgroups and a CTA pair.
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
    (208, 1168, 4096, "tt", None, jnp.bfloat16, {"block_m": 128, "block_n": 112, "cluster_k": 2, "num_sms": 8}),
]

# What each mode's config says: (swap_ab, a_mn_major, b_mn_major, a_regs); None: either.
_MODES = {"swap_ab": (1, 0, 1, 0), "a_regs": (0, 1, None, 1)}


def _run(m, n, k, layout, c_dtype, out_dtype, config, seed, per_row_b=False):
    a, b = _fp8_operands(m, n, k, layout, seed=seed, per_row_b=per_row_b)
    c = _c(m, n, c_dtype, seed=m)
    ref = _reference(reference.fp8_gemm, *a, *b, layout, c, jnp.float64)
    _poison((m, n), out_dtype)
    f = getattr(jaxgemm, f"fp8_gemm_{layout}")
    out = jax.jit(lambda a, b, c: f(a, b, c, out_dtype=out_dtype, config=config))(a, b, c)
    _check(out, ref, out_dtype, 1e-3, rel=1e-2)


@pytest.mark.parametrize("mode, m, n, k, layout, c_dtype, out_dtype, tiles",
                         [("swap_ab",) + case for case in SWAP_CASES] +
                         [("a_regs",) + case for case in A_REGS_CASES])
def test_fp8_gemm_register_a(mode, m, n, k, layout, c_dtype, out_dtype, tiles):
    config = dict(tiles, **{mode: 1})
    cfg = jaxgemm.fp8_gemm_config(m, n, k, layout=layout, num_sms=132, config=config)
    got = (cfg["swap_ab"], cfg["a_mn_major"], cfg["b_mn_major"], cfg["a_regs"])
    assert all(w is None or g == w for g, w in zip(got, _MODES[mode])), cfg
    _run(m, n, k, layout, c_dtype, out_dtype, config, seed=13)


@pytest.mark.parametrize("config", [{"a_regs": 1}, {"a_regs": 1, "block_m": 64, "block_n": 64, "k_split": 2}])
def test_fp8_gemm_a_regs_1d1d(config):
    """The weight-gradient recipe (1x128 scales on both sides, FP32 C) with A stored
    [K, M]: the per-column B scales beside the register operand."""
    _run(336, 1160, 1536, "tt", jnp.float32, jnp.float32, config, seed=7, per_row_b=True)


@pytest.mark.parametrize("layout, mode", [("nn", "swap_ab"), ("tt", "a_regs")])
@pytest.mark.parametrize("b_batched", [False, True])
def test_fp8_gemm_register_a_batched(layout, mode, b_batched):
    """vmap over L, B batched or shared by all (with B shared the batches fold into M:
    3 x 32 rows, within the swapped kernel's M <= 128 and a multiple of 16 for a_regs)."""
    l, m, n, k = 3, 32, 400, 640
    ops = [_fp8_operands(m, n, k, layout, seed=30 + (i if b_batched else 0)) for i in range(l)]
    if not b_batched:  # one B, each batch its own A
        ops = [(_fp8_operands(m, n, k, layout, seed=40 + i)[0], ops[0][1]) for i in range(l)]
    a = tuple(jnp.stack([o[0][j] for o in ops]) for j in range(2))
    op = getattr(jaxgemm, f"fp8_gemm_{layout}")
    f = lambda a, b: op(a, b, out_dtype=jnp.float32, config={mode: 1})  # noqa: E731
    if b_batched:
        b = tuple(jnp.stack([o[1][j] for o in ops]) for j in range(2))
        out = jax.jit(jax.vmap(f))(a, b)
    else:
        out = jax.jit(jax.vmap(f, in_axes=(0, None)))(a, ops[0][1])
    for i, (oa, ob) in enumerate(ops):
        ref = _reference(reference.fp8_gemm, *oa, *ob, layout, None, jnp.float64)
        _check(out[i], ref, jnp.float32, 1e-3, rel=1e-2)
