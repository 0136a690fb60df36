"""Dense GEMMs: `fp8_gemm_nt`, the block-scaled FP8 GEMM of DeepSeek-V3's recipe.

Layers, top to bottom:
  fp8_gemm_nt          public function: validates at trace time, binds `fp8_gemm_p`
  fp8_gemm_p           [L, M, K] x [Lb, N, K] -> [L, M, N] (Lb is L or 1): abstract eval,
                       batching (vmap folds into M or into L: one kernel call), and a
                       lowering through custom_partitioning (sharding rules)
  _fp8_gemm_local_p    the per-shard op: on CUDA the XLA FFI call with the config
                       chosen here at lowering time; elsewhere the reference
"""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental.custom_partitioning import custom_partitioning
from jax.extend.core import Primitive
from jax.interpreters import batching, mlir
from jax.sharding import NamedSharding, PartitionSpec as P
from jax._src import dispatch as _jax_dispatch  # no public API for this registration

from jaxgemm import _runtime, reference
from jaxgemm.quantization import align, ceil_div

__all__ = ["fp8_gemm_nt", "fp8_gemm_config", "fp8_gemm_p"]

_FFI_TARGET = "jaxgemm_fp8_gemm_1d2d"
_CONFIG_KEYS = ("block_m", "block_n", "num_stages", "store_n", "group_n", "num_sms", "cluster_m")


# ----------------------------------------------------------------------------- validation

def _fp8_pair(x, name: str):
    if not (isinstance(x, (tuple, list)) and len(x) == 2):
        raise TypeError(f"fp8_gemm_nt: {name} must be a pair (data, scales) as returned by "
                        f"per_{'token' if name == 'a' else 'block'}_cast_to_fp8, got {type(x).__name__}")
    data, scales = (jnp.asarray(v) for v in x)
    if data.dtype != jnp.float8_e4m3fn:
        raise TypeError(f"fp8_gemm_nt: {name}[0] (data) must be float8_e4m3fn, got {data.dtype}")
    if data.ndim != 2:
        raise ValueError(f"fp8_gemm_nt: {name}[0] (data) must be rank 2, got shape {data.shape}")
    if scales.dtype != jnp.float32:
        raise TypeError(f"fp8_gemm_nt: {name}[1] (scales) must be float32, got {scales.dtype}")
    return data, scales


def _check_fp8_gemm_nt(a, b, c, out_dtype):
    a, sfa = _fp8_pair(a, "a")
    b, sfb = _fp8_pair(b, "b")
    (m, k), (n, kb_) = a.shape, b.shape
    if k != kb_:
        raise ValueError(f"fp8_gemm_nt: a is [M, K] = {a.shape} and b is [N, K] = {b.shape}: K differs")
    want_sfa = (m, ceil_div(k, 128))
    if sfa.shape != want_sfa:
        raise ValueError(f"fp8_gemm_nt: a's scales must have shape [M, ceil(K/128)] = {want_sfa} "
                         f"(one per row per 128 of K), got {sfa.shape}")
    want_sfb = (ceil_div(n, 128), ceil_div(k, 128))
    if sfb.shape != want_sfb:
        raise ValueError(f"fp8_gemm_nt: b's scales must have shape [ceil(N/128), ceil(K/128)] = "
                         f"{want_sfb} (one per 128x128 block), got {sfb.shape}")
    if k % 16 != 0:
        raise ValueError(f"fp8_gemm_nt: K must be a multiple of 16 (TMA reads 16-byte aligned FP8 "
                         f"rows), got K={k}")
    if n % 8 != 0:
        raise ValueError(f"fp8_gemm_nt: N must be a multiple of 8 (TMA writes 16-byte aligned BF16 "
                         f"rows), got N={n}")
    out_dtype = jnp.dtype(out_dtype)
    if out_dtype != jnp.bfloat16:
        raise NotImplementedError(f"fp8_gemm_nt: out_dtype={out_dtype} is not supported yet; "
                                  "only bfloat16")
    if c is not None:
        c = jnp.asarray(c)
        if c.shape != (m, n):
            raise ValueError(f"fp8_gemm_nt: c must have shape [M, N] = {(m, n)}, got {c.shape}")
        if not jnp.issubdtype(c.dtype, jnp.floating):
            raise TypeError(f"fp8_gemm_nt: c must be floating point, got {c.dtype}")
        # D = C + A@B must be rounded once, from the FP32 accumulator; the kernel's
        # epilogue does not take C yet, and adding it afterwards would round twice.
        raise NotImplementedError("fp8_gemm_nt: c is not supported yet; fp8_gemm_nt(a, b) + c "
                                  "computes the sum with two BF16 roundings")
    return a, sfa, b, sfb, c, out_dtype


# What each config key may be: (test, description for the error).
_CONFIG_RULES = {
    "block_m": (lambda v: v in (64, 128), "64 or 128"),
    "block_n": (lambda v: v % 16 == 0 and 16 <= v <= 256, "a multiple of 16 in [16, 256]"),
    "num_stages": (lambda v: 1 <= v <= 32, "in [1, 32]"),
    "store_n": (lambda v: v in (16, 32, 64), "16, 32 or 64"),
    "group_n": (lambda v: v >= 1, "positive"),
    "num_sms": (lambda v: v >= 1, "positive"),
    "cluster_m": (lambda v: v in (1, 2), "1 or 2"),
}


def _normalize_config(config):
    """A user's `config=` override, checked, as a hashable tuple of (key, value)."""
    if config is None:
        return None
    if not isinstance(config, dict):
        raise TypeError(f"fp8_gemm_nt: config must be a dict with keys from {_CONFIG_KEYS}")
    unknown = set(config) - set(_CONFIG_KEYS)
    if unknown:
        raise ValueError(f"fp8_gemm_nt: unknown config keys {sorted(unknown)}; known: {_CONFIG_KEYS}")
    for key, value in config.items():
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
            raise TypeError(f"fp8_gemm_nt: config {key} must be an int, got {value!r}")
        ok, want = _CONFIG_RULES[key]
        if not ok(int(value)):
            raise ValueError(f"fp8_gemm_nt: config {key} must be {want}, got {value}")
    if "store_n" in config and "block_n" in config and config["block_n"] % config["store_n"]:
        raise ValueError(f"fp8_gemm_nt: config store_n={config['store_n']} must divide block_n")
    return tuple(sorted((k, int(v)) for k, v in config.items()))


# ----------------------------------------------------------------------------- public API

def fp8_gemm_nt(a, b, c=None, out_dtype=jnp.bfloat16, *, config=None):
    """Block-scaled FP8 GEMM: `D = C + dequant(A) @ dequant(B)^T`.

    Args:
      a: `(data, scales)`: data `[M, K]` float8_e4m3fn, scales `[M, ceil(K/128)]` float32
        (one per row per 128 of K), as returned by `per_token_cast_to_fp8`.
      b: `(data, scales)`: data `[N, K]` float8_e4m3fn, scales `[ceil(N/128), ceil(K/128)]`
        float32 (one per 128x128 block), as returned by `per_block_cast_to_fp8`.
      c: an `[M, N]` addend: not supported yet (the kernel's epilogue cannot add it, and
        adding it afterwards would round twice); passing one raises NotImplementedError.
      out_dtype: bfloat16 (the only output the kernel writes so far).
      config: optional dict pinning the kernel config (`block_m`, `block_n`, `num_stages`,
        `store_n`, `group_n`, `num_sms`); missing keys are chosen by the heuristic.

    Returns:
      `[M, N]` array of `out_dtype`. Needs K % 16 == 0 and N % 8 == 0 (TMA row alignment).

    On CUDA (SM90) this is one launch of jaxgemm's FP8 kernel; on every other platform it
    lowers to `jaxgemm.reference.fp8_gemm_nt`. It works under jit, vmap (batched operands
    fold into one launch) and sharding (M and N shard locally, K reduces).
    """
    a, sfa, b, sfb, c, out_dtype = _check_fp8_gemm_nt(a, b, c, out_dtype)
    cfg = _normalize_config(config)
    m, n, k = a.shape[0], b.shape[0], a.shape[1]
    del c  # validated above: not supported yet
    if m == 0 or n == 0 or k == 0:
        return jnp.zeros((m, n), out_dtype)
    return fp8_gemm_p.bind(a[None], sfa[None], b[None], sfb[None], config=cfg)[0].astype(out_dtype)


# ----------------------------------------------------------------------------- primitives

fp8_gemm_p = Primitive("jaxgemm_fp8_gemm")
_fp8_gemm_local_p = Primitive("jaxgemm_fp8_gemm_local")


def _abstract_eval(a, sfa, b, sfb, *, config):
    del sfa, sfb, config
    l, m, _ = a.shape
    lb, n, _ = b.shape
    assert lb in (1, l), (a.shape, b.shape)
    # update() keeps the manual-axis (shard_map) typing of the operand; the sharding
    # (explicit-mode meshes type it) is L and M of A, N of B.
    a_spec, b_spec = tuple(a.sharding.spec), tuple(b.sharding.spec)
    a_spec += (None,) * (3 - len(a_spec))
    n_ax = b_spec[-2] if len(b_spec) >= 2 else None
    if n_ax is not None and _axis_names(n_ax) & (_axis_names(a_spec[0]) | _axis_names(a_spec[1])):
        n_ax = None
    sharding = a.sharding.update(spec=P(a_spec[0], a_spec[1], n_ax))
    return a.update(shape=(l, m, n), dtype=jnp.dtype(jnp.bfloat16), weak_type=False, sharding=sharding)


def _axis_names(axes) -> set:
    if axes is None:
        return set()
    return set(axes) if isinstance(axes, tuple) else {axes}


for _p in (fp8_gemm_p, _fp8_gemm_local_p):
    _p.def_abstract_eval(_abstract_eval)
    _p.def_impl(functools.partial(_jax_dispatch.apply_primitive, _p))  # eager: jit the one op


def _reference_impl(a, sfa, b, sfb, *, config):
    del config
    return reference.fp8_gemm_nt(a, sfa, b, sfb)


mlir.register_lowering(_fp8_gemm_local_p, mlir.lower_fun(_reference_impl, multiple_results=False))


# ----------------------------------------------------------------------------- CUDA lowering

def fp8_gemm_config(m: int, n: int, k: int, batches: int = 1, *, num_sms: int | None = None,
                    config=None) -> dict:
    """The kernel config the heuristic picks for a shape (with a user's overrides applied).

    Called at lowering time; `num_sms` defaults to `get_num_sms()` (needs a GPU).
    """
    ext = _runtime.extension()
    if num_sms is None:  # set_num_sms's cap, never more than the GPU has
        num_sms = min(_runtime.get_num_sms(), _runtime.device_info(0)["num_sms"])
    cfg = dict(ext.fp8_gemm_config(m, n, k, batches, num_sms))
    # `config` is a user's dict, or the tuple of pairs the primitive carries.
    overrides = dict(_normalize_config(dict(config) if isinstance(config, tuple) else config) or ())
    if overrides:
        cfg.update(overrides)
        if "cluster_m" not in overrides:
            cfg["cluster_m"] = 1  # multicast only where asked for or chosen whole by the heuristic
        if "store_n" not in overrides:
            cfg["store_n"] = next(w for w in (64, 32, 16) if cfg["block_n"] % w == 0)
        if cfg["num_sms"] > num_sms and "num_sms" in overrides:
            raise ValueError(f"fp8_gemm_nt: config num_sms={cfg['num_sms']} exceeds the {num_sms} SMs")
        if "num_stages" not in overrides:
            stages = 0
            while stages < 8 and ext.fp8_gemm_smem_bytes(cfg["block_m"], cfg["block_n"], stages + 1) <= 232448:
                stages += 1
            cfg["num_stages"] = stages
        cluster = cfg["cluster_m"]
        if "num_sms" not in overrides:
            tiles = batches * ceil_div(m, cfg["block_m"] * cluster) * cluster * ceil_div(n, cfg["block_n"])
            cfg["num_sms"] = min(num_sms // cluster * cluster, tiles)
        if cfg["num_sms"] % cluster != 0 or cfg["block_n"] % (8 * cluster) != 0:
            raise ValueError(f"fp8_gemm_nt: config {overrides}: with cluster_m={cluster}, num_sms and "
                             f"block_n / 8 must be multiples of {cluster}")
        cfg["smem_bytes"] = ext.fp8_gemm_smem_bytes(cfg["block_m"], cfg["block_n"], cfg["num_stages"])
        if cfg["smem_bytes"] > 232448:
            raise ValueError(f"fp8_gemm_nt: config {overrides} needs {cfg['smem_bytes']} bytes of "
                             "shared memory, more than the 232448 an SM90 block can have")
        if cfg["block_n"] % cfg["store_n"] != 0:
            raise ValueError(f"fp8_gemm_nt: config store_n={cfg['store_n']} must divide block_n")
    return cfg


def _check_sm90():
    info = _runtime.device_info(0)
    if (info["arch_major"], info["arch_minor"]) != (9, 0):
        raise NotImplementedError(
            f"jaxgemm fp8_gemm_nt: the CUDA kernel needs an SM90 (Hopper) GPU; device 0 is "
            f"{info['name']} (sm_{info['arch_major']}{info['arch_minor']})")


def _cuda_lowering(ctx, a, sfa, b, sfb, *, config):
    _runtime.ensure_cuda()
    _check_sm90()
    l, m, k = ctx.avals_in[0].shape
    n = ctx.avals_in[2].shape[1]
    cfg = fp8_gemm_config(m, n, k, l, config=config)
    if os.environ.get("JAXGEMM_PRINT_CONFIGS", "0") not in ("", "0"):
        print(f"jaxgemm: fp8_gemm_nt L={l} M={m} N={n} K={k}: {cfg}", flush=True)
    attrs = {key: np.int32(cfg[key]) for key in _CONFIG_KEYS}
    out_type = jax.ShapeDtypeStruct((l, m, n), jnp.bfloat16)

    def impl(a, sfa, b, sfb):
        # The kernel reads A's scales M-major ([L, ceil(K/128), M], rows padded to 4 floats
        # for TMA's 16-byte strides). XLA fuses this small transpose.
        m_pad = align(m, 4)
        sfa_t = jnp.pad(jnp.swapaxes(sfa, 1, 2), ((0, 0), (0, 0), (0, m_pad - m)))
        return jax.ffi.ffi_call(_FFI_TARGET, out_type)(a, sfa_t, b, sfb, **attrs)

    return mlir.lower_fun(impl, multiple_results=False)(ctx, a, sfa, b, sfb)


mlir.register_lowering(_fp8_gemm_local_p, _cuda_lowering, platform="cuda")


# ----------------------------------------------------------------------------- sharding

def _axis_size(mesh, axes) -> int:
    if axes is None:
        return 1
    axes = axes if isinstance(axes, tuple) else (axes,)
    return int(np.prod([mesh.shape[x] for x in axes]))


def _spec(sharding, rank):
    spec = tuple(sharding.spec) if isinstance(sharding, NamedSharding) else ()
    return spec + (None,) * (rank - len(spec))


def _plan(mesh, arg_shapes, b_batched):
    """Mesh axes for (L, M, N, K): M and L from A, N from B, K from A. N and K stay
    sharded only where each shard holds whole 128-blocks of scales."""
    (l, m, k), n = arg_shapes[0].shape, arg_shapes[2].shape[-2]
    l_ax, m_ax, k_ax = _spec(arg_shapes[0].sharding, 3)
    n_ax = _spec(arg_shapes[2].sharding, arg_shapes[2].ndim)[-2]

    def divides(size, axes, block):
        s = _axis_size(mesh, axes)
        return size % s == 0 and (size // s) % block == 0

    if l_ax is not None and not divides(l, l_ax, 1):
        l_ax = None
    if m_ax is not None and not divides(m, m_ax, 1):
        m_ax = None
    if n_ax is not None and not divides(n, n_ax, 128):
        n_ax = None
    if k_ax is not None and not divides(k, k_ax, 128):
        k_ax = None
    used = set()
    plan = []
    for axes in (l_ax, m_ax, n_ax, k_ax):  # one mesh axis shards one dimension at most
        names = _axis_names(axes)
        if names & used:
            axes, names = None, set()
        used |= names
        plan.append(axes)
    return tuple(plan)


def _make_partitioned(b_batched: bool):
    def local(a, sfa, b, sfb, config):
        if not b_batched:
            b, sfb = b[None], sfb[None]
        return _fp8_gemm_local_p.bind(a, sfa, b, sfb, config=config)

    fn = custom_partitioning(local, static_argnums=(4,))

    def arg_specs(plan):
        l_ax, m_ax, n_ax, k_ax = plan
        lb = (l_ax,) if b_batched else ()
        return (P(l_ax, m_ax, k_ax), P(l_ax, m_ax, k_ax), P(*lb, n_ax, k_ax), P(*lb, n_ax, k_ax))

    def infer(config, mesh, arg_shapes, result_shape):
        del config, result_shape
        l_ax, m_ax, n_ax, _ = _plan(mesh, arg_shapes, b_batched)
        return NamedSharding(mesh, P(l_ax, m_ax, n_ax))

    def partition(config, mesh, arg_shapes, result_shape):
        del result_shape
        plan = _plan(mesh, arg_shapes, b_batched)
        l_ax, m_ax, n_ax, k_ax = plan

        def lower(a, sfa, b, sfb):
            d = local(a, sfa, b, sfb, config)
            if k_ax is not None:  # each shard holds a partial sum over its K slice
                d = jax.lax.psum(d.astype(jnp.float32), k_ax).astype(jnp.bfloat16)
            return d

        arg_shardings = tuple(NamedSharding(mesh, s) for s in arg_specs(plan))
        return mesh, lower, NamedSharding(mesh, P(l_ax, m_ax, n_ax)), arg_shardings

    rule = ("l m k, l m q, l n k, l p q -> l m n" if b_batched
            else "l m k, l m q, n k, p q -> l m n")
    fn.def_partition(partition=partition, infer_sharding_from_operands=infer,
                     sharding_rule=rule, reduction_factors=("k", "q"))
    return fn


_partitioned = {True: _make_partitioned(True), False: _make_partitioned(False)}


def _outer_lowering(ctx, a, sfa, b, sfb, *, config):
    l, lb = ctx.avals_in[0].shape[0], ctx.avals_in[2].shape[0]
    b_batched = lb == l and l > 1

    def impl(a, sfa, b, sfb):
        if not b_batched:
            b, sfb = b[0], sfb[0]
        return _partitioned[b_batched](a, sfa, b, sfb, config)

    return mlir.lower_fun(impl, multiple_results=False)(ctx, a, sfa, b, sfb)


mlir.register_lowering(fp8_gemm_p, _outer_lowering)
# custom_partitioning needs the device assignment at lowering time; JAX keeps it only
# for jaxprs holding a primitive registered here (as custom_partitioning_p itself is).
_jax_dispatch.prim_requires_devices_during_lowering.add(fp8_gemm_p)


# ----------------------------------------------------------------------------- batching

def _batch(args, dims, *, config):
    """vmap: one kernel launch. A batched A with a shared B folds into M; a batched B
    merges the vmapped axis into L."""
    a, sfa, b, sfb = args
    size = next(x.shape[d] for x, d in zip(args, dims) if d is not None)

    def lead(x, d):
        return jnp.broadcast_to(x, (size,) + x.shape) if d is None else jnp.moveaxis(x, d, 0)

    def unbatched_shape(x, d):
        return tuple(s for i, s in enumerate(x.shape) if i != d)

    b_mapped = dims[2] is not None or dims[3] is not None
    l, m, k = unbatched_shape(a, dims[0])
    lb, n, _ = unbatched_shape(b, dims[2])

    if not b_mapped and lb == 1:
        # [B, L, M, K] -> [1, B*L*M, K]: every row meets the same B.
        a, sfa = lead(a, dims[0]), lead(sfa, dims[1])
        d = fp8_gemm_p.bind(a.reshape(1, size * l * m, k), sfa.reshape(1, size * l * m, -1), b, sfb,
                            config=config)
        return d.reshape(size, l, m, n), 0
    a, sfa, b, sfb = lead(a, dims[0]), lead(sfa, dims[1]), lead(b, dims[2]), lead(sfb, dims[3])
    if lb != l:  # a shared B against several A batches: give each its own view
        b = jnp.broadcast_to(b, (size, l) + b.shape[2:])
        sfb = jnp.broadcast_to(sfb, (size, l) + sfb.shape[2:])
    d = fp8_gemm_p.bind(a.reshape(size * l, m, k), sfa.reshape(size * l, m, -1),
                        b.reshape(size * l, n, k), sfb.reshape(size * l, *sfb.shape[2:]), config=config)
    return d.reshape(size, l, m, n), 0


batching.primitive_batchers[fp8_gemm_p] = _batch
