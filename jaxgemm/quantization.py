"""FP8 quantization in DeepSeek-V3's recipe, and DeepGEMM's accuracy metric.

`sf = max(amax, 1e-4) / 448` over each group, `x_fp8 = e4m3(x / sf)`, and
`dequant(x) = x_fp8 * sf`. Activations use 1x128 groups along K, weights
128x128 blocks. K (and N for weights) are zero-padded to a multiple of 128
inside the group computation only; the returned data keeps the input's shape.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "FP8_MAX",
    "ceil_div",
    "align",
    "per_token_cast_to_fp8",
    "per_block_cast_to_fp8",
    "per_channel_cast_to_fp8",
    "calc_diff",
    "get_tma_aligned_size",
]

FP8_MAX = 448.0  # largest finite float8_e4m3fn
_AMAX_FLOOR = 1e-4


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def align(x: int, alignment: int) -> int:
    return ceil_div(x, alignment) * alignment


def _check_float(x, name: str, rank: int):
    x = jnp.asarray(x)
    if x.ndim != rank:
        raise ValueError(f"{name}: expected a rank-{rank} array, got shape {x.shape}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"{name}: expected a floating-point array, got {x.dtype}")
    return x


def per_token_cast_to_fp8(x):
    """Quantizes `x` [M, K] with one FP32 scale per row per 128 of K.

    Returns `(x_fp8 [M, K] float8_e4m3fn, scales [M, ceil(K/128)] float32)`.
    """
    x = _check_float(x, "per_token_cast_to_fp8", 2)
    m, k = x.shape
    kp = align(k, 128)
    xf = jnp.pad(x.astype(jnp.float32), ((0, 0), (0, kp - k))).reshape(m, kp // 128, 128)
    amax = jnp.maximum(jnp.max(jnp.abs(xf), axis=-1, keepdims=True), _AMAX_FLOOR)
    sf = amax / FP8_MAX
    q = (xf / sf).astype(jnp.float8_e4m3fn).reshape(m, kp)[:, :k]
    return q, sf[..., 0]


def per_block_cast_to_fp8(x):
    """Quantizes `x` [N, K] with one FP32 scale per 128x128 block.

    Returns `(x_fp8 [N, K] float8_e4m3fn, scales [ceil(N/128), ceil(K/128)] float32)`.
    """
    x = _check_float(x, "per_block_cast_to_fp8", 2)
    n, k = x.shape
    np_, kp = align(n, 128), align(k, 128)
    xf = jnp.pad(x.astype(jnp.float32), ((0, np_ - n), (0, kp - k)))
    xb = xf.reshape(np_ // 128, 128, kp // 128, 128)
    amax = jnp.maximum(jnp.max(jnp.abs(xb), axis=(1, 3), keepdims=True), _AMAX_FLOOR)
    sf = amax / FP8_MAX
    q = (xb / sf).astype(jnp.float8_e4m3fn).reshape(np_, kp)[:n, :k]
    return q, sf[:, 0, :, 0]


def per_channel_cast_to_fp8(x):
    """Quantizes `x` [K, N] with one FP32 scale per column per 128 rows (1x128 groups
    along the first axis: the K-first operands of `fp8_gemm_tn` and the 1D1D recipe).

    Returns `(x_fp8 [K, N] float8_e4m3fn, scales [ceil(K/128), N] float32)`.
    """
    x = _check_float(x, "per_channel_cast_to_fp8", 2)
    q, sf = per_token_cast_to_fp8(x.T)
    return q.T, sf.T


def calc_diff(x, y) -> float:
    """DeepGEMM's accuracy metric `1 - 2*sum(x*y) / sum(x*x + y*y)`, in float64.

    0 for identical inputs; about the squared relative error otherwise. NaN
    anywhere gives NaN, which fails every `< threshold` check.
    """
    x = np.asarray(jax.device_get(x), dtype=np.float64)
    y = np.asarray(jax.device_get(y), dtype=np.float64)
    denom = np.sum(x * x + y * y)
    if denom == 0:
        return 0.0 if np.array_equal(x, y) else float("nan")
    return float(1.0 - 2.0 * np.sum(x * y) / denom)


def get_tma_aligned_size(x: int, element_size: int) -> int:
    """`x` rounded up so that `x * element_size` bytes is a multiple of 16 (a TMA stride)."""
    if 16 % element_size != 0:
        raise ValueError(f"get_tma_aligned_size: element_size must divide 16, got {element_size}")
    return align(x, 16 // element_size)
