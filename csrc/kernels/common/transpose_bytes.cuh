// Transposes a batch of byte matrices, [L, R, C] -> [L, C, R] (FP8 operands stored
// MN-major, made K-major for SM90's FP8 tensor cores). A pure copy, bound by HBM: on
// an H100 2.3-2.6 TB/s for operands of 15 MB and more (an elementwise copy: 2.6-2.9;
// XLA's transpose: 2.2-2.7), scripts/transpose_perf.py.
//
// One CTA of 256 threads per 128x128-byte tile, through 16 KB of shared memory:
//   load:  each warp reads 4 whole 128-byte input rows (16 bytes a lane);
//   store: each thread reads one 16-row x 4-byte block from shared memory (16 LDS.32),
//          transposes it in registers (PRMT) and writes 4 16-byte output pieces. The
//          warp's lanes take 8 row groups x 4 words, so every output store instruction
//          writes 4 whole 128-byte lines.
// Word w of row r is stored at w ^ 4 * ((r / 16) % 8): the 8 row groups a warp reads
// at once then fall on distinct banks, and a 16-byte input chunk stays contiguous.
#pragma once

#include "transpose_bytes_params.h"  // no standard headers: NVRTC compiles this too

namespace jaxgemm {

// x_i holds bytes (i, 0..3) of a 4x4 byte block; afterwards x_j holds bytes (0..3, j).
__device__ __forceinline__ void transpose_4x4_bytes(unsigned& x0, unsigned& x1, unsigned& x2, unsigned& x3) {
  const unsigned t0 = __byte_perm(x0, x1, 0x5140), t1 = __byte_perm(x0, x1, 0x7362);
  const unsigned t2 = __byte_perm(x2, x3, 0x5140), t3 = __byte_perm(x2, x3, 0x7362);
  x0 = __byte_perm(t0, t2, 0x5410);
  x1 = __byte_perm(t0, t2, 0x7632);
  x2 = __byte_perm(t1, t3, 0x5410);
  x3 = __byte_perm(t1, t3, 0x7632);
}

__device__ __forceinline__ unsigned transpose_swizzle(unsigned row) { return 4 * ((row / 16) % 8); }

// The tile of blockIdx.x (batch-major, then tile rows, then tile columns).
__device__ __forceinline__ void transpose_bytes(const TransposeBytesParams& p) {
  __shared__ alignas(16) unsigned tile[kTransposeTile][kTransposeTile / 4];
  const unsigned tiles_per_batch = p.tiles_r * p.tiles_c;
  const unsigned batch = blockIdx.x / tiles_per_batch, t = blockIdx.x % tiles_per_batch;
  const unsigned r0 = (t / p.tiles_c) * kTransposeTile, c0 = (t % p.tiles_c) * kTransposeTile;
  const unsigned long long batch_bytes = static_cast<unsigned long long>(p.rows) * p.cols;
  const auto* in = static_cast<const unsigned char*>(p.in) + batch * batch_bytes;
  auto* out = static_cast<unsigned char*>(p.out) + batch * batch_bytes;

  constexpr int kChunks = kTransposeTile * kTransposeTile / 16 / kTransposeThreads;  // 4
  uint4 v[kChunks];
#pragma unroll
  for (int i = 0; i < kChunks; ++i) {
    const unsigned idx = threadIdx.x + i * kTransposeThreads, row = idx / 8, col = (idx % 8) * 16;
    if (r0 + row < p.rows && c0 + col < p.cols)
      v[i] = __ldcs(reinterpret_cast<const uint4*>(in + static_cast<unsigned long long>(r0 + row) * p.cols + c0 + col));
  }
#pragma unroll
  for (int i = 0; i < kChunks; ++i) {
    const unsigned idx = threadIdx.x + i * kTransposeThreads, row = idx / 8, word = (idx % 8) * 4;
    *reinterpret_cast<uint4*>(&tile[row][word ^ transpose_swizzle(row)]) = v[i];
  }
  __syncthreads();

  const unsigned lane = threadIdx.x % 32, group = lane % 8, word = (threadIdx.x / 32) * 4 + lane / 8;
  const unsigned row = group * 16, col = word * 4;  // of this thread's 16x4 block, in the tile
  if (r0 + row >= p.rows || c0 + col >= p.cols) return;
  unsigned x[16];
#pragma unroll
  for (int i = 0; i < 16; ++i) x[i] = tile[row + i][word ^ transpose_swizzle(row)];
#pragma unroll
  for (int q = 0; q < 4; ++q) transpose_4x4_bytes(x[4 * q], x[4 * q + 1], x[4 * q + 2], x[4 * q + 3]);
#pragma unroll
  for (int j = 0; j < 4; ++j)
    *reinterpret_cast<uint4*>(out + static_cast<unsigned long long>(c0 + col + j) * p.rows + r0 + row) =
        make_uint4(x[j], x[4 + j], x[8 + j], x[12 + j]);
}

}  // namespace jaxgemm
