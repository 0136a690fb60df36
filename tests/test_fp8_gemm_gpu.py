"""fp8_gemm_nt on an SM90 GPU: every element against a float64 reference of the
dequantized inputs, on random data, with the output memory poisoned first."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxgemm
from jaxgemm import reference

from _gpu_data import poison as _poison, random_bf16_operands

pytestmark = pytest.mark.gpu

DEEPSEEK_V3_NK = [(2112, 7168), (24576, 1536), (32768, 512), (7168, 16384), (4096, 7168), (7168, 2048)]
MS = [1, 64, 128, 4096, 4097]


def _operands(m, n, k, seed):
    x, w = random_bf16_operands(m, n, k, seed)
    return jaxgemm.per_token_cast_to_fp8(x), jaxgemm.per_block_cast_to_fp8(w)


def _check_against_float64(out, a, b):
    with jax.enable_x64(True):
        ref = reference.fp8_gemm_nt(a[0], a[1], b[0], b[1], out_dtype=jnp.float64)
        got = jnp.asarray(out).astype(jnp.float64)
        assert not bool(jnp.any(jnp.isnan(got))), "NaN in the output (unwritten or bad elements)"
        diff = float(1 - 2 * jnp.sum(got * ref) / jnp.sum(got * got + ref * ref))
        # Every element: BF16 rounding of the output is the only error left (2^-8
        # relative); the absolute floor, relative to the row's magnitude (rows differ
        # by e^4), covers results that cancel to near zero.
        rms = jnp.sqrt(jnp.mean(ref * ref, axis=-1, keepdims=True))
        bad = jnp.abs(got - ref) > 1e-2 * jnp.abs(ref) + 1e-2 * rms
        n_bad = int(jnp.sum(bad))
    assert diff < 1e-3, f"calc_diff {diff}"
    assert n_bad == 0, f"{n_bad} elements off (first at {np.argwhere(np.asarray(bad))[:3].tolist()})"
    return diff


@pytest.mark.parametrize("n,k", DEEPSEEK_V3_NK)
@pytest.mark.parametrize("m", MS)
def test_fp8_gemm_nt_matches_float64(m, n, k):
    a, b = _operands(m, n, k, seed=m + n + k)
    f = jax.jit(jaxgemm.fp8_gemm_nt)
    _poison((m, n))
    out = f(a, b)
    assert out.shape == (m, n) and out.dtype == jnp.bfloat16
    _check_against_float64(out, a, b)
    # Deterministic, and correct again when the output buffer is reused.
    _poison((m, n))
    again = f(a, b)
    assert np.array_equal(np.asarray(out.view(jnp.uint16)), np.asarray(again.view(jnp.uint16)))


@pytest.mark.parametrize("config", [
    {"block_m": 64, "block_n": 16},
    {"block_m": 128, "block_n": 96},     # tiles straddle two 128-row scale blocks of B
    {"block_m": 128, "block_n": 144},    # _ext WGMMA, 16-column TMA stores
    {"block_m": 128, "block_n": 96, "store_n": 8},  # 16-byte (unswizzled) TMA stores
    {"block_m": 128, "block_n": 192, "num_stages": 3},
    {"block_m": 128, "block_n": 128, "num_sms": 7},  # many tiles per CTA
    {"block_m": 128, "block_n": 176, "cluster_m": 2},  # B multicast; 3 m-blocks: one dummy;
                                                       # tiles crossing three 128-blocks of B
    {"block_m": 64, "block_n": 96, "cluster_m": 2, "num_sms": 6},
    {"block_m": 128, "block_n": 96, "cluster_n": 2},  # A multicast; 13 n-blocks: one dummy;
                                                      # the promotion picks its scale split
    {"block_m": 64, "block_n": 160, "cluster_n": 2, "num_sms": 6},  # a loop copy per split
    {"block_m": 64, "block_n": 112, "k_split": 2},  # K over two warpgroups; 12 K blocks
    {"block_m": 64, "block_n": 160, "k_split": 2, "num_sms": 5},  # many tiles per CTA
    {"block_m": 64, "block_n": 96, "k_split": 2, "cluster_m": 2, "num_sms": 6},
    {"block_m": 128, "block_n": 128, "cluster_k": 4},  # K over 4 CTAs of a cluster: 3 K blocks each
    {"block_m": 128, "block_n": 96, "cluster_k": 2, "num_sms": 6},  # many tiles per cluster
    {"block_m": 128, "block_n": 112, "cluster_k": 2},  # 56-column slices: 16-byte TMA stores
    {"block_m": 64, "block_n": 64, "cluster_k": 2, "k_split": 2, "num_sms": 4},  # and over 2 warpgroups
])
def test_fp8_gemm_nt_pinned_configs(config):
    m, n, k = 333, 1160, 1536  # partial tiles in M and N, K with a partial 128-block
    a, b = _operands(m, n, k, seed=7)
    _poison((m, n))
    out = jax.jit(lambda a, b: jaxgemm.fp8_gemm_nt(a, b, config=config))(a, b)
    _check_against_float64(out, a, b)


@pytest.mark.parametrize("k", [128, 384, 1600])
@pytest.mark.parametrize("config", [{"block_m": 64, "block_n": 32}, {"block_m": 128, "block_n": 96},
                                    {"block_m": 64, "block_n": 48, "k_split": 2, "num_sms": 3},
                                    {"block_m": 128, "block_n": 64, "cluster_k": 4, "num_sms": 8},
                                    {"block_m": 128, "block_n": 112, "cluster_k": 2, "num_sms": 4}])
def test_fp8_gemm_nt_odd_number_of_k_blocks(config, k):
    """1, 3 and 13 K blocks: the tails of the loop that runs two accumulator sets
    (block_n <= 128), where the last block has no partner; with k_split=2 a single K
    block leaves the second warpgroup none, and the tiles of a CTA start on stages of
    either parity; with cluster_k=4 some CTAs of a cluster get no K block (their
    partial sums are zeros)."""
    m, n = 200, 360
    a, b = _operands(m, n, k, seed=k)
    _poison((m, n))
    out = jax.jit(lambda a, b: jaxgemm.fp8_gemm_nt(a, b, config=config))(a, b)
    _check_against_float64(out, a, b)


def test_fp8_gemm_nt_k_not_multiple_of_128():
    a, b = _operands(200, 256, 208, seed=3)
    _check_against_float64(jax.jit(jaxgemm.fp8_gemm_nt)(a, b), a, b)


def test_fp8_gemm_nt_vmap_matches_jit():
    m, n, k = 256, 2112, 7168
    a, b = _operands(3 * m, n, k, seed=11)
    ref = jax.jit(jaxgemm.fp8_gemm_nt)(a, b)
    ab = (a[0].reshape(3, m, k), a[1].reshape(3, m, -1))
    # Batched A, shared B: folds into M (one launch); rows do not depend on the batch.
    out = jax.jit(jax.vmap(jaxgemm.fp8_gemm_nt, in_axes=((0, 0), None)))(ab, b)
    assert np.array_equal(np.asarray(out.reshape(3 * m, n).view(jnp.uint16)), np.asarray(ref.view(jnp.uint16)))
    # Batched A and B: the L dimension of the kernel.
    bb = jax.tree.map(lambda x: jnp.stack([x, x, x]), b)
    out2 = jax.jit(jax.vmap(jaxgemm.fp8_gemm_nt))(ab, bb)
    assert np.array_equal(np.asarray(out2.reshape(3 * m, n).view(jnp.uint16)), np.asarray(ref.view(jnp.uint16)))


def test_quickstart_snippet():
    x = jax.random.normal(jax.random.PRNGKey(0), (4096, 7168), jnp.bfloat16)
    w = jax.random.normal(jax.random.PRNGKey(1), (2112, 7168), jnp.bfloat16)
    a = jaxgemm.per_token_cast_to_fp8(x)
    b = jaxgemm.per_block_cast_to_fp8(w)
    y = jax.jit(jaxgemm.fp8_gemm_nt)(a, b)
    ref = jnp.dot(x.astype(jnp.float32), w.astype(jnp.float32).T, precision="highest")
    assert jaxgemm.calc_diff(y, ref) < 1e-3  # against the BF16 inputs: FP8 quantization error included
