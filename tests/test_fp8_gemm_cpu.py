"""fp8_gemm_nt and its helpers without a GPU.

Covers, on the CPU (where the op lowers to `jaxgemm.reference`):
  - validation: every trace-time error names its argument (ValueError / TypeError),
    including the 1D2D / 1D1D forms of B's scales, `c`, `out_dtype` and `config=` keys
    and values;
  - abstract evaluation: exact output shapes and dtypes (M = 0, 1, not a multiple of 64;
    bfloat16 and float32 output, with and without c);
  - quantization (per_token / per_block / per_channel_cast_to_fp8) against a float64
    numpy model of DeepSeek-V3's recipe, calc_diff and get_tma_aligned_size;
  - the op under jit against a float64 numpy dequantize-and-matmul: 1D2D and 1D1D
    scales, with and without c (bfloat16 or float32), bfloat16 or float32 output;
  - vmap: batched calls are one `jaxgemm_gemm` equation, bitwise equal per example.
The other layouts (nn, tn, tt), the BF16 GEMMs and fp8_linear are in test_dense_cpu.py;
the C++ JIT core and the kernel instances (nvcc, SASS) in test_kernel_compile.py;
multi-device sharding in test_fp8_gemm_sharding.py.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from _jaxpr_walk import count_prims as _count_prims, prim_names as _prim_names

import jaxgemm
from jaxgemm import _runtime, reference

FP8 = jnp.float8_e4m3fn
SDS = jax.ShapeDtypeStruct


@pytest.fixture(autouse=True)
def _on_cpu():
    """Pin every computation here to the CPU (on a GPU machine the default device is
    the GPU, whose lowering is the kernel, tested in test_fp8_gemm_gpu.py)."""
    with jax.default_device(jax.devices("cpu")[0]):
        yield


# ----------------------------------------------------------------------------- helpers

def _rng(seed):
    return np.random.default_rng(seed)


def _operands(m, n, k, seed=0, spread=True, per_row=False):
    """Random FP8 operands; rows scaled over a few orders of magnitude so that the scales
    matter (a bug that mixes up scale rows or blocks changes the answer). B has 128x128
    block scales (1D2D), or with `per_row` 1x128 scales like A (1D1D)."""
    r = _rng(seed)
    x = r.standard_normal((m, k)).astype(np.float32)
    w = r.standard_normal((n, k)).astype(np.float32)
    if spread:
        x *= np.exp(r.uniform(-3, 3, (m, 1))).astype(np.float32)
        w *= np.exp(r.uniform(-2, 2, (n, 1))).astype(np.float32)
    cast_b = jaxgemm.per_token_cast_to_fp8 if per_row else jaxgemm.per_block_cast_to_fp8
    return jaxgemm.per_token_cast_to_fp8(jnp.asarray(x)), cast_b(jnp.asarray(w))


def _addend(m, n, dtype, seed):
    """A random c [M, N] of `dtype`, rows spread like the products they are added to."""
    r = _rng(seed)
    c = r.standard_normal((m, n)) * np.exp(r.uniform(-2, 2, (m, 1)))
    return jnp.asarray(c.astype(np.float32)).astype(dtype)


def _abstract(m, n, k, kb=None):
    kb = -(-k // 128) if kb is None else kb
    return ((SDS((m, k), FP8), SDS((m, kb), jnp.float32)),
            (SDS((n, k), FP8), SDS((-(-n // 128), kb), jnp.float32)))


def _expand(sf, rows, cols, row_block):
    """Scales [R, C] -> per element [rows, cols] (each scale covers row_block x 128)."""
    sf = np.asarray(sf, np.float64)
    return np.repeat(np.repeat(sf, row_block, axis=0), 128, axis=1)[:rows, :cols]


def _np_dequant_a(pair):
    data, sf = (np.asarray(v) for v in pair)
    return data.astype(np.float64) * _expand(sf, data.shape[0], data.shape[1], 1)


def _np_dequant_b(pair):
    """B [N, K] with 128x128 block scales [ceil(N/128), ceil(K/128)] or 1x128 per-row
    scales [N, ceil(K/128)]."""
    data, sf = (np.asarray(v) for v in pair)
    row_block = 1 if sf.shape[0] == data.shape[0] else 128
    return data.astype(np.float64) * _expand(sf, data.shape[0], data.shape[1], row_block)


def _np_gemm(a, b, c=None):
    d = _np_dequant_a(a) @ _np_dequant_b(b).T
    if c is not None:
        d = d + np.asarray(c, np.float64)
    return d


def _np_absdot(a, b, c=None):
    """sum_k |A[m, k] B[n, k]| (+ |C|): the scale of float32 accumulation error."""
    d = np.abs(_np_dequant_a(a)) @ np.abs(_np_dequant_b(b)).T
    return d if c is None else d + np.abs(np.asarray(c, np.float64))


def _bits(x):
    return np.asarray(x).view(np.uint16)




def _check_numerics(out, want, absdot=None, k=None):
    """Against the float64 answer `want`:
      bfloat16 output: calc_diff below 1e-5 (BF16 output rounding is the only error
        left, ~1e-6), and every element within BF16 rounding;
      float32 output: every element within the float32 accumulation bound
        (K + 4) * 2^-24 * (sum_k |a b| + |c|) (`absdot`, `k` needed), any order of sums."""
    got = np.asarray(out).astype(np.float64)
    assert got.shape == want.shape
    assert np.all(np.isfinite(got)), "non-finite output"
    diff = jaxgemm.calc_diff(got, want)
    if np.asarray(out).dtype == np.float32:
        assert absdot is not None and k is not None
        assert diff < 1e-10, f"calc_diff {diff}"
        bad = np.abs(got - want) > (k + 4) * 2.0**-24 * absdot
    else:
        assert diff < 1e-5, f"calc_diff {diff}"
        rms = np.sqrt(np.mean(want * want))
        bad = np.abs(got - want) > 2.0**-8 * np.abs(want) + 1e-4 * rms
    assert not bad.any(), f"{bad.sum()} elements off, first at {np.argwhere(bad)[:3].tolist()}"


# ----------------------------------------------------------------------------- validation

def _trace(a, b, c=None, out_dtype=jnp.bfloat16, config=None):
    return jax.eval_shape(lambda a, b, c: jaxgemm.fp8_gemm_nt(a, b, c, out_dtype, config=config), a, b, c)


class TestValidation:
    M, N, K = 64, 256, 256

    @pytest.fixture
    def ab(self):
        return _abstract(self.M, self.N, self.K)

    def test_valid_operands_trace(self, ab):
        a, b = ab
        assert _trace(a, b).shape == (self.M, self.N)

    @pytest.mark.parametrize("bad, match", [
        ("array", r"\ba must be a pair"),
        ("triple", r"\ba must be a pair"),
        ("single", r"\ba must be a pair"),
        ("dict", r"\ba must be a pair"),
        ("none", r"\ba must be a pair"),
    ])
    def test_a_not_a_pair(self, ab, bad, match):
        (a0, a1), b = ab
        a = {"array": a0, "triple": (a0, a1, a1), "single": (a0,), "dict": {"data": a0, "scales": a1},
             "none": None}[bad]
        with pytest.raises(TypeError, match=match):
            _trace(a, b)

    def test_b_not_a_pair(self, ab):
        a, (b0, b1) = ab
        with pytest.raises(TypeError, match=r"\bb must be a pair.*per_block_cast_to_fp8"):
            _trace(a, b0)
        with pytest.raises(TypeError, match=r"\bb must be a pair"):
            _trace(a, [b0, b1, b1])

    def test_list_pair_is_accepted(self, ab):
        (a0, a1), (b0, b1) = ab
        assert _trace([a0, a1], [b0, b1]).shape == (self.M, self.N)

    @pytest.mark.parametrize("part, dtype, message", [
        *[(0, d, r"\[0\] \(data\) must be float8_e4m3fn, got ")
          for d in (jnp.float32, jnp.bfloat16, jnp.float8_e5m2, jnp.int8, jnp.uint8)],
        *[(1, d, r"\[1\] \(scales\) must be float32")
          for d in (jnp.float16, jnp.bfloat16, jnp.int32, jnp.uint32, FP8)],
    ])
    @pytest.mark.parametrize("which", ["a", "b"])
    def test_pair_dtype(self, ab, which, part, dtype, message):
        """A wrong dtype of either half of either pair names that half."""
        pairs = {"a": list(ab[0]), "b": list(ab[1])}
        pairs[which][part] = SDS(pairs[which][part].shape, dtype)
        with pytest.raises(TypeError, match=which + message):
            _trace(tuple(pairs["a"]), tuple(pairs["b"]))

    @pytest.mark.parametrize("shape", [(256,), (1, 64, 256), (2, 1, 64, 256), ()])
    @pytest.mark.parametrize("which", ["a", "b"])
    def test_data_rank(self, ab, which, shape):
        (a0, a1), (b0, b1) = ab
        if which == "a":
            a0 = SDS(shape, FP8)
        else:
            b0 = SDS(shape, FP8)
        with pytest.raises(ValueError, match=rf"{which}\[0\] \(data\) must be rank 2"):
            _trace((a0, a1), (b0, b1))

    @pytest.mark.parametrize("shape", [(64, 1), (64, 3), (63, 2), (2, 64), (64,), (1, 64, 2), (64, 256)])
    def test_a_scales_shape(self, ab, shape):
        (a0, _), b = ab
        with pytest.raises(ValueError, match=rf"a's scales must have shape \(64, 2\) \(one per row of M "
                                             rf"per 128 of K.*got \({shape[0]}"):
            _trace((a0, SDS(shape, jnp.float32)), b)

    @pytest.mark.parametrize("shape", [(1, 2), (2, 1), (255, 2), (128, 2), (256, 1), (2, 256), (256, 256),
                                       (2,), (1, 2, 2), (1, 256, 2)])
    def test_b_scales_shape(self, ab, shape):
        """Neither 128x128 block scales nor 1x128 per-row scales: both shapes are named."""
        a, (b0, _) = ab
        with pytest.raises(ValueError, match=r"b's scales must have shape \(2, 2\) \(one per 128x128 block\) "
                                             r"or \(256, 2\) \(one per row of N per 128 of K\)"):
            _trace(a, (b0, SDS(shape, jnp.float32)))

    @pytest.mark.parametrize("out_dtype", [jnp.bfloat16, jnp.float32])
    def test_b_scales_per_row_is_the_1d1d_recipe(self, out_dtype):
        """B's scales [N, ceil(K/128)] (1x128 groups, the weight-gradient recipe) are
        accepted and bind the 1D1D kernel kind (numerics: TestReferenceNumerics)."""
        a, (b0, _) = _abstract(64, 256, 256)
        b = (b0, SDS((256, 2), jnp.float32))
        out = _trace(a, b, out_dtype=out_dtype)
        assert out.shape == (64, 256) and out.dtype == out_dtype
        jaxpr = jax.make_jaxpr(lambda a, b: jaxgemm.fp8_gemm_nt(a, b, out_dtype=out_dtype))(a, b)
        (spec,) = [e.params["spec"] for e in jaxpr.jaxpr.eqns if e.primitive.name == "jaxgemm_gemm"]
        assert spec.sfb_per_row and spec.op == "fp8"
        jaxpr = jax.make_jaxpr(jaxgemm.fp8_gemm_nt)(*_abstract(64, 256, 256))
        (spec,) = [e.params["spec"] for e in jaxpr.jaxpr.eqns if e.primitive.name == "jaxgemm_gemm"]
        assert not spec.sfb_per_row

    def test_k_mismatch(self):
        (a, _), (b, _) = _abstract(64, 256, 384), _abstract(64, 256, 256)
        with pytest.raises(ValueError, match=r"K differs"):
            _trace(a, b)

    def test_k_mismatch_within_one_scale_block(self):
        """K 256 vs 240: same scale shapes, different K."""
        (a, _), (_, b) = _abstract(64, 256, 256), _abstract(64, 256, 240)
        with pytest.raises(ValueError, match=r"K differs"):
            _trace(a, b)

    @pytest.mark.parametrize("k", [8, 100, 200, 1000, 129])
    def test_k_alignment(self, k):
        a, b = _abstract(64, 256, k)
        with pytest.raises(ValueError, match=rf"K must be a multiple of 16.*got K={k}"):
            _trace(a, b)

    @pytest.mark.parametrize("n", [4, 100, 130, 1001])
    def test_n_alignment(self, n):
        a, b = _abstract(64, n, 256)
        with pytest.raises(ValueError, match=rf"N must be a multiple of 8.*got N={n}"):
            _trace(a, b)

    @pytest.mark.parametrize("k", [16, 48, 144, 208])
    def test_aligned_but_partial_k_is_accepted(self, k):
        a, b = _abstract(64, 256, k)
        assert _trace(a, b).shape == (64, 256)

    @pytest.mark.parametrize("n", [8, 136, 392])
    def test_aligned_but_partial_n_is_accepted(self, n):
        a, b = _abstract(64, n, 256)
        assert _trace(a, b).shape == (64, n)

    @pytest.mark.parametrize("shape", [(64, 255), (63, 256), (256, 64), (64,), (1, 64, 256), (256,), ()])
    def test_c_shape(self, ab, shape):
        a, b = ab
        with pytest.raises(ValueError, match=r"c must have shape \[M, N\] = \(64, 256\)"):
            _trace(a, b, SDS(shape, jnp.float32))

    @pytest.mark.parametrize("dtype", [jnp.int32, jnp.int8, jnp.bool_, jnp.uint16, jnp.float16, FP8])
    def test_c_dtype(self, ab, dtype):
        a, b = ab
        with pytest.raises(TypeError, match=r"c must be bfloat16 or float32, got "):
            _trace(a, b, SDS((64, 256), dtype))

    @pytest.mark.parametrize("c_dtype", [jnp.float32, jnp.bfloat16])
    @pytest.mark.parametrize("out_dtype", [jnp.float32, jnp.bfloat16])
    def test_c_accepted(self, ab, c_dtype, out_dtype):
        """c of either dtype goes into the one primitive (added to the FP32 accumulators,
        not after the kernel); D has out_dtype, whatever c's dtype (numerics below)."""
        a, b = ab
        c = SDS((64, 256), c_dtype)
        out = _trace(a, b, c, out_dtype=out_dtype)
        assert out.shape == (64, 256) and out.dtype == out_dtype
        jaxpr = jax.make_jaxpr(lambda a, b, c: jaxgemm.fp8_gemm_nt(a, b, c, out_dtype))(a, b, c)
        eqns = [e for e in jaxpr.jaxpr.eqns if e.primitive.name == "jaxgemm_gemm"]
        assert len(eqns) == 1 and not _prim_names(jaxpr.jaxpr) & {"add", "add_any"}, jaxpr
        spec = eqns[0].params["spec"]
        assert spec.has_c and jnp.dtype(spec.c_dtype) == c_dtype and jnp.dtype(spec.out_dtype) == out_dtype
        assert len(eqns[0].invars) == 5

    @pytest.mark.parametrize("out_dtype", [jnp.float16, jnp.float8_e4m3fn, jnp.int32, jnp.float64,
                                           "float16", jnp.uint16])
    def test_out_dtype_rejected(self, ab, out_dtype):
        a, b = ab
        with pytest.raises(TypeError, match=r"out_dtype must be bfloat16 or float32, got "):
            _trace(a, b, out_dtype=out_dtype)

    @pytest.mark.parametrize("out_dtype", [jnp.bfloat16, "bfloat16", np.dtype(jnp.bfloat16)])
    def test_out_dtype_bf16_spellings(self, ab, out_dtype):
        a, b = ab
        assert _trace(a, b, out_dtype=out_dtype).dtype == jnp.bfloat16

    @pytest.mark.parametrize("out_dtype", [jnp.float32, "float32", np.float32, np.dtype("float32")])
    def test_out_dtype_f32_spellings(self, ab, out_dtype):
        a, b = ab
        out = _trace(a, b, out_dtype=out_dtype)
        assert out.dtype == jnp.float32 and out.shape == (64, 256)

    @pytest.mark.parametrize("config", [[("block_m", 64)], "block_m=64", 64, {("block_m", 64)}])
    def test_config_not_a_dict(self, ab, config):
        a, b = ab
        with pytest.raises(TypeError, match=r"config must be a dict"):
            _trace(a, b, config=config)

    @pytest.mark.parametrize("config", [(("block_m", 96),), (("blockm", 64),), ("block_m=64",),
                                        (("block_n", 24), ("num_sms", 0))])
    def test_config_tuple_is_checked(self, ab, config):
        """A tuple config (the hashable form) must be checked like a dict, or refused: a
        bad one must not pass trace time."""
        a, b = ab
        with pytest.raises((TypeError, ValueError), match=r"config"):
            _trace(a, b, config=config)

    @pytest.mark.parametrize("config", [{"blockm": 64}, {"block_k": 128}, {"BLOCK_M": 64},
                                        {"block_m": 64, "stages": 4}])
    def test_config_unknown_key(self, ab, config):
        a, b = ab
        with pytest.raises(ValueError, match=r"unknown config keys"):
            _trace(a, b, config=config)

    @pytest.mark.parametrize("block_m", [0, 32, 96, 192, 256, -64])
    def test_config_block_m(self, ab, block_m):
        a, b = ab
        with pytest.raises(ValueError, match=rf"config block_m must be 64 or 128, got {block_m}"):
            _trace(a, b, config={"block_m": block_m})

    @pytest.mark.parametrize("block_n", [0, 8, 24, 100, 272, 512, -16])
    def test_config_block_n(self, ab, block_n):
        a, b = ab
        with pytest.raises(ValueError, match=rf"config block_n must be a multiple of 16 in \[16, 256\], got {block_n}"):
            _trace(a, b, config={"block_n": block_n})

    @pytest.mark.parametrize("key", ["cluster_m", "cluster_n", "k_split"])
    @pytest.mark.parametrize("cluster", [0, 3, 4, -1])
    def test_config_cluster(self, ab, key, cluster):
        a, b = ab
        with pytest.raises(ValueError, match=rf"config {key} must be 1 or 2, got {cluster}"):
            _trace(a, b, config={key: cluster})

    @pytest.mark.parametrize("cluster_k", [0, 3, 16, -1])
    def test_config_cluster_k(self, ab, cluster_k):
        a, b = ab
        with pytest.raises(ValueError, match=rf"config cluster_k must be 1, 2, 4 or 8, got {cluster_k}"):
            _trace(a, b, config={"cluster_k": cluster_k})

    @pytest.mark.parametrize("config", [{}, {"block_m": 64}, {"block_m": 128, "block_n": 96}, {"cluster_m": 2},
                                        {"cluster_n": 2}, {"block_m": 64, "cluster_n": 2},
                                        {"block_m": 64, "block_n": 112, "k_split": 2},
                                        {"block_m": 128, "block_n": 64, "cluster_k": 4},
                                        {"block_m": 64, "block_n": 64, "k_split": 2, "cluster_k": 2},
                                        {"block_n": 16, "num_stages": 4, "store_n": 16, "group_n": 4,
                                         "num_sms": 7}])
    def test_config_valid(self, ab, config):
        a, b = ab
        assert _trace(a, b, config=config).shape == (64, 256)

    @pytest.mark.parametrize("config", [{"num_sms": 0}, {"num_sms": -3}, {"num_stages": 0},
                                        {"num_stages": -1}, {"group_n": 0}, {"store_n": 0},
                                        {"store_n": 48}, {"store_n": 128}])
    def test_config_bad_values_rejected_at_trace_time(self, ab, config):
        a, b = ab
        key = next(iter(config))
        with pytest.raises(ValueError, match=rf"config {key}"):
            _trace(a, b, config=config)

    def test_config_none_value(self, ab):
        """A None value is a user error: it should be reported as such, naming config."""
        a, b = ab
        with pytest.raises((TypeError, ValueError), match=r"config"):
            _trace(a, b, config={"block_n": None})

    def test_errors_raised_under_jit_and_vmap(self):
        (a0, a1), b = _operands(64, 256, 256)
        with pytest.raises(ValueError, match=r"a's scales"):
            jax.jit(jaxgemm.fp8_gemm_nt)((a0, a1[:, :1]), b)
        with pytest.raises(ValueError, match=r"K differs"):
            jax.vmap(jaxgemm.fp8_gemm_nt, in_axes=((0, 0), None))(
                (jnp.stack([a0, a0])[:, :, :128], jnp.stack([a1, a1])[:, :, :1]), b)

    def test_eager_validation(self):
        (a0, a1), b = _operands(64, 256, 256)
        with pytest.raises(TypeError, match=r"a\[0\] \(data\) must be float8_e4m3fn"):
            jaxgemm.fp8_gemm_nt((a0.astype(jnp.float32), a1), b)


class TestFp8GemmConfig:
    """jaxgemm.fp8_gemm_config: the lowering-time config (callable with num_sms given)."""

    def test_keys_and_invariants(self):
        cfg = jaxgemm.fp8_gemm_config(4096, 7168, 2048, num_sms=132)
        assert set(cfg) >= {"block_m", "block_n", "num_stages", "store_n", "group_n", "num_sms", "smem_bytes"}
        assert cfg["block_m"] in (64, 128)
        assert cfg["block_n"] % cfg["store_n"] == 0
        assert 1 <= cfg["num_sms"] <= 132
        assert cfg["smem_bytes"] <= 232448
        # The kernel kind travels with the config (the FFI handler reads it).
        assert {k: cfg[k] for k in ("sfb_per_row", "a_mn_major", "b_mn_major", "out_bytes", "c_bytes")} == \
            {"sfb_per_row": 0, "a_mn_major": 0, "b_mn_major": 0, "out_bytes": 2, "c_bytes": 0}

    @pytest.mark.parametrize("sfb_per_row", [False, True])
    @pytest.mark.parametrize("out_dtype, c_dtype", [(jnp.bfloat16, None), (jnp.float32, None),
                                                    (jnp.float32, jnp.float32), (jnp.bfloat16, jnp.bfloat16)])
    def test_kind_keys(self, sfb_per_row, out_dtype, c_dtype):
        ext = _runtime.extension()
        cfg = jaxgemm.fp8_gemm_config(4096, 7168, 2048, num_sms=132, sfb_per_row=sfb_per_row,
                                      out_dtype=out_dtype, c_dtype=c_dtype)
        out_bytes = jnp.dtype(out_dtype).itemsize
        c_bytes = 0 if c_dtype is None else jnp.dtype(c_dtype).itemsize
        assert (cfg["sfb_per_row"], cfg["out_bytes"], cfg["c_bytes"]) == (int(sfb_per_row), out_bytes, c_bytes)
        assert cfg["a_mn_major"] == cfg["b_mn_major"] == 0
        assert cfg["store_n"] * out_bytes <= 128  # one TMA store of at most 128 bytes
        assert cfg["smem_bytes"] == ext.fp8_gemm_smem_bytes(cfg["block_m"], cfg["block_n"], cfg["num_stages"],
                                                            sfb_per_row, out_bytes) <= 232448
        assert cfg == dict(ext.fp8_gemm_config(4096, 7168, 2048, 1, 132, sfb_per_row, out_bytes, c_bytes),
                           relayout=0)

    def test_two_warpgroup_narrow_tiles_at_64_lt_m_le_128(self):
        """NT at 64 < M <= 128: 128x64 tiles (two math warpgroups) where their grid fills
        3/4 of the SMs in its last wave and K has 8 blocks or more; the model's tiles
        elsewhere."""
        for m, n, k in [(128, 7168, 2048), (128, 7168, 16384), (128, 24576, 1536), (96, 16384, 1024)]:
            cfg = jaxgemm.fp8_gemm_config(m, n, k, num_sms=132)
            assert (cfg["block_m"], cfg["block_n"], cfg["k_split"], cfg["cluster_k"]) == (128, 64, 1, 1), (m, n, k)
            assert cfg["a_mn_major"] == cfg["b_mn_major"] == cfg["swap_ab"] == 0
            assert cfg["num_sms"] == min(132, -(-n // 64)) and cfg["smem_bytes"] <= 232448
        for m, n, k in [(128, 32768, 512), (128, 4096, 7168), (128, 2112, 7168), (64, 7168, 2048),
                        (4096, 7168, 2048), (128, 64 * 222, 2048)]:  # 222 tiles: 90 of 132 SMs in the last wave
            cfg = jaxgemm.fp8_gemm_config(m, n, k, num_sms=132)
            assert (cfg["block_m"], cfg["block_n"]) != (128, 64), (m, n, k)

    def test_f32_output_narrows_the_store(self):
        cfg = jaxgemm.fp8_gemm_config(256, 256, 256, num_sms=132, out_dtype=jnp.float32, config={"block_n": 128})
        assert cfg["store_n"] == 32 and cfg["out_bytes"] == 4
        with pytest.raises(ValueError, match=r"store_n=64 is wider than 128 bytes of float32 output"):
            jaxgemm.fp8_gemm_config(256, 256, 256, num_sms=132, out_dtype=jnp.float32,
                                    config={"block_n": 128, "store_n": 64})

    def test_overrides_fill_the_rest(self):
        ext = _runtime.extension()
        cfg = jaxgemm.fp8_gemm_config(333, 1160, 1536, num_sms=132, config={"block_m": 128, "block_n": 96})
        assert (cfg["block_m"], cfg["block_n"]) == (128, 96)
        assert cfg["store_n"] == 32
        assert cfg["smem_bytes"] == ext.fp8_gemm_smem_bytes(128, 96, cfg["num_stages"]) <= 232448
        assert ext.fp8_gemm_smem_bytes(128, 96, cfg["num_stages"] + 1) > 232448 or cfg["num_stages"] == 8
        assert cfg["num_sms"] == min(132, 3 * 13)  # tiles: ceil(333/128) * ceil(1160/96)

    def test_overrides_hashable_tuple_roundtrip(self):
        cfg = jaxgemm.fp8_gemm_config(256, 256, 256, num_sms=132,
                                      config=(("block_m", 64), ("block_n", 64), ("num_sms", 3)))
        assert (cfg["block_m"], cfg["block_n"], cfg["num_sms"]) == (64, 64, 3)

    @pytest.mark.parametrize("config, match", [
        ({"block_m": 128, "block_n": 256, "num_stages": 8}, r"shared memory"),
        ({"num_stages": 100}, r"num_stages"),
        ({"block_n": 96, "store_n": 64}, r"store_n=64 must divide block_n"),
        ({"block_n": 112, "store_n": 32}, r"store_n=32 must divide block_n"),
        ({"cluster_m": 2, "num_sms": 7}, r"cluster_m=2"),
        ({"cluster_n": 2, "num_sms": 7}, r"cluster_n=2 .*num_sms must be a multiple of 2"),
        ({"cluster_m": 2, "cluster_n": 2}, r"along M .* or along N .*, not both"),
        ({"block_m": 128, "k_split": 2}, r"k_split=2 .* needs the FP8 kernel and block_m=64"),
        ({"block_n": 80, "cluster_k": 4}, r"cluster_k=4 .* block_n a multiple of 32"),
        ({"block_m": 128, "pingpong": 1}, r"pingpong=1 .* needs the BF16 kernel"),
        ({"cluster_k": 2, "cluster_n": 2}, r"cluster_k=2 .* no multicast"),
        ({"block_n": 64, "cluster_k": 2, "num_sms": 7}, r"cluster_k=2, num_sms must be a multiple of 2"),
        ({"block_n": 64, "cluster_k": 2, "store_n": 64}, r"store_n=64 must divide block_n / cluster_k = 32"),
    ])
    def test_rejects_impossible_configs(self, config, match):
        with pytest.raises(ValueError, match=match):
            jaxgemm.fp8_gemm_config(256, 256, 256, num_sms=132, config=config)

    def test_num_stages_zero_rejected(self):
        with pytest.raises(ValueError, match=r"num_stages"):
            jaxgemm.fp8_gemm_config(256, 256, 256, num_sms=132, config={"num_stages": 0})

    @pytest.mark.parametrize("config, match", [
        ({"num_sms": 0}, "num_sms"), ({"num_sms": -3}, "num_sms"), ({"group_n": 0}, "group_n"),
        ({"store_n": 0}, "store_n"), ({"block_n": 96, "store_n": 48}, "store_n"),
        ({"block_n": 24}, "block_n"),
    ])
    def test_rejects_bad_values(self, config, match):
        with pytest.raises(ValueError, match=match):
            jaxgemm.fp8_gemm_config(256, 256, 256, num_sms=132, config=config)

    def test_heuristic_rejects_bad_sizes(self):
        ext = _runtime.extension()
        with pytest.raises(ValueError, match=r"positive"):
            ext.fp8_gemm_config(0, 256, 256, 1, 132)
        with pytest.raises(ValueError, match=r"positive"):
            ext.fp8_gemm_config(64, 256, 256, 1, 0)


# ----------------------------------------------------------------------------- abstract eval

class TestAbstractEval:
    @pytest.mark.parametrize("m, n, k", [
        (1, 256, 128), (2, 128, 256), (63, 256, 256), (64, 512, 512), (65, 136, 208),
        (100, 1000, 1040), (4097, 2112, 7168), (0, 256, 128), (0, 8, 16),
    ])
    def test_shape_dtype(self, m, n, k):
        a, b = _abstract(m, n, k)
        out = jax.eval_shape(jaxgemm.fp8_gemm_nt, a, b)
        assert out.shape == (m, n)
        assert out.dtype == jnp.bfloat16

    def test_jaxpr_binds_the_primitive_once(self):
        a, b = _abstract(100, 256, 384)
        jaxpr = jax.make_jaxpr(jaxgemm.fp8_gemm_nt)(a, b)
        assert _count_prims(jaxpr.jaxpr, "jaxgemm_gemm") == 1
        (out,) = jaxpr.out_avals
        assert out.shape == (100, 256) and out.dtype == jnp.bfloat16 and not out.weak_type

    @pytest.mark.parametrize("c_dtype", [None, jnp.bfloat16, jnp.float32])
    @pytest.mark.parametrize("out_dtype", [jnp.bfloat16, jnp.float32])
    def test_out_dtype_and_c(self, out_dtype, c_dtype):
        a, b = _abstract(65, 136, 208)
        c = None if c_dtype is None else SDS((65, 136), c_dtype)
        jaxpr = jax.make_jaxpr(lambda a, b, c: jaxgemm.fp8_gemm_nt(a, b, c, out_dtype))(a, b, c)
        assert _count_prims(jaxpr.jaxpr, "jaxgemm_gemm") == 1
        (out,) = jaxpr.out_avals
        assert out.shape == (65, 136) and out.dtype == out_dtype and not out.weak_type

    def test_zero_size_m_runs(self):
        (a0, a1), b = _operands(4, 256, 256)
        a = (a0[:0], a1[:0])
        out = jax.jit(jaxgemm.fp8_gemm_nt)(a, b)
        assert out.shape == (0, 256) and out.dtype == jnp.bfloat16

    def test_zero_size_n_runs(self):
        a, (b0, b1) = _operands(8, 128, 256)
        out = jax.jit(jaxgemm.fp8_gemm_nt)(a, (b0[:0], b1[:0]))
        assert out.shape == (8, 0) and out.dtype == jnp.bfloat16

    @pytest.mark.parametrize("c_dtype", [jnp.bfloat16, jnp.float32])
    @pytest.mark.parametrize("out_dtype", [jnp.bfloat16, jnp.float32])
    def test_zero_size_m_with_c(self, out_dtype, c_dtype):
        (a0, a1), b = _operands(4, 256, 256)
        c = jnp.zeros((0, 256), c_dtype)
        out = jax.jit(jaxgemm.fp8_gemm_nt, static_argnums=3)((a0[:0], a1[:0]), b, c, out_dtype)
        assert out.shape == (0, 256) and out.dtype == out_dtype


# ----------------------------------------------------------------------------- quantization

def _np_group_scales(x, rows, cols=128):
    """float64 numpy model of the recipe: sf = max(amax, 1e-4) / 448 over each rows x cols
    group, K (and N for blocks) zero-padded to whole groups."""
    x = np.asarray(x, np.float64)
    m, k = x.shape
    mp, kp = -(-m // rows) * rows, -(-k // cols) * cols
    xp = np.zeros((mp, kp))
    xp[:m, :k] = x
    amax = np.abs(xp.reshape(mp // rows, rows, kp // cols, cols)).max(axis=(1, 3))
    return np.maximum(amax, 1e-4) / 448.0


def _random_input(shape, seed, dtype=np.float32):
    r = _rng(seed)
    x = r.standard_normal(shape) * np.exp(r.uniform(-4, 4, (shape[0], 1)))
    return jnp.asarray(x.astype(np.float32)).astype(dtype)


def _check_quantized(x, q, sf, row_block):
    x = np.asarray(jnp.asarray(x).astype(jnp.float32), np.float64)
    qf = np.asarray(q).astype(np.float64)
    assert np.all(np.isfinite(qf)) and np.abs(qf).max() <= 448.0
    s = _expand(sf, x.shape[0], x.shape[1], row_block)
    deq = qf * s
    # e4m3: 3 mantissa bits, so round-to-nearest is within 2^-4 relative for normal
    # values; below 2^-6 (subnormal) the step is 2^-9, i.e. within 2^-10 * sf absolute.
    err = np.abs(deq - x)
    bound = 2.0**-4 * np.abs(x) * (1 + 1e-6) + 2.0**-10 * s
    assert np.all(err <= bound), f"worst excess {np.max(err - bound)} at {np.unravel_index(np.argmax(err - bound), err.shape)}"
    return deq


class TestQuantization:
    @pytest.mark.parametrize("m, k", [(1, 128), (7, 200), (64, 256), (33, 1000), (5, 16), (130, 384)])
    @pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
    def test_per_token(self, m, k, dtype):
        x = _random_input((m, k), seed=m * 1000 + k, dtype=dtype)
        q, sf = jaxgemm.per_token_cast_to_fp8(x)
        assert q.shape == (m, k) and q.dtype == FP8  # K padded only inside the groups
        assert sf.shape == (m, -(-k // 128)) and sf.dtype == jnp.float32
        want = _np_group_scales(jnp.asarray(x).astype(jnp.float32), rows=1)
        np.testing.assert_allclose(np.asarray(sf, np.float64), want, rtol=2e-7, atol=0)
        _check_quantized(x, q, sf, row_block=1)
        # Each group's largest element lands on +-448 exactly.
        qa = np.abs(np.asarray(q).astype(np.float64))
        kp = -(-k // 128) * 128
        qa = np.pad(qa, ((0, 0), (0, kp - k))).reshape(m, -1, 128).max(-1)
        assert np.all(qa == 448.0)

    @pytest.mark.parametrize("n, k", [(128, 128), (136, 200), (300, 520), (8, 16), (256, 1024), (1, 128)])
    @pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
    def test_per_block(self, n, k, dtype):
        x = _random_input((n, k), seed=n * 1000 + k + 1, dtype=dtype)
        q, sf = jaxgemm.per_block_cast_to_fp8(x)
        assert q.shape == (n, k) and q.dtype == FP8
        assert sf.shape == (-(-n // 128), -(-k // 128)) and sf.dtype == jnp.float32
        want = _np_group_scales(jnp.asarray(x).astype(jnp.float32), rows=128)
        np.testing.assert_allclose(np.asarray(sf, np.float64), want, rtol=2e-7, atol=0)
        _check_quantized(x, q, sf, row_block=128)

    def test_amax_floor(self):
        """All-zero groups get sf = 1e-4 / 448 and zero data, not NaN."""
        x = np.array(_random_input((4, 256), seed=3))
        x[1] = 0.0
        x[2, 128:] = 0.0
        q, sf = jaxgemm.per_token_cast_to_fp8(jnp.asarray(x))
        sf = np.asarray(sf, np.float64)
        np.testing.assert_allclose(sf[1], [1e-4 / 448] * 2, rtol=1e-6)
        np.testing.assert_allclose(sf[2, 1], 1e-4 / 448, rtol=1e-6)
        assert np.all(np.asarray(q).astype(np.float32)[1] == 0)
        w = np.zeros((130, 256), np.float32)
        w[:128, :128] = x[0, :128]
        qb, sfb = jaxgemm.per_block_cast_to_fp8(jnp.asarray(w))
        sfb = np.asarray(sfb, np.float64)
        np.testing.assert_allclose(sfb[0, 1], 1e-4 / 448, rtol=1e-6)
        np.testing.assert_allclose(sfb[1], [1e-4 / 448] * 2, rtol=1e-6)
        assert np.all(np.isfinite(np.asarray(qb).astype(np.float32)))

    def test_tiny_values_use_the_floor(self):
        x = jnp.full((2, 128), 1e-6, jnp.float32)
        q, sf = jaxgemm.per_token_cast_to_fp8(x)
        np.testing.assert_allclose(np.asarray(sf), 1e-4 / 448, rtol=1e-6)
        np.testing.assert_allclose(np.asarray(q).astype(np.float32) * np.asarray(sf)[:, :1], 1e-6, rtol=2**-3)

    def test_jit_matches_eager(self):
        x = _random_input((33, 300), seed=9)
        for fn in (jaxgemm.per_token_cast_to_fp8, jaxgemm.per_block_cast_to_fp8):
            q1, s1 = fn(x)
            q2, s2 = jax.jit(fn)(x)
            assert np.array_equal(np.asarray(q1).view(np.uint8), np.asarray(q2).view(np.uint8))
            assert np.array_equal(np.asarray(s1), np.asarray(s2))

    def test_matches_reference_dequant(self):
        x = _random_input((40, 200), seed=11)
        q, sf = jaxgemm.per_token_cast_to_fp8(x)
        np.testing.assert_array_equal(np.asarray(reference.dequant_per_token(q, sf)),
                                      (np.asarray(q).astype(np.float64) * _expand(sf, 40, 200, 1)).astype(np.float32))
        w = _random_input((200, 144), seed=12)
        qb, sfb = jaxgemm.per_block_cast_to_fp8(w)
        np.testing.assert_array_equal(np.asarray(reference.dequant_per_block(qb, sfb)),
                                      (np.asarray(qb).astype(np.float64) * _expand(sfb, 200, 144, 128)).astype(np.float32))

    @pytest.mark.parametrize("fn", [jaxgemm.per_token_cast_to_fp8, jaxgemm.per_block_cast_to_fp8])
    def test_input_errors(self, fn):
        name = fn.__name__
        with pytest.raises(ValueError, match=rf"{name}: expected a rank-2 array"):
            fn(jnp.zeros((4, 4, 128)))
        with pytest.raises(ValueError, match=rf"{name}: expected a rank-2 array"):
            fn(jnp.zeros((128,)))
        with pytest.raises(TypeError, match=rf"{name}: expected a floating-point array"):
            fn(jnp.zeros((4, 128), jnp.int32))


class TestCalcDiff:
    def test_identical_is_zero(self):
        x = _rng(0).standard_normal((17, 33))
        assert jaxgemm.calc_diff(x, x) == 0.0
        xb = jnp.asarray(x, jnp.bfloat16)
        assert jaxgemm.calc_diff(xb, xb) == 0.0

    def test_known_values(self):
        x = _rng(1).standard_normal((8, 8))
        assert jaxgemm.calc_diff(x, -x) == pytest.approx(2.0)
        assert jaxgemm.calc_diff(x, 2 * x) == pytest.approx(0.2)
        assert jaxgemm.calc_diff(x, np.zeros_like(x)) == pytest.approx(1.0)
        # About the squared relative error for small perturbations.
        y = x * (1 + 1e-3)
        assert jaxgemm.calc_diff(x, y) == pytest.approx(0.5e-6, rel=1e-2)

    def test_both_zero(self):
        assert jaxgemm.calc_diff(np.zeros(5), np.zeros(5)) == 0.0

    @pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
    @pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
    def test_nan_never_passes(self, bad):
        x = _rng(2).standard_normal(10)
        y = x.copy()
        y[3] = bad
        d = jaxgemm.calc_diff(x, y)
        assert not (d < 1e-3), d
        assert not (jaxgemm.calc_diff(y, x) < 1e-3)
        nan_only = np.full(3, np.nan)
        assert not (jaxgemm.calc_diff(nan_only, nan_only) < 1e-3)

    def test_float64_accumulation(self):
        x = jnp.asarray(_rng(3).standard_normal(4096), jnp.bfloat16)
        d = jaxgemm.calc_diff(x, x.astype(jnp.float32) * (1 + 2**-10))
        assert isinstance(d, float) and 0 < d < 1e-6


class TestSmallHelpers:
    @pytest.mark.parametrize("x, size, want", [
        (0, 4, 0), (1, 4, 4), (4, 4, 4), (5, 4, 8), (127, 4, 128), (5, 2, 8), (9, 2, 16),
        (17, 1, 32), (16, 1, 16), (3, 8, 4), (3, 16, 3),
    ])
    def test_get_tma_aligned_size(self, x, size, want):
        assert jaxgemm.get_tma_aligned_size(x, size) == want
        assert (want * size) % 16 == 0 and want >= x

    @pytest.mark.parametrize("size", [3, 5, 32, 0])
    def test_get_tma_aligned_size_bad_element(self, size):
        with pytest.raises((ValueError, ZeroDivisionError), match=r"element_size|modulo|division"):
            jaxgemm.get_tma_aligned_size(10, size)

    def test_ceil_div(self):
        assert [jaxgemm.ceil_div(x, 128) for x in (0, 1, 128, 129, 256)] == [0, 1, 1, 2, 2]

    def test_set_num_sms(self):
        with pytest.raises(ValueError, match=r"set_num_sms"):
            jaxgemm.set_num_sms(0)
        with pytest.raises(ValueError, match=r"set_num_sms"):
            jaxgemm.set_num_sms(2.5)
        try:
            jaxgemm.set_num_sms(10)
            assert jaxgemm.get_num_sms() == 10
        finally:
            jaxgemm.set_num_sms(None)


# ----------------------------------------------------------------------------- numerics

GEMM_SHAPES = [
    (1, 128, 128),
    (64, 256, 256),
    (65, 136, 208),     # partial 128-blocks in N and K, M not a multiple of 64
    (100, 392, 400),
    (130, 264, 528),
    (3, 8, 16),         # smallest legal N and K
    (257, 520, 1040),
]


class TestReferenceNumerics:
    @pytest.mark.parametrize("m, n, k", GEMM_SHAPES)
    def test_jit_matches_float64(self, m, n, k):
        a, b = _operands(m, n, k, seed=m + n + k)
        out = jax.jit(jaxgemm.fp8_gemm_nt)(a, b)
        assert out.shape == (m, n) and out.dtype == jnp.bfloat16
        _check_numerics(out, _np_gemm(a, b))

    @pytest.mark.parametrize("m, n, k", [(65, 136, 208), (130, 264, 528), (3, 8, 16)])
    @pytest.mark.parametrize("c_dtype", [None, jnp.bfloat16, jnp.float32])
    @pytest.mark.parametrize("out_dtype", [jnp.bfloat16, jnp.float32])
    @pytest.mark.parametrize("per_row", [False, True], ids=["1d2d", "1d1d"])
    def test_c_out_dtype_and_recipe_match_float64(self, m, n, k, c_dtype, out_dtype, per_row):
        """D = C + dequant(A) dequant(B)^T for every (c dtype, out dtype) and both scale
        recipes of B, element by element against float64."""
        a, b = _operands(m, n, k, seed=7 * m + n + k, per_row=per_row)
        c = None if c_dtype is None else _addend(m, n, c_dtype, seed=m + k)
        out = jax.jit(jaxgemm.fp8_gemm_nt, static_argnums=3)(a, b, c, out_dtype)
        assert out.shape == (m, n) and out.dtype == out_dtype
        _check_numerics(out, _np_gemm(a, b, c), _np_absdot(a, b, c), k)

    @pytest.mark.parametrize("out_dtype", [jnp.bfloat16, jnp.float32])
    def test_c_is_added_before_the_one_rounding(self, out_dtype):
        """c = -(A @ B) + small: D is small, so rounding A @ B (or c) to BF16 before the
        sum, or adding c after the kernel, shows as an error far above the bound."""
        m, n, k = 64, 136, 256
        a, b = _operands(m, n, k, seed=8)
        ab = _np_gemm(a, b)
        small = _rng(9).standard_normal((m, n)) * 1e-3 * np.sqrt(np.mean(ab * ab))
        c = jnp.asarray((small - ab).astype(np.float32))
        out = jax.jit(jaxgemm.fp8_gemm_nt, static_argnums=3)(a, b, c, out_dtype)
        want = _np_gemm(a, b, c)
        bound = (k + 4) * 2.0**-24 * _np_absdot(a, b, c)
        if out_dtype == jnp.bfloat16:
            bound = bound + 2.0**-8 * np.abs(want)
        err = np.abs(np.asarray(out).astype(np.float64) - want)
        assert np.all(err <= bound), f"worst excess {np.max(err - bound)}"

    def test_c_dtype_bf16_and_f32_agree(self):
        """A bf16 c and the same values as f32 give the same D (c is upcast exactly)."""
        a, b = _operands(65, 136, 208, seed=10)
        c = _addend(65, 136, jnp.bfloat16, seed=11)
        f = jax.jit(jaxgemm.fp8_gemm_nt, static_argnums=3)
        for out_dtype in (jnp.bfloat16, jnp.float32):
            x, y = f(a, b, c, out_dtype), f(a, b, c.astype(jnp.float32), out_dtype)
            assert np.array_equal(np.asarray(x), np.asarray(y))

    def test_out_f32_rounds_to_out_bf16(self):
        """The BF16 result is the FP32 result rounded once."""
        a, b = _operands(100, 392, 400, seed=12)
        f = jax.jit(jaxgemm.fp8_gemm_nt, static_argnums=3)
        d32 = f(a, b, None, jnp.float32)
        assert np.array_equal(_bits(f(a, b, None, jnp.bfloat16)), _bits(d32.astype(jnp.bfloat16)))

    def test_eager_equals_jit(self):
        a, b = _operands(65, 136, 208, seed=1)
        assert np.array_equal(_bits(jaxgemm.fp8_gemm_nt(a, b)), _bits(jax.jit(jaxgemm.fp8_gemm_nt)(a, b)))

    def test_config_does_not_change_the_reference(self):
        a, b = _operands(65, 256, 256, seed=2)
        base = _bits(jax.jit(jaxgemm.fp8_gemm_nt)(a, b))
        out = jax.jit(lambda a, b: jaxgemm.fp8_gemm_nt(a, b, config={"block_m": 64, "block_n": 32}))(a, b)
        assert np.array_equal(base, _bits(out))

    def test_matches_reference_module(self):
        a, b = _operands(100, 392, 400, seed=3)
        got = jax.jit(jaxgemm.fp8_gemm_nt)(a, b)
        want = jax.jit(reference.fp8_gemm_nt)(a[0], a[1], b[0], b[1])
        assert np.array_equal(_bits(got), _bits(want))

    def test_deterministic_and_row_independent(self):
        """Bitwise equal across runs; a row's result does not depend on the other rows."""
        a, b = _operands(200, 384, 640, seed=4)
        f = jax.jit(jaxgemm.fp8_gemm_nt)
        full = _bits(f(a, b))
        assert np.array_equal(full, _bits(f(a, b)))
        for rows in (1, 17, 64, 129):
            part = _bits(f((a[0][:rows], a[1][:rows]), b))
            assert np.array_equal(part, full[:rows]), rows

    def test_scales_are_used(self):
        """Doubling one row's scale doubles that row exactly; a B block's scale only its block."""
        a, b = _operands(64, 256, 256, seed=5)
        f = jax.jit(jaxgemm.fp8_gemm_nt)
        base = np.asarray(f(a, b)).astype(np.float64)
        out = np.asarray(f((a[0], a[1].at[3].multiply(2.0)), b)).astype(np.float64)
        assert np.array_equal(out[3], 2 * base[3])
        assert np.array_equal(np.delete(out, 3, 0), np.delete(base, 3, 0))
        out = np.asarray(f(a, (b[0], b[1].at[1, 0].multiply(4.0)))).astype(np.float64)
        assert np.array_equal(out[:, :128], base[:, :128])
        assert not np.allclose(out[:, 128:], base[:, 128:])

    def test_per_row_scales_are_used(self):
        """1D1D: doubling B's scale of row j (one 128-group of K) changes column j only."""
        a, b = _operands(64, 256, 256, seed=6, per_row=True)
        f = jax.jit(jaxgemm.fp8_gemm_nt, static_argnums=3)
        base = np.asarray(f(a, b, None, jnp.float32)).astype(np.float64)
        out = np.asarray(f(a, (b[0], b[1].at[5].multiply(2.0)), None, jnp.float32)).astype(np.float64)
        assert np.array_equal(out[:, 5], 2 * base[:, 5])
        assert np.array_equal(np.delete(out, 5, 1), np.delete(base, 5, 1))
        out = np.asarray(f(a, (b[0], b[1].at[7, 1].multiply(4.0)), None, jnp.float32)).astype(np.float64)
        assert np.array_equal(np.delete(out, 7, 1), np.delete(base, 7, 1))
        assert not np.allclose(out[:, 7], base[:, 7])


# ----------------------------------------------------------------------------- vmap

def _stack_pairs(pairs, axis=0):
    return tuple(jnp.stack([p[j] for p in pairs], axis=axis) for j in range(2))


class TestVmap:
    B, M, N, K = 3, 65, 136, 208

    @pytest.fixture
    def data(self):
        As = [_operands(self.M, self.N, self.K, seed=10 + i)[0] for i in range(self.B)]
        Bs = [_operands(self.M, self.N, self.K, seed=20 + i)[1] for i in range(self.B)]
        return As, Bs

    def _single(self, a, b, c=None):
        return _bits(jax.jit(jaxgemm.fp8_gemm_nt)(a, b, c))

    def _check_one_launch(self, fn, *args):
        jaxpr = jax.make_jaxpr(fn)(*args)
        assert _count_prims(jaxpr.jaxpr, "jaxgemm_gemm") == 1, jaxpr
        names = _prim_names(jaxpr.jaxpr)
        assert not names & {"while", "scan", "cond"}, f"vmap became a loop: {names}"

    def test_batched_a_shared_b(self, data):
        As, Bs = data
        fn = jax.vmap(jaxgemm.fp8_gemm_nt, in_axes=((0, 0), None))
        out = jax.jit(fn)(_stack_pairs(As), Bs[0])
        assert out.shape == (self.B, self.M, self.N)
        for i in range(self.B):
            assert np.array_equal(_bits(out[i]), self._single(As[i], Bs[0])), i
        self._check_one_launch(fn, _stack_pairs(As), Bs[0])

    def test_shared_a_batched_b(self, data):
        As, Bs = data
        fn = jax.vmap(jaxgemm.fp8_gemm_nt, in_axes=(None, 0))
        out = jax.jit(fn)(As[0], _stack_pairs(Bs))
        for i in range(self.B):
            assert np.array_equal(_bits(out[i]), self._single(As[0], Bs[i])), i
        self._check_one_launch(fn, As[0], _stack_pairs(Bs))

    def test_both_batched(self, data):
        As, Bs = data
        fn = jax.vmap(jaxgemm.fp8_gemm_nt, in_axes=((0, 0), 0))
        out = jax.jit(fn)(_stack_pairs(As), _stack_pairs(Bs))
        for i in range(self.B):
            assert np.array_equal(_bits(out[i]), self._single(As[i], Bs[i])), i
        self._check_one_launch(fn, _stack_pairs(As), _stack_pairs(Bs))

    def test_non_leading_axis(self, data):
        As, Bs = data
        a1, b1 = _stack_pairs(As, axis=1), _stack_pairs(Bs, axis=1)
        assert a1[0].shape == (self.M, self.B, self.K)
        fn = jax.vmap(jaxgemm.fp8_gemm_nt, in_axes=1)
        out = jax.jit(fn)(a1, b1)
        for i in range(self.B):
            assert np.array_equal(_bits(out[i]), self._single(As[i], Bs[i])), i
        self._check_one_launch(fn, a1, b1)
        fn2 = jax.vmap(jaxgemm.fp8_gemm_nt, in_axes=(1, None), out_axes=1)
        out2 = jax.jit(fn2)(a1, Bs[0])
        assert out2.shape == (self.M, self.B, self.N)
        for i in range(self.B):
            assert np.array_equal(_bits(out2[:, i]), self._single(As[i], Bs[0])), i
        self._check_one_launch(fn2, a1, Bs[0])

    def test_data_batched_scales_shared(self, data):
        As, Bs = data
        a = (jnp.stack([As[0][0]] * self.B), As[0][1])
        fn = jax.vmap(jaxgemm.fp8_gemm_nt, in_axes=((0, None), None))
        out = jax.jit(fn)(a, Bs[0])
        ref = self._single(As[0], Bs[0])
        for i in range(self.B):
            assert np.array_equal(_bits(out[i]), ref)
        self._check_one_launch(fn, a, Bs[0])

    def test_nested(self, data):
        As, Bs = data
        a2 = tuple(jnp.stack([x, x]) for x in _stack_pairs(As))  # [2, B, M, K]
        fn = jax.vmap(jax.vmap(jaxgemm.fp8_gemm_nt, in_axes=((0, 0), 0)), in_axes=((0, 0), None))
        out = jax.jit(fn)(a2, _stack_pairs(Bs))
        assert out.shape == (2, self.B, self.M, self.N)
        for j in range(2):
            for i in range(self.B):
                assert np.array_equal(_bits(out[j, i]), self._single(As[i], Bs[i])), (j, i)
        self._check_one_launch(fn, a2, _stack_pairs(Bs))

    @pytest.mark.parametrize("c_axis", [0, None])
    @pytest.mark.parametrize("out_dtype", [jnp.bfloat16, jnp.float32])
    def test_with_c(self, data, c_axis, out_dtype):
        """c batched (or shared) with a batched A and a shared B: still one launch, and
        each example equals its own call."""
        As, Bs = data
        cs = [_addend(self.M, self.N, jnp.float32, seed=30 + i) for i in range(self.B)]
        c = jnp.stack(cs) if c_axis == 0 else cs[0]
        fn = jax.vmap(lambda a, b, c: jaxgemm.fp8_gemm_nt(a, b, c, out_dtype), in_axes=((0, 0), None, c_axis))
        out = jax.jit(fn)(_stack_pairs(As), Bs[0], c)
        assert out.dtype == out_dtype
        for i in range(self.B):
            ci = cs[i] if c_axis == 0 else cs[0]
            want = jax.jit(jaxgemm.fp8_gemm_nt, static_argnums=3)(As[i], Bs[0], ci, out_dtype)
            assert np.array_equal(np.asarray(out[i]), np.asarray(want)), i
        self._check_one_launch(fn, _stack_pairs(As), Bs[0], c)
        # Both operands batched, c batched: the L path.
        fn2 = jax.vmap(lambda a, b, c: jaxgemm.fp8_gemm_nt(a, b, c, out_dtype), in_axes=((0, 0), 0, 0))
        out2 = jax.jit(fn2)(_stack_pairs(As), _stack_pairs(Bs), jnp.stack(cs))
        for i in range(self.B):
            want = jax.jit(jaxgemm.fp8_gemm_nt, static_argnums=3)(As[i], Bs[i], cs[i], out_dtype)
            assert np.array_equal(np.asarray(out2[i]), np.asarray(want)), i
        self._check_one_launch(fn2, _stack_pairs(As), _stack_pairs(Bs), jnp.stack(cs))

    def test_per_row_b_batched(self, data):
        As, _ = data
        Bs = [_operands(self.M, self.N, self.K, seed=40 + i, per_row=True)[1] for i in range(self.B)]
        fn = jax.vmap(lambda a, b: jaxgemm.fp8_gemm_nt(a, b, out_dtype=jnp.float32))
        out = jax.jit(fn)(_stack_pairs(As), _stack_pairs(Bs))
        for i in range(self.B):
            want = jax.jit(lambda a, b: jaxgemm.fp8_gemm_nt(a, b, out_dtype=jnp.float32))(As[i], Bs[i])
            assert np.array_equal(np.asarray(out[i]), np.asarray(want)), i
        self._check_one_launch(fn, _stack_pairs(As), _stack_pairs(Bs))

    def test_matches_float64(self, data):
        As, Bs = data
        out = jax.jit(jax.vmap(jaxgemm.fp8_gemm_nt))(_stack_pairs(As), _stack_pairs(Bs))
        for i in range(self.B):
            _check_numerics(out[i], _np_gemm(As[i], Bs[i]))

    def test_batch_of_one(self, data):
        As, Bs = data
        out = jax.jit(jax.vmap(jaxgemm.fp8_gemm_nt))(_stack_pairs(As[:1]), _stack_pairs(Bs[:1]))
        assert np.array_equal(_bits(out[0]), self._single(As[0], Bs[0]))


def _config_picker(default_layout):
    """pick(m, n, k, layout=default_layout, **config): the FP8 config on 132 SMs, with
    `config` pinned (none if empty)."""
    def pick(m, n, k, layout=default_layout, **config):
        return jaxgemm.fp8_gemm_config(m, n, k, layout=layout, num_sms=132, config=config or None)
    return pick


class TestFp8Relayout:
    """Which operands stored MN-major the kernel transposes in shared memory (config
    `relayout`): the heuristic's rule, pins, and the configs it rejects."""

    def test_heuristic_relayouts_b_at_small_m_and_short_k(self):
        pick = lambda m, n, k, layout: jaxgemm.fp8_gemm_config(m, n, k, layout=layout, num_sms=132)
        for layout in ("nn", "tn"):
            cfg = pick(128, 24576, 1536, layout)
            # (tn: A is transposed first, its tiles wider than beside A in registers: TestFp8ARegs.)
            assert (cfg["relayout"], cfg["a_mn_major"], cfg["b_mn_major"], cfg["block_n"]) == (1, 0, 1, 192)
            assert not cfg["swap_ab"] and not cfg["a_regs"]
            assert pick(128, 24576, 7168, layout)["b_mn_major"] == 0  # long K, over a wave: transposed first
            assert pick(4096, 24576, 1536, layout)["relayout"] == 0  # large M
            assert pick(128, 24584, 1536, layout)["b_mn_major"] == 0  # N % 16: TMA cannot read B's rows
        assert pick(4096, 24576, 1536, "tt")["relayout"] == 0  # A: never relaid out in shared memory
        assert pick(128, 24576, 1536, "nt")["relayout"] == 0

    def test_heuristic_relayouts_b_in_narrow_tiles_that_fill_the_sms(self):
        """At M <= 128, B relaid out in one row of 128-column tiles, else 64 (each B
        tile transposed once), where that grid, with K split over a CTA pair if need
        be, fills 3/4 of the SMs in one wave, whatever K, or, at M > 64 and long K,
        128-column tiles over 4 CTAs fill half; at M <= 64 the tiles are 64 rows tall,
        K split over two warpgroups where there is no cluster. (Without the swapped
        kernel, which takes some of these: TestFp8SwapAb.)"""
        pick = lambda m, n, k: jaxgemm.fp8_gemm_config(m, n, k, layout="nn", num_sms=132,  # noqa: E731
                                                       config={"swap_ab": 0})
        for (m, n, k), (block_n, cluster_k, ctas) in {
                (128, 7168, 16384): (128, 2, 112), (128, 7168, 2048): (128, 2, 112), (96, 7168, 7168): (128, 2, 112),
                (128, 7168, 1040): (64, 1, 112),  # 9 K blocks: too few to split
                (128, 4096, 7168): (64, 2, 128)}.items():
            cfg = pick(m, n, k)
            assert (cfg["relayout"], cfg["b_mn_major"], cfg["block_m"], cfg["block_n"]) == (1, 1, 128, block_n), cfg
            assert (cfg["cluster_k"], cfg["num_sms"], cfg["k_split"]) == (cluster_k, ctas, 1), cfg
            assert cfg["smem_bytes"] <= 232448
        # Too few tiles to fill 3/4 of the SMs, even over a pair: K over 4 CTAs where
        # that fills half of them, else the transpose first.
        cfg = pick(128, 2112, 7168)
        assert (cfg["relayout"], cfg["block_n"], cfg["cluster_k"], cfg["num_sms"]) == (1, 128, 4, 68), cfg
        assert pick(128, 1024, 7168)["relayout"] == 0   # 32 CTAs over 4
        assert pick(128, 2112, 3072)["relayout"] == 0   # 24 K blocks: 6 per CTA over 4
        assert pick(128, 24576, 1536)["block_n"] > 64   # more than a wave of narrow tiles
        for (m, n, k), (block_n, cluster_k, k_split, ctas) in {
                (64, 7168, 16384): (128, 2, 1, 112), (64, 4096, 7168): (64, 2, 1, 128),
                (1, 7168, 2048): (128, 2, 1, 112), (64, 7168, 1040): (64, 1, 2, 112)}.items():
            cfg = pick(m, n, k)
            assert (cfg["relayout"], cfg["b_mn_major"], cfg["block_m"], cfg["block_n"]) == (1, 1, 64, block_n), cfg
            assert (cfg["cluster_k"], cfg["k_split"], cfg["num_sms"]) == (cluster_k, k_split, ctas), cfg
        assert pick(64, 2112, 7168)["relayout"] == 0
        assert pick(256, 7168, 16384)["relayout"] == 0
        assert pick(128, 7168, 16384)["num_stages"] >= 3

    def test_pins(self):
        for layout, majors in (("nn", (0, 1)), ("tn", (1, 1)), ("tt", (1, 0))):
            cfg = jaxgemm.fp8_gemm_config(4096, 7168, 2048, layout=layout, num_sms=132, config={"relayout": 1})
            assert (cfg["relayout"], cfg["a_mn_major"], cfg["b_mn_major"]) == (1, *majors)
            assert cfg["smem_bytes"] <= 232448
            off = jaxgemm.fp8_gemm_config(128, 24576, 1536, layout=layout, num_sms=132, config={"relayout": 0})
            # relayout=0 alone keeps the heuristic's pick for NT (after the transposes).
            assert off == jaxgemm.fp8_gemm_config(128, 24576, 1536, num_sms=132)
        # A pinned multicast of an operand the heuristic would transpose drops the relayout.
        cfg = jaxgemm.fp8_gemm_config(128, 24576, 1536, layout="nn", num_sms=132,
                                      config={"block_m": 128, "block_n": 128, "cluster_m": 2})
        assert (cfg["relayout"], cfg["b_mn_major"]) == (0, 0)

    @pytest.mark.parametrize("layout,config,match", [
        ("nt", {"relayout": 1}, "stored MN-major"),
        ("nn", {"relayout": 1, "block_n": 128, "cluster_m": 2}, "not multicast"),
        ("tt", {"relayout": 1, "block_m": 128, "cluster_n": 2}, "not multicast"),
    ])
    def test_rejected(self, layout, config, match):
        with pytest.raises(ValueError, match=match):
            jaxgemm.fp8_gemm_config(256, 1024, 1024, layout=layout, num_sms=132, config=config)

    def test_rejected_unaligned(self):
        with pytest.raises(ValueError, match="multiples of 16"):
            jaxgemm.fp8_gemm_config(256, 1032, 1024, layout="nn", num_sms=132, config={"relayout": 1})
        with pytest.raises(ValueError, match="for the FP8 GEMMs"):
            jaxgemm.bf16_gemm_config(256, 1024, 1024, layout="nn", num_sms=132, config={"relayout": 1})



class TestFp8SwapAb:
    """The swapped kernel (config swap_ab): D^T = B^T A^T for B stored [K, N], the
    heuristic's rule, pins, and the configs it rejects."""

    pick = staticmethod(_config_picker("nn"))

    def test_heuristic_swaps_where_64_row_tiles_fill_the_sms(self):
        """At 64 < M <= 128, where 64-row tiles of N by M in halves or all of M (over a
        CTA pair if need be) fill 3/4 of the SMs in one wave; A stored [K, M] is
        transposed first."""
        for (m, n, k, layout), (block_n, cluster_k, ctas) in {
                (128, 7168, 2048, "nn"): (128, 1, 112), (128, 4096, 7168, "tn"): (64, 1, 128),
                (80, 4096, 7168, "nn"): (48, 1, 128), (128, 2112, 7168, "nn"): (64, 2, 132),
                (96, 7168, 3088, "tn"): (96, 1, 112), (80, 7168, 1040, "nn"): (80, 1, 112)}.items():
            cfg = self.pick(m, n, k, layout)
            assert (cfg["swap_ab"], cfg["a_mn_major"], cfg["b_mn_major"], cfg["relayout"]) == (1, 0, 1, 1), cfg
            assert (cfg["block_m"], cfg["block_n"], cfg["k_split"]) == (64, block_n, 2), cfg
            assert (cfg["cluster_k"], cfg["num_sms"]) == (cluster_k, ctas), cfg
            assert cfg["smem_bytes"] <= 232448
        for m, n, k, layout in [(96, 2112, 7168, "nn"),    # halves of 48 not over a pair; all of M over one: 66
                                (128, 24576, 1536, "nn"),  # more than a wave
                                (64, 7168, 2048, "nn"),    # M <= 64: not measured
                                (4096, 7168, 2048, "nn"), (128, 7168, 2048, "tt"), (128, 7168, 2048, "nt")]:
            assert self.pick(m, n, k, layout)["swap_ab"] == 0
        assert self.pick(128, 7168, 2048, relayout=1)["swap_ab"] == 0  # a pinned relayout is honoured
        assert self.pick(128, 7168, 2048, relayout=0)["swap_ab"] == 0

    def test_pins(self):
        cfg = self.pick(1, 2112, 7168, swap_ab=1)  # the heuristic's swapped tiles where it would not swap
        assert (cfg["swap_ab"], cfg["block_m"], cfg["block_n"], cfg["cluster_k"]) == (1, 64, 16, 1), cfg
        cfg = self.pick(128, 1168, 1552, swap_ab=1, block_m=128, block_n=80, num_sms=5)
        assert (cfg["swap_ab"], cfg["b_mn_major"], cfg["k_split"], cfg["num_sms"]) == (1, 1, 1, 5), cfg
        cfg = self.pick(128, 1168, 1552, swap_ab=1, block_m=64, block_n=128)
        assert cfg["num_sms"] == 19  # 64-row tiles of N: the swapped grid
        assert self.pick(128, 7168, 2048, block_m=64, block_n=128)["swap_ab"] == 0  # pinned tiles: unswapped

    @pytest.mark.parametrize("m, n, layout, config, match", [
        (128, 1024, "nt", {"swap_ab": 1}, "stored \\[K, N\\]"),
        (128, 1024, "tt", {"swap_ab": 1}, "stored \\[K, N\\]"),
        (256, 1024, "nn", {"swap_ab": 1}, "M <= 128"),
        (128, 1024, "nn", {"swap_ab": 1, "relayout": 1}, "leave relayout unset"),
        (128, 1024, "nn", {"swap_ab": 1, "block_n": 144}, "at most 128"),
        (128, 1024, "nn", {"swap_ab": 1, "block_n": 128, "cluster_m": 2}, "no multicast"),
        (128, 1032, "nn", {"swap_ab": 1}, "multiple of 16"),
    ])
    def test_rejected(self, m, n, layout, config, match):
        with pytest.raises(ValueError, match=match):
            jaxgemm.fp8_gemm_config(m, n, 1024, layout=layout, num_sms=132, config=config)
        with pytest.raises(ValueError, match="128x128 B scales"):
            jaxgemm.fp8_gemm_config(128, 1024, 1024, layout="nn", num_sms=132, sfb_per_row=True,
                                    config={"swap_ab": 1})


class TestFp8ARegs:
    """A stored [K, M] read as stored into the register operand (config a_regs): the
    heuristic's rule, pins, and the configs it rejects."""

    pick = staticmethod(_config_picker("tt"))

    def test_heuristic_reads_a_as_stored_at_64_lt_m_le_128(self):
        """At 64 < M <= 128 (M % 16 == 0), on 128-row tiles: 128x64 where their grid
        fills 3/4 of the SMs in its last wave (tt: B K-major), else the narrow grid
        where one fills the SMs (K over a cluster), else the model's tiles; not where
        the swapped kernel runs (tn there), nor at M <= 64 or M = 4096, nor for tn
        where the model's tiles without A in registers are wider than 160 columns."""
        for (m, n, k, layout), (block_n, cluster_k) in {
                (128, 4096, 7168, "tt"): (64, 2), (128, 2112, 7168, "tt"): (128, 4),
                (112, 7168, 2048, "tt"): (64, 1), (96, 2112, 7168, "tn"): (128, 4),
                (128, 24576, 1536, "tt"): (64, 1), (128, 32768, 512, "tt"): (128, 1),
                (128, 32768, 512, "tn"): (128, 1)}.items():
            cfg = self.pick(m, n, k, layout)
            assert (cfg["a_regs"], cfg["a_mn_major"], cfg["relayout"], cfg["swap_ab"]) == (1, 1, 1, 0), cfg
            assert (cfg["block_m"], cfg["block_n"], cfg["cluster_k"], cfg["k_split"]) == \
                (128, block_n, cluster_k, 1), cfg
            assert cfg["smem_bytes"] <= 232448
        for m, n, k, layout in [(128, 4096, 7168, "tn"), (128, 2112, 7168, "tn"),  # swapped: A is K-major there
                                (128, 24576, 1536, "tn"),  # 128x192 with A transposed first
                                (64, 4096, 7168, "tt"), (4096, 4096, 7168, "tt"), (120, 4096, 7168, "tt"),
                                (128, 4096, 7168, "nn"), (128, 4096, 7168, "nt")]:
            assert self.pick(m, n, k, layout)["a_regs"] == 0, (m, n, k, layout)
        assert self.pick(128, 4096, 7168, relayout=1)["a_regs"] == 0  # A relaid out in shared memory
        cfg = self.pick(128, 4096, 7168, relayout=0)
        assert (cfg["a_regs"], cfg["a_mn_major"], cfg["relayout"]) == (0, 0, 0)  # transposed first
        cfg = self.pick(128, 4096, 7168, a_regs=0)
        assert (cfg["a_regs"], cfg["a_mn_major"]) == (0, 0)

    def test_pins(self):
        cfg = self.pick(4096, 7168, 2048, a_regs=1)  # where the heuristic would not
        assert (cfg["a_regs"], cfg["a_mn_major"], cfg["block_n"]) == (1, 1, 160), cfg  # 192 does not fit
        cfg = self.pick(48, 1040, 1040, "tn", a_regs=1, relayout=1)  # with B relaid out too
        assert (cfg["a_regs"], cfg["a_mn_major"], cfg["b_mn_major"], cfg["swap_ab"]) == (1, 1, 1, 0), cfg
        cfg = self.pick(336, 1168, 1552, a_regs=1, block_m=64, block_n=80, num_sms=5)
        assert (cfg["a_regs"], cfg["block_m"], cfg["block_n"], cfg["num_sms"]) == (1, 64, 80, 5), cfg
        cfg = self.pick(128, 4096, 7168, block_m=64, block_n=64)  # pinned tiles keep the heuristic's a_regs
        assert cfg["a_regs"] == 1, cfg
        cfg = self.pick(128, 4096, 7168, block_m=128, block_n=64, cluster_n=2)  # A multicast: transposed first
        assert (cfg["a_regs"], cfg["a_mn_major"]) == (0, 0), cfg

    @pytest.mark.parametrize("m, layout, config, match", [
        (128, "nt", {"a_regs": 1}, "stored \\[K, M\\]"),
        (128, "nn", {"a_regs": 1}, "stored \\[K, M\\]"),
        (128, "tt", {"a_regs": 1, "relayout": 0}, "not with relayout=0"),
        (128, "tn", {"a_regs": 1, "swap_ab": 1}, "swap_ab=1"),
        (120, "tt", {"a_regs": 1}, "multiple of 16"),
        (128, "tt", {"a_regs": 1, "block_m": 128, "block_n": 64, "cluster_n": 2}, "not multicast"),
    ])
    def test_rejected(self, m, layout, config, match):
        with pytest.raises(ValueError, match=match):
            jaxgemm.fp8_gemm_config(m, 1024, 1024, layout=layout, num_sms=132, config=config)
