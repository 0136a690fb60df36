"""jaxgemm's FP8 transpose kernel (jaxgemm.ops.transpose) on an SM90 GPU: exact
against numpy on partial tiles, batches and 1-byte dtypes, with the output poisoned.
Its use inside the FP8 GEMMs is checked in test_dense_gpu.py."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgemm import _runtime
from jaxgemm.ops.transpose import transpose_bytes

from _gpu_data import poison

pytestmark = pytest.mark.gpu

# [L, R, C]: one 16x16 piece; one whole tile; partial tiles both ways; a batch whose
# tiles straddle nothing; a long thin matrix each way.
SHAPES = [(1, 16, 16), (1, 128, 128), (2, 144, 400), (3, 256, 384), (1, 4112, 272), (1, 48, 8208)]


@pytest.mark.parametrize("dtype", [jnp.float8_e4m3fn, jnp.uint8])
@pytest.mark.parametrize("shape", SHAPES)
def test_transpose_bytes_is_exact(shape, dtype):
    _runtime.ensure_cuda()
    bits = np.random.default_rng(sum(shape)).integers(0, 256, size=shape, dtype=np.uint8)
    if dtype == jnp.float8_e4m3fn:
        bits &= 0xF7  # no NaN (0x7F, 0xFF) in the input: the poison is NaN
    x = jax.lax.bitcast_convert_type(jnp.asarray(bits), dtype)
    l, r, c = shape
    poison((l, c, r), jnp.float8_e4m3fn)
    out = jax.jit(transpose_bytes)(x)
    assert out.shape == (l, c, r) and out.dtype == dtype
    got = np.asarray(jax.lax.bitcast_convert_type(out, jnp.uint8))
    np.testing.assert_array_equal(got, np.swapaxes(bits, 1, 2))


def test_transpose_bytes_rejects_what_it_cannot_move():
    _runtime.ensure_cuda()
    with pytest.raises(ValueError, match="multiples of 16"):
        transpose_bytes(jnp.zeros((1, 16, 40), jnp.float8_e4m3fn))
    with pytest.raises(ValueError, match="1-byte dtype"):
        transpose_bytes(jnp.zeros((1, 16, 16), jnp.bfloat16))
