"""Host cost of a jaxgemm call at small M (a development aid).

    python scripts/host_cost.py [M N K ...]

1. The driver calls of one execute stage, timed alone: cuTensorMapEncodeTiled (three or
   four per FP8 call) through ctypes, less the cost of a ctypes call.
2. The benchmark's nt function and XLA's FP8 dot timed with their outputs handled four
   ways (`time_modes`): kept alive while the next call is issued, dropped first,
   donated to the next call, and as `bench._time_fn` times them, XLA temporaries of
   which one element each is returned. Whenever an output lands at a new address, XLA
   re-records its CUDA graph on the host before launching it. H100, M=128, us per op:
   temporaries ran at the kernels' own time (7168x2048: 9.7 against a 9.6-us kernel),
   the other three 11-29 with a wide spread (donated no better than dropped).
"""
import ctypes
import sys
import time

import jax
import jax.numpy as jnp

import jaxgemm
from jaxgemm import bench


def time_encode(iters=20000):
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        print("no libcuda: descriptor encode not timed")
        return
    ctx = ctypes.c_void_p()
    if cuda.cuInit(0) or cuda.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), 0) or cuda.cuCtxSetCurrent(ctx):
        print("no CUDA context")
        return
    raw = ctypes.create_string_buffer(256)  # CUtensorMap must be 64-byte aligned
    desc = ctypes.c_void_p((ctypes.addressof(raw) + 63) // 64 * 64)
    u64x3 = ctypes.c_uint64 * 3
    u32x3 = ctypes.c_uint32 * 3
    dims, strides = u64x3(7168, 128, 1), u64x3(7168, 128 * 7168, 0)
    box, elem = u32x3(128, 64, 1), u32x3(1, 1, 1)
    ptr = ctypes.c_void_p(0x7F0000000000)
    args = (desc, 0, 3, ptr, dims, strides, box, elem, 0, 3, 3, 0)  # UINT8, 128B swizzle, L2 256B
    if (err := cuda.cuTensorMapEncodeTiled(*args)) != 0:
        print(f"cuTensorMapEncodeTiled failed: {err}")
        return
    version = ctypes.c_int()

    def loop(fn, *a):
        t0 = time.perf_counter()
        for _ in range(iters):
            fn(*a)
        return (time.perf_counter() - t0) / iters * 1e6

    base = min(loop(cuda.cuDriverGetVersion, ctypes.byref(version)) for _ in range(3))
    enc = min(loop(cuda.cuTensorMapEncodeTiled, *args) for _ in range(3))
    print(f"cuTensorMapEncodeTiled: {enc - base:.2f} us each (ctypes call {base:.2f} us subtracted)")


def time_modes(fn, args):
    """Seconds per call of `fn(*args)`, its outputs handled four ways."""
    donating = jax.jit(lambda prev, *a: fn(*a), donate_argnums=0)

    def dropped(box):
        box[0] = None
        return fn(*args)

    first = lambda: fn(*args)  # noqa: E731
    return {
        # alive until the next call returns: new output addresses, the graph re-recorded
        "live": bench._time_loop(lambda box: fn(*args), first),
        # dropped first: the allocator may hand the addresses back, once the GPU is done
        "dropped": bench._time_loop(dropped, first),
        # donated to the next call, which writes into them
        "donated": bench._time_loop(lambda box: donating(box[0], *args), first),
        # XLA temporaries, one element of each returned: what the benchmark times
        "temporary": bench._time_fn(fn, args)[0],
    }


def main(argv):
    time_encode()
    shapes = [tuple(map(int, argv[i:i + 3])) for i in range(0, len(argv), 3)] or [(128, 2112, 7168), (128, 4096, 7168)]
    for m, n, k in shapes:
        a, b = bench._sweep_operands(m, n, k, jax.random.PRNGKey(0))
        sets = len(a)
        f = jax.jit(lambda a, b: [jaxgemm.fp8_gemm_nt(x, y) for x, y in zip(a, b)])
        sa, sb = [jnp.max(x[1]) for x in a], [jnp.max(y[1]) for y in b]

        def fp8_dot(a8, s, b8, t):
            return jax.lax.dot_general(a8.astype(jnp.float32) * s, b8.astype(jnp.float32) * t, (((1,), (1,)), ((), ())),
                                       preferred_element_type=jnp.float32).astype(jnp.bfloat16)

        g = jax.jit(lambda a, sa, b, sb: [fp8_dot(x[0], s, y[0], t) for x, s, y, t in zip(a, sa, b, sb)])
        for name, fn, args in (("nt", f, (a, b)), ("xla_fp8", g, (a, sa, b, sb))):
            for trial in range(2):
                times = time_modes(fn, args)
                cols = " | ".join(f"{mode} {t / sets * 1e6:6.2f} ({2 * m * n * k * sets / t / 1e12:4.0f})"
                                  for mode, t in times.items())
                print(f"{name:8s} M={m} N={n} K={k} ({sets} sets), us/op (TFLOPS), outputs {cols}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
