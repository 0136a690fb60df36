"""The dense GEMMs in every layout, and fp8_linear, without a GPU.

On the CPU every op lowers to `jaxgemm.reference`, so this checks the public functions'
contract (validation, layouts, scales, c, output dtype, vmap, gradients) against float64
numpy models written here, independent of jaxgemm's own reference:
  - fp8_gemm_{nt,nn,tn,tt} and bf16_gemm_{nt,nn,tn,tt} x {no c, c bf16, c f32} x
    out {bf16, f32}, element by element (partial 128-blocks in N and K), and the FP8
    1D1D recipe (per-row B scales) in every layout;
  - the same logical product stored in the four layouts gives the same bits;
  - trace-time errors name the layout's expected shapes (scales, K, alignment, c);
  - vmap: one `jaxgemm_gemm` equation, each example equal to its own call (batched A,
    B and c; K-major and MN-major operands);
  - every GEMM the forward and backward passes bind is one the SM90 kernel can run
    (16-byte aligned rows for TMA), which the CPU reference alone would not notice;
  - gradients of the BF16 GEMMs: `jax.test_util.check_grads` in every layout, the VJP
    against float64, and jax.grad against jax.grad of `reference.bf16_gemm`;
  - fp8_linear: leading dimensions, errors, forward and gradients against float64.
"""

from __future__ import annotations

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads


from _jaxpr_walk import count_prims as _count_prims, jax_core, prim_names as _prim_names

import jaxgemm
from jaxgemm import reference

FP8 = jnp.float8_e4m3fn
BF16 = jnp.bfloat16
F32 = jnp.float32
SDS = jax.ShapeDtypeStruct
LAYOUTS = ("nt", "nn", "tn", "tt")
# layout -> (A stored [K, M], B stored [K, N]), written out here rather than imported.
STORED_K_FIRST = {"nt": (False, False), "nn": (False, True), "tn": (True, True), "tt": (True, False)}
C_DTYPES = [None, BF16, F32]
OUT_DTYPES = [BF16, F32]


@pytest.fixture(autouse=True)
def _on_cpu():
    """Pin every computation here to the CPU (on a GPU machine the default device is
    the GPU, whose lowering is the kernel)."""
    with jax.default_device(jax.devices("cpu")[0]):
        yield


def _id(x):
    return "none" if x is None else jnp.dtype(x).name


# ----------------------------------------------------------------------------- data

def _rng(seed):
    return np.random.default_rng(seed)


def _spread(r, rows, k, row_range=3.0, block_range=1.5):
    """[rows, k] normal values whose magnitude varies per row and per 128x128 block, so
    that a scale applied to the wrong row, column or block changes the answer."""
    x = r.standard_normal((rows, k))
    x *= np.exp(r.uniform(-row_range, row_range, (rows, 1)))
    blocks = np.exp(r.uniform(-block_range, block_range, (-(-rows // 128), -(-k // 128))))
    x *= np.repeat(np.repeat(blocks, 128, 0), 128, 1)[:rows, :k]
    return x.astype(np.float32)


def _fp8_operands(layout, m, n, k, seed, per_row=False):
    """(a, b) pairs for fp8_gemm_<layout>, quantized as a user would: a K-first operand
    with per_channel_cast_to_fp8 (1x128 groups along K, its first axis), a block-scaled
    one with per_block_cast_to_fp8 (either orientation: 128x128 blocks)."""
    a_t, b_t = STORED_K_FIRST[layout]
    r = _rng(seed)
    x, w = _spread(r, m, k), _spread(r, n, k)  # logical A [M, K], B [N, K]
    a = jaxgemm.per_channel_cast_to_fp8(jnp.asarray(x.T)) if a_t else \
        jaxgemm.per_token_cast_to_fp8(jnp.asarray(x))
    w_stored = jnp.asarray(w.T if b_t else w)
    if not per_row:
        b = jaxgemm.per_block_cast_to_fp8(w_stored)
    else:
        b = jaxgemm.per_channel_cast_to_fp8(w_stored) if b_t else jaxgemm.per_token_cast_to_fp8(w_stored)
    return a, b


def _bf16_operands(layout, m, n, k, seed):
    a_t, b_t = STORED_K_FIRST[layout]
    r = _rng(seed)
    x, w = _spread(r, m, k), _spread(r, n, k)
    return (jnp.asarray(x.T if a_t else x, BF16), jnp.asarray(w.T if b_t else w, BF16))


def _addend(m, n, dtype, seed):
    if dtype is None:
        return None
    r = _rng(seed)
    c = r.standard_normal((m, n)) * np.exp(r.uniform(-2, 2, (m, 1)))
    return jnp.asarray(c.astype(np.float32)).astype(dtype)


# ----------------------------------------------------------------------------- float64 models

def _f64(x):
    return np.asarray(jnp.asarray(x).astype(F32), np.float64)


def _np_dequant(pair, k_first, rows):
    """A stored FP8 operand as float64 [rows, K]: data [rows, K] (or [K, rows] when
    `k_first`) times its scales, one per row (or per 128 rows) per 128 of K."""
    data, sf = _f64(pair[0]), _f64(pair[1])
    if k_first:
        data, sf = data.T, sf.T
    assert data.shape[0] == rows
    row_block = 1 if sf.shape[0] == rows else 128
    assert sf.shape == (-(-rows // row_block), -(-data.shape[1] // 128)), sf.shape
    s = np.repeat(np.repeat(sf, row_block, 0), 128, 1)[:rows, :data.shape[1]]
    return data * s


def _np_fp8(layout, a, b, c=None):
    """(D, sum_k |A B| + |C|) in float64 for fp8_gemm_<layout>."""
    a_t, b_t = STORED_K_FIRST[layout]
    m = a[0].shape[1] if a_t else a[0].shape[0]
    n = b[0].shape[1] if b_t else b[0].shape[0]
    da, db = _np_dequant(a, a_t, m), _np_dequant(b, b_t, n)
    return _np_finish(da, db, c)


def _np_bf16(layout, a, b, c=None):
    a_t, b_t = STORED_K_FIRST[layout]
    da, db = _f64(a), _f64(b)
    return _np_finish(da.T if a_t else da, db.T if b_t else db, c)


def _np_finish(a, b, c):
    d, absdot = a @ b.T, np.abs(a) @ np.abs(b).T
    if c is not None:
        d, absdot = d + _f64(c), absdot + np.abs(_f64(c))
    return d, absdot


def _check(out, want, absdot, k, out_dtype=None):
    """Every element within the error the op may make: FP32 accumulation (any order of
    sums: (K + 4) * 2^-24 * sum |a b|), plus one rounding to BF16 for BF16 output."""
    out = np.asarray(out)
    if out_dtype is not None:
        assert out.dtype == out_dtype
    got = out.astype(np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    assert np.all(np.isfinite(got)), "non-finite output"
    bound = (k + 4) * 2.0**-24 * absdot
    if out.dtype == np.float32:
        assert jaxgemm.calc_diff(got, want) < 1e-10
    else:
        assert jaxgemm.calc_diff(got, want) < 1e-5
        bound = bound + 2.0**-8 * np.abs(want)
    bad = np.abs(got - want) > bound
    assert not bad.any(), (f"{bad.sum()} of {bad.size} elements off, first at "
                           f"{np.argwhere(bad)[:3].tolist()}, worst excess {np.max(np.abs(got - want) - bound)}")


def _bits(x):
    x = np.asarray(x)
    return x.view(np.uint16 if x.dtype.itemsize == 2 else np.uint32)


def _fn(op, layout):
    return getattr(jaxgemm, f"{op}_gemm_{layout}")


@functools.cache
def _jitted(op, layout, out_dtype):
    f = _fn(op, layout)
    return jax.jit(lambda a, b, c: f(a, b, c, out_dtype))




def _gemm_eqns(jaxpr):
    eqns = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "jaxgemm_gemm":
            eqns.append(eqn)
        for sub in jax_core.jaxprs_in_params(eqn.params):
            eqns += _gemm_eqns(sub)
    return eqns


def _kernel_violations(jaxpr):
    """What the SM90 kernel could not run among the GEMMs a jaxpr binds: TMA needs each
    operand's contiguous dimension, and D's N, to span a multiple of 16 bytes (FP8 reads
    only K-major operands). Checked on the CPU, where the reference would run anything."""
    bad = []
    for eqn in _gemm_eqns(jaxpr):
        spec = eqn.params["spec"]
        a, b = eqn.invars[0].aval.shape, eqn.invars[2 if spec.op == "fp8" else 1].aval.shape
        m, k = (a[2], a[1]) if spec.a_mn_major else (a[1], a[2])
        n = b[2] if spec.b_mn_major else b[1]
        elems = 16 if spec.op == "fp8" else 8  # elements per 16 bytes
        rows = {"A's": a[2], "B's": b[2], "D's N": n}
        if spec.op == "fp8" and (spec.a_mn_major or spec.b_mn_major):
            bad.append(f"{spec}: FP8 operand not K-major")
        for name, size in rows.items():
            need = 8 if name == "D's N" else elems
            if size % need:
                bad.append(f"{spec.op} GEMM M={m} N={n} K={k}: {name} contiguous size {size} "
                           f"is not a multiple of {need}")
    return bad


def _gemm_specs(jaxpr):
    specs = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "jaxgemm_gemm":
            specs.append(eqn.params["spec"])
        for sub in jax_core.jaxprs_in_params(eqn.params):
            specs += _gemm_specs(sub)
    return specs


# ----------------------------------------------------------------------------- FP8 numerics

class TestFp8Layouts:
    M, N, K = 80, 136, 208  # partial 128-blocks in M, N and K; M % 16 for a stored [K, M]

    @pytest.mark.parametrize("out_dtype", OUT_DTYPES, ids=_id)
    @pytest.mark.parametrize("c_dtype", C_DTYPES, ids=_id)
    @pytest.mark.parametrize("layout", LAYOUTS)
    def test_matches_float64(self, layout, c_dtype, out_dtype):
        m, n, k = self.M, self.N, self.K
        a, b = _fp8_operands(layout, m, n, k, seed=LAYOUTS.index(layout))
        c = _addend(m, n, c_dtype, seed=5)
        out = _jitted("fp8", layout, out_dtype)(a, b, c)
        assert out.shape == (m, n)
        _check(out, *_np_fp8(layout, a, b, c), k, out_dtype)
        # The public op is its reference definition.
        want = reference.fp8_gemm(a[0], a[1], b[0], b[1], layout, c, out_dtype)
        assert np.array_equal(_bits(out), _bits(want))

    @pytest.mark.parametrize("c_dtype, out_dtype", [(None, BF16), (F32, F32), (BF16, F32), (BF16, BF16)],
                             ids=lambda x: _id(x))
    @pytest.mark.parametrize("layout", LAYOUTS)
    def test_1d1d_matches_float64(self, layout, c_dtype, out_dtype):
        """B with 1x128 per-row scales ([N, ceil(K/128)] or, stored [K, N], [ceil(K/128), N])."""
        m, n, k = self.M, self.N, self.K
        a, b = _fp8_operands(layout, m, n, k, seed=10 + LAYOUTS.index(layout), per_row=True)
        b_t = STORED_K_FIRST[layout][1]
        assert b[1].shape == ((2, n) if b_t else (n, 2))
        c = _addend(m, n, c_dtype, seed=6)
        out = _jitted("fp8", layout, out_dtype)(a, b, c)
        _check(out, *_np_fp8(layout, a, b, c), k, out_dtype)

    @pytest.mark.parametrize("m, n, k", [(16, 8, 16), (144, 264, 400), (32, 520, 1040)])
    @pytest.mark.parametrize("per_row", [False, True], ids=["1d2d", "1d1d"])
    @pytest.mark.parametrize("layout", LAYOUTS)
    def test_shapes(self, layout, m, n, k, per_row):
        a, b = _fp8_operands(layout, m, n, k, seed=m + n + k, per_row=per_row)
        out = _jitted("fp8", layout, F32)(a, b, None)
        _check(out, *_np_fp8(layout, a, b), k, F32)

    @pytest.mark.parametrize("m", [1, 3, 65])
    @pytest.mark.parametrize("layout", ["nt", "nn"])
    def test_any_m_when_a_is_k_major(self, layout, m):
        a, b = _fp8_operands(layout, m, 136, 208, seed=m)
        out = _jitted("fp8", layout, BF16)(a, b, None)
        _check(out, *_np_fp8(layout, a, b), 208, BF16)

    @pytest.mark.parametrize("per_row", [False, True], ids=["1d2d", "1d1d"])
    def test_layouts_agree(self, per_row):
        """One logical product stored in the four layouts: the same bits (only the
        storage differs; transposing FP8 data and scales is exact)."""
        m, n, k = self.M, self.N, self.K
        a, b = _fp8_operands("nt", m, n, k, seed=20, per_row=per_row)
        c = _addend(m, n, F32, seed=21)
        base = _jitted("fp8", "nt", F32)(a, b, c)
        for layout in LAYOUTS[1:]:
            a_t, b_t = STORED_K_FIRST[layout]
            al = (a[0].T, a[1].T) if a_t else a
            bl = (b[0].T, b[1].T) if b_t else b
            assert np.array_equal(_bits(_jitted("fp8", layout, F32)(al, bl, c)), _bits(base)), layout

    def test_per_channel_cast_is_per_token_transposed(self):
        x = jnp.asarray(_spread(_rng(3), 200, 136))
        q, sf = jaxgemm.per_channel_cast_to_fp8(x)
        assert q.shape == (200, 136) and q.dtype == FP8 and sf.shape == (2, 136) and sf.dtype == F32
        qt, sft = jaxgemm.per_token_cast_to_fp8(x.T)
        assert np.array_equal(np.asarray(q).view(np.uint8), np.asarray(qt).T.view(np.uint8))
        assert np.array_equal(np.asarray(sf), np.asarray(sft).T)
        # sf = max(amax, 1e-4) / 448 over 128 consecutive rows of each column.
        xp = np.zeros((256, 136))
        xp[:200] = np.asarray(x, np.float64)
        want = np.maximum(np.abs(xp.reshape(2, 128, 136)).max(1), 1e-4) / 448
        np.testing.assert_allclose(np.asarray(sf, np.float64), want, rtol=2e-7)

    def test_scales_follow_the_data(self):
        """A stored [K, M]: doubling scale [kb, j] doubles the contribution of K block kb
        to row j of D only."""
        m, n, k = 64, 136, 256
        a, b = _fp8_operands("tn", m, n, k, seed=30)
        f = _jitted("fp8", "tn", F32)
        base = np.asarray(f(a, b, None), np.float64)
        out = np.asarray(f((a[0], a[1].at[1, 9].multiply(2.0)), b, None), np.float64)
        assert np.array_equal(np.delete(out, 9, 0), np.delete(base, 9, 0))
        a_only_block1 = (a[0], a[1].at[0].set(0.0))  # row 9's K block 1 alone
        extra = np.asarray(f(a_only_block1, b, None), np.float64)[9]
        np.testing.assert_allclose(out[9], base[9] + extra, rtol=1e-5, atol=1e-5 * np.abs(base[9]).max())


# ----------------------------------------------------------------------------- BF16 numerics

class TestBf16Layouts:
    M, N, K = 72, 136, 200

    @pytest.mark.parametrize("out_dtype", OUT_DTYPES, ids=_id)
    @pytest.mark.parametrize("c_dtype", C_DTYPES, ids=_id)
    @pytest.mark.parametrize("layout", LAYOUTS)
    def test_matches_float64(self, layout, c_dtype, out_dtype):
        m, n, k = self.M, self.N, self.K
        a, b = _bf16_operands(layout, m, n, k, seed=40 + LAYOUTS.index(layout))
        c = _addend(m, n, c_dtype, seed=7)
        out = _jitted("bf16", layout, out_dtype)(a, b, c)
        assert out.shape == (m, n)
        _check(out, *_np_bf16(layout, a, b, c), k, out_dtype)
        want = reference.bf16_gemm(a, b, layout, c, out_dtype)
        assert np.array_equal(_bits(out), _bits(want))

    @pytest.mark.parametrize("m, n, k", [(8, 8, 8), (136, 264, 520), (64, 1000, 64)])
    @pytest.mark.parametrize("layout", LAYOUTS)
    def test_shapes(self, layout, m, n, k):
        a, b = _bf16_operands(layout, m, n, k, seed=m + n + k)
        out = _jitted("bf16", layout, F32)(a, b, None)
        _check(out, *_np_bf16(layout, a, b), k, F32)

    @pytest.mark.parametrize("m", [1, 5, 67])
    @pytest.mark.parametrize("layout", LAYOUTS)
    def test_any_m(self, layout, m):
        """M need not be a multiple of 8, even for an A stored [K, M]."""
        a, b = _bf16_operands(layout, m, 64, 64, seed=m)
        c = _addend(m, 64, F32, seed=m + 1)
        _check(_jitted("bf16", layout, BF16)(a, b, c), *_np_bf16(layout, a, b, c), 64, BF16)
        jaxpr = jax.make_jaxpr(_fn("bf16", layout))(a, b, c)
        assert not _kernel_violations(jaxpr.jaxpr)

    def test_layouts_agree(self):
        """One logical product stored in the four layouts: equal up to the order of the
        FP32 sums (which may differ with the majors, on the CPU as on the GPU)."""
        m, n, k = self.M, self.N, self.K
        a, b = _bf16_operands("nt", m, n, k, seed=50)
        c = _addend(m, n, BF16, seed=51)
        base = np.asarray(_jitted("bf16", "nt", F32)(a, b, c), np.float64)
        _, absdot = _np_bf16("nt", a, b, c)
        for layout in LAYOUTS[1:]:
            a_t, b_t = STORED_K_FIRST[layout]
            out = np.asarray(_jitted("bf16", layout, F32)(a.T if a_t else a, b.T if b_t else b, c), np.float64)
            assert np.all(np.abs(out - base) <= 2 * (k + 4) * 2.0**-24 * absdot), layout

    def test_zero_k_gives_c(self):
        a, b = jnp.zeros((16, 0), BF16), jnp.zeros((8, 0), BF16)
        c = _addend(16, 8, F32, seed=1)
        out = jax.jit(jaxgemm.bf16_gemm_nt, static_argnums=3)(a, b, c, BF16)
        assert out.dtype == BF16 and np.array_equal(_bits(out), _bits(c.astype(BF16)))


# ----------------------------------------------------------------------------- validation

def _trace(op, layout, a, b, c=None, out_dtype=BF16):
    f = _fn(op, layout)
    return jax.eval_shape(lambda a, b, c: f(a, b, c, out_dtype), a, b, c)


def _fp8_abstract(layout, m, n, k, sfa=None, sfb=None):
    """Abstract operands of fp8_gemm_<layout>, scales in their stored orientation."""
    a_t, b_t = STORED_K_FIRST[layout]
    kb, nb = -(-k // 128), -(-n // 128)
    sfa = sfa or ((kb, m) if a_t else (m, kb))
    sfb = sfb or ((kb, nb) if b_t else (nb, kb))
    return ((SDS((k, m) if a_t else (m, k), FP8), SDS(sfa, F32)),
            (SDS((k, n) if b_t else (n, k), FP8), SDS(sfb, F32)))


def _bf16_abstract(layout, m, n, k):
    a_t, b_t = STORED_K_FIRST[layout]
    return SDS((k, m) if a_t else (m, k), BF16), SDS((k, n) if b_t else (n, k), BF16)


def _shape_re(shape):
    return re.escape(str(tuple(shape)))


class TestFp8Validation:
    M, N, K = 64, 384, 256  # kb = 2, nb = 3

    @pytest.mark.parametrize("layout", LAYOUTS)
    def test_valid(self, layout):
        for sfb in (None, (2, 384) if STORED_K_FIRST[layout][1] else (384, 2)):
            out = _trace("fp8", layout, *_fp8_abstract(layout, self.M, self.N, self.K, sfb=sfb))
            assert out.shape == (self.M, self.N) and out.dtype == BF16

    @pytest.mark.parametrize("layout", LAYOUTS)
    def test_a_scales_shape(self, layout):
        """The expected shape follows A's orientation; the other orientation is refused."""
        a_t = STORED_K_FIRST[layout][0]
        want = (2, 64) if a_t else (64, 2)
        for bad in ((64, 2) if a_t else (2, 64), (want[0] + 1, want[1]), (want[0], want[1] - 1), (128,)):
            a, b = _fp8_abstract(layout, self.M, self.N, self.K, sfa=bad)
            form = r"\[K, M\]" if a_t else r"\[M, K\]"
            with pytest.raises(ValueError, match=rf"fp8_gemm_{layout}: a's scales must have shape "
                                                 rf"{_shape_re(want)} .*oriented as a {form}.*got {_shape_re(bad)}"):
                _trace("fp8", layout, a, b)

    @pytest.mark.parametrize("layout", LAYOUTS)
    def test_b_scales_shape(self, layout):
        """The message names both accepted shapes (block and per-row) in B's orientation."""
        b_t = STORED_K_FIRST[layout][1]
        block, per_row = ((2, 3), (2, 384)) if b_t else ((3, 2), (384, 2))
        others = ((3, 2), (384, 2)) if b_t else ((2, 3), (2, 384))  # the other orientation
        for bad in others + ((block[0] + 1, block[1]), (per_row[0], per_row[1] + 1), (6,)):
            a, b = _fp8_abstract(layout, self.M, self.N, self.K, sfb=bad)
            form = r"\[K, N\]" if b_t else r"\[N, K\]"
            with pytest.raises(ValueError, match=rf"fp8_gemm_{layout}: b's scales must have shape "
                                                 rf"{_shape_re(block)} .* or {_shape_re(per_row)} "
                                                 rf".*oriented as b {form}; got {_shape_re(bad)}"):
                _trace("fp8", layout, a, b)

    @pytest.mark.parametrize("layout", LAYOUTS)
    def test_k_mismatch(self, layout):
        a, _ = _fp8_abstract(layout, self.M, self.N, 256)
        _, b = _fp8_abstract(layout, self.M, self.N, 240)  # same scale shapes
        with pytest.raises(ValueError, match=rf"fp8_gemm_{layout}: a is .* and b is .*: K differs"):
            _trace("fp8", layout, a, b)

    @pytest.mark.parametrize("layout", LAYOUTS)
    def test_k_alignment(self, layout):
        for k in (8, 200, 129):
            a, b = _fp8_abstract(layout, self.M, self.N, k)
            with pytest.raises(ValueError, match=rf"K must be a multiple of 16.*got K={k}"):
                _trace("fp8", layout, a, b)

    @pytest.mark.parametrize("layout", LAYOUTS)
    def test_n_alignment(self, layout):
        for n in (4, 100, 130):
            a, b = _fp8_abstract(layout, self.M, n, self.K)
            with pytest.raises(ValueError, match=rf"N must be a multiple of 8.*got N={n}"):
                _trace("fp8", layout, a, b)

    @pytest.mark.parametrize("layout", LAYOUTS)
    def test_m_alignment(self, layout):
        """An A stored [K, M] is transposed on the GPU: M must give 16-byte rows."""
        a_t = STORED_K_FIRST[layout][0]
        for m in (8, 72, 1):
            a, b = _fp8_abstract(layout, m, self.N, self.K)
            if a_t:
                with pytest.raises(ValueError, match=rf"M must be a multiple of 16.*got M={m}"):
                    _trace("fp8", layout, a, b)
            else:
                assert _trace("fp8", layout, a, b).shape == (m, self.N)

    @pytest.mark.parametrize("layout", LAYOUTS)
    def test_c_and_out_dtype(self, layout):
        a, b = _fp8_abstract(layout, self.M, self.N, self.K)
        for shape in ((self.N, self.M), (self.M, self.N + 8), (self.M,)):
            with pytest.raises(ValueError, match=r"c must have shape \[M, N\] = \(64, 384\)"):
                _trace("fp8", layout, a, b, SDS(shape, F32))
        with pytest.raises(TypeError, match=r"c must be bfloat16 or float32, got float16"):
            _trace("fp8", layout, a, b, SDS((self.M, self.N), jnp.float16))
        with pytest.raises(TypeError, match=rf"fp8_gemm_{layout}: out_dtype must be bfloat16 or float32"):
            _trace("fp8", layout, a, b, out_dtype=jnp.float16)
        out = _trace("fp8", layout, a, b, SDS((self.M, self.N), BF16), out_dtype=F32)
        assert out.dtype == F32 and out.shape == (self.M, self.N)

    @pytest.mark.parametrize("layout", LAYOUTS)
    def test_dtypes(self, layout):
        (a0, a1), (b0, b1) = _fp8_abstract(layout, self.M, self.N, self.K)
        with pytest.raises(TypeError, match=r"a\[0\] \(data\) must be float8_e4m3fn"):
            _trace("fp8", layout, (SDS(a0.shape, BF16), a1), (b0, b1))
        with pytest.raises(TypeError, match=r"b\[1\] \(scales\) must be float32"):
            _trace("fp8", layout, (a0, a1), (b0, SDS(b1.shape, BF16)))


class TestBf16Validation:
    M, N, K = 64, 136, 200

    @pytest.mark.parametrize("layout", LAYOUTS)
    def test_valid(self, layout):
        out = _trace("bf16", layout, *_bf16_abstract(layout, self.M, self.N, self.K))
        assert out.shape == (self.M, self.N) and out.dtype == BF16

    @pytest.mark.parametrize("layout", LAYOUTS)
    @pytest.mark.parametrize("which", ["a", "b"])
    @pytest.mark.parametrize("dtype", [F32, jnp.float16, FP8, jnp.int8])
    def test_dtype(self, layout, which, dtype):
        a, b = _bf16_abstract(layout, self.M, self.N, self.K)
        a, b = (SDS(a.shape, dtype), b) if which == "a" else (a, SDS(b.shape, dtype))
        with pytest.raises(TypeError, match=rf"bf16_gemm_{layout}: {which} must be bfloat16, got "):
            _trace("bf16", layout, a, b)

    @pytest.mark.parametrize("layout", LAYOUTS)
    def test_rank(self, layout):
        a, b = _bf16_abstract(layout, self.M, self.N, self.K)
        with pytest.raises(ValueError, match=r"\ba must be rank 2"):
            _trace("bf16", layout, SDS((1,) + a.shape, BF16), b)
        with pytest.raises(ValueError, match=r"\bb must be rank 2"):
            _trace("bf16", layout, a, SDS(b.shape[:1], BF16))

    @pytest.mark.parametrize("layout", LAYOUTS)
    def test_k_mismatch(self, layout):
        a, _ = _bf16_abstract(layout, self.M, self.N, 200)
        _, b = _bf16_abstract(layout, self.M, self.N, 208)
        a_form = r"\[K, M\]" if STORED_K_FIRST[layout][0] else r"\[M, K\]"
        with pytest.raises(ValueError, match=rf"bf16_gemm_{layout}: a is {a_form} = .*: K differs"):
            _trace("bf16", layout, a, b)

    @pytest.mark.parametrize("layout", LAYOUTS)
    def test_alignment(self, layout):
        """K and N must be multiples of 8 (16-byte rows for TMA, D's included); M may be
        anything (an A stored [K, M] with M % 8 != 0 is read K-major instead)."""
        for dim in "MNK":
            sizes = {"M": self.M, "N": self.N, "K": self.K}
            sizes[dim] += 3
            a, b = _bf16_abstract(layout, sizes["M"], sizes["N"], sizes["K"])
            if dim in "NK":
                with pytest.raises(ValueError, match=rf"bf16_gemm_{layout}: {dim} must be a multiple of 8 "
                                                     rf".*got {sizes[dim]}"):
                    _trace("bf16", layout, a, b)
            else:
                assert _trace("bf16", layout, a, b).shape == (sizes["M"], sizes["N"])
                jaxpr = jax.make_jaxpr(_fn("bf16", layout))(a, b)
                assert not _kernel_violations(jaxpr.jaxpr)

    @pytest.mark.parametrize("layout", LAYOUTS)
    def test_c_and_out_dtype(self, layout):
        a, b = _bf16_abstract(layout, self.M, self.N, self.K)
        with pytest.raises(ValueError, match=r"c must have shape \[M, N\] = \(64, 136\)"):
            _trace("bf16", layout, a, b, SDS((self.N, self.M), F32))
        with pytest.raises(TypeError, match=r"c must be bfloat16 or float32"):
            _trace("bf16", layout, a, b, SDS((self.M, self.N), jnp.int32))
        with pytest.raises(TypeError, match=r"out_dtype must be bfloat16 or float32, got float16"):
            _trace("bf16", layout, a, b, out_dtype=jnp.float16)
        for c_dtype in (BF16, F32):
            out = _trace("bf16", layout, a, b, SDS((self.M, self.N), c_dtype), out_dtype=F32)
            assert out.dtype == F32

    def test_config_checked(self):
        a, b = _bf16_abstract("nn", self.M, self.N, self.K)
        with pytest.raises(ValueError, match=r"bf16_gemm_nn: unknown config keys"):
            jax.eval_shape(lambda a, b: jaxgemm.bf16_gemm_nn(a, b, config={"blockn": 64}), a, b)
        with pytest.raises(ValueError, match=r"config block_m must be 64 or 128"):
            jax.eval_shape(lambda a, b: jaxgemm.bf16_gemm_nn(a, b, config={"block_m": 32}), a, b)


class TestBf16GemmConfig:
    """jaxgemm.bf16_gemm_config: the lowering-time config (callable with num_sms given)."""

    @pytest.mark.parametrize("layout", LAYOUTS)
    def test_kind_keys(self, layout):
        a_t, b_t = STORED_K_FIRST[layout]
        cfg = jaxgemm.bf16_gemm_config(4096, 7168, 2048, layout=layout, num_sms=132)
        assert (cfg["a_mn_major"], cfg["b_mn_major"], cfg["sfb_per_row"]) == (int(a_t), int(b_t), 0)
        assert (cfg["out_bytes"], cfg["c_bytes"], cfg["cluster_m"]) == (2, 0, 1)
        assert cfg["smem_bytes"] <= 232448 and cfg["block_n"] % cfg["store_n"] == 0
        if b_t:
            assert cfg["block_n"] % 64 == 0
        cfg32 = jaxgemm.bf16_gemm_config(4096, 7168, 2048, layout=layout, num_sms=132,
                                         out_dtype=F32, c_dtype=F32)
        assert (cfg32["out_bytes"], cfg32["c_bytes"]) == (4, 4) and cfg32["store_n"] * 4 <= 128

    def test_pingpong(self):
        """The heuristic runs ping-pong where K is short (the epilogue a large part of a
        tile), not with C (its accumulators would spill); a pinned config only on request."""
        cfg = jaxgemm.bf16_gemm_config(4096, 32768, 512, layout="nt", num_sms=132)
        assert (cfg["block_m"], cfg["pingpong"]) == (128, 1) and cfg["block_n"] <= 192
        assert jaxgemm.bf16_gemm_config(4096, 7168, 16384, layout="nt", num_sms=132)["pingpong"] == 0
        with_c = jaxgemm.bf16_gemm_config(4096, 32768, 512, layout="nt", num_sms=132, c_dtype=jnp.float32)
        assert with_c["pingpong"] == 0
        pinned = jaxgemm.bf16_gemm_config(4096, 32768, 512, layout="nt", num_sms=132, config={"block_n": 128})
        assert pinned["pingpong"] == 0
        asked = jaxgemm.bf16_gemm_config(4096, 32768, 512, layout="nt", num_sms=132,
                                         config={"block_n": 128, "pingpong": 1})
        assert (asked["block_m"], asked["block_n"], asked["pingpong"]) == (128, 128, 1)

    def test_overrides(self):
        cfg = jaxgemm.bf16_gemm_config(333, 1160, 1536, layout="nn", num_sms=132,
                                       config={"block_m": 64, "block_n": 128})
        assert (cfg["block_m"], cfg["block_n"], cfg["cluster_m"]) == (64, 128, 1)
        assert cfg["num_sms"] == min(132, 6 * 10)  # tiles: ceil(333/64) * ceil(1160/128)

    @pytest.mark.parametrize("layout, config, match", [
        ("nt", {"cluster_m": 2, "num_sms": 131}, r"bf16_gemm_nt: config .* num_sms must be a multiple of 2"),
        ("nt", {"cluster_n": 2}, r"bf16_gemm_nt: config cluster_n=2 \(A multicast\) is implemented for the FP8"),
        ("nt", {"block_m": 64, "k_split": 2}, r"bf16_gemm_nt: config k_split=2 .* needs the FP8 kernel"),
        ("nt", {"block_n": 64, "cluster_k": 2}, r"bf16_gemm_nt: config cluster_k=2 .* needs the FP8 kernel"),
        ("nt", {"block_m": 64, "pingpong": 1}, r"bf16_gemm_nt: config pingpong=1 .* needs the BF16 kernel and block_m=128"),
        ("nt", {"pingpong": 2}, r"config pingpong must be 0 or 1, got 2"),
        ("nn", {"block_n": 96}, r"bf16_gemm_nn: config block_n=96 must be a multiple of 64 \(128 with cluster_m=2\) when B is MN-major"),
        ("nn", {"block_n": 192, "cluster_m": 2}, r"must be a multiple of 64 \(128 with cluster_m=2\)"),
        ("tn", {"block_n": 96, "store_n": 64}, r"store_n=64 must divide block_n"),
        ("tt", {"block_m": 128, "block_n": 256, "num_stages": 8}, r"shared memory"),
    ])
    def test_rejects_impossible_configs(self, layout, config, match):
        with pytest.raises(ValueError, match=match):
            jaxgemm.bf16_gemm_config(256, 256, 256, layout=layout, num_sms=132, config=config)


# ----------------------------------------------------------------------------- vmap

class TestVmap:
    L = 3

    def _check_one_launch(self, fn, *args):
        jaxpr = jax.make_jaxpr(fn)(*args)
        assert _count_prims(jaxpr.jaxpr, "jaxgemm_gemm") == 1, jaxpr
        assert not _prim_names(jaxpr.jaxpr) & {"while", "scan", "cond"}, "vmap became a loop"

    @pytest.mark.parametrize("axes", [(0, None, None), (None, 0, None), (0, 0, None), (0, None, 0),
                                      (None, None, 0), (0, 0, 0), (1, 1, 1)],
                             ids=lambda x: "".join("-" if v is None else str(v) for v in x))
    @pytest.mark.parametrize("layout", LAYOUTS)
    def test_bf16(self, layout, axes):
        """Batched A (a K-major A folds into M, an MN-major A goes into L against a shared
        B), batched B, batched c, and a non-leading batch axis: one launch; each example
        equals its own call (bitwise for nt; see below for the MN-major layouts)."""
        m, n, k = 24, 40, 56
        ops = [_bf16_operands(layout, m, n, k, seed=60 + i) for i in range(self.L)]
        cs = [_addend(m, n, F32, seed=70 + i) for i in range(self.L)]
        stacked = [jnp.stack([o[0] for o in ops], axes[0] or 0), jnp.stack([o[1] for o in ops], axes[1] or 0),
                   jnp.stack(cs, axes[2] or 0)]
        args = [stacked[j] if axes[j] is not None else (ops[0][j] if j < 2 else cs[0]) for j in range(3)]
        f = _fn("bf16", layout)
        fn = jax.vmap(lambda a, b, c: f(a, b, c, F32), in_axes=axes)
        out = jax.jit(fn)(*args)
        assert out.shape == (self.L, m, n) and out.dtype == F32
        single = _jitted("bf16", layout, F32)
        for i in range(self.L):
            pick = [i if axes[j] is not None else 0 for j in range(3)]
            a_i, b_i, c_i = ops[pick[0]][0], ops[pick[1]][1], cs[pick[2]]
            want = single(a_i, b_i, c_i)
            if layout == "nt":
                assert np.array_equal(_bits(out[i]), _bits(want)), i
            else:
                # XLA:CPU's dot may sum in another order for a batched or larger
                # MN-major product: equal up to FP32 accumulation, and right.
                _, absdot = _np_bf16(layout, a_i, b_i, c_i)
                diff = np.abs(np.asarray(out[i], np.float64) - np.asarray(want, np.float64))
                assert np.all(diff <= 2 * (k + 4) * 2.0**-24 * absdot), i
                _check(out[i], *_np_bf16(layout, a_i, b_i, c_i), k, F32)
        self._check_one_launch(fn, *args)

    @pytest.mark.parametrize("layout", LAYOUTS)
    def test_bf16_nested(self, layout):
        m, n, k = 16, 24, 32
        ops = [_bf16_operands(layout, m, n, k, seed=80 + i) for i in range(4)]
        a = jnp.stack([o[0] for o in ops]).reshape((2, 2) + ops[0][0].shape)
        b = jnp.stack([o[1] for o in ops[:2]])
        f = _fn("bf16", layout)
        fn = jax.vmap(jax.vmap(f, in_axes=(0, 0)), in_axes=(0, None))
        out = jax.jit(fn)(a, b)
        for i in range(2):
            for j in range(2):
                want = _jitted("bf16", layout, BF16)(ops[2 * i + j][0], ops[j][1], None)
                assert np.array_equal(_bits(out[i, j]), _bits(want)), (i, j)
        self._check_one_launch(fn, a, b)

    @pytest.mark.parametrize("axes", [((0, 0), None), (None, (0, 0)), ((0, 0), (0, 0))],
                             ids=["A", "B", "AB"])
    @pytest.mark.parametrize("layout", LAYOUTS)
    def test_fp8(self, layout, axes):
        m, n, k = 32, 136, 208
        ops = [_fp8_operands(layout, m, n, k, seed=90 + i) for i in range(self.L)]

        def stack(j):
            return tuple(jnp.stack([o[j][h] for o in ops]) for h in range(2))

        args = [stack(j) if axes[j] is not None else ops[0][j] for j in range(2)]
        f = _fn("fp8", layout)
        fn = jax.vmap(lambda a, b: f(a, b, None, F32), in_axes=axes)
        out = jax.jit(fn)(*args)
        for i in range(self.L):
            want = _jitted("fp8", layout, F32)(ops[i if axes[0] else 0][0], ops[i if axes[1] else 0][1], None)
            assert np.array_equal(_bits(out[i]), _bits(want)), i
        self._check_one_launch(fn, *args)


# ----------------------------------------------------------------------------- gradients

def _grad_operands(layout, c_dtype, m=64, n=64, k=128, seed=0):
    a, b = _bf16_operands(layout, m, n, k, seed=seed)
    # Moderate magnitudes: check_grads compares inner products with a relative tolerance.
    a = (a.astype(F32) / (1 + jnp.abs(a.astype(F32)))).astype(BF16)
    b = (b.astype(F32) / (1 + jnp.abs(b.astype(F32)))).astype(BF16)
    return a, b, _addend(m, n, c_dtype, seed=seed + 1)


class TestBf16Grads:
    @pytest.mark.parametrize("c_dtype", C_DTYPES, ids=_id)
    @pytest.mark.parametrize("layout", LAYOUTS)
    def test_check_grads(self, layout, c_dtype):
        """Reverse mode against finite differences. D is bilinear in (A, B) and linear in
        C, so central differences are exact for any step: a large step (eps=1) keeps the
        BF16 rounding of the perturbed inputs small relative to the difference."""
        a, b, c = _grad_operands(layout, c_dtype, seed=LAYOUTS.index(layout))
        f = _fn("bf16", layout)
        if c is None:
            check_grads(lambda a, b: f(a, b, out_dtype=F32), (a, b), order=1, modes=["rev"],
                        eps=1.0, atol=5e-2, rtol=5e-2)
        else:
            check_grads(lambda a, b, c: f(a, b, c, F32), (a, b, c), order=1, modes=["rev"],
                        eps=1.0, atol=5e-2, rtol=5e-2)

    @pytest.mark.parametrize("out_dtype", OUT_DTYPES, ids=_id)
    @pytest.mark.parametrize("c_dtype", C_DTYPES, ids=_id)
    @pytest.mark.parametrize("layout", LAYOUTS)
    def test_vjp_matches_float64(self, layout, c_dtype, out_dtype):
        """dA, dB (and dC) in their operands' storage and dtype. With a BF16-exact
        cotangent G: dA' = G B', dB' = G^T A' in float64, each rounded once to BF16."""
        m, n, k = 40, 48, 72
        a, b, c = _grad_operands(layout, c_dtype, m, n, k, seed=100)
        f = _fn("bf16", layout)
        g = jnp.asarray(_spread(_rng(101), m, n, 1.0, 0.5)).astype(BF16).astype(out_dtype)
        args = (a, b) if c is None else (a, b, c)
        out, vjp = jax.vjp(lambda a, b, c=None: f(a, b, c, out_dtype), *args)
        assert out.dtype == out_dtype
        grads = vjp(g)
        assert len(grads) == len(args)
        for x, dx in zip(args, grads):
            assert dx.shape == x.shape and dx.dtype == x.dtype
        a_t, b_t = STORED_K_FIRST[layout]
        g64, a64, b64 = _f64(g), _f64(a), _f64(b)
        a_mk = a64.T if a_t else a64   # [M, K]
        b_nk = b64.T if b_t else b64   # [N, K]
        da_mk, db_nk = g64 @ b_nk, g64.T @ a_mk
        da_abs, db_abs = np.abs(g64) @ np.abs(b_nk), np.abs(g64).T @ np.abs(a_mk)
        _check(grads[0], da_mk.T if a_t else da_mk, da_abs.T if a_t else da_abs, n, BF16)
        _check(grads[1], db_nk.T if b_t else db_nk, db_abs.T if b_t else db_abs, m, BF16)
        if c is not None:
            assert np.array_equal(_f64(grads[2]), _f64(g.astype(c.dtype)))

    @pytest.mark.parametrize("layout", LAYOUTS)
    def test_grad_matches_reference_grad(self, layout):
        """jax.grad of the op vs jax.grad of its reference definition, under jit."""
        a, b, c = _grad_operands(layout, F32, seed=110)
        w = jnp.asarray(_rng(111).standard_normal((64, 64)).astype(np.float32))
        f = _fn("bf16", layout)

        def loss(a, b, c):
            return jnp.sum(f(a, b, c, F32) * w)

        def loss_ref(a, b, c):
            return jnp.sum(reference.bf16_gemm(a, b, layout, c, F32) * w)

        got = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(a, b, c)
        want = jax.jit(jax.grad(loss_ref, argnums=(0, 1, 2)))(a, b, c)
        for x, y, name in zip(got, want, "abc"):
            assert x.dtype == y.dtype and x.shape == y.shape, name
            assert jaxgemm.calc_diff(x, y) < 1e-5, (name, jaxgemm.calc_diff(x, y))

    @pytest.mark.parametrize("layout", LAYOUTS)
    def test_grad_uses_the_gemm_kernel(self, layout):
        """The backward pass is two more jaxgemm GEMMs (dgrad, wgrad), not XLA dots."""
        a, b, _ = _grad_operands(layout, None)
        f = _fn("bf16", layout)
        jaxpr = jax.make_jaxpr(jax.grad(lambda a, b: jnp.sum(f(a, b, out_dtype=F32)), argnums=(0, 1)))(a, b)
        assert _count_prims(jaxpr.jaxpr, "jaxgemm_gemm") == 3
        assert "dot_general" not in _prim_names(jaxpr.jaxpr)

    @pytest.mark.parametrize("m", [64, 67, 5])
    @pytest.mark.parametrize("layout", LAYOUTS)
    def test_backward_gemms_are_runnable(self, layout, m):
        """Every GEMM of the forward and backward passes is one the kernel can run (the
        CPU reference would run anything; on the GPU a misaligned one fails at launch):
        in particular dA of an A stored [K, M] is a GEMM whose N is M."""
        a, b, c = _grad_operands(layout, F32, m=m, n=64, k=128, seed=m)
        f = _fn("bf16", layout)
        jaxpr = jax.make_jaxpr(jax.grad(lambda a, b, c: jnp.sum(f(a, b, c, F32)), argnums=(0, 1, 2)))(a, b, c)
        assert len(_gemm_eqns(jaxpr.jaxpr)) == 3
        assert not _kernel_violations(jaxpr.jaxpr)

    @pytest.mark.parametrize("layout", LAYOUTS)
    def test_vjp_with_m_not_a_multiple_of_8(self, layout):
        m, n, k = 67, 48, 72
        a, b, _ = _grad_operands(layout, None, m, n, k, seed=140)
        g = jnp.asarray(_spread(_rng(141), m, n, 1.0, 0.5)).astype(BF16).astype(F32)
        _, vjp = jax.vjp(lambda a, b: _fn("bf16", layout)(a, b, None, F32), a, b)
        da, db = vjp(g)
        a_t, b_t = STORED_K_FIRST[layout]
        g64, a_mk, b_nk = _f64(g), _f64(a.T if a_t else a), _f64(b.T if b_t else b)
        da_mk, da_abs = g64 @ b_nk, np.abs(g64) @ np.abs(b_nk)
        db_nk, db_abs = g64.T @ a_mk, np.abs(g64).T @ np.abs(a_mk)
        _check(da, da_mk.T if a_t else da_mk, da_abs.T if a_t else da_abs, n, BF16)
        _check(db, db_nk.T if b_t else db_nk, db_abs.T if b_t else db_abs, m, BF16)

    @pytest.mark.parametrize("layout", ["nt", "tn"])
    def test_dc_of_f32_c_is_the_cotangent(self, layout):
        """D = C + A @ B: dC = G exactly (no GEMM involved, so no reason to round it)."""
        a, b, c = _grad_operands(layout, F32, seed=120)
        g = jnp.asarray(_rng(121).standard_normal((64, 64)).astype(np.float32))
        _, vjp = jax.vjp(lambda c: _fn("bf16", layout)(a, b, c, F32), c)
        (dc,) = vjp(g)
        assert dc.dtype == F32 and np.array_equal(np.asarray(dc), np.asarray(g))

    def test_grad_through_vmap(self):
        layout = "tn"
        ops = [_grad_operands(layout, None, 16, 24, 32, seed=130 + i) for i in range(3)]
        a = jnp.stack([o[0] for o in ops])
        b = ops[0][1]
        f = _fn("bf16", layout)

        def loss(a, b):
            return jnp.sum(jax.vmap(lambda x: f(x, b, out_dtype=F32))(a) ** 2)

        da, db = jax.jit(jax.grad(loss, argnums=(0, 1)))(a, b)

        def loss_ref(a, b):
            return jnp.sum(reference.bf16_gemm(a, b[None], layout, None, F32) ** 2)

        ra, rb = jax.grad(loss_ref, argnums=(0, 1))(a, b)
        assert jaxgemm.calc_diff(da, ra) < 1e-5 and jaxgemm.calc_diff(db, rb) < 1e-5


# ----------------------------------------------------------------------------- fp8_linear

def _linear_data(lead, k, n, seed):
    r = _rng(seed)
    x = r.standard_normal(lead + (k,)) * np.exp(r.uniform(-2, 2, lead + (1,)))
    w = r.standard_normal((k, n)) / np.sqrt(k)
    return jnp.asarray(x.astype(np.float32), BF16), jnp.asarray(w.astype(np.float32), BF16)


class TestFp8Linear:
    K, N = 256, 384

    @pytest.mark.parametrize("lead", [(), (1,), (100,), (2, 3), (2, 3, 5)], ids=str)
    def test_forward(self, lead):
        x, w = _linear_data(lead, self.K, self.N, seed=len(lead))
        y = jax.jit(jaxgemm.fp8_linear)(x, w)
        assert y.shape == lead + (self.N,) and y.dtype == BF16
        x2 = x.reshape(-1, self.K)
        # Exactly the FP8 recipe: x per token, the kernel per 128x128 block, in float64.
        xq = jaxgemm.per_token_cast_to_fp8(x2)
        wq = jaxgemm.per_block_cast_to_fp8(w.T)
        want, absdot = _np_fp8("nt", xq, wq)
        _check(y.reshape(-1, self.N), want, absdot, self.K, BF16)
        # And close to the unquantized product.
        exact = _f64(x2) @ _f64(w)
        assert jaxgemm.calc_diff(y.reshape(-1, self.N), exact) < 1e-3
        # Leading dimensions are only a reshape: the 2D call gives the same bits.
        assert np.array_equal(_bits(y.reshape(-1, self.N)), _bits(jax.jit(jaxgemm.fp8_linear)(x2, w)))

    def test_rows_are_independent(self):
        x, w = _linear_data((150,), self.K, self.N, seed=1)
        f = jax.jit(jaxgemm.fp8_linear)
        full = _bits(f(x, w))
        for rows in (1, 7, 128):
            assert np.array_equal(_bits(f(x[:rows], w)), full[:rows]), rows

    @pytest.mark.parametrize("kernel_shape, match", [
        ((200, 384), r"K and N must be multiples of 128"),
        ((256, 200), r"K and N must be multiples of 128"),
        ((64, 128), r"K and N must be multiples of 128"),
        ((256,), r"kernel must be \[K, N\]"),
        ((1, 256, 384), r"kernel must be \[K, N\]"),
    ])
    def test_shape_errors(self, kernel_shape, match):
        k = kernel_shape[0] if len(kernel_shape) == 2 else 256
        x = SDS((4, k), BF16)
        with pytest.raises(ValueError, match=rf"fp8_linear: {match}"):
            jax.eval_shape(jaxgemm.fp8_linear, x, SDS(kernel_shape, BF16))

    def test_k_mismatch(self):
        with pytest.raises(ValueError, match=r"fp8_linear: x is .* x's last dimension must be K"):
            jax.eval_shape(jaxgemm.fp8_linear, SDS((4, 128), BF16), SDS((256, 384), BF16))
        with pytest.raises(ValueError, match=r"fp8_linear: x is"):
            jax.eval_shape(jaxgemm.fp8_linear, SDS((), BF16), SDS((256, 384), BF16))

    @pytest.mark.parametrize("x_dtype, w_dtype, name", [(F32, BF16, "x"), (BF16, F32, "kernel"),
                                                         (jnp.float16, BF16, "x"), (BF16, FP8, "kernel")])
    def test_dtype_errors(self, x_dtype, w_dtype, name):
        with pytest.raises(TypeError, match=rf"fp8_linear: {name} must be bfloat16, got "):
            jax.eval_shape(jaxgemm.fp8_linear, SDS((4, 256), x_dtype), SDS((256, 384), w_dtype))

    @pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
    @pytest.mark.parametrize("lead", [(256,), (100,), (3, 50)], ids=str)
    def test_grads_match_bf16_reference(self, lead, jit):
        """dx and dW of sum(fp8_linear(x, W) * G) against float64 x, W, G: within FP8
        quantization error (calc_diff < 2e-3), for token counts that are and are not
        multiples of 128 (wgrad pads the tokens to whole 1x128 groups)."""
        x, w = _linear_data(lead, self.K, self.N, seed=200 + len(lead))
        r = _rng(201)
        g = jnp.asarray((r.standard_normal(lead + (self.N,)) * np.exp(r.uniform(-1, 1, lead + (1,))))
                        .astype(np.float32), BF16)

        def loss(x, w):
            return jnp.sum(jaxgemm.fp8_linear(x, w).astype(F32) * g.astype(F32))

        grad = jax.grad(loss, argnums=(0, 1))
        dx, dw = (jax.jit(grad) if jit else grad)(x, w)
        assert dx.shape == x.shape and dx.dtype == BF16
        assert dw.shape == w.shape and dw.dtype == BF16
        x2, g2 = _f64(x).reshape(-1, self.K), _f64(g).reshape(-1, self.N)
        want_dx = (g2 @ _f64(w).T).reshape(x.shape)
        want_dw = x2.T @ g2
        assert np.all(np.isfinite(_f64(dx))) and np.all(np.isfinite(_f64(dw)))
        assert jaxgemm.calc_diff(dx, want_dx) < 2e-3, jaxgemm.calc_diff(dx, want_dx)
        assert jaxgemm.calc_diff(dw, want_dw) < 2e-3, jaxgemm.calc_diff(dw, want_dw)

    def test_backward_is_the_fp8_recipe(self):
        """Forward nt (1D2D, BF16 out), dgrad nn (the forward's blocks, BF16 out), wgrad
        tn with 1x128 groups along tokens on both sides (1D1D) and FP32 output."""
        x, w = _linear_data((100,), self.K, self.N, seed=3)
        jaxpr = jax.make_jaxpr(jax.grad(lambda x, w: jnp.sum(jaxgemm.fp8_linear(x, w).astype(F32)),
                                        argnums=(0, 1)))(x, w)
        specs = _gemm_specs(jaxpr.jaxpr)
        assert len(specs) == 3, specs
        assert all(s.op == "fp8" for s in specs)
        assert sorted((s.sfb_per_row, s.out_dtype) for s in specs) == [
            (False, "bfloat16"), (False, "bfloat16"), (True, "float32")]
        assert "dot_general" not in _prim_names(jaxpr.jaxpr)

    def test_wgrad_exact_model(self):
        """dW equals, to FP32 accumulation and one BF16 rounding, the float64 product of
        x and dy quantized in 1x128 groups along the (zero-padded) token axis."""
        x, w = _linear_data((100,), self.K, self.N, seed=4)
        g = jnp.asarray(_spread(_rng(5), 100, self.N, 1.0, 0.5), BF16)
        _, vjp = jax.vjp(jaxgemm.fp8_linear, x, w)
        _, dw = vjp(g)
        pad = ((0, 28), (0, 0))
        xq = jaxgemm.per_channel_cast_to_fp8(jnp.pad(x, pad))
        gq = jaxgemm.per_channel_cast_to_fp8(jnp.pad(g, pad))
        want, absdot = _np_fp8("tn", xq, gq)
        _check(dw, want, absdot, 128, BF16)
