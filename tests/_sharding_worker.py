"""Runs the dense GEMMs' sharding checks on 8 host CPU devices; prints one JSON object.

Started by tests/test_fp8_gemm_sharding.py in a fresh interpreter, because the device
count (XLA_FLAGS=--xla_force_host_platform_device_count=8) must be set before JAX
initialises its backends, which the test process has already done. This file only
gathers facts (result specs, equality, collectives in the compiled HLO); the test file
asserts on them, so that every check reports on its own.

Output: {"jax": version, "devices": n, "cases": {name: facts}}; a case that raised
has {"error": traceback} instead of its facts.
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
if "--xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                               " --xla_force_host_platform_device_count=8").strip()

import json  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import traceback  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P  # noqa: E402

import jaxgemm  # noqa: E402

# M = 64 rows: 32 per shard over "x" (2), 16 over "y" (4). N = 1024: 256 per shard over
# "y" (whole 128-blocks of B's scales). K = 1024: 256 per shard over "y".
M, N, K = 64, 1024, 1024


def _operands(m, n, k, seed, per_row=False):
    kx, kw = jax.random.split(jax.random.PRNGKey(seed))
    x = jax.random.normal(kx, (m, k), jnp.float32)
    w = jax.random.normal(kw, (n, k), jnp.float32)
    cast_b = jaxgemm.per_token_cast_to_fp8 if per_row else jaxgemm.per_block_cast_to_fp8
    return jaxgemm.per_token_cast_to_fp8(x), cast_b(w)


def _bf16_operands(m, n, k, seed):
    kx, kw = jax.random.split(jax.random.PRNGKey(seed))
    return (jax.random.normal(kx, (m, k), jnp.float32).astype(jnp.bfloat16),
            jax.random.normal(kw, (n, k), jnp.float32).astype(jnp.bfloat16))


def _addend(m, n, dtype, seed):
    return (4.0 * jax.random.normal(jax.random.PRNGKey(seed), (m, n), jnp.float32)).astype(dtype)


def _bits(x):
    x = np.asarray(jax.device_get(x))
    return x.view(np.uint16 if x.dtype.itemsize == 2 else np.uint32)


def _spec(x):
    spec = tuple(x.sharding.spec) if isinstance(x.sharding, NamedSharding) else None
    if spec is None:
        return None
    spec = spec + (None,) * (x.ndim - len(spec))
    return [list(s) if isinstance(s, tuple) else s for s in spec]


def _collectives(hlo: str) -> dict:
    return {op: bool(re.search(rf"\b{op}(-start)?\(", hlo) or re.search(rf"= \S+ {op}(-start)?\(", hlo))
            for op in ("all-gather", "all-reduce", "all-to-all", "collective-permute", "reduce-scatter")}


def _facts(out, ref, hlo=None):
    facts = {
        "shape": list(out.shape),
        "dtype": str(out.dtype),
        "spec": _spec(out),
        "bitwise_equal": bool(np.array_equal(_bits(out), _bits(ref))),
        "calc_diff": jaxgemm.calc_diff(out, ref),
    }
    if hlo is not None:
        facts["collectives"] = _collectives(hlo)
    return facts


def _run_on_mesh(fn, mesh, ref, *args):
    """Runs jitted `fn` on sharded `args` under `mesh`; facts about its result and HLO."""
    with jax.set_mesh(mesh):
        out = fn(*args)
        hlo = fn.lower(*args).compile().as_text()
    return _facts(out, ref, hlo)


def _put(pair, mesh, spec, scales_spec=None):
    data, scales = pair
    return (jax.device_put(data, NamedSharding(mesh, spec)),
            jax.device_put(scales, NamedSharding(mesh, spec if scales_spec is None else scales_spec)))


def main():
    cases = {}

    def case(name, fn):
        try:
            cases[name] = fn()
        except Exception:  # noqa: BLE001 - reported to the test, which fails on it
            cases[name] = {"error": traceback.format_exc()}

    a, b = _operands(M, N, K, seed=0)
    f = jax.jit(jaxgemm.fp8_gemm_nt)
    ref = f(a, b)  # unsharded, one device

    # Operand specs: A's data and scales share a spec ([M, K] and [M, K/128]); so do B's.
    layouts = {
        "M": (P("x", None), P(None, None)),
        "N": (P(None, None), P("y", None)),
        "MN": (P("x", None), P("y", None)),
        "M_xy": (P(("x", "y"), None), P(None, None)),
        "K": (P(None, "y"), P(None, "y")),
        "MK": (P("x", "y"), P(None, "y")),
    }
    for axis_type in ("Explicit", "Auto"):
        t = getattr(AxisType, axis_type)
        mesh = jax.make_mesh((2, 4), ("x", "y"), axis_types=(t, t))
        for name, (sa, sb) in layouts.items():
            def run(sa=sa, sb=sb, mesh=mesh):
                return _run_on_mesh(f, mesh, ref, _put(a, mesh, sa), _put(b, mesh, sb))
            case(f"{axis_type}/{name}", run)

        # N per shard (256 / 4 = 64 rows) is not whole 128-blocks of B's scales (which
        # stay replicated): the rule must not split a scale block; the answer must
        # still be right.
        def run_unaligned_n(mesh=mesh):
            a2, b2 = _operands(M, 256, 256, seed=1)
            ref2 = f(a2, b2)
            aa, bb = _put(a2, mesh, P(None, None)), _put(b2, mesh, P("y", None), P(None, None))
            with jax.set_mesh(mesh):
                out = f(aa, bb)
            return _facts(out, ref2)
        case(f"{axis_type}/N_unaligned", run_unaligned_n)

        # vmap over a batch axis sharded on "x", B per batch sharded on N over "y".
        def run_vmap(mesh=mesh):
            pairs = [_operands(32, 512, 256, seed=10 + i) for i in range(4)]
            ab = tuple(jnp.stack([p[0][j] for p in pairs]) for j in range(2))
            bb_ = tuple(jnp.stack([p[1][j] for p in pairs]) for j in range(2))
            g = jax.jit(jax.vmap(jaxgemm.fp8_gemm_nt))
            ref_v = g(ab, bb_)
            return _run_on_mesh(g, mesh, ref_v, _put(ab, mesh, P("x", None, None)),
                                _put(bb_, mesh, P("x", "y", None)))
        case(f"{axis_type}/vmap_LN", run_vmap)

        # shard_map, every axis manual: each shard calls the op on its local block.
        def run_shard_map_mn(mesh=mesh):
            def local(a0, a1, b0, b1):
                return jaxgemm.fp8_gemm_nt((a0, a1), (b0, b1))
            g = jax.jit(jax.shard_map(local, mesh=mesh, in_specs=(P("x"), P("x"), P("y"), P("y")),
                                      out_specs=P("x", "y")))
            aa, bb = _put(a, mesh, P("x")), _put(b, mesh, P("y"))
            with jax.set_mesh(mesh):
                out = g(*aa, *bb)
            return _facts(out, ref)
        case(f"{axis_type}/shard_map_MN", run_shard_map_mn)

        def run_shard_map_k(mesh=mesh):
            def local(a0, a1, b0, b1):
                d = jaxgemm.fp8_gemm_nt((a0, a1), (b0, b1))
                return jax.lax.psum(d.astype(jnp.float32), "y").astype(jnp.bfloat16)
            g = jax.jit(jax.shard_map(local, mesh=mesh,
                                      in_specs=(P("x", "y"), P("x", "y"), P(None, "y"), P(None, "y")),
                                      out_specs=P("x", None)))
            aa, bb = _put(a, mesh, P("x", "y")), _put(b, mesh, P(None, "y"))
            with jax.set_mesh(mesh):
                out = g(*aa, *bb)
            return _facts(out, ref)
        case(f"{axis_type}/shard_map_K", run_shard_map_k)

        # An addend c (sharded like D) and FP32 output, with M and N local, and with K
        # reduced (C must be added once, after the partial sums are reduced).
        c_bf16, c_f32 = _addend(M, N, jnp.bfloat16, 5), _addend(M, N, jnp.float32, 6)
        for name, c, out_dtype, (sa, sb, sc) in (
                ("c_M", c_bf16, jnp.bfloat16, (P("x", None), P(None, None), P("x", None))),
                ("c_MN_f32", c_f32, jnp.float32, (P("x", None), P("y", None), P("x", "y"))),
                ("c_K", c_f32, jnp.bfloat16, (P(None, "y"), P(None, "y"), P(None, None))),
                ("c_MK_f32", c_bf16, jnp.float32, (P("x", "y"), P(None, "y"), P("x", None)))):
            def run_c(c=c, out_dtype=out_dtype, sa=sa, sb=sb, sc=sc, mesh=mesh):
                fc = jax.jit(lambda a, b, c: jaxgemm.fp8_gemm_nt(a, b, c, out_dtype))
                ref_c = fc(a, b, c)
                cc = jax.device_put(c, NamedSharding(mesh, sc))
                return _run_on_mesh(fc, mesh, ref_c, _put(a, mesh, sa), _put(b, mesh, sb), cc)
            case(f"{axis_type}/{name}", run_c)

        # 1D1D (per-row B scales): N may be split inside a 128-block (64 rows per shard).
        def run_1d1d(mesh=mesh):
            a2, b2 = _operands(M, 256, 256, seed=2, per_row=True)
            g = jax.jit(lambda a, b: jaxgemm.fp8_gemm_nt(a, b, out_dtype=jnp.float32))
            ref2 = g(a2, b2)
            return _run_on_mesh(g, mesh, ref2, _put(a2, mesh, P("x", None)), _put(b2, mesh, P("y", None)))
        case(f"{axis_type}/1d1d_MN", run_1d1d)

        # fp8 "tn": A stored [K, M] (scales [K/128, M]) sharded on M, B stored [K, N]
        # sharded on N: still local, through the transposes.
        def run_fp8_tn(mesh=mesh):
            at, bt = (a[0].T, a[1].T), (b[0].T, b[1].T)
            g = jax.jit(jaxgemm.fp8_gemm_tn)
            return _run_on_mesh(g, mesh, ref, _put(at, mesh, P(None, "x")), _put(bt, mesh, P(None, "y")))
        case(f"{axis_type}/fp8_tn_MN", run_fp8_tn)

        # BF16 in every layout: M and N local, K reduced. The operands are sharded in
        # their stored orientation (an A stored [K, M] is sharded on its second axis).
        xa, wb = _bf16_operands(M, N, K, seed=3)
        for layout, (a_t, b_t) in (("nt", (False, False)), ("nn", (False, True)),
                                   ("tn", (True, True)), ("tt", (True, False))):
            fn = jax.jit(getattr(jaxgemm, f"bf16_gemm_{layout}"))
            al, bl = (xa.T if a_t else xa), (wb.T if b_t else wb)
            ref_l = fn(al, bl)
            for name, (m_ax, n_ax, k_ax) in (("MN", ("x", "y", None)), ("K", (None, None, "y")),
                                             ("MK", ("x", None, "y"))):
                sa = P(k_ax, m_ax) if a_t else P(m_ax, k_ax)
                sb = P(k_ax, n_ax) if b_t else P(n_ax, k_ax)

                def run_bf16(fn=fn, al=al, bl=bl, ref_l=ref_l, sa=sa, sb=sb, mesh=mesh):
                    return _run_on_mesh(fn, mesh, ref_l, jax.device_put(al, NamedSharding(mesh, sa)),
                                        jax.device_put(bl, NamedSharding(mesh, sb)))
                case(f"{axis_type}/bf16_{layout}_{name}", run_bf16)

        # BF16 with c and FP32 output, K reduced.
        def run_bf16_c(mesh=mesh, xa=xa, wb=wb, c_bf16=c_bf16):
            g = jax.jit(lambda a, b, c: jaxgemm.bf16_gemm_tn(a, b, c, jnp.float32))
            ref_c = g(xa.T, wb.T, c_bf16)
            return _run_on_mesh(g, mesh, ref_c, jax.device_put(xa.T, NamedSharding(mesh, P("y", "x"))),
                                jax.device_put(wb.T, NamedSharding(mesh, P("y", None))),
                                jax.device_put(c_bf16, NamedSharding(mesh, P("x", None))))
        case(f"{axis_type}/bf16_tn_c_MK_f32", run_bf16_c)

    json.dump({"jax": jax.__version__, "devices": jax.device_count(), "cases": cases}, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
