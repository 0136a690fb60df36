"""Pure-jnp definitions of jaxgemm's ops.

Each function here is the specification of one op: the kernels must compute
the same function, the tests use it as the oracle, and every platform but CUDA
lowers the op to it. Leading batch dimensions are allowed throughout.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["dequant_per_token", "dequant_per_block", "fp8_gemm_nt", "fp8_gemm", "bf16_gemm", "LAYOUTS"]

# Layout suffix -> (A stored [K, M], B stored [K, N]). "nt" is A [M, K] and B [N, K].
LAYOUTS = {"nt": (False, False), "nn": (False, True), "tn": (True, True), "tt": (True, False)}


def _expand_scales(sf, axis_len: int, axis: int):
    """Repeats each scale 128 times along `axis` and trims to `axis_len`."""
    return jnp.repeat(sf, 128, axis=axis, total_repeat_length=sf.shape[axis] * 128).take(
        jnp.arange(axis_len), axis=axis)


def dequant_per_token(x, sf, dtype=jnp.float32):
    """`x` [..., M, K] fp8 with scales [..., M, ceil(K/128)] -> `dtype`."""
    return x.astype(dtype) * _expand_scales(sf.astype(dtype), x.shape[-1], sf.ndim - 1)


def dequant_per_block(x, sf, dtype=jnp.float32):
    """`x` [..., N, K] fp8 with scales [..., ceil(N/128), ceil(K/128)] -> `dtype`."""
    s = _expand_scales(sf.astype(dtype), x.shape[-2], sf.ndim - 2)
    s = _expand_scales(s, x.shape[-1], sf.ndim - 1)
    return x.astype(dtype) * s


def _accumulator(out_dtype):
    return jnp.float64 if jnp.dtype(out_dtype) == jnp.float64 else jnp.float32


def fp8_gemm_nt(a, sfa, b, sfb, c=None, out_dtype=jnp.bfloat16):
    """`D = C + dequant(A) @ dequant(B)^T`, accumulated in float32 (float64 when
    `out_dtype` is float64, for test oracles).

    A [..., M, K] with per-token scales [..., M, ceil(K/128)]. B [..., N, K] with
    per-block scales [..., ceil(N/128), ceil(K/128)] (the 1D2D recipe) or per-row
    scales [..., N, ceil(K/128)] (1D1D). B's batch dimensions broadcast against A's.
    """
    acc = _accumulator(out_dtype)
    da = dequant_per_token(a, sfa, acc)
    per_row = sfb.shape[-2] == b.shape[-2]  # N >= 8 > ceil(N/128) in every valid call
    db = dequant_per_token(b, sfb, acc) if per_row else dequant_per_block(b, sfb, acc)
    d = jnp.einsum("...mk,...nk->...mn", da, db, precision=jax.lax.Precision.HIGHEST,
                   preferred_element_type=acc)
    if c is not None:
        d = d + c.astype(acc)
    return d.astype(out_dtype)


def _k_major(x, sf, stored_k_first: bool):
    """An operand stored [..., K, rows] (scales [..., ceil(K/128), rows or blocks])
    as [..., rows, K]."""
    if not stored_k_first:
        return x, sf
    return jnp.swapaxes(x, -1, -2), jnp.swapaxes(sf, -1, -2)


def fp8_gemm(a, sfa, b, sfb, layout="nt", c=None, out_dtype=jnp.bfloat16):
    """`fp8_gemm_nt` with operands in any layout (see `LAYOUTS`): a "t" A is stored
    [K, M] with scales [ceil(K/128), M]; an "n" B is stored [K, N] with scales
    [ceil(K/128), ceil(N/128)] (or [ceil(K/128), N] for 1D1D). The scales follow
    their data: a 128x128-block-scaled matrix transposes with its scale grid."""
    a_t, b_t = LAYOUTS[layout]
    a, sfa = _k_major(a, sfa, a_t)
    b, sfb = _k_major(b, sfb, b_t)
    return fp8_gemm_nt(a, sfa, b, sfb, c, out_dtype)


def bf16_gemm(a, b, layout="nt", c=None, out_dtype=jnp.bfloat16):
    """`D = C + A @ B` for BF16 operands in the layout `layout` (nt: A [M, K], B [N, K];
    a "t" A is [K, M], an "n" B is [K, N]), accumulated in float32 (float64 when
    `out_dtype` is float64)."""
    a_t, b_t = LAYOUTS[layout]
    acc = _accumulator(out_dtype)
    a = a.astype(acc)
    b = b.astype(acc)
    d = jnp.einsum("...km,...kn->...mn" if a_t and b_t else "...km,...nk->...mn" if a_t
                   else "...mk,...kn->...mn" if b_t else "...mk,...nk->...mn", a, b,
                   precision=jax.lax.Precision.HIGHEST, preferred_element_type=acc)
    if c is not None:
        d = d + c.astype(acc)
    return d.astype(out_dtype)
