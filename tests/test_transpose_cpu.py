"""Where the FP8 GEMMs' lowering uses jaxgemm's transpose (jaxgemm.ops.transpose), seen
in the traced program; no GPU needed. The kernel itself: test_transpose_gpu.py."""

import jax
import jax.numpy as jnp
import pytest

from jaxgemm.ops.transpose import to_k_major, transpose_bytes


def _targets(fn, x):
    """The FFI targets `fn(x)` calls, traced afresh (as each lowering does: JAX caches
    the trace of one function object)."""
    jaxpr = jax.make_jaxpr(lambda v: fn(v))(x).jaxpr
    return [e.params.get("target_name") for e in jaxpr.eqns if e.primitive.name == "ffi_call"]


@pytest.mark.parametrize("shape, used", [
    ((1, 2048, 2048), True),            # 4 MiB (MIN_BYTES), rows and K multiples of 16
    ((2, 1024, 2048), True),            # 4 MiB over a batch
    ((1, 2048, 1024), False),           # 2 MiB, under MIN_BYTES: XLA's transpose
    ((1, 2056, 2048), False),           # rows % 16 (TMA reads them, the kernel does not)
])
def test_to_k_major_routes_by_shape(shape, used):
    x = jnp.zeros(shape, jnp.float8_e4m3fn)
    assert _targets(to_k_major, x) == (["jaxgemm_transpose_bytes"] if used else [])
    out = jax.eval_shape(to_k_major, x)
    assert out.shape == shape and out.dtype == x.dtype  # [L, rows, K] either way


def test_to_k_major_keeps_xla_when_asked(monkeypatch):
    monkeypatch.setenv("JAXGEMM_XLA_TRANSPOSE", "1")
    assert _targets(to_k_major, jnp.zeros((1, 2048, 2048), jnp.float8_e4m3fn)) == []


def test_transpose_bytes_shapes_and_errors():
    out = jax.eval_shape(transpose_bytes, jnp.zeros((3, 32, 48), jnp.uint8))
    assert out.shape == (3, 48, 32) and out.dtype == jnp.uint8
    with pytest.raises(ValueError, match="multiples of 16"):
        transpose_bytes(jnp.zeros((1, 16, 40), jnp.float8_e4m3fn))
    with pytest.raises(ValueError, match="1-byte dtype"):
        transpose_bytes(jnp.zeros((1, 16, 16), jnp.bfloat16))
