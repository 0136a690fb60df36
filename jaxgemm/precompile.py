"""Compiling kernels ahead of the first call, in parallel.

XLA instantiates one custom call at a time, so a program with many distinct GEMM
shapes compiles its kernels one after another on first use. `precompile` fills the
on-disk JIT cache for a list of GEMMs with a thread pool instead (NVCC/NVRTC run
outside the GIL); the first call then only loads the cubins.
"""

from __future__ import annotations

import concurrent.futures
import os

from jaxgemm import _runtime
from jaxgemm.ops.gemm_primitive import GemmSpec, gemm_config

__all__ = ["precompile"]

_KERNEL_NAMES = {"fp8": "sm90_fp8_gemm", "bf16": "sm90_bf16_gemm"}


def precompile(gemms, *, num_sms: int | None = None, max_workers: int | None = None) -> int:
    """Compiles the kernels of `gemms`, an iterable of `(spec, m, n, k, batches)` with
    `spec` a `GemmSpec`, into the JIT cache. Returns the number of distinct kernels.
    `num_sms` defaults to the GPU's (as at lowering); give it to compile without one."""
    ext = _runtime.extension()
    _runtime.configure_jit()
    sources = {}
    for spec, m, n, k, batches in gemms:
        assert isinstance(spec, GemmSpec)
        cfg = gemm_config(spec, m, n, k, batches, num_sms=num_sms)
        source_of = ext.fp8_gemm_source if spec.op == "fp8" else ext.bf16_gemm_source
        sources[source_of(cfg)] = _KERNEL_NAMES[spec.op]
    workers = max_workers or min(len(sources), os.cpu_count() or 1) or 1
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda item: ext.compile_kernel(item[1], item[0], "90a"), sources.items()))
    return len(sources)
