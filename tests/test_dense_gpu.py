"""The dense family on an SM90 GPU: every FP8 and BF16 layout, with and without C,
BF16 and FP32 outputs, the 1D1D recipe, gradients and fp8_linear. Every element is
checked against a float64 reference, with the output memory poisoned first.

(fp8_gemm_nt without C is covered shape by shape in test_fp8_gemm_gpu.py.)
"""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxgemm
from jaxgemm import reference
from jaxgemm.ops.gemm_primitive import GemmSpec
from jaxgemm.precompile import precompile

from _gpu_data import poison as _poison, random_bf16_operands as _random

pytestmark = pytest.mark.gpu

DEEPSEEK_V3_NK = [(2112, 7168), (24576, 1536), (32768, 512), (7168, 16384), (4096, 7168), (7168, 2048)]
MS = [1, 4097]
LAYOUTS = ["nt", "nn", "tn", "tt"]
# (c dtype, out dtype)
C_MODES = [(None, jnp.bfloat16), (jnp.float32, jnp.float32), (jnp.bfloat16, jnp.bfloat16)]


def _stored(x, k_first):
    return x.T if k_first else x


def _fp8_operands(m, n, k, layout, seed, per_row_b=False):
    x, w = _random(m, n, k, seed)
    a_t, b_t = reference.LAYOUTS[layout]
    a = jaxgemm.per_token_cast_to_fp8(x)
    b = jaxgemm.per_token_cast_to_fp8(w) if per_row_b else jaxgemm.per_block_cast_to_fp8(w)
    a = tuple(_stored(v, a_t) for v in a)
    b = tuple(_stored(v, b_t) for v in b)
    return a, b


def _c(m, n, dtype, seed):
    if dtype is None:
        return None
    return (jax.random.normal(jax.random.PRNGKey(seed + 99), (m, n)) * 4).astype(dtype)


@functools.partial(jax.jit, static_argnames="rel")
def _errors(got, ref, rel):
    got = got.astype(jnp.float64)
    diff = 1 - 2 * jnp.sum(got * ref) / jnp.sum(got * got + ref * ref)
    # The absolute floor, relative to the row's magnitude, covers results that cancel
    # to near zero.
    rms = jnp.sqrt(jnp.mean(ref * ref, axis=-1, keepdims=True))
    bad = jnp.abs(got - ref) > rel * jnp.abs(ref) + rel * rms
    return diff, jnp.sum(jnp.isnan(got)), jnp.sum(bad), jnp.argmax(bad.reshape(-1))


def _check(out, ref64, out_dtype, diff_bound, rel=None):
    """Every element of `out` against the float64 `ref64` (one compiled check). `rel`
    defaults to what BF16 rounding allows (2^-8) or, for FP32 outputs, 1e-4; FP8
    GEMMs are checked at 1e-2 whatever their output, since the FP8 tensor cores
    accumulate each 128-deep block with ~14 mantissa bits before the FP32 promotion."""
    if rel is None:
        rel = 1e-2 if jnp.dtype(out_dtype) == jnp.bfloat16 else 1e-4
    with jax.enable_x64(True):
        diff, n_nan, n_bad, first = (np.asarray(v) for v in _errors(out, ref64, rel))
    assert n_nan == 0, f"{n_nan} NaN in the output (unwritten or bad elements)"
    assert diff < diff_bound, f"calc_diff {diff}"
    assert n_bad == 0, f"{n_bad} elements off (first at flat index {first} of {out.shape})"
    return float(diff)


def _reference(fn, *args):
    """`fn(*args)` in float64, compiled once per shape."""
    with jax.enable_x64(True):
        return jax.jit(fn, static_argnums=tuple(i for i, a in enumerate(args)
                                                if isinstance(a, str) or a is jnp.float64))(*args)


@pytest.fixture(scope="module", autouse=True)
def _warm_jit_cache():
    """Compile every kernel this module uses in parallel, once."""
    def spec(op, c_dtype, out_dtype, **layout):
        cd = None if c_dtype is None else jnp.dtype(c_dtype).name
        return GemmSpec(op, jnp.dtype(out_dtype).name, cd is not None, cd, **layout)

    gemms = []
    for m in MS:
        for n, k in DEEPSEEK_V3_NK:
            for c_dtype, out_dtype in C_MODES:
                gemms.append((spec("fp8", c_dtype, out_dtype), m, n, k, 1))
                for layout in LAYOUTS:
                    a_t, b_t = reference.LAYOUTS[layout]
                    gemms.append((spec("bf16", c_dtype, out_dtype, a_mn_major=a_t, b_mn_major=b_t), m, n, k, 1))
            gemms.append((GemmSpec("fp8", "float32", True, "float32", sfb_per_row=True), m, n, k, 1))
            for layout in LAYOUTS[1:]:  # test_fp8_gemm_layouts (M rounded up to 16 where A is [K, M])
                a_t, b_t = reference.LAYOUTS[layout]
                mm = m - m % 16 + 16 if a_t and m % 16 else m
                for c_dtype, out_dtype in C_MODES[:2]:
                    gemms.append((spec("fp8", c_dtype, out_dtype, a_stored_mn_major=a_t, b_stored_mn_major=b_t),
                                  mm, n, k, 1))
    precompile(gemms)


# ----------------------------------------------------------------------------- FP8

@pytest.mark.parametrize("n,k", DEEPSEEK_V3_NK)
@pytest.mark.parametrize("m", MS)
@pytest.mark.parametrize("c_dtype,out_dtype", C_MODES[1:])
def test_fp8_gemm_nt_with_c(m, n, k, c_dtype, out_dtype):
    a, b = _fp8_operands(m, n, k, "nt", seed=m + n + k)
    c = _c(m, n, c_dtype, seed=m)
    ref = _reference(reference.fp8_gemm, *a, *b, "nt", c, jnp.float64)
    _poison((m, n), out_dtype)
    out = jax.jit(functools.partial(jaxgemm.fp8_gemm_nt, out_dtype=out_dtype))(a, b, c)
    assert out.dtype == out_dtype
    _check(out, ref, out_dtype, 1e-3, rel=1e-2)


@pytest.mark.parametrize("n,k", DEEPSEEK_V3_NK)
@pytest.mark.parametrize("m", MS)
@pytest.mark.parametrize("c_dtype,out_dtype", C_MODES[:2])
@pytest.mark.parametrize("layout", ["nn", "tn", "tt"])
def test_fp8_gemm_layouts(m, n, k, layout, c_dtype, out_dtype):
    if layout[0] == "t" and m % 16:
        m = m - m % 16 + 16  # a [K, M] A needs 16-byte rows; 1 -> 16, 4097 -> 4112
    a, b = _fp8_operands(m, n, k, layout, seed=m + n + k + 1)
    c = _c(m, n, c_dtype, seed=m)
    ref = _reference(reference.fp8_gemm, *a, *b, layout, c, jnp.float64)
    _poison((m, n), out_dtype)
    out = jax.jit(getattr(jaxgemm, f"fp8_gemm_{layout}"), static_argnums=3)(a, b, c, out_dtype)
    assert out.dtype == out_dtype
    _check(out, ref, out_dtype, 1e-3, rel=1e-2)


@pytest.mark.parametrize("n,k", DEEPSEEK_V3_NK)
@pytest.mark.parametrize("m", MS)
def test_fp8_gemm_1d1d_fp32_accumulate(m, n, k):
    """DeepSeek-V3's weight-gradient recipe: 1x128 scales on both sides, D = C + A B^T in FP32."""
    a, b = _fp8_operands(m, n, k, "nt", seed=m + n + k + 2, per_row_b=True)
    c = _c(m, n, jnp.float32, seed=m)
    ref = _reference(reference.fp8_gemm, *a, *b, "nt", c, jnp.float64)
    _poison((m, n), jnp.float32)
    out = jax.jit(lambda a, b, c: jaxgemm.fp8_gemm_nt(a, b, c, out_dtype=jnp.float32))(a, b, c)
    _check(out, ref, jnp.float32, 1e-3, rel=1e-2)


@pytest.mark.parametrize("config", [{"block_m": 128, "block_n": 96, "cluster_n": 2},
                                    {"block_m": 64, "block_n": 64, "cluster_n": 2, "num_sms": 4},
                                    {"block_m": 128, "block_n": 128, "cluster_m": 2},
                                    {"block_m": 64, "block_n": 96, "k_split": 2, "num_sms": 5},
                                    {"block_m": 128, "block_n": 64, "cluster_k": 4, "num_sms": 16}])
def test_fp8_gemm_1d1d_multicast(config):
    """The weight-gradient recipe with A (cluster_n) or B (cluster_m) multicast: the
    per-column B scales are loaded by each CTA of the pair; odd block counts leave dummies.
    And with K split over two warpgroups (FP32 C added once, by the first), or over the
    CTAs of a cluster (C added once, by the CTA that stores each column slice)."""
    m, n, k = 333, 1160, 1536
    a, b = _fp8_operands(m, n, k, "nt", seed=5, per_row_b=True)
    c = _c(m, n, jnp.bfloat16, seed=m)
    ref = _reference(reference.fp8_gemm, *a, *b, "nt", c, jnp.float64)
    _poison((m, n), jnp.float32)
    out = jax.jit(lambda a, b, c: jaxgemm.fp8_gemm_nt(a, b, c, out_dtype=jnp.float32, config=config))(a, b, c)
    _check(out, ref, jnp.float32, 1e-3, rel=1e-2)


# Configs of the in-kernel relayout (operands stored MN-major, transposed in shared
# memory): both tile heights, tile widths that are not powers of two, more K blocks
# in flight than stages (few SMs: the raw loads run ahead across tiles), the K split
# over warpgroups or CTAs, and the other operand multicast.
RELAYOUT_CONFIGS = [
    {"block_m": 128, "block_n": 176, "num_sms": 5},
    {"block_m": 64, "block_n": 112},
    {"block_m": 128, "block_n": 192, "num_stages": 2},
    {"block_m": 64, "block_n": 64, "k_split": 2, "num_sms": 7},
    {"block_m": 64, "block_n": 64, "cluster_k": 2, "num_sms": 8},
    {"block_m": 128, "block_n": 128, "cluster_n": 2, "num_sms": 6},  # multicasts A: B relaid out
    {"block_m": 128, "block_n": 128, "cluster_m": 2, "num_sms": 6},  # multicasts B: A relaid out
]


@pytest.mark.parametrize("per_row_b", [False, True])
@pytest.mark.parametrize("config", RELAYOUT_CONFIGS)
@pytest.mark.parametrize("layout", ["nn", "tn", "tt"])
def test_fp8_gemm_relayout(layout, config, per_row_b):
    a_t, b_t = reference.LAYOUTS[layout]
    if (b_t and config.get("cluster_m", 1) > 1) or (a_t and config.get("cluster_n", 1) > 1):
        pytest.skip("an operand the kernel transposes is not multicast (rejected at trace time)")
    if per_row_b and config.get("k_split", 1) > 1:
        pytest.skip("1D1D with k_split is covered by test_fp8_gemm_1d1d_multicast")
    m, n, k = 336, 1168, 1552  # partial tiles in M, N and K
    config = dict(config, relayout=1)
    assert jaxgemm.fp8_gemm_config(m, n, k, layout=layout, num_sms=132, config=config,
                                   sfb_per_row=per_row_b)["relayout"] == 1
    a, b = _fp8_operands(m, n, k, layout, seed=11, per_row_b=per_row_b)
    c = _c(m, n, jnp.bfloat16, seed=m)
    ref = _reference(reference.fp8_gemm, *a, *b, layout, c, jnp.float64)
    _poison((m, n), jnp.float32)
    f = getattr(jaxgemm, f"fp8_gemm_{layout}")
    out = jax.jit(lambda a, b, c: f(a, b, c, out_dtype=jnp.float32, config=config))(a, b, c)
    _check(out, ref, jnp.float32, 1e-3, rel=1e-2)


@pytest.mark.parametrize("m, n, k, layout, tile", [
    (128, 7168, 2048, "nn", (128, 128, 2, 1)), (96, 7168, 3088, "tn", (128, 128, 2, 1)),
    (112, 4096, 4096, "tn", (128, 64, 2, 1)), (80, 7168, 1040, "nn", (128, 64, 1, 1)),
    (40, 7168, 1040, "nn", (64, 64, 1, 2)), (48, 7168, 3088, "nn", (64, 128, 2, 1)),
    (64, 4096, 4096, "tn", (64, 64, 2, 1)), (128, 2112, 7168, "nn", (128, 128, 4, 1)),
    (112, 2096, 4096, "tn", (128, 128, 4, 1))])
def test_fp8_gemm_narrow_relayout(m, n, k, layout, tile):
    """The heuristic's own pick at M <= 128: B relaid out in one row of 128- or
    64-column tiles (block_m, block_n, cluster_k, k_split as `tile`), with partial M,
    N and K."""
    no_swap = {"swap_ab": 0}  # the swapped kernel would take some of these (test_fp8_register_a_gpu.py)
    cfg = jaxgemm.fp8_gemm_config(m, n, k, layout=layout, num_sms=132, config=no_swap)
    assert cfg["relayout"] == 1 and cfg["swap_ab"] == 0, cfg
    assert (cfg["block_m"], cfg["block_n"], cfg["cluster_k"], cfg["k_split"]) == tile, cfg
    a, b = _fp8_operands(m, n, k, layout, seed=12)
    c = _c(m, n, jnp.float32, seed=m)
    ref = _reference(reference.fp8_gemm, *a, *b, layout, c, jnp.float64)
    _poison((m, n), jnp.float32)
    f = getattr(jaxgemm, f"fp8_gemm_{layout}")
    out = jax.jit(lambda a, b, c: f(a, b, c, out_dtype=jnp.float32, config=no_swap))(a, b, c)
    _check(out, ref, jnp.float32, 1e-3, rel=1e-2)


_F8_PRODUCERS = re.compile(r"= f8e4m3fn\[[^\]]*\](?:\{[^}]*\})? ([a-z][a-z0-9-]*)\(")


_TRANSPOSE_CALL = re.compile(r'custom_call_target="jaxgemm_transpose_bytes"')


@pytest.mark.parametrize("mode", ["relayout", "transpose_bytes", "xla"])
@pytest.mark.parametrize("layout", ["nn", "tn", "tt"])
def test_fp8_relayout_leaves_no_transpose(layout, mode, monkeypatch):
    """What makes an operand stored MN-major K-major, in the compiled program:
    relayout=1 hands the kernel the operands as stored (no FP8 array is produced by
    anything but a parameter or a view); relayout=0 transposes each with one
    jaxgemm transpose_bytes call and nothing else; JAXGEMM_XLA_TRANSPOSE=1 leaves it
    to XLA (which shows that the check sees XLA's transposes). Operands of 4 MiB, the
    least jaxgemm's transpose takes."""
    m, n, k = 2048, 2048, 2048
    if mode == "xla":
        monkeypatch.setenv("JAXGEMM_XLA_TRANSPOSE", "1")
    a, b = _fp8_operands(m, n, k, layout, seed=3)
    f = getattr(jaxgemm, f"fp8_gemm_{layout}")
    relayout = int(mode == "relayout")
    hlo = jax.jit(lambda a, b: f(a, b, config={"relayout": relayout})).lower(a, b).compile().as_text()
    producers = set(_F8_PRODUCERS.findall(hlo)) - {"parameter", "bitcast", "get-tuple-element", "tuple"}
    calls = len(_TRANSPOSE_CALL.findall(hlo))
    if mode == "relayout":
        assert not producers and not calls, producers
    elif mode == "transpose_bytes":
        assert producers == {"custom-call"}, producers
        assert calls == sum(reference.LAYOUTS[layout]), hlo
    else:
        assert producers and not calls, hlo


def test_fp8_transpose_bytes_where_it_applies():
    """B stored [K, N] with N a multiple of 8 but not of 16 is transposed by XLA (the
    kernel moves 16-row groups), and so are operands under 4 MiB; A stored [K, M] of
    4 MiB by jaxgemm."""
    m, n, k = 2048, 1032, 2048
    a, b = _fp8_operands(m, n, k, "tn", seed=4)
    f = lambda a, b: jaxgemm.fp8_gemm_tn(a, b, out_dtype=jnp.float32, config={"relayout": 0})  # noqa: E731
    hlo = jax.jit(f).lower(a, b).compile().as_text()
    assert len(_TRANSPOSE_CALL.findall(hlo)) == 1, hlo
    ref = _reference(reference.fp8_gemm, *a, *b, "tn", None, jnp.float64)
    _poison((m, n), jnp.float32)
    _check(jax.jit(f)(a, b), ref, jnp.float32, 1e-3, rel=1e-2)
    small = _fp8_operands(256, 1024, 1024, "tn", seed=4)
    hlo = jax.jit(f).lower(*small).compile().as_text()
    assert not _TRANSPOSE_CALL.findall(hlo), hlo


def test_fp8_gemm_relayout_batched():
    """vmap over L with a batched B: the raw loads take each batch's B."""
    l, m, n, k = 3, 192, 400, 640
    ops = [_fp8_operands(m, n, k, "tn", seed=20 + i) for i in range(l)]
    a = tuple(jnp.stack([o[0][j] for o in ops]) for j in range(2))
    b = tuple(jnp.stack([o[1][j] for o in ops]) for j in range(2))
    out = jax.jit(jax.vmap(lambda a, b: jaxgemm.fp8_gemm_tn(a, b, out_dtype=jnp.float32,
                                                            config={"relayout": 1})))(a, b)
    for i, (oa, ob) in enumerate(ops):
        ref = _reference(reference.fp8_gemm, *oa, *ob, "tn", None, jnp.float64)
        _check(out[i], ref, jnp.float32, 1e-3, rel=1e-2)


def test_fp8_c_is_donated_in_place():
    m, n, k = 512, 1024, 1024
    a, b = _fp8_operands(m, n, k, "nt", seed=5)
    c = _c(m, n, jnp.float32, seed=5)
    ref = _reference(reference.fp8_gemm, *a, *b, "nt", c, jnp.float64)
    f = jax.jit(lambda a, b, c: jaxgemm.fp8_gemm_nt(a, b, c, out_dtype=jnp.float32), donate_argnums=2)
    out = f(a, b, c)
    assert c.is_deleted()
    _check(out, ref, jnp.float32, 1e-3, rel=1e-2)


# ----------------------------------------------------------------------------- BF16

@pytest.mark.parametrize("n,k", DEEPSEEK_V3_NK)
@pytest.mark.parametrize("m", MS)
@pytest.mark.parametrize("c_dtype,out_dtype", C_MODES[:2])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_bf16_gemm(layout, c_dtype, out_dtype, m, n, k):
    a_t, b_t = reference.LAYOUTS[layout]
    x, w = _random(m, n, k, seed=m + n + k + 3)
    a, b = _stored(x, a_t), _stored(w, b_t)
    c = _c(m, n, c_dtype, seed=m)
    ref = _reference(reference.bf16_gemm, a, b, layout, c, jnp.float64)
    _poison((m, n), out_dtype)
    out = jax.jit(getattr(jaxgemm, f"bf16_gemm_{layout}"), static_argnums=3)(a, b, c, out_dtype)
    assert out.dtype == out_dtype
    _check(out, ref, out_dtype, 1e-5)


@pytest.mark.parametrize("config", [
    {"block_m": 64, "block_n": 16},
    {"block_m": 128, "block_n": 112},
    {"block_m": 128, "block_n": 128, "store_n": 8},  # 16-byte (unswizzled) TMA stores
    {"block_m": 128, "block_n": 256, "num_stages": 3},
    {"block_m": 128, "block_n": 128, "num_sms": 7},
    {"block_m": 128, "block_n": 256, "cluster_m": 2},  # B multicast; 3 m-blocks: one dummy
    {"block_m": 64, "block_n": 128, "cluster_m": 2, "num_sms": 6},
    # Ping-pong: 4 or 5 tiles per CTA, so both warpgroups take several turns, one
    # more than the other on some CTAs.
    {"block_m": 128, "block_n": 128, "pingpong": 1, "num_sms": 7},
    {"block_m": 128, "block_n": 192, "pingpong": 1, "num_sms": 5},
    {"block_m": 128, "block_n": 128, "pingpong": 1, "cluster_m": 2, "num_sms": 6},
    {"block_m": 128, "block_n": 64, "pingpong": 1},  # one tile per CTA: the second warpgroup idles
])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_bf16_gemm_pinned_configs(layout, config):
    if layout[1] == "n" and config["block_n"] % (64 * config.get("cluster_m", 1)):
        pytest.skip("an MN-major B needs whole 64-column chunks per CTA (rejected at trace time)")
    m, n, k = 328, 1160, 1544  # partial tiles in M, N and K
    a_t, b_t = reference.LAYOUTS[layout]
    x, w = _random(m, n, k, seed=9)
    a, b = _stored(x, a_t), _stored(w, b_t)
    ref = _reference(reference.bf16_gemm, a, b, layout, None, jnp.float64)
    _poison((m, n), jnp.bfloat16)
    f = getattr(jaxgemm, f"bf16_gemm_{layout}")
    out = jax.jit(lambda a, b: f(a, b, config=config))(a, b)
    _check(out, ref, jnp.bfloat16, 1e-5)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_bf16_gemm_grad(layout):
    m, n, k = 1024, 2048, 768
    a_t, b_t = reference.LAYOUTS[layout]
    x, w = _random(m, n, k, seed=13)
    a, b = _stored(x, a_t), _stored(w, b_t)
    c = _c(m, n, jnp.float32, seed=13)
    g = (jax.random.normal(jax.random.PRNGKey(3), (m, n))).astype(jnp.float32)
    f = getattr(jaxgemm, f"bf16_gemm_{layout}")

    def loss(fn, a, b, c):
        return jnp.sum(fn(a, b, c) * g)

    grads = jax.jit(jax.grad(functools.partial(loss, lambda a, b, c: f(a, b, c, jnp.float32)),
                             argnums=(0, 1, 2)))(a, b, c)
    with jax.enable_x64(True):
        want = jax.grad(functools.partial(
            loss, lambda a, b, c: reference.bf16_gemm(a.astype(jnp.float64), b.astype(jnp.float64), layout,
                                                      c, jnp.float64)), argnums=(0, 1, 2))(a, b, c)
    for got, ref in zip(grads, want):
        assert got.shape == ref.shape
        # the cotangent enters the backward GEMMs in BF16: FP8-free, BF16-rounded
        assert jaxgemm.calc_diff(got, ref) < 1e-4


def test_fp8_linear_grad():
    x = (jax.random.normal(jax.random.PRNGKey(0), (4, 1000, 2048)) * 2).astype(jnp.bfloat16)
    w = (jax.random.normal(jax.random.PRNGKey(1), (2048, 1536)) * 0.02).astype(jnp.bfloat16)
    dy = jax.random.normal(jax.random.PRNGKey(2), (4, 1000, 1536)).astype(jnp.float32)

    def loss(fn, x, w):
        return jnp.sum(fn(x, w).astype(jnp.float32) * dy)

    y = jax.jit(jaxgemm.fp8_linear)(x, w)
    got = jax.jit(jax.grad(functools.partial(loss, jaxgemm.fp8_linear), argnums=(0, 1)))(x, w)
    ref_y = jnp.einsum("bmk,kn->bmn", x.astype(jnp.float32), w.astype(jnp.float32))
    ref = jax.grad(functools.partial(loss, lambda x, w: jnp.einsum(
        "bmk,kn->bmn", x.astype(jnp.float32), w.astype(jnp.float32))), argnums=(0, 1))(x, w)
    diffs = [jaxgemm.calc_diff(y, ref_y)] + [jaxgemm.calc_diff(g, r) for g, r in zip(got, ref)]
    print("fp8_linear calc_diff y, dx, dw:", diffs)
    assert all(d < 2e-3 for d in diffs), diffs


# ------------------------------------------------------------ launch dependencies

def test_dependent_gemms_back_to_back():
    """Every GEMM here reads what the one just before it wrote (as A, and as C), and
    the jitted chain runs for two input sets: a GEMM that read its inputs before the
    kernel ahead of it finished (as a launch overlap such as PDL would allow, were
    its wait missing) would find the other set's values."""
    m, k = 1024, 1024

    def chain(x, w, c, a8, b8, c8):
        for _ in range(3):
            x = jaxgemm.bf16_gemm_nt(x, w)                  # A: the previous GEMM's output
            c = jaxgemm.bf16_gemm_nt(x, w, c, jnp.float32)  # A and C: likewise
            c8 = jaxgemm.fp8_gemm_nt(a8, b8, c8, out_dtype=jnp.float32)
        return x, c, c8

    def reference_chain(x, w, c, a8, b8, c8):
        x, w, c, c8 = (v.astype(jnp.float64) for v in (x, w, c, c8))
        for _ in range(3):
            x = (x @ w.T).astype(jnp.bfloat16).astype(jnp.float64)
            c = c + x @ w.T
            c8 = reference.fp8_gemm(*a8, *b8, "nt", c8, jnp.float64)
        return x, c, c8

    f = jax.jit(chain)
    for seed in (21, 22):
        x, w = _random(m, k, k, seed)
        w = (w.astype(jnp.float32) / jnp.sqrt(jnp.sum(jnp.square(w.astype(jnp.float32)), 1, keepdims=True))
             ).astype(jnp.bfloat16)  # unit rows: the chain keeps its scale
        c = _c(m, k, jnp.float32, seed)
        a8, b8 = _fp8_operands(m, k, k, "nt", seed)
        got = f(x, w, c, a8, b8, c)
        with jax.enable_x64(True):
            want = jax.jit(reference_chain)(x, w, c, a8, b8, c)
        for g, r in zip(got, want):
            assert jaxgemm.calc_diff(g, r) < 1e-4
