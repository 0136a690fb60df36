"""Whole-call time per op against the kernel's own time and the gaps between
consecutive GEMM kernels, FP8 nt over the DeepSeek-V3 shapes (a development aid).

    python scripts/launch_gaps.py [M]

Times the benchmark's function (one op per distinct input set) as the benchmark does,
then traces a few calls with jax.profiler: the mean kernel duration and the median /
smallest gap from one jaxgemm kernel's end to the next one's start (negative where
they overlap: XLA records independent ops as independent nodes of its command
buffer). Run it again with XLA_FLAGS=--xla_gpu_enable_command_buffer= to see the
launches from the stream instead.
"""
import os
import statistics
import sys
import tempfile

import jax

import jaxgemm
from jaxgemm import bench

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from diag_kernels import gpu_kernel_events  # noqa: E402


def main(argv):
    m = int(argv[0]) if argv else 128
    print(f"M={m}: us per op (whole call), us per kernel, gaps between GEMM kernels (us), TFLOPS")
    print(f"{'N x K':>12} {'sets':>4} {'call/op':>8} {'kernel':>7} {'gap med':>7} {'gap min':>7} {'TF call':>7} {'TF kern':>7}")
    for n, k in bench.DEEPSEEK_V3_NK:
        a, b = bench._sweep_operands(m, n, k, jax.random.PRNGKey(0))
        sets = len(a)
        f = jax.jit(lambda a, b: [jaxgemm.fp8_gemm_nt(x, y) for x, y in zip(a, b)])
        t, _ = bench._time_fn(f, (a, b))
        timed = bench._outputs_as_temporaries(f)
        jax.block_until_ready(timed(a, b))
        with tempfile.TemporaryDirectory() as d:
            with jax.profiler.trace(d, create_perfetto_trace=True):
                jax.block_until_ready([timed(a, b) for _ in range(4)])
            events = gpu_kernel_events(d)
        gemm = [e for e in events if e["name"].startswith("jaxgemm")]
        gaps = [e1["ts"] - (e0["ts"] + e0["dur"]) for e0, e1 in zip(events, events[1:])
                if e0["name"].startswith("jaxgemm") and e1["name"].startswith("jaxgemm")]
        kernel_us = statistics.mean(e["dur"] for e in gemm)
        flops = 2 * m * n * k
        print(f"{n:>6}x{k:<5} {sets:>4} {t / sets * 1e6:8.2f} {kernel_us:7.2f} {statistics.median(gaps):7.2f} "
              f"{min(gaps):7.2f} {flops / (t / sets) / 1e12:7.0f} {flops / (kernel_us * 1e-6) / 1e12:7.0f}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
