"""Operands and output poisoning shared by the GPU tests."""

import jax
import jax.numpy as jnp


def random_bf16_operands(m, n, k, seed):
    """BF16 x [M, K] and w [N, K] whose magnitudes differ per row, per 128 of K and per
    128x128 block, so that every FP8 scale differs: a kernel applying a wrong scale
    anywhere fails. (bf16 normals alone give every block the same amax.)"""
    kx, kw, kr, kc, kb = jax.random.split(jax.random.PRNGKey(seed), 5)
    nb, kbs = -(-n // 128), -(-k // 128)
    row = jnp.exp(jax.random.normal(kr, (m, 1)))
    col = jnp.repeat(jnp.exp(0.5 * jax.random.normal(kc, (1, kbs))), 128, axis=1)[:, :k]
    blk = jnp.repeat(jnp.repeat(jnp.exp(jax.random.normal(kb, (nb, kbs))), 128, 0), 128, 1)[:n, :k]
    x = (jax.random.normal(kx, (m, k)) * row * col).astype(jnp.bfloat16)
    w = (jax.random.normal(kw, (n, k)) * blk).astype(jnp.bfloat16)
    return x, w


def poison(shape, dtype=jnp.bfloat16):
    """Fill, then free, a NaN buffer of the output's size: XLA's allocator hands the
    same memory to the next output, so elements the kernel does not write stay NaN."""
    jax.block_until_ready(jnp.full(shape, jnp.nan, dtype)).delete()
