"""The dense GEMM primitive behind every `fp8_gemm_*` and `bf16_gemm_*`.

  gemm_p         [L, M, K] x [Lb, N, K] (+ C [L, M, N]) -> [L, M, N] (Lb is L or 1), with
                 either operand possibly stored MN-major ([L, K, M], [Lb, K, N]; BF16 only):
                 abstract eval, batching (vmap folds into M or into L: one kernel call)
                 and a lowering through custom_partitioning (sharding rules)
  _gemm_local_p  the per-shard op: on CUDA the XLA FFI call with the config chosen at
                 lowering time; elsewhere the reference

What is computed is fixed by a `GemmSpec` (the op, the recipe, the majors, the output
dtype, whether C is given, a pinned config); the operands are, in order,
  fp8:  a, sfa [L, M, ceil(K/128)], b, sfb ([Lb, ceil(N/128), ceil(K/128)] 1D2D, or
        [Lb, N, ceil(K/128)] 1D1D), then c if given;
  bf16: a, b, then c if given.
"""

from __future__ import annotations

import dataclasses
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
from jaxgemm.ops.transpose import to_k_major
from jaxgemm.quantization import align, ceil_div

__all__ = ["GemmSpec", "gemm_p", "gemm_config", "CONFIG_KEYS", "normalize_config"]

SMEM_CAPACITY = 232448  # bytes of shared memory one SM90 block may use
CONFIG_KEYS = ("block_m", "block_n", "num_stages", "store_n", "group_n", "num_sms", "cluster_m", "cluster_n",
               "k_split", "cluster_k", "pingpong", "relayout", "swap_ab", "a_regs")
# Config keys that only the lowering reads (the kernel's form of them is in its kind).
_LOWERING_KEYS = ("relayout",)
# Config keys the heuristic takes as a choice to honour, still picking the tiles.
_HEURISTIC_KEYS = ("relayout", "swap_ab", "a_regs")
_KIND_KEYS = ("sfb_per_row", "a_mn_major", "b_mn_major", "out_bytes", "c_bytes")
_FFI_TARGETS = {"fp8": "jaxgemm_fp8_gemm", "bf16": "jaxgemm_bf16_gemm"}


@dataclasses.dataclass(frozen=True)
class GemmSpec:
    """The static parameters of one GEMM (hashable: it is the primitive's parameter)."""
    op: str                    # "fp8" or "bf16"
    out_dtype: str             # "bfloat16" or "float32"
    has_c: bool = False
    c_dtype: str | None = None
    sfb_per_row: bool = False  # fp8: B has 1x128 scales (1D1D), else 128x128 (1D2D)
    a_mn_major: bool = False   # bf16: A is [L, K, M]
    b_mn_major: bool = False   # bf16: B is [Lb, K, N]
    # fp8: the caller stored A (data and scales) as [K, M] / B as [K, N]. The op hands
    # the primitive their K-major transposes; the lowering hands the kernel what was
    # stored (XLA cancels the two transposes) wherever the kernel reads it so: A's
    # scales always, the data where the kernel transposes it in shared memory (config
    # relayout=1).
    a_stored_mn_major: bool = False
    b_stored_mn_major: bool = False
    config: tuple | None = None

    @property
    def num_operands(self) -> int:
        return (4 if self.op == "fp8" else 2) + int(self.has_c)

    @property
    def layout(self) -> str:
        return {(False, False): "nt", (False, True): "nn", (True, True): "tn",
                (True, False): "tt"}[(self.a_mn_major or self.a_stored_mn_major,
                                      self.b_mn_major or self.b_stored_mn_major)]


def _split(spec: GemmSpec, args):
    """(a, sfa, b, sfb, c) from the operand list (None where absent)."""
    args = list(args)
    c = args.pop() if spec.has_c else None
    if spec.op == "fp8":
        a, sfa, b, sfb = args
    else:
        (a, b), sfa, sfb = args, None, None
    return a, sfa, b, sfb, c


def _join(spec: GemmSpec, a, sfa, b, sfb, c):
    args = [a, sfa, b, sfb] if spec.op == "fp8" else [a, b]
    return args + ([c] if spec.has_c else [])


def _mnk(spec: GemmSpec, a_shape, b_shape):
    """(L, M, N, K) from the rank-3 shapes of A and B."""
    l, r0, r1 = a_shape
    m, k = (r1, r0) if spec.a_mn_major else (r0, r1)
    n = b_shape[-1] if spec.b_mn_major else b_shape[-2]
    return l, m, n, k


# ----------------------------------------------------------------------------- config

def normalize_config(config, op_name: str):
    """A user's `config=` override, checked, as a hashable tuple of (key, value)."""
    if config is None:
        return None
    if isinstance(config, tuple):  # the primitive's own form: check it all the same
        try:
            config = dict(config)
        except (TypeError, ValueError):
            raise TypeError(f"{op_name}: config must be a dict with keys from {CONFIG_KEYS}") from None
    if not isinstance(config, dict):
        raise TypeError(f"{op_name}: config must be a dict with keys from {CONFIG_KEYS}")
    unknown = set(config) - set(CONFIG_KEYS)
    if unknown:
        raise ValueError(f"{op_name}: unknown config keys {sorted(unknown)}; known: {CONFIG_KEYS}")
    for key, value in config.items():
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
            raise TypeError(f"{op_name}: config {key} must be an int, got {value!r}")
        ok, want = _CONFIG_RULES[key]
        if not ok(int(value)):
            raise ValueError(f"{op_name}: config {key} must be {want}, got {value}")
    if "store_n" in config and "block_n" in config and config["block_n"] % config["store_n"]:
        raise ValueError(f"{op_name}: config store_n={config['store_n']} must divide block_n")
    return tuple(sorted((k, int(v)) for k, v in config.items()))


# What each config key may be: (test, description for the error).
_CONFIG_RULES = {
    "block_m": (lambda v: v in (64, 128), "64 or 128"),
    "block_n": (lambda v: v % 16 == 0 and 16 <= v <= 256, "a multiple of 16 in [16, 256]"),
    "num_stages": (lambda v: 1 <= v <= 32, "in [1, 32]"),
    "store_n": (lambda v: v in (8, 16, 32, 64), "8, 16, 32 or 64"),
    "group_n": (lambda v: v >= 1, "positive"),
    "num_sms": (lambda v: v >= 1, "positive"),
    "cluster_m": (lambda v: v in (1, 2), "1 or 2"),
    "cluster_n": (lambda v: v in (1, 2), "1 or 2"),
    "k_split": (lambda v: v in (1, 2), "1 or 2"),
    "cluster_k": (lambda v: v in (1, 2, 4, 8), "1, 2, 4 or 8"),
    "pingpong": (lambda v: v in (0, 1), "0 or 1"),
    "relayout": (lambda v: v in (0, 1), "0 or 1"),
    "swap_ab": (lambda v: v in (0, 1), "0 or 1"),
    "a_regs": (lambda v: v in (0, 1), "0 or 1"),
}


def _kind(spec: GemmSpec) -> dict:
    c_bytes = 0 if not spec.has_c else jnp.dtype(spec.c_dtype).itemsize
    return dict(sfb_per_row=int(spec.sfb_per_row), a_mn_major=int(spec.a_mn_major),
                b_mn_major=int(spec.b_mn_major), out_bytes=jnp.dtype(spec.out_dtype).itemsize,
                c_bytes=c_bytes)


def _pin_relayout(spec: GemmSpec, cfg: dict, overrides: dict, op_name: str):
    """Checks a pinned `relayout`, and drops the heuristic's relayout where a pinned
    multicast rules it out (an operand the kernel transposes is never multicast)."""
    stored = (spec.a_stored_mn_major, spec.b_stored_mn_major)
    if "relayout" in overrides:
        if overrides["relayout"] and spec.op != "fp8":
            raise ValueError(f"{op_name}: config relayout=1 (the FP8 kernel transposes an MN-major "
                             "operand in shared memory) is for the FP8 GEMMs; BF16 reads either major")
        if overrides["relayout"] and not any(stored):
            raise ValueError(f"{op_name}: config relayout=1 needs an operand stored MN-major "
                             "(layouts nn, tn, tt)")
        # The heuristic (C++) leaves an operand K-major where TMA cannot read its rows.
        if overrides["relayout"] and ((stored[0] and not cfg["a_mn_major"]) or
                                      (stored[1] and not cfg["b_mn_major"])):
            raise ValueError(f"{op_name}: config relayout=1 needs M (A stored [K, M]) and N (B "
                             "stored [K, N]) multiples of 16: TMA reads 16-byte rows")
    if spec.op != "fp8":
        return
    multicast_a, multicast_b = overrides.get("cluster_n", 1) > 1, overrides.get("cluster_m", 1) > 1
    if (cfg["a_mn_major"] and multicast_a) or (cfg["b_mn_major"] and multicast_b):
        if overrides.get("relayout") or overrides.get("a_regs"):
            raise ValueError(f"{op_name}: config {overrides}: an operand the kernel reads as stored "
                             "(relayout=1, a_regs=1) is not multicast (cluster_m=2 multicasts B, "
                             "cluster_n=2 A)")
        cfg["a_mn_major"] = cfg["b_mn_major"] = cfg["a_regs"] = 0
    cfg["relayout"] = int(cfg["a_mn_major"] or cfg["b_mn_major"])


def _check_swap_ab(spec: GemmSpec, cfg: dict, overrides: dict, op_name: str, m: int, n: int):
    """A pinned swap_ab=1: the FP8 kernel computes D^T with B (stored [K, N]) as its
    register operand, so it reads B as stored and A K-major."""
    if spec.op != "fp8" or not spec.b_stored_mn_major or spec.sfb_per_row:
        raise ValueError(f"{op_name}: config swap_ab=1 (D^T = B^T A^T, B read into registers) is "
                         "for the FP8 GEMMs whose B is stored [K, N] (layouts nn, tn), with 128x128 B scales")
    if "relayout" in overrides or m > 128 or cfg["block_n"] > 128 or \
            cfg.get("cluster_m", 1) * cfg.get("cluster_n", 1) != 1:
        raise ValueError(f"{op_name}: config swap_ab=1 reads B as stored (leave relayout unset), at "
                         "M <= 128, with block_n (the tile's columns, over M) at most 128 and no multicast")
    if n % 16:
        raise ValueError(f"{op_name}: config swap_ab=1 needs N a multiple of 16: TMA reads B's "
                         "[K, N] rows in 16-byte units")
    cfg["a_mn_major"], cfg["b_mn_major"], cfg["relayout"] = 0, 1, 1


def _check_a_regs(spec: GemmSpec, cfg: dict, overrides: dict, op_name: str, m: int):
    """A pinned a_regs=1: the FP8 kernel reads A (stored [K, M]) as stored into the
    tensor cores' register operand."""
    if spec.op != "fp8" or not spec.a_stored_mn_major:
        raise ValueError(f"{op_name}: config a_regs=1 (A read into registers as stored) is for "
                         "the FP8 GEMMs whose A is stored [K, M] (layouts tn, tt)")
    if overrides.get("relayout") == 0 or cfg.get("swap_ab"):
        raise ValueError(f"{op_name}: config a_regs=1 reads A as stored: not with relayout=0 "
                         "(transpose first) or swap_ab=1 (A is then the K-major operand)")
    if m % 16:
        raise ValueError(f"{op_name}: config a_regs=1 needs M a multiple of 16: TMA reads A's "
                         "[K, M] rows in 16-byte units")
    cfg["a_mn_major"] = 1


def gemm_config(spec: GemmSpec, m: int, n: int, k: int, batches: int = 1, *,
                num_sms: int | None = None) -> dict:
    """The kernel config for a shape: the heuristic's pick, with `spec.config`'s overrides.

    Called at lowering time; `num_sms` defaults to `get_num_sms()` (needs a GPU).
    """
    op_name = f"{spec.op}_gemm_{spec.layout}"
    ext = _runtime.extension()
    if num_sms is None:  # set_num_sms's cap, never more than the GPU has
        num_sms = min(_runtime.get_num_sms(), _runtime.device_info(0)["num_sms"])
    kind = _kind(spec)
    overrides = dict(spec.config or ())
    if spec.op == "fp8":
        # The heuristic decides which operands stored MN-major the kernel transposes
        # (its kind's majors) unless `relayout` is pinned; `relayout` says whether it
        # transposes any. relayout=0 picks what the NT GEMM would, after the transposes.
        cfg = dict(ext.fp8_gemm_config(m, n, k, batches, num_sms, bool(kind["sfb_per_row"]),
                                       kind["out_bytes"], kind["c_bytes"],
                                       a_mn_major=spec.a_stored_mn_major,
                                       b_mn_major=spec.b_stored_mn_major,
                                       relayout=overrides.get("relayout", -1),
                                       swap_ab=overrides.get("swap_ab", -1),
                                       a_regs=overrides.get("a_regs", -1)))
        cfg["relayout"] = int(cfg["a_mn_major"] or cfg["b_mn_major"])
    else:
        cfg = dict(ext.bf16_gemm_config(m, n, k, batches, num_sms, bool(kind["a_mn_major"]),
                                        bool(kind["b_mn_major"]), kind["out_bytes"], kind["c_bytes"]))
        cfg["relayout"] = 0
    if not overrides:
        return cfg
    cfg.update(overrides)
    if cfg.get("swap_ab"):
        _check_swap_ab(spec, cfg, overrides, op_name, m, n)
    if overrides.get("a_regs"):
        _check_a_regs(spec, cfg, overrides, op_name, m)
    _pin_relayout(spec, cfg, overrides, op_name)
    if set(overrides) <= set(_HEURISTIC_KEYS):
        return cfg  # the heuristic's tiles, as it picked them for this relayout or swap
    if spec.op == "bf16" and spec.b_mn_major and cfg["block_n"] % (64 * cfg.get("cluster_m", 1)):
        raise ValueError(f"{op_name}: config block_n={cfg['block_n']} must be a multiple of 64 "
                         "(128 with cluster_m=2) when B is MN-major")
    for key in ("cluster_m", "cluster_n", "cluster_k"):
        if key not in overrides:
            cfg[key] = 1  # with a pinned config, clusters only where asked for
    for key in ("pingpong", "swap_ab"):
        if key not in overrides:
            cfg[key] = 0  # and ping-pong or the swapped kernel too
    if cfg["cluster_m"] * cfg["cluster_n"] > 2:
        raise ValueError(f"{op_name}: config {overrides}: a cluster pairs CTAs along M (cluster_m=2, "
                         "B multicast) or along N (cluster_n=2, A multicast), not both")
    if spec.op == "bf16" and cfg["cluster_n"] != 1:
        raise ValueError(f"{op_name}: config cluster_n=2 (A multicast) is implemented for the FP8 "
                         "GEMMs only; use cluster_m=2")
    cluster_k = cfg["cluster_k"]
    if cluster_k != 1 and (spec.op != "fp8" or cfg["cluster_m"] * cfg["cluster_n"] != 1
                           or cfg["block_n"] % (8 * cluster_k)):
        raise ValueError(f"{op_name}: config cluster_k={cluster_k} (K split over a cluster of CTAs) "
                         "needs the FP8 kernel, no multicast (cluster_m=cluster_n=1) and block_n a "
                         f"multiple of {8 * cluster_k}")
    if cfg["pingpong"] and (spec.op != "bf16" or cfg["block_m"] != 128):
        raise ValueError(f"{op_name}: config pingpong=1 (each math warpgroup on its own 128-row tile) "
                         "needs the BF16 kernel and block_m=128")
    if "k_split" not in overrides and cfg["block_m"] != 64:
        cfg["k_split"] = 1  # the heuristic's K split is for its 64-row tiles
    if cfg["k_split"] != 1 and (spec.op != "fp8" or cfg["block_m"] != 64):
        raise ValueError(f"{op_name}: config k_split=2 (two warpgroups on alternate K blocks of a "
                         "64-row tile) needs the FP8 kernel and block_m=64")
    out_block_n = cfg["block_n"] // cluster_k  # the columns each CTA stores
    if "store_n" not in overrides:
        cfg["store_n"] = next(w for w in (64, 32, 16, 8)
                              if w * kind["out_bytes"] <= 128 and out_block_n % w == 0)
    if cfg["store_n"] * kind["out_bytes"] > 128:
        raise ValueError(f"{op_name}: config store_n={cfg['store_n']} is wider than 128 bytes of "
                         f"{spec.out_dtype} output")
    if cfg["num_sms"] > num_sms and "num_sms" in overrides:
        raise ValueError(f"{op_name}: config num_sms={cfg['num_sms']} exceeds the {num_sms} SMs")
    bf16 = spec.op == "bf16"
    if "num_stages" not in overrides:  # as deep as the heuristic would go
        cfg["num_stages"] = ext.gemm_deepest_stages(cfg, bf16)
    cluster_m, cluster_n = cfg["cluster_m"], cfg["cluster_n"]
    cluster = cluster_m * cluster_n * cluster_k
    if "num_sms" not in overrides:  # every CTA of every cluster that has a tile
        rows, cols = (n, m) if cfg["swap_ab"] else (m, n)  # swap_ab tiles D^T
        units = (batches * ceil_div(rows, cfg["block_m"] * cluster_m)
                 * ceil_div(ceil_div(cols, cfg["block_n"]), cluster_n))
        cfg["num_sms"] = min(num_sms // cluster * cluster, units * cluster)
    if cfg["num_sms"] % cluster != 0 or cfg["block_n"] % (8 * cluster_m) != 0:
        raise ValueError(f"{op_name}: config {overrides}: with cluster_m={cluster_m}, "
                         f"cluster_n={cluster_n} and cluster_k={cluster_k}, num_sms must be a "
                         f"multiple of {cluster} and block_n / 8 of {cluster_m}")
    cfg["smem_bytes"] = ext.gemm_smem_bytes(cfg, bf16)
    if cfg["smem_bytes"] > SMEM_CAPACITY or cfg["num_stages"] < 1:
        raise ValueError(f"{op_name}: config {overrides} needs {cfg['smem_bytes']} bytes of shared "
                         f"memory, more than the {SMEM_CAPACITY} an SM90 block can have")
    if out_block_n % cfg["store_n"] != 0:
        raise ValueError(f"{op_name}: config store_n={cfg['store_n']} must divide block_n"
                         + (f" / cluster_k = {out_block_n}" if cluster_k > 1 else ""))
    return cfg


# ----------------------------------------------------------------------------- primitives

gemm_p = Primitive("jaxgemm_gemm")
_gemm_local_p = Primitive("jaxgemm_gemm_local")


def _axis_names(axes) -> set:
    if axes is None:
        return set()
    return set(axes) if isinstance(axes, tuple) else {axes}


def _abstract_eval(*args, spec: GemmSpec):
    a, _, b, _, _ = _split(spec, args)
    l, m, n, _ = _mnk(spec, a.shape, b.shape)
    assert b.shape[0] in (1, l), (a.shape, b.shape)
    # update() keeps the manual-axis (shard_map) typing of the operand; the sharding
    # (explicit-mode meshes type it) is L and M of A, N of B.
    a_spec, b_spec = tuple(a.sharding.spec), tuple(b.sharding.spec)
    a_spec += (None,) * (3 - len(a_spec))
    b_spec += (None,) * (3 - len(b_spec))
    m_ax = a_spec[2] if spec.a_mn_major else a_spec[1]
    n_ax = b_spec[2] if spec.b_mn_major else b_spec[1]
    if n_ax is not None and _axis_names(n_ax) & (_axis_names(a_spec[0]) | _axis_names(m_ax)):
        n_ax = None
    sharding = a.sharding.update(spec=P(a_spec[0], m_ax, n_ax))
    return a.update(shape=(l, m, n), dtype=jnp.dtype(spec.out_dtype), weak_type=False,
                    sharding=sharding)


for _p in (gemm_p, _gemm_local_p):
    _p.def_abstract_eval(_abstract_eval)
    _p.def_impl(functools.partial(_jax_dispatch.apply_primitive, _p))  # eager: jit the one op


def _reference_impl(*args, spec: GemmSpec):
    a, sfa, b, sfb, c = _split(spec, args)
    if spec.op == "fp8":
        return reference.fp8_gemm_nt(a, sfa, b, sfb, c, spec.out_dtype)
    return reference.bf16_gemm(a, b, spec.layout, c, spec.out_dtype)


mlir.register_lowering(_gemm_local_p, mlir.lower_fun(_reference_impl, multiple_results=False))


# ----------------------------------------------------------------------------- CUDA lowering

def _check_sm90(op_name):
    info = _runtime.device_info(0)
    if (info["arch_major"], info["arch_minor"]) != (9, 0):
        raise NotImplementedError(
            f"jaxgemm {op_name}: the CUDA kernel needs an SM90 (Hopper) GPU; device 0 is "
            f"{info['name']} (sm_{info['arch_major']}{info['arch_minor']})")


def _cuda_lowering(ctx, *args, spec: GemmSpec):
    op_name = f"{spec.op}_gemm_{spec.layout}"
    _runtime.ensure_cuda()
    _check_sm90(op_name)
    a_aval, _, b_aval, _, _ = _split(spec, ctx.avals_in)
    l, m, n, k = _mnk(spec, a_aval.shape, b_aval.shape)
    cfg = gemm_config(spec, m, n, k, l)
    if os.environ.get("JAXGEMM_PRINT_CONFIGS", "0") not in ("", "0"):
        print(f"jaxgemm: {op_name} L={l} M={m} N={n} K={k}: {cfg}", flush=True)
    attrs = {key: np.int32(cfg[key]) for key in CONFIG_KEYS + _KIND_KEYS if key not in _LOWERING_KEYS}
    attrs["sfa_mn_major"] = np.int32(spec.a_stored_mn_major)
    out_type = jax.ShapeDtypeStruct((l, m, n), jnp.dtype(spec.out_dtype))
    # D = C + A@B in place: XLA aliases C's buffer to D (no copy when the caller donates C).
    c_index = spec.num_operands - 1
    aliases = {c_index: 0} if spec.has_c and spec.c_dtype == spec.out_dtype else {}

    def impl(*args):
        a, sfa, b, sfb, c = _split(spec, args)
        if spec.op == "fp8":
            # The kernel reads A's scales in either major (strides), so they pass as
            # stored. 1D1D's B scales go by TMA, N-major ([Lb, ceil(K/128), N] with
            # rows padded to 4 floats, TMA's 16-byte strides): XLA fuses that small
            # transpose.
            if spec.a_stored_mn_major:
                sfa = jnp.swapaxes(sfa, 1, 2)
            # An operand the kernel transposes in shared memory: as the caller stored it.
            # Otherwise one stored MN-major is transposed first, by jaxgemm's kernel.
            if cfg["a_mn_major"]:
                a = jnp.swapaxes(a, 1, 2)
            elif spec.a_stored_mn_major:
                a = to_k_major(a)
            if cfg["b_mn_major"]:
                b = jnp.swapaxes(b, 1, 2)
            elif spec.b_stored_mn_major:
                b = to_k_major(b)
            if spec.sfb_per_row:
                sfb = jnp.pad(jnp.swapaxes(sfb, 1, 2), ((0, 0), (0, 0), (0, align(n, 4) - n)))
        operands = [x for x in _join(spec, a, sfa, b, sfb, c)]
        return jax.ffi.ffi_call(_FFI_TARGETS[spec.op], out_type,
                                input_output_aliases=aliases)(*operands, **attrs)

    return mlir.lower_fun(impl, multiple_results=False)(ctx, *args)


mlir.register_lowering(_gemm_local_p, _cuda_lowering, platform="cuda")


# ----------------------------------------------------------------------------- sharding

def _axis_size(mesh, axes) -> int:
    if axes is None:
        return 1
    axes = axes if isinstance(axes, tuple) else (axes,)
    return int(np.prod([mesh.shape[x] for x in axes]))


def _spec_of(sharding, rank):
    spec = tuple(sharding.spec) if isinstance(sharding, NamedSharding) else ()
    return spec + (None,) * (rank - len(spec))


def _plan(spec: GemmSpec, mesh, arg_shapes, b_batched):
    """Mesh axes for (L, M, N, K): L, M and K from A, N from B. FP8's N and K stay
    sharded only where each shard holds whole 128-blocks of scales."""
    a_shape, _, b_shape, _, _ = _split(spec, arg_shapes)
    l_ax, r0, r1 = _spec_of(a_shape.sharding, 3)
    m_ax, k_ax = (r1, r0) if spec.a_mn_major else (r0, r1)
    b_spec = _spec_of(b_shape.sharding, b_shape.ndim)
    n_ax = b_spec[-1] if spec.b_mn_major else b_spec[-2]
    l, m, n, k = _mnk(spec, a_shape.shape, b_shape.shape)
    fp8 = spec.op == "fp8"

    def divides(size, axes, block):
        s = _axis_size(mesh, axes)
        return size % s == 0 and (size // s) % block == 0

    if l_ax is not None and not divides(l, l_ax, 1):
        l_ax = None
    if m_ax is not None and not divides(m, m_ax, 1):
        m_ax = None
    if n_ax is not None and not divides(n, n_ax, 128 if fp8 and not spec.sfb_per_row else 1):
        n_ax = None
    if k_ax is not None and not divides(k, k_ax, 128 if fp8 else 1):
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


def _factors(spec: GemmSpec, b_batched: bool):
    """Shardy factor names per operand dimension, and the same as PartitionSpec builders."""
    lb = ("l",) if b_batched else ()
    a = ("l", "k", "m") if spec.a_mn_major else ("l", "m", "k")
    b = lb + (("k", "n") if spec.b_mn_major else ("n", "k"))
    sfa = ("l", "m", "q")
    sfb = lb + (("n", "q") if spec.sfb_per_row else ("p", "q"))
    c = ("l", "m", "n")
    return _join(spec, a, sfa, b, sfb, c)


def _bind_local(spec: GemmSpec, b_batched: bool, args):
    a, sfa, b, sfb, c = _split(spec, args)
    if not b_batched:
        b = b[None]
        sfb = None if sfb is None else sfb[None]
    return _gemm_local_p.bind(*_join(spec, a, sfa, b, sfb, c), spec=spec)


def _make_partitioned(spec: GemmSpec, b_batched: bool):
    def local(*args):
        return _bind_local(spec, b_batched, args)

    fn = custom_partitioning(local)
    factors = _factors(spec, b_batched)

    def arg_specs(plan):
        axes = dict(zip("lmnk", plan))
        axes.update(p=axes["n"], q=axes["k"])  # scale blocks shard with the data they scale
        return tuple(P(*(axes.get(f) for f in dims)) for dims in factors)

    def infer(mesh, arg_shapes, result_shape):
        del result_shape
        l_ax, m_ax, n_ax, _ = _plan(spec, mesh, arg_shapes, b_batched)
        return NamedSharding(mesh, P(l_ax, m_ax, n_ax))

    def partition(mesh, arg_shapes, result_shape):
        del result_shape
        plan = _plan(spec, mesh, arg_shapes, b_batched)
        l_ax, m_ax, n_ax, k_ax = plan

        def lower(*args):
            # jax 0.11 runs this callback (tracing `lower`, then lowering its jaxpr) on
            # the compiling thread, under the caller's `jax.set_mesh`; jax 0.10 ran it on
            # an XLA thread, under no mesh. Traced under an Explicit mesh, the values
            # made here and in the per-shard lowering (each eqn keeps the mesh it was
            # traced under: a broadcast, the reference's dots, an FFI call's result) are
            # typed replicated on it and lowered with sharding constraints, which this
            # module, inlined after partitioning, keeps as custom calls to `Sharding`
            # that no backend implements. So the shard is traced under the mesh its
            # operands are typed on (none).
            with jax.sharding.use_abstract_mesh(jax.typeof(args[0]).sharding.mesh):
                return lower_shard(*args)

        def lower_shard(*args):
            if k_ax is None:
                return local(*args)
            # Each shard holds a partial sum over its K slice: reduce in FP32, then add
            # C and round once.
            a, sfa, b, sfb, c = _split(spec, args)
            partial_spec = dataclasses.replace(spec, has_c=False, c_dtype=None, out_dtype="float32")
            d = _bind_local(partial_spec, b_batched, _join(partial_spec, a, sfa, b, sfb, None))
            d = jax.lax.psum(d, k_ax)
            if c is not None:
                d = d + c.astype(jnp.float32)
            return d.astype(spec.out_dtype)

        arg_shardings = tuple(NamedSharding(mesh, s) for s in arg_specs(plan))
        return mesh, lower, NamedSharding(mesh, P(l_ax, m_ax, n_ax)), arg_shardings

    rule = ", ".join(" ".join(dims) for dims in factors) + " -> l m n"
    reduction = ("k", "q") if spec.op == "fp8" else ("k",)
    fn.def_partition(partition=partition, infer_sharding_from_operands=infer,
                     sharding_rule=rule, reduction_factors=reduction)
    return fn


@functools.lru_cache(maxsize=None)
def _partitioned(spec: GemmSpec, b_batched: bool):
    return _make_partitioned(spec, b_batched)


def _outer_lowering(ctx, *args, spec: GemmSpec):
    a_aval, _, b_aval, _, _ = _split(spec, ctx.avals_in)
    l, lb = a_aval.shape[0], b_aval.shape[0]
    b_batched = lb == l and l > 1

    def impl(*args):
        a, sfa, b, sfb, c = _split(spec, args)
        if not b_batched:
            b = b[0]
            sfb = None if sfb is None else sfb[0]
        return _partitioned(spec, b_batched)(*_join(spec, a, sfa, b, sfb, c))

    return mlir.lower_fun(impl, multiple_results=False)(ctx, *args)


mlir.register_lowering(gemm_p, _outer_lowering)
# custom_partitioning needs the device assignment at lowering time; JAX keeps it only
# for jaxprs holding a primitive registered here (as custom_partitioning_p itself is).
_jax_dispatch.prim_requires_devices_during_lowering.add(gemm_p)


# ----------------------------------------------------------------------------- batching

def _batch(args, dims, *, spec: GemmSpec):
    """vmap: one kernel launch. A batched K-major A with a shared B folds into M; any
    other batching merges the vmapped axis into L (a shared B stays shared)."""
    size = next(x.shape[d] for x, d in zip(args, dims) if d is not None)
    a, sfa, b, sfb, c = _split(spec, args)
    da, dsfa, db, dsfb, dc = _split(spec, dims)

    def lead(x, d):
        if x is None:
            return None
        return jnp.broadcast_to(x, (size,) + x.shape) if d is None else jnp.moveaxis(x, d, 0)

    def unbatched_shape(x, d):
        return tuple(s for i, s in enumerate(x.shape) if i != d)

    a_shape, b_shape = unbatched_shape(a, da), unbatched_shape(b, db)
    l, m, n, _ = _mnk(spec, a_shape, b_shape)
    lb = b_shape[0]
    b_mapped = db is not None or dsfb is not None
    a, sfa, c = lead(a, da), lead(sfa, dsfa), lead(c, dc)

    def merge(x):  # [size, L, ...] -> [size * L, ...]
        return None if x is None else x.reshape((size * x.shape[1],) + x.shape[2:])

    if not b_mapped and lb == 1 and not spec.a_mn_major:
        # [size, L, M, K] -> [1, size*L*M, K]: every row meets the same B.
        def fold(x):
            return None if x is None else x.reshape((1, size * l * m) + x.shape[3:])

        d = gemm_p.bind(*_join(spec, fold(a), fold(sfa), b, sfb, fold(c)), spec=spec)
        return d.reshape(size, l, m, n), 0
    if b_mapped or lb != 1:
        b, sfb = lead(b, db), lead(sfb, dsfb)
        if lb != l:  # a shared B against several A batches: give each its own view
            b = jnp.broadcast_to(b, (size, l) + b.shape[2:])
            sfb = None if sfb is None else jnp.broadcast_to(sfb, (size, l) + sfb.shape[2:])
        b, sfb = merge(b), merge(sfb)
    d = gemm_p.bind(*_join(spec, merge(a), merge(sfa), b, sfb, merge(c)), spec=spec)
    return d.reshape(size, l, m, n), 0


batching.primitive_batchers[gemm_p] = _batch
