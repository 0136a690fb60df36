"""Runs fp8_gemm_nt's sharding checks on 8 host CPU devices; prints one JSON object.

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


def _operands(m, n, k, seed):
    kx, kw = jax.random.split(jax.random.PRNGKey(seed))
    x = jax.random.normal(kx, (m, k), jnp.float32)
    w = jax.random.normal(kw, (n, k), jnp.float32)
    return jaxgemm.per_token_cast_to_fp8(x), jaxgemm.per_block_cast_to_fp8(w)


def _bits(x):
    return np.asarray(jax.device_get(x)).view(np.uint16)


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

    json.dump({"jax": jax.__version__, "devices": jax.device_count(), "cases": cases}, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
