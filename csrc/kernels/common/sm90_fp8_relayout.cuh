// The in-kernel relayout of an MN-major FP8 operand: SM90's FP8 WGMMA reads only
// K-major tiles, so the kernel loads an operand stored [K, rows] (rows contiguous)
// by TMA as it is, 128 K deep, and transposes each such K block in shared memory
// into the K-major 128B-swizzled tile that a K-major TMA load would have written.
// This saves a separate transpose pass (ops/transpose.py), which reads and writes the whole
// operand once more: at small M, where B dominates the bytes moved, that pass
// cost more than the GEMM itself (BENCHMARKS.md, session 7).
//
// Source: raw[k][r], k < 128, `ROWS` bytes per k (TMA, no swizzle). Target: row r
// holds its 128 K bytes at r * 128, 16-byte chunk c at chunk c ^ (r % 8) (the
// 128B swizzle). Work unit: 16 K x 4 rows. A thread loads 16 words (one per k, the
// same 4 rows), transposes them as four 4x4 byte blocks with PRMT, and stores four
// 16-byte chunks (one per row).
//
// A warp step is one unit per lane, the lanes on consecutive words of one K group
// (or 16 words of two K groups for the last words of a row, when they fit), and
// the warps stride over the steps. A lane's word then moves by multiples of 16
// between steps, so what depends on the word modulo 8 (the byte selectors, the
// row order, the swizzle) is computed once per thread. Consecutive words make the
// loads hit 32 distinct banks (16, two lanes each, in a half step); each lane
// stores its rows in an order rotated by bits 1-2 of its word so that every 8
// lanes' chunks land in 8 distinct 16-byte bank groups (without the rotation the
// swizzle maps them onto 2).
//
// Speed (clock64 in the kernel, H100, session 11, 128x128 tiles at M = 128): about 280
// clocks a step per warp while the WGMMAs run, now what binds the relayout. Session
// 9 found neither halving the instructions per step nor two steps in flight faster,
// while a TMA issue on the transposers' path bound (fp8_gemm.cuh). Retried in session
// 12 with that fixed: two steps in flight (all 32 loads first) spill at the producer's
// 72 registers and ran 2-20% slower at M = 128 over the DeepSeek-V3 shapes; in session
// 13 with the registers for them (math on one accumulator set, 184 / 136), 0-4% faster,
// within the spread: a step's latency is not what binds.
#pragma once

// (No <cstdint>: NVRTC has no C++ standard headers; the CUDA headers behind
// sm90_utils.cuh give the fixed-width types.)
#include "sm90_utils.cuh"

namespace jaxgemm::sm90 {

// Transposes K blocks (128 deep) of `ROWS` rows, shared by NUM_WARPS warps.
template <unsigned ROWS, unsigned NUM_WARPS>
class KBlockRelayout {
  static_assert(ROWS % 16 == 0 && ROWS <= 256, "TMA rows of whole 16-byte chunks");
  static constexpr unsigned WORDS = ROWS / 4;  // 4-row columns of a raw k row
  // Steps of 32 words x 1 K group (of 16), then, when the last words fit in 16
  // lanes, half steps of 16 words x 2 K groups (rather than idling half a warp).
  static constexpr bool HALF = WORDS % 32 != 0 && WORDS % 32 <= 16;
  static constexpr unsigned FULL_BLOCKS = HALF ? WORDS / 32 : (WORDS + 31) / 32;
  static constexpr unsigned FULL_STEPS = FULL_BLOCKS * 8;
  static constexpr unsigned STEPS = FULL_STEPS + (HALF ? 4 : 0);
  static constexpr unsigned BLOCKS = FULL_BLOCKS > 0 ? FULL_BLOCKS : 1;  // a divisor in dead code otherwise

  unsigned warp_, lane_;
  uint32_t sel_lo_, sel_hi_;  // PRMT selectors of the rotated row order

 public:
  __device__ __forceinline__ KBlockRelayout(unsigned warp, unsigned lane) : warp_(warp), lane_(lane) {
    // Output slot j holds row 4 * word + q(j), q(j) = (j + rot) % 4. Step one pairs
    // the bytes q(0), q(1) (sel_lo) and q(2), q(3) (sel_hi) of two words, interleaved.
    // A lane's words differ by multiples of 16, so rot and r % 8 hold for all of them.
    const unsigned rot = (lane >> 1) & 3;
    const unsigned q0 = rot, q1 = (rot + 1) & 3, q2 = (rot + 2) & 3, q3 = (rot + 3) & 3;
    sel_lo_ = q0 | (q0 + 4) << 4 | q1 << 8 | (q1 + 4) << 12;
    sel_hi_ = q2 | (q2 + 4) << 4 | q3 << 8 | (q3 + 4) << 12;
  }

  // One K block from `raw` into `tile` (shared window addresses; `tile` 1024-byte
  // aligned). One step in flight per warp: two (all loads first) measured slower
  // (above).
  __device__ __forceinline__ void operator()(uint32_t raw, uint32_t tile) const {
#pragma unroll 1
    for (unsigned i = warp_; i < STEPS; i += NUM_WARPS) {
      const Step st = step(i, raw, tile);
      if (!st.active) continue;
      uint32_t x[16];
#pragma unroll
      for (unsigned k = 0; k < 16; ++k) x[k] = ld_shared_u32(st.src + k * ROWS);
      transpose_store(st, x);
    }
  }

 private:
  struct Step {
    uint32_t src, dst;  // this lane's first raw word; the tile plus its rows below `lane * 4`
    unsigned kg;        // its K group
    bool active;        // a word of the row (the last block may be partial)
  };

  __device__ __forceinline__ Step step(unsigned i, uint32_t raw, uint32_t tile) const {
    unsigned word, kg;
    uint32_t dst = tile;
    if (i < FULL_STEPS) {
      const unsigned block = i % BLOCKS;
      word = block * 32 + lane_, kg = i / BLOCKS;
      dst += block * 32 * 4 * 128;
    } else {
      const unsigned half = lane_ / 16;
      word = FULL_BLOCKS * 32 + lane_ % 16, kg = (i - FULL_STEPS) * 2 + half;
      dst += FULL_BLOCKS * 32 * 4 * 128 - half * 16 * 4 * 128;
    }
    return {raw + kg * 16 * ROWS + word * 4, dst, kg, WORDS % 32 == 0 || word < WORDS};
  }

  __device__ __forceinline__ void transpose_store(const Step& s, const uint32_t (&x)[16]) const {
    uint32_t out[4][4];  // [slot][group of 4 K]
#pragma unroll
    for (unsigned g = 0; g < 4; ++g) {
      const uint32_t x0 = x[g * 4], x1 = x[g * 4 + 1], x2 = x[g * 4 + 2], x3 = x[g * 4 + 3];
      // lo01 = [x0.q0, x1.q0, x0.q1, x1.q1], and so on.
      const uint32_t lo01 = prmt(x0, x1, sel_lo_), hi01 = prmt(x0, x1, sel_hi_);
      const uint32_t lo23 = prmt(x2, x3, sel_lo_), hi23 = prmt(x2, x3, sel_hi_);
      out[0][g] = prmt(lo01, lo23, 0x5410);  // [x0.q0, x1.q0, x2.q0, x3.q0]
      out[1][g] = prmt(lo01, lo23, 0x7632);
      out[2][g] = prmt(hi01, hi23, 0x5410);
      out[3][g] = prmt(hi01, hi23, 0x7632);
    }
    // Slot j's row r = lane * 4 + q(j) (plus the step's rows below); its chunk kg
    // sits at r * 128 + (kg ^ (r % 8)) * 16.
    const unsigned rot = (lane_ >> 1) & 3;
#pragma unroll
    for (unsigned j = 0; j < 4; ++j) {
      const unsigned r = lane_ * 4 + ((j + rot) & 3);
      st_shared_u32x4(s.dst + r * 128 + ((s.kg ^ (r % 8)) * 16), out[j][0], out[j][1], out[j][2], out[j][3]);
    }
  }
};

}  // namespace jaxgemm::sm90
