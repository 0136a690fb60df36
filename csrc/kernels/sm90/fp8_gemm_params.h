// Kernel parameters of sm90_fp8_gemm, shared by the host launcher and the
// kernel. Plain C++: both NVCC/NVRTC and the host compiler read it.
#pragma once

#include "../common/tma_descriptor.h"

namespace jaxgemm {

struct Fp8GemmParams {
  TmaDescriptor tma_a;    // A   [L, M, K] e4m3, box {128, BLOCK_M / CLUSTER_N, 1}, 128B swizzle;
                          //     A_MN: [L, K, M], box {BLOCK_M, 128, 1}, no swizzle
  TmaDescriptor tma_b;    // B   [Lb, N, K] e4m3, box {128, BLOCK_N / CLUSTER_M, 1}, 128B swizzle;
                          //     B_MN: [Lb, K, N], box {BLOCK_N, 128, 1}, no swizzle
  TmaDescriptor tma_sfb;  // 1D1D only: SFB [Lb, ceil(K/128), N] f32 (N-major, padded to 4), box {BLOCK_N, 1, 1}
  TmaDescriptor tma_d;    // D   [L, M, N] bf16 or f32, box {STORE_N, 64, 1}, swizzled to the chunk's bytes
  const float* sfa;       // SFA [L, M, ceil(K/128)] or [L, ceil(K/128), M] f32, read with the strides below
  unsigned sfa_row_stride, sfa_kb_stride;  // elements between rows of M / K blocks (L batches are M * kb apart)
  const float* sfb;       // 1D2D only: SFB [Lb, ceil(N/128), ceil(K/128)] f32, row-major
  const void* c;          // C   [L, M, N] bf16 or f32 (or null), may alias D
  unsigned m, n, k;
  unsigned num_batches;   // L
  unsigned b_batched;     // 1: B and SFB have L batches; 0: one, shared by all
};

}  // namespace jaxgemm
