// Kernel parameters of sm90_bf16_gemm, shared by the host launcher and the
// kernel. Plain C++: both NVCC/NVRTC and the host compiler read it.
#pragma once

#include "../common/tma_descriptor.h"

namespace jaxgemm {

struct Bf16GemmParams {
  // A: K-major [L, M, K], box {64, BLOCK_M, 1}; MN-major [L, K, M], box {64, 64, 1}. 128B swizzle.
  TmaDescriptor tma_a;
  // B: K-major [Lb, N, K], box {64, BLOCK_N, 1}; MN-major [Lb, K, N], box {64, 64, 1}. 128B swizzle.
  TmaDescriptor tma_b;
  TmaDescriptor tma_d;  // D [L, M, N] bf16 or f32, box {STORE_N, 64, 1}, swizzled to the chunk's bytes
  const void* c;        // C [L, M, N] bf16 or f32 (or null), may alias D
  unsigned m, n, k;
  unsigned num_batches;  // L
  unsigned b_batched;    // 1: B has L batches; 0: one, shared by all
};

}  // namespace jaxgemm
