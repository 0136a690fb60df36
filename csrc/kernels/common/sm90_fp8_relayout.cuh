// The in-kernel relayout of an MN-major FP8 operand: SM90's FP8 WGMMA reads only
// K-major tiles, so the kernel loads an operand stored [K, rows] (rows contiguous)
// by TMA as it is, 128 K deep, and transposes each such K block in shared memory
// into the K-major 128B-swizzled tile that a K-major TMA load would have written.
// This saves the caller a separate XLA transpose, which reads and writes the whole
// operand once more: at small M, where B dominates the bytes moved, that pass
// cost more than the GEMM itself (BENCHMARKS.md, session 7).
//
// Source: raw[k][r], k < 128, `ROWS` bytes per k (TMA, no swizzle). Target: row r
// holds its 128 K bytes at r * 128, 16-byte chunk c at chunk c ^ (r % 8) (the
// 128B swizzle). Work unit: 16 K x 4 rows. A thread loads 16 words (one per k, the
// same 4 rows), transposes them as four 4x4 byte blocks with PRMT, and stores four
// 16-byte chunks (one per row). Neighbouring lanes take neighbouring words, so the
// loads hit 32 distinct banks; each lane stores its rows in a rotated order (by
// bits 1-2 of its word index) so that every 8 lanes' chunks land in 8 distinct
// 16-byte bank groups: without the rotation the swizzle maps them onto 2.
#pragma once

#include <cstdint>

#include "sm90_utils.cuh"

namespace jaxgemm::sm90 {

__device__ __forceinline__ uint32_t prmt(uint32_t a, uint32_t b, uint32_t selector) {
  uint32_t v;
  asm("prmt.b32 %0, %1, %2, %3;" : "=r"(v) : "r"(a), "r"(b), "r"(selector));
  return v;
}

// Transposes one K block (128 deep) of `ROWS` rows from `raw` into `tile` (shared
// window addresses; `tile` 1024-byte aligned). `tid` counts the NUM_THREADS threads
// that share the work.
template <unsigned ROWS, unsigned NUM_THREADS>
__device__ __forceinline__ void relayout_k_block(uint32_t raw, uint32_t tile, unsigned tid) {
  static_assert(ROWS % 16 == 0 && ROWS <= 256, "TMA rows of whole 16-byte chunks");
  constexpr unsigned WORDS = ROWS / 4;  // 4-row columns of a raw k row
  constexpr unsigned UNITS = 8 * WORDS;  // x 8 groups of 16 K
#pragma unroll 1
  for (unsigned u = tid; u < UNITS; u += NUM_THREADS) {
    const unsigned kg = u / WORDS, w = u % WORDS;
    // Output slot j holds row 4w + q(j), q(j) = (j + rot) % 4. Step one pairs the
    // bytes q(0), q(1) (sel_lo) and q(2), q(3) (sel_hi) of two words, interleaved.
    const unsigned rot = (w >> 1) & 3;
    const unsigned q0 = rot, q1 = (rot + 1) & 3, q2 = (rot + 2) & 3, q3 = (rot + 3) & 3;
    const uint32_t sel_lo = q0 | (q0 + 4) << 4 | q1 << 8 | (q1 + 4) << 12;
    const uint32_t sel_hi = q2 | (q2 + 4) << 4 | q3 << 8 | (q3 + 4) << 12;
    const uint32_t src = raw + kg * 16 * ROWS + w * 4;
    uint32_t out[4][4];  // [slot][group of 4 K]
#pragma unroll
    for (unsigned g = 0; g < 4; ++g) {
      const uint32_t x0 = ld_shared_u32(src + (g * 4 + 0) * ROWS), x1 = ld_shared_u32(src + (g * 4 + 1) * ROWS);
      const uint32_t x2 = ld_shared_u32(src + (g * 4 + 2) * ROWS), x3 = ld_shared_u32(src + (g * 4 + 3) * ROWS);
      // lo01 = [x0.q0, x1.q0, x0.q1, x1.q1], and so on.
      const uint32_t lo01 = prmt(x0, x1, sel_lo), hi01 = prmt(x0, x1, sel_hi);
      const uint32_t lo23 = prmt(x2, x3, sel_lo), hi23 = prmt(x2, x3, sel_hi);
      out[0][g] = prmt(lo01, lo23, 0x5410);  // [x0.q0, x1.q0, x2.q0, x3.q0]
      out[1][g] = prmt(lo01, lo23, 0x7632);
      out[2][g] = prmt(hi01, hi23, 0x5410);
      out[3][g] = prmt(hi01, hi23, 0x7632);
    }
#pragma unroll
    for (unsigned j = 0; j < 4; ++j) {
      const unsigned r = w * 4 + ((j + rot) & 3);
      st_shared_u32x4(tile + r * 128 + ((kg ^ (r % 8)) * 16), out[j][0], out[j][1], out[j][2], out[j][3]);
    }
  }
}

}  // namespace jaxgemm::sm90
