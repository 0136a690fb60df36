"""FP8 operands made K-major by jaxgemm's own transpose kernel.

SM90's FP8 tensor cores read only K-major operands. Where the GEMM kernel does not
transpose an operand stored MN-major in shared memory (config `relayout=0`), the
lowering transposes it first with `transpose_bytes`, a copy through shared memory
(2.3-2.6 TB/s on an H100 for operands of 15 MB and more; XLA's transpose of FP8 runs
at 2.2-2.7 there and slower on mid sizes, and with it the FP8 layouts at M = 4096
measured 2-3% slower: BENCHMARKS.md, session 10). It needs R and C multiples of 16;
other shapes, and operands under MIN_BYTES, keep XLA's transpose.
`JAXGEMM_XLA_TRANSPOSE=1` (read at lowering time) keeps XLA's transpose everywhere,
to compare the two.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp

from jaxgemm import _runtime

__all__ = ["transpose_bytes", "to_k_major"]

_TARGET = "jaxgemm_transpose_bytes"

# Below this, one 128x128 tile per CTA leaves most SMs idle (under 2 CTAs an SM on an
# H100), and XLA's transpose, which spreads the bytes wider, measured 1-16% faster
# in the GEMMs that read A [K, 128] (FP8 tt at M = 128; BENCHMARKS.md, session 10).
MIN_BYTES = 4 << 20


def transpose_bytes(x):
    """`[L, R, C]` -> `[L, C, R]` of a 1-byte dtype, R and C multiples of 16, on an
    SM90 GPU only (no CPU lowering). Its FFI target must be registered
    (`_runtime.ensure_cuda()`), as it is wherever jaxgemm's GEMMs lower."""
    l, r, c = x.shape
    if jnp.dtype(x.dtype).itemsize != 1 or not _runtime.extension().transpose_bytes_supported(r, c):
        raise ValueError(f"transpose_bytes: needs a 1-byte dtype and R, C multiples of 16, got {x.dtype}{x.shape}")
    return jax.ffi.ffi_call(_TARGET, jax.ShapeDtypeStruct((l, c, r), x.dtype))(x)


def to_k_major(x):
    """An operand the GEMM needs K-major, `[L, rows, K]`, that the caller stored
    `[L, K, rows]`: within a lowering, `x` is XLA's view of the stored array as
    `[L, rows, K]`, and swapping back cancels in XLA, leaving only this kernel."""
    l, rows, k = x.shape
    if os.environ.get("JAXGEMM_XLA_TRANSPOSE", "0") not in ("", "0") or \
            not _runtime.extension().transpose_bytes_supported(k, rows) or l * rows * k < MIN_BYTES:
        return x
    return transpose_bytes(jnp.swapaxes(x, 1, 2))
