// Transposes a batch of byte matrices, [L, R, C] -> [L, C, R] (FP8 operands stored
// MN-major, made K-major for SM90's FP8 tensor cores). A pure copy: it should run at
// the HBM copy rate, where XLA's transpose of FP8 measured about 1.7 TB/s on an H100.
//
// A CTA of 256 threads moves 128x128-byte tiles through 16 KB of shared memory
// (4 CTAs an SM, the grid a multiple of the SMs, each walking several tiles):
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

constexpr int kTransposeTile = 128;      // bytes either way
constexpr int kTransposeThreads = 256;
constexpr int kTransposeCtasPerSm = 4;   // what 64 registers a thread allow

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

// Where tile `t` (batch-major, then tile rows, then tile columns) lies.
struct TransposeTile {
  const unsigned char* in;  // the tile's batch
  unsigned char* out;
  unsigned r0, c0;          // its first row and column in the input
  __device__ __forceinline__ TransposeTile(const TransposeBytesParams& p, unsigned t) {
    const unsigned tiles_per_batch = p.tiles_r * p.tiles_c, batch = t / tiles_per_batch;
    t %= tiles_per_batch;
    r0 = (t / p.tiles_c) * kTransposeTile;
    c0 = (t % p.tiles_c) * kTransposeTile;
    const unsigned long long batch_bytes = static_cast<unsigned long long>(p.rows) * p.cols;
    in = static_cast<const unsigned char*>(p.in) + batch * batch_bytes;
    out = static_cast<unsigned char*>(p.out) + batch * batch_bytes;
  }
};

constexpr int kTransposeChunks = kTransposeTile * kTransposeTile / 16 / kTransposeThreads;  // 4 per thread

__device__ __forceinline__ void load_tile(const TransposeBytesParams& p, const TransposeTile& tile,
                                          uint4 (&v)[kTransposeChunks]) {
#pragma unroll
  for (int i = 0; i < kTransposeChunks; ++i) {
    const unsigned idx = threadIdx.x + i * kTransposeThreads, row = tile.r0 + idx / 8, col = tile.c0 + (idx % 8) * 16;
    if (row < p.rows && col < p.cols)
      v[i] = __ldcs(reinterpret_cast<const uint4*>(tile.in + static_cast<unsigned long long>(row) * p.cols + col));
  }
}

// A grid of fewer CTAs than tiles walks them with a stride, loading the next tile
// into registers while it writes out the current one.
__device__ __forceinline__ void transpose_bytes(const TransposeBytesParams& p) {
  __shared__ alignas(16) unsigned smem[kTransposeTile][kTransposeTile / 4];
  unsigned t = blockIdx.x;
  if (t >= p.tiles) return;
  TransposeTile tile(p, t);
  uint4 v[kTransposeChunks];
  load_tile(p, tile, v);
  // This thread's 16x4-byte block of the tile, for the write-out.
  const unsigned lane = threadIdx.x % 32, word = (threadIdx.x / 32) * 4 + lane / 8;
  const unsigned row = (lane % 8) * 16, col = word * 4;
  while (true) {
#pragma unroll
    for (int i = 0; i < kTransposeChunks; ++i) {
      const unsigned idx = threadIdx.x + i * kTransposeThreads, r = idx / 8, w = (idx % 8) * 4;
      *reinterpret_cast<uint4*>(&smem[r][w ^ transpose_swizzle(r)]) = v[i];
    }
    __syncthreads();
    const TransposeTile current = tile;
    const unsigned next = t + gridDim.x;
    if (next < p.tiles) {
      tile = TransposeTile(p, next);
      load_tile(p, tile, v);
    }
    if (current.r0 + row < p.rows && current.c0 + col < p.cols) {
      unsigned x[16];
#pragma unroll
      for (int i = 0; i < 16; ++i) x[i] = smem[row + i][word ^ transpose_swizzle(row)];
#pragma unroll
      for (int q = 0; q < 4; ++q) transpose_4x4_bytes(x[4 * q], x[4 * q + 1], x[4 * q + 2], x[4 * q + 3]);
#pragma unroll
      for (int j = 0; j < 4; ++j)
        *reinterpret_cast<uint4*>(current.out + static_cast<unsigned long long>(current.c0 + col + j) * p.rows +
                                  current.r0 + row) = make_uint4(x[j], x[4 + j], x[8 + j], x[12 + j]);
    }
    if (next >= p.tiles) break;
    t = next;
    __syncthreads();  // every thread is done reading smem before the next tile's stores
  }
}

}  // namespace jaxgemm
