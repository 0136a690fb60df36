"""Dense GEMMs: `fp8_gemm_{nt,nn,tn,tt}` and `bf16_gemm_{nt,nn,tn,tt}`.

Each public function validates its operands at trace time, then binds `gemm_p`
(gemm_primitive.py). The layout suffix says how A and B are stored: the first letter
is A ("n": [M, K], "t": [K, M]), the second B ("t": [N, K], "n": [K, N]), so
`*_gemm_nt(a, b)` is `a @ b.T` and `*_gemm_nn(a, b)` is `a @ b`.

The FP8 tensor cores of SM90 read only K-major operands, so an operand stored K-first is
transposed, by the FP8 kernel tile by tile in shared memory or by jaxgemm's FP8 transpose
before it (config `relayout`); the BF16 kernel reads either major directly. BF16 GEMMs are differentiable: the gradients
are BF16 GEMMs of the same kernel, in the layouts that need no transpose.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxgemm import reference
from jaxgemm.ops.gemm_primitive import GemmSpec, gemm_config, gemm_p, normalize_config
from jaxgemm.quantization import ceil_div

__all__ = [
    "fp8_gemm_nt", "fp8_gemm_nn", "fp8_gemm_tn", "fp8_gemm_tt",
    "bf16_gemm_nt", "bf16_gemm_nn", "bf16_gemm_tn", "bf16_gemm_tt",
    "fp8_gemm_config", "bf16_gemm_config",
]

_OUT_DTYPES = (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float32))


# ----------------------------------------------------------------------------- validation

def _out_dtype(out_dtype, op):
    out_dtype = jnp.dtype(out_dtype)
    if out_dtype not in _OUT_DTYPES:
        raise TypeError(f"{op}: out_dtype must be bfloat16 or float32, got {out_dtype}")
    return out_dtype


def _check_c(c, m, n, op):
    if c is None:
        return None
    c = jnp.asarray(c)
    if c.shape != (m, n):
        raise ValueError(f"{op}: c must have shape [M, N] = {(m, n)}, got {c.shape}")
    if c.dtype not in _OUT_DTYPES:
        raise TypeError(f"{op}: c must be bfloat16 or float32, got {c.dtype}")
    return c


def _fp8_pair(x, name: str, op: str):
    if not (isinstance(x, (tuple, list)) and len(x) == 2):
        raise TypeError(f"{op}: {name} must be a pair (data, scales) as returned by "
                        f"per_{'token' if name == 'a' else 'block'}_cast_to_fp8, got {type(x).__name__}")
    data, scales = (jnp.asarray(v) for v in x)
    if data.dtype != jnp.float8_e4m3fn:
        raise TypeError(f"{op}: {name}[0] (data) must be float8_e4m3fn, got {data.dtype}")
    if data.ndim != 2:
        raise ValueError(f"{op}: {name}[0] (data) must be rank 2, got shape {data.shape}")
    if scales.dtype != jnp.float32:
        raise TypeError(f"{op}: {name}[1] (scales) must be float32, got {scales.dtype}")
    return data, scales


def _check_fp8(a, b, c, out_dtype, layout):
    """Validates fp8_gemm_<layout>'s operands; returns them K-major ([M, K], [N, K])
    with scales [M, kb] and [nb or N, kb], and whether B has 1x128 scales (1D1D)."""
    op = f"fp8_gemm_{layout}"
    a_t, b_t = reference.LAYOUTS[layout]
    a, sfa = _fp8_pair(a, "a", op)
    b, sfb = _fp8_pair(b, "b", op)
    a_form = "[K, M]" if a_t else "[M, K]"
    b_form = "[K, N]" if b_t else "[N, K]"
    (m, k) = a.shape[::-1] if a_t else a.shape
    (n, kb_) = b.shape[::-1] if b_t else b.shape
    if k != kb_:
        raise ValueError(f"{op}: a is {a_form} = {a.shape} and b is {b_form} = {b.shape}: K differs")
    kb, nb = ceil_div(k, 128), ceil_div(n, 128)

    def oriented(shape, k_first):  # a scale shape given K-major, as stored
        return shape[::-1] if k_first else shape

    want_sfa = oriented((m, kb), a_t)
    if sfa.shape != want_sfa:
        raise ValueError(f"{op}: a's scales must have shape {want_sfa} (one per row of M per 128 "
                         f"of K, oriented as a {a_form}), got {sfa.shape}")
    block, per_row = oriented((nb, kb), b_t), oriented((n, kb), b_t)
    if sfb.shape not in (block, per_row):
        raise ValueError(f"{op}: b's scales must have shape {block} (one per 128x128 block) or "
                         f"{per_row} (one per row of N per 128 of K), oriented as b {b_form}; "
                         f"got {sfb.shape}")
    sfb_per_row = sfb.shape == per_row
    if k % 16 != 0:
        raise ValueError(f"{op}: K must be a multiple of 16 (TMA reads 16-byte aligned FP8 rows), "
                         f"got K={k}")
    if n % 8 != 0:
        raise ValueError(f"{op}: N must be a multiple of 8 (TMA writes 16-byte aligned rows), got N={n}")
    if a_t and m % 16 != 0:
        raise ValueError(f"{op}: with A stored [K, M], M must be a multiple of 16 (it is transposed "
                         f"on the GPU, 16-byte rows), got M={m}")
    out_dtype = _out_dtype(out_dtype, op)
    c = _check_c(c, m, n, op)
    if a_t:
        a, sfa = a.T, sfa.T
    if b_t:
        b, sfb = b.T, sfb.T
    return a, sfa, b, sfb, c, out_dtype, sfb_per_row


def _check_bf16(a, b, c, out_dtype, layout):
    op = f"bf16_gemm_{layout}"
    a_t, b_t = reference.LAYOUTS[layout]
    for name, x in (("a", a), ("b", b)):
        x = jnp.asarray(x)
        if x.dtype != jnp.bfloat16:
            raise TypeError(f"{op}: {name} must be bfloat16, got {x.dtype}")
        if x.ndim != 2:
            raise ValueError(f"{op}: {name} must be rank 2, got shape {x.shape}")
    a, b = jnp.asarray(a), jnp.asarray(b)
    (m, k) = a.shape[::-1] if a_t else a.shape
    (n, kb_) = b.shape[::-1] if b_t else b.shape
    if k != kb_:
        raise ValueError(f"{op}: a is {'[K, M]' if a_t else '[M, K]'} = {a.shape} and b is "
                         f"{'[K, N]' if b_t else '[N, K]'} = {b.shape}: K differs")
    # TMA needs 16-byte row strides. An MN-major operand whose rows are not (M or N
    # not a multiple of 8) is transposed to K-major on the GPU instead (_gemm2d).
    for size, name in ((k, "K"), (n, "N")):
        if size % 8 != 0:
            raise ValueError(f"{op}: {name} must be a multiple of 8 (16-byte rows for TMA), got {size}")
    return a, b, _check_c(c, m, n, op), _out_dtype(out_dtype, op), (m, n, k)


def _check_store_n(cfg, out_dtype, op):
    store_n = dict(cfg or ()).get("store_n", 8)
    if store_n * out_dtype.itemsize > 128:
        raise ValueError(f"{op}: config store_n={store_n} is wider than 128 bytes of {out_dtype} output")


# ----------------------------------------------------------------------------- FP8

def _fp8_gemm(layout, a, b, c=None, out_dtype=jnp.bfloat16, *, config=None):
    op = f"fp8_gemm_{layout}"
    a, sfa, b, sfb, c, out_dtype, sfb_per_row = _check_fp8(a, b, c, out_dtype, layout)
    cfg = normalize_config(config, op)
    _check_store_n(cfg, out_dtype, op)
    m, n, k = a.shape[0], b.shape[0], a.shape[1]
    if m == 0 or n == 0 or k == 0:
        return jnp.zeros((m, n), out_dtype) if c is None else c.astype(out_dtype)
    spec = GemmSpec("fp8", out_dtype.name, c is not None, None if c is None else c.dtype.name,
                    sfb_per_row=sfb_per_row, a_stored_mn_major=reference.LAYOUTS[layout][0],
                    b_stored_mn_major=reference.LAYOUTS[layout][1], config=cfg)
    args = [a[None], sfa[None], b[None], sfb[None]] + ([] if c is None else [c[None]])
    return gemm_p.bind(*args, spec=spec)[0]


def _fp8_doc(layout):
    a_t, b_t = reference.LAYOUTS[layout]
    a_form = "[K, M] (A transposed), scales [ceil(K/128), M]" if a_t else \
        "[M, K], scales [M, ceil(K/128)]"
    b_form = ("[K, N], scales [ceil(K/128), ceil(N/128)] or, 1D1D, [ceil(K/128), N]" if b_t else
              "[N, K], scales [ceil(N/128), ceil(K/128)] or, 1D1D, [N, ceil(K/128)]")
    relayout = ("" if layout == "nt" else
                "\n    SM90's FP8 tensor cores read only K-major operands: the kernel loads an operand\n"
                "    stored K-first here as it is and transposes each tile in shared memory (config\n"
                "    `relayout=1`, which the heuristic picks for B at small M), or a\n"
                "    transpose kernel writes it K-major first (`relayout=0`). A's scales are read\n"
                "    in either major." + (
                    " With B stored [K, N] at M <= 128 the kernel may instead compute\n"
                    "    D^T = B^T A^T with B read straight into the tensor cores' register operand\n"
                    "    (config `swap_ab=1`; the heuristic picks it at 64 < M <= 128 where 64-row\n"
                    "    tiles of N, by M in halves or all of M, fill the SMs in one wave), so B is\n"
                    "    never transposed.\n"
                    if layout[1] == "n" else "\n") + (
                    "    A stored [K, M] may likewise be read as stored into that register operand\n"
                    "    (config `a_regs=1`, M a multiple of 16; the heuristic picks it at\n"
                    "    64 < M <= 128 where the kernel is not swapped and, for tn, its tiles stay as\n"
                    "    wide), so A is never transposed.\n"
                    if layout[0] == "t" else ""))
    return f"""Block-scaled FP8 GEMM `D = C + dequant(A) @ dequant(B)`, layout "{layout}".

    Args:
      a: `(data, scales)`: data float8_e4m3fn {a_form} (1x128 groups along K).
      b: `(data, scales)`: data float8_e4m3fn {b_form}. Block scales give DeepSeek-V3's
        1D2D recipe; per-row scales (1x128 groups along K) its 1D1D weight-gradient recipe.
      c: optional `[M, N]` bfloat16 or float32 addend, added to the FP32 accumulators
        before D is rounded once; when its dtype is `out_dtype` its buffer becomes D's.
      out_dtype: bfloat16 or float32.
      config: optional dict pinning the kernel config (`block_m`, `block_n`, `num_stages`,
        `store_n`, `group_n`, `num_sms`, `cluster_m`: 2 multicasts B to CTA pairs along M,
        `cluster_n`: 2 multicasts A along N, `k_split`: 2 has two warpgroups take
        alternate K blocks of each 64-row tile, `cluster_k`: 2, 4 or 8 CTAs of a cluster
        split K of each tile and sum their parts in shared memory (an H100 runs at most
        120 CTAs at once in clusters of 4 or 8), `relayout`, `swap_ab` and `a_regs`: see
        below); missing keys are chosen by the heuristic.

    Returns `[M, N]` of `out_dtype`. Needs K % 16 == 0 and N % 8 == 0 (TMA alignment).
{relayout}
    On CUDA (SM90) this runs jaxgemm's FP8 kernel; on every other platform it lowers to
    `jaxgemm.reference.fp8_gemm`. It works under jit, vmap (one launch) and sharding
    (M and N shard locally, K reduces).
    """


def _public(impl, doc, op, layout):
    """`impl` with its layout bound, named and documented as the public `op_layout`."""
    fn = functools.wraps(impl)(functools.partial(impl, layout))
    fn.__name__ = fn.__qualname__ = f"{op}_{layout}"
    fn.__doc__ = doc(layout)
    return fn


fp8_gemm_nt = _public(_fp8_gemm, _fp8_doc, "fp8_gemm", "nt")
fp8_gemm_nn = _public(_fp8_gemm, _fp8_doc, "fp8_gemm", "nn")
fp8_gemm_tn = _public(_fp8_gemm, _fp8_doc, "fp8_gemm", "tn")
fp8_gemm_tt = _public(_fp8_gemm, _fp8_doc, "fp8_gemm", "tt")


# ----------------------------------------------------------------------------- BF16

def _bf16_spec(a_mn_major, b_mn_major, out_dtype, c_dtype, config):
    return GemmSpec("bf16", jnp.dtype(out_dtype).name, c_dtype is not None,
                    None if c_dtype is None else jnp.dtype(c_dtype).name,
                    a_mn_major=a_mn_major, b_mn_major=b_mn_major, config=config)


def _pad_axis(x, axis, multiple):
    extra = -x.shape[axis] % multiple
    if not extra:
        return x
    widths = [(0, 0)] * x.ndim
    widths[axis] = (0, extra)
    return jnp.pad(x, widths)


def _gemm2d(a, b, c, a_mn_major, b_mn_major, out_dtype, config):
    """The BF16 kernel on 2D operands, whatever their sizes. TMA needs 16-byte rows:
    an MN-major operand whose M (or N) is not a multiple of 8 is transposed to K-major,
    and K or N that are not are zero-padded (the public functions require K % 8 and
    N % 8; their gradients may not meet them)."""
    if a_mn_major and a.shape[1] % 8:
        a, a_mn_major = a.T, False
    if b_mn_major and b.shape[1] % 8:
        b, b_mn_major = b.T, False
    m = a.shape[1] if a_mn_major else a.shape[0]
    n = b.shape[1] if b_mn_major else b.shape[0]
    k = a.shape[0] if a_mn_major else a.shape[1]
    if m == 0 or n == 0 or k == 0:
        return jnp.zeros((m, n), out_dtype) if c is None else c.astype(out_dtype)
    a = _pad_axis(a, 0 if a_mn_major else 1, 8)  # zeros along K add nothing
    b = _pad_axis(b, 0 if b_mn_major else 1, 8)
    b = _pad_axis(b, 1 if b_mn_major else 0, 8)  # extra columns of D, dropped below
    c = None if c is None else _pad_axis(c, 1, 8)
    spec = _bf16_spec(a_mn_major, b_mn_major, out_dtype, None if c is None else c.dtype, config)
    args = [a[None], b[None]] + ([] if c is None else [c[None]])
    return gemm_p.bind(*args, spec=spec)[0][:, :n]


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5, 6))
def _bf16_gemm_vjp(a, b, c, a_mn_major, b_mn_major, out_dtype, config):
    return _gemm2d(a, b, c, a_mn_major, b_mn_major, out_dtype, config)


def _bf16_fwd(a, b, c, a_mn_major, b_mn_major, out_dtype, config):
    d = _gemm2d(a, b, c, a_mn_major, b_mn_major, out_dtype, config)
    return d, (a, b, None if c is None else jnp.zeros((), c.dtype))


def _bf16_bwd(a_mn_major, b_mn_major, out_dtype, config, res, g):
    """With D[m, n] = sum_k A'[m, k] B'[n, k] (A' = A or A^T as stored, B' likewise),
    each gradient is one more GEMM of the same kernel whose operands are read in
    place: only the majors change, never a transpose in memory."""
    del out_dtype, config
    a, b, c_like = res
    dc = None if c_like is None else g.astype(c_like.dtype)
    g = g.astype(jnp.bfloat16)  # the kernels' operand type
    if a_mn_major:  # dA [K, M] = B'^T g^T: A-operand B' viewed [K, N], B-operand g [M, N]
        da = _gemm2d(b, g, None, not b_mn_major, False, a.dtype, None)
    else:           # dA [M, K] = g B': A-operand g [M, N], B-operand B' viewed [K, N]
        da = _gemm2d(g, b, None, False, not b_mn_major, a.dtype, None)
    if b_mn_major:  # dB [K, N] = A'^T g: A-operand A' viewed [K, M], B-operand g^T ([M, N] stored)
        db = _gemm2d(a, g, None, not a_mn_major, True, b.dtype, None)
    else:           # dB [N, K] = g^T A': A-operand g^T ([M, N] stored), B-operand A' viewed [K, M]
        db = _gemm2d(g, a, None, True, not a_mn_major, b.dtype, None)
    return da, db, dc


_bf16_gemm_vjp.defvjp(_bf16_fwd, _bf16_bwd)


def _check_bf16_config(cfg, b_mn_major, out_dtype, op):
    """What the BF16 kernel cannot take, refused at trace time (not at lowering)."""
    cfg = dict(cfg or ())
    chunk = 64 * cfg.get("cluster_m", 1)  # whole 64-column chunks per CTA of a cluster
    if b_mn_major and cfg.get("block_n", chunk) % chunk:
        raise ValueError(f"{op}: config block_n={cfg['block_n']} must be a multiple of {chunk} when B "
                         f"is stored [K, N] (cluster_m={cfg.get('cluster_m', 1)})")
    _check_store_n(cfg, out_dtype, op)


def _bf16_gemm(layout, a, b, c=None, out_dtype=jnp.bfloat16, *, config=None):
    a_t, b_t = reference.LAYOUTS[layout]
    a, b, c, out_dtype, _ = _check_bf16(a, b, c, out_dtype, layout)
    cfg = normalize_config(config, f"bf16_gemm_{layout}")
    _check_bf16_config(cfg, b_t, out_dtype, f"bf16_gemm_{layout}")
    return _bf16_gemm_vjp(a, b, c, a_t, b_t, out_dtype, cfg)


def _bf16_doc(layout):
    a_t, b_t = reference.LAYOUTS[layout]
    return f"""BF16 GEMM `D = C + A @ B`, layout "{layout}": A is {"[K, M]" if a_t else "[M, K]"},
    B is {"[K, N]" if b_t else "[N, K]"}, both bfloat16; FP32 accumulation.

    Args:
      a, b: bfloat16 operands as above. The kernel reads either major in place (no
        transpose). K and N must be multiples of 8 (TMA's 16-byte rows); an operand
        stored K-first whose M (or N) is not is transposed by XLA first.
      c: optional `[M, N]` bfloat16 or float32 addend, added before D is rounded once;
        when its dtype is `out_dtype` its buffer becomes D's.
      out_dtype: bfloat16 or float32.
      config: optional dict pinning the kernel config (see `bf16_gemm_config`).

    Returns `[M, N]` of `out_dtype`. Differentiable with `jax.grad` (w.r.t. a, b and c):
    dgrad and wgrad are BF16 GEMMs of the same kernel in the layouts that read their
    operands in place. On CUDA (SM90) this runs jaxgemm's BF16 kernel; elsewhere it
    lowers to `jaxgemm.reference.bf16_gemm`.
    """


bf16_gemm_nt = _public(_bf16_gemm, _bf16_doc, "bf16_gemm", "nt")
bf16_gemm_nn = _public(_bf16_gemm, _bf16_doc, "bf16_gemm", "nn")
bf16_gemm_tn = _public(_bf16_gemm, _bf16_doc, "bf16_gemm", "tn")
bf16_gemm_tt = _public(_bf16_gemm, _bf16_doc, "bf16_gemm", "tt")


# ----------------------------------------------------------------------------- configs

def fp8_gemm_config(m: int, n: int, k: int, batches: int = 1, *, layout: str = "nt",
                    num_sms: int | None = None, config=None, out_dtype=jnp.bfloat16,
                    sfb_per_row: bool = False, c_dtype=None) -> dict:
    """The FP8 kernel config the heuristic picks for a shape and layout (with a user's
    overrides). `relayout` is 1 where the kernel reads operands stored MN-major as
    they are (`a_mn_major`, `b_mn_major` say which), 0 where they are transposed
    first; `swap_ab` is 1 where the kernel computes D^T with B (stored [K, N]) as its
    register operand, its `block_m` then tiling N and `block_n` M; `a_regs` is 1 where A
    (stored [K, M]) is the register operand as stored, 0 where A is transposed in
    shared memory or first.

    Called at lowering time; `num_sms` defaults to `get_num_sms()` (needs a GPU).
    """
    a_t, b_t = reference.LAYOUTS[layout]
    spec = GemmSpec("fp8", jnp.dtype(out_dtype).name, c_dtype is not None,
                    None if c_dtype is None else jnp.dtype(c_dtype).name, sfb_per_row=sfb_per_row,
                    a_stored_mn_major=a_t, b_stored_mn_major=b_t,
                    config=normalize_config(dict(config) if isinstance(config, tuple) else config,
                                            f"fp8_gemm_{layout}"))
    return gemm_config(spec, m, n, k, batches, num_sms=num_sms)


def bf16_gemm_config(m: int, n: int, k: int, batches: int = 1, *, layout: str = "nt",
                     num_sms: int | None = None, config=None, out_dtype=jnp.bfloat16,
                     c_dtype=None) -> dict:
    """The BF16 kernel config the heuristic picks for a shape and layout (with a user's
    overrides). Keys as for `fp8_gemm_config`, less the FP8-only `cluster_n`, `k_split`
    and `cluster_k`, plus `pingpong`: 1 (with `block_m=128`) has each of the two math
    warpgroups own every other tile, so one's epilogue runs under the other's main loop."""
    a_t, b_t = reference.LAYOUTS[layout]
    spec = _bf16_spec(a_t, b_t, out_dtype, c_dtype,
                      normalize_config(dict(config) if isinstance(config, tuple) else config,
                                       f"bf16_gemm_{layout}"))
    return gemm_config(spec, m, n, k, batches, num_sms=num_sms)
