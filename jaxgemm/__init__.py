"""jaxgemm: DeepGEMM-class FP8 and BF16 GEMM kernels for JAX.

Importing jaxgemm initialises nothing on the GPU; kernels are compiled when a
jitted function that uses them is first lowered and run on CUDA.
"""

__version__ = "0.1.0"

from jaxgemm._runtime import get_num_sms, set_num_sms
from jaxgemm.ops.dense import (
    bf16_gemm_config,
    bf16_gemm_nn,
    bf16_gemm_nt,
    bf16_gemm_tn,
    bf16_gemm_tt,
    fp8_gemm_config,
    fp8_gemm_nn,
    fp8_gemm_nt,
    fp8_gemm_tn,
    fp8_gemm_tt,
)
from jaxgemm.ops.fp8_linear import fp8_linear
from jaxgemm.quantization import (
    calc_diff,
    ceil_div,
    get_tma_aligned_size,
    per_block_cast_to_fp8,
    per_channel_cast_to_fp8,
    per_token_cast_to_fp8,
)

__all__ = [
    "__version__",
    "fp8_gemm_nt",
    "fp8_gemm_nn",
    "fp8_gemm_tn",
    "fp8_gemm_tt",
    "bf16_gemm_nt",
    "bf16_gemm_nn",
    "bf16_gemm_tn",
    "bf16_gemm_tt",
    "fp8_linear",
    "fp8_gemm_config",
    "bf16_gemm_config",
    "per_token_cast_to_fp8",
    "per_block_cast_to_fp8",
    "per_channel_cast_to_fp8",
    "calc_diff",
    "ceil_div",
    "get_tma_aligned_size",
    "set_num_sms",
    "get_num_sms",
]
