"""FP8 nt kernel durations per config, from a jax.profiler trace (a development aid).

    python scripts/kernel_sweep.py M [BMxBN[k2][a2][c2][K2|K4|K8][sSTAGES][gSMS] ...]

(k2: k_split=2, a2: cluster_n=2, c2: cluster_m=2, K2/K4: cluster_k, as the benchmark
labels them; sSTAGES pins num_stages, gSMS the persistent grid's size.)

The benchmark times whole jitted calls, which at small M carries the host's and the
launches' cost per op; this times the kernels alone (GPU events of the trace), over
the DeepSeek-V3 shapes, to choose configs on what the kernel itself does.
"""
import os
import re
import sys
import tempfile

import jax

import jaxgemm
from jaxgemm import bench

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from diag_kernels import gpu_kernel_events  # noqa: E402

CALLS = 3


def _parse(label):
    bm, bn, flags, stages, sms = re.fullmatch(r"(\d+)x(\d+)((?:k2|a2|c2|K2|K4|K8)*)(?:s(\d+))?(?:g(\d+))?",
                                              label).groups()
    config = dict(block_m=int(bm), block_n=int(bn), k_split=2 if "k2" in flags else 1,
                  cluster_n=2 if "a2" in flags else 1, cluster_m=2 if "c2" in flags else 1,
                  cluster_k=int(flags[flags.index("K") + 1]) if "K" in flags else 1)
    return config | ({"num_stages": int(stages)} if stages else {}) | ({"num_sms": int(sms)} if sms else {})


def main(argv):
    m = int(argv[0])
    configs = [None] + [_parse(c) for c in argv[1:]]
    labels = ["heur"] + argv[1:]
    print(f"M={m}: TFLOPS of the kernel alone (mean over {CALLS} calls x sets)")
    print(f"{'N x K':>12} | " + " ".join(f"{x:>8}" for x in labels) + " | heuristic pick")
    shapes = [tuple(map(int, x.split("x"))) for x in os.environ["KERNEL_SWEEP_SHAPES"].split(",")] \
        if os.environ.get("KERNEL_SWEEP_SHAPES") else bench.DEEPSEEK_V3_NK  # e.g. 7168x2048,7168x2176
    for n, k in shapes:
        # KERNEL_SWEEP_SETS=1: one input set, called again and again (its B stays in L2 where it fits).
        a, b = bench._sweep_operands(m, n, k, jax.random.PRNGKey(0), int(os.environ.get("KERNEL_SWEEP_SETS", 0)))
        sets = len(a)
        fns = [jax.jit(lambda a, b, c=c: [jaxgemm.fp8_gemm_nt(x, y, config=c) for x, y in zip(a, b)])
               for c in configs]
        ok = []
        for f in fns:  # compile and warm outside the trace
            try:
                jax.block_until_ready(f(a, b))
                ok.append(True)
            except Exception:  # noqa: BLE001 (a config that does not fit: reported as '-')
                ok.append(False)
        with tempfile.TemporaryDirectory() as d:
            with jax.profiler.trace(d, create_perfetto_trace=True):
                for f, good in zip(fns, ok):
                    if good:
                        for _ in range(CALLS):
                            jax.block_until_ready(f(a, b))
            events = gpu_kernel_events(d, "jaxgemm_sm90_fp8_gemm")
        per = CALLS * sets
        cells, i = [], 0
        for good in ok:
            if not good:
                cells.append("-")
                continue
            durs = [e["dur"] for e in events[i:i + per]]
            i += per
            cells.append(f"{2 * m * n * k / (sum(durs) / len(durs) * 1e-6) / 1e12:.0f}" if durs else "?")
        pick = jaxgemm.fp8_gemm_config(m, n, k)
        print(f"{n:>5} x {k:<5} | " + " ".join(f"{x:>8}" for x in cells)
              + f" | {bench._cfg_str(pick)}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
