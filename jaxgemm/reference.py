"""Pure-jnp definitions of jaxgemm's ops.

Each function here is the specification of one op: the kernels must compute
the same function, the tests use it as the oracle, and every platform but CUDA
lowers the op to it. Leading batch dimensions are allowed throughout.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["dequant_per_token", "dequant_per_block", "fp8_gemm_nt"]


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


def fp8_gemm_nt(a, sfa, b, sfb, c=None, out_dtype=jnp.bfloat16):
    """`D = C + dequant(A) @ dequant(B)^T`, accumulated in float32 (float64 when
    `out_dtype` is float64, for test oracles).

    A [..., M, K] with per-token scales, B [..., N, K] with per-block scales
    (B's batch dimensions broadcast against A's).
    """
    acc = jnp.float64 if jnp.dtype(out_dtype) == jnp.float64 else jnp.float32
    da = dequant_per_token(a, sfa, acc)
    db = dequant_per_block(b, sfb, acc)
    d = jnp.einsum("...mk,...nk->...mn", da, db, precision=jax.lax.Precision.HIGHEST,
                   preferred_element_type=acc)
    if c is not None:
        d = d + c.astype(acc)
    return d.astype(out_dtype)
