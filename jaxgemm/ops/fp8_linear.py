"""`fp8_linear`: `x @ kernel` trained in FP8 with DeepSeek-V3's recipe.

  forward  y  = x @ W          x per token (1x128), W per 128x128 block   fp8_gemm_nt
  dgrad    dx = dy @ W^T       dy per token, W's forward blocks reused     fp8_gemm_nn
  wgrad    dW = x^T @ dy       x and dy in 1x128 groups along tokens,      fp8_gemm_tn (1D1D,
                                                                            FP32 output)
W is `[K, N]` as in `flax.nnx.Linear`; x is `[..., K]`. Everything the backward pass
needs from the forward is saved in FP8 (W's blocks) or BF16 (x).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxgemm.ops.dense import fp8_gemm_nn, fp8_gemm_nt, fp8_gemm_tn
from jaxgemm.quantization import align, per_block_cast_to_fp8, per_channel_cast_to_fp8, per_token_cast_to_fp8

__all__ = ["fp8_linear"]


def _check(x, kernel):
    x, kernel = jnp.asarray(x), jnp.asarray(kernel)
    if kernel.ndim != 2:
        raise ValueError(f"fp8_linear: kernel must be [K, N], got shape {kernel.shape}")
    if x.ndim < 1 or x.shape[-1] != kernel.shape[0]:
        raise ValueError(f"fp8_linear: x is {x.shape} and kernel is [K, N] = {kernel.shape}: x's last "
                         "dimension must be K")
    for name, v in (("x", x), ("kernel", kernel)):
        if v.dtype != jnp.bfloat16:
            raise TypeError(f"fp8_linear: {name} must be bfloat16, got {v.dtype}")
    k, n = kernel.shape
    if k % 128 or n % 128:
        raise ValueError(f"fp8_linear: K and N must be multiples of 128 (whole scale blocks in "
                         f"forward and backward), got kernel shape {kernel.shape}")
    return x, kernel


@jax.custom_vjp
def _linear(x2, kernel):
    return _forward(x2, kernel)[0]


def _forward(x2, kernel):
    w_q = per_block_cast_to_fp8(kernel.T)  # [N, K], 128x128 blocks
    y = fp8_gemm_nt(per_token_cast_to_fp8(x2), w_q)
    return y, (x2, w_q)


def _backward(res, dy):
    x2, w_q = res
    dy = dy.astype(jnp.bfloat16)
    # dgrad: dx [M, K] = dy [M, N] @ W^T; W^T's blocks are the forward's W blocks, read
    # as B stored [N (reduced), K]: the "nn" layout.
    dx = fp8_gemm_nn(per_token_cast_to_fp8(dy), w_q)
    # wgrad: dW [K, N] = x^T @ dy, reduced over tokens, with 1x128 groups along tokens on
    # both sides and FP32 accumulation. Tokens are zero-padded to whole groups.
    m = x2.shape[0]
    pad = align(max(m, 1), 128) - m
    xp = jnp.pad(x2, ((0, pad), (0, 0)))
    dyp = jnp.pad(dy, ((0, pad), (0, 0)))
    dw = fp8_gemm_tn(per_channel_cast_to_fp8(xp), per_channel_cast_to_fp8(dyp), out_dtype=jnp.float32)
    return dx, dw.astype(jnp.bfloat16)


_linear.defvjp(_forward, _backward)


def fp8_linear(x, kernel):
    """`x @ kernel` with DeepSeek-V3's FP8 training recipe in forward, dgrad and wgrad.

    Args:
      x: bfloat16 `[..., K]` activations.
      kernel: bfloat16 `[K, N]` weights (the layout of `flax.nnx.Linear`); K and N
        multiples of 128.

    Returns bfloat16 `[..., N]`. Differentiable with `jax.grad` w.r.t. both arguments:
    the forward quantizes x per token (1x128) and the kernel per 128x128 block; dgrad
    quantizes dy per token and reuses the kernel's blocks; wgrad quantizes x and dy in
    1x128 groups along the token axis and accumulates in FP32.
    """
    x, kernel = _check(x, kernel)
    lead = x.shape[:-1]
    y = _linear(x.reshape(-1, x.shape[-1]), kernel)
    return y.reshape(*lead, kernel.shape[1])
