// WGMMA A fragments (registers) read from an MN-major FP8 K block in shared memory.
//
// SM90's FP8 WGMMA reads only K-major tiles from shared memory, but its A operand
// may come from registers, where the layout is the thread's own business. So an
// operand stored MN-major can be the A operand without being transposed in shared
// memory: the math warps load each K block as TMA brought it and build the
// fragments with ldmatrix.trans and PRMT. fp8_gemm.cuh does so for a caller's A
// stored MN-major (A_REGS), and for a caller's B stored MN-major by computing D^T =
// B^T A^T (SWAP_AB), so that B is its A operand.
//
// Source: the K block as TMA wrote it, raw[k][r] (k < 128, ROWS bytes per k),
// swizzled over rows of ROWS bytes (TMA's 128B swizzle for 128-byte rows: 16-byte unit
// bits 4-6 ^= bits 7-9; its 64B swizzle for 64-byte rows: bits 4-5 ^= bits 7-8), the
// block 1024-aligned.
//
// The fragment of m64nNk32, 8-bit A: in warp w (rows 16w..16w+15), lane l holds 4
// registers of 4 consecutive K bytes each: rows g = l/4 and g + 8, K 4j..4j+3 and
// 16 + 4j.. (j = l%4). ldmatrix.trans on 16-bit elements (a pair of rows) gives lane
// l, from an 8x8 matrix, the pair g of the 16 rows at the k of the matrix's rows 2j
// and 2j + 1. Two matrices X and Y per 16 K: each lane's 4 K come as a pair from
// each, and two PRMTs make them the fragment. So fragment row g is tile row 2g and
// fragment row g + 8 is tile row 2g + 1 (of the warp's 16): the accumulators' rows
// follow the same order, which the epilogues undo.
//
// Which pair comes from X is free, and it is picked so that each matrix's 8 rows
// fall in distinct 16-byte bank groups under either swizzle: X holds K 4j, 4j+1 for
// j < 2 and 4j+2, 4j+3 for j >= 2 ({0,1,4,5,10,11,14,15}), Y the others. (With X
// at {0,1,4,5,8,9,12,13} rows k and k + 8 shared a bank group: each matrix took two
// shared-memory wavefronts.) Lanes with j >= 2 then take their low pair from Y.
#pragma once

#include "sm90_utils.cuh"

namespace jaxgemm::sm90 {

__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t addr, uint32_t (&r)[4]) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// The fragments of one 128-deep K block for one warp's 16 rows: frag[4 * s + i] is
// register a_i of the k32 step s.
template <unsigned ROWS>
class MnMajorAFragments {
  static_assert(ROWS == 64 || ROWS == 128, "raw rows of 64 or 128 bytes");
  uint32_t offset_;  // this lane's ldmatrix row address, relative to the K block
  // PRMT selectors of this lane's rows 2g and 2g + 1: bytes 0, 2 (1, 3) of the matrix
  // with its low K pair, then of the other.
  uint32_t select_even_, select_odd_;

 public:
  // `first_row`: the warp's first tile row (a multiple of 16).
  __device__ __forceinline__ MnMajorAFragments(unsigned first_row, unsigned lane) {
    const unsigned matrix = lane / 8, i = lane % 8;  // lane l gives row i of matrix l / 8
    const unsigned half = matrix / 2, y = matrix % 2;
    const unsigned j = i / 2;  // the row serves lanes with l % 4 = j
    const unsigned k = half * 16 + j * 4 + (i & 1) + 2 * (y ^ (j >= 2 ? 1u : 0u));
    const unsigned o = k * ROWS + first_row;
    offset_ = o ^ (((o >> 7) & (ROWS / 16 - 1)) << 4);
    const bool low_in_y = lane % 4 >= 2;
    select_even_ = low_in_y ? 0x2064 : 0x6420;
    select_odd_ = low_in_y ? 0x3175 : 0x7531;
  }

  __device__ __forceinline__ void load(uint32_t block, uint32_t (&frag)[16]) const {
#pragma unroll
    for (unsigned s = 0; s < 4; ++s) {
      // 32 K rows on: a multiple of 1024 bytes, the same swizzle phase.
      uint32_t r[4];
      ldmatrix_x4_trans(block + offset_ + s * 32 * ROWS, r);
      frag[4 * s + 0] = prmt(r[0], r[1], select_even_);  // row 2g, K 4j..4j+3
      frag[4 * s + 1] = prmt(r[0], r[1], select_odd_);   // row 2g + 1
      frag[4 * s + 2] = prmt(r[2], r[3], select_even_);  // the same at K + 16
      frag[4 * s + 3] = prmt(r[2], r[3], select_odd_);
    }
  }
};

// Keeps the fragments in their registers across this point (before the WGMMAs that
// read them, and after they have completed): WGMMA reads register operands asynchronously.
__device__ __forceinline__ void fence_fragments(uint32_t (&frag)[16]) {
#pragma unroll
  for (unsigned i = 0; i < 16; ++i) cute::warpgroup_fence_operand(frag[i]);
}

// The 4 WGMMAs (K = 4 x 32) of one K block into a fresh accumulator, A from
// registers, B a K-major 128B-swizzled tile given by its descriptor's low word.
template <class WgmmaRS, int... I>
__device__ __forceinline__ void wgmma_rs_fma(const uint32_t* a, uint64_t desc_b, float* acc, bool accumulate,
                                             IndexSequence<I...>) {
  WgmmaRS::fma(a[0], a[1], a[2], a[3], desc_b, acc[I]...,
               accumulate ? cute::SM90::GMMA::ScaleOut::One : cute::SM90::GMMA::ScaleOut::Zero);
}

template <class WgmmaRS, unsigned NUM_ACC>
__device__ __forceinline__ void issue_wgmma_batch_rs(uint32_t (&frag)[16], uint32_t desc_b_lo,
                                                     float (&acc)[NUM_ACC]) {
  fence_accumulators(acc);
  fence_fragments(frag);
  cute::warpgroup_arrive();
#pragma unroll
  for (unsigned k = 0; k < 4; ++k)
    wgmma_rs_fma<WgmmaRS>(&frag[4 * k], k_major_sw128_desc(desc_b_lo + k * 2), acc, k > 0,
                                   typename MakeIndexSequence<NUM_ACC>::type{});
  cute::warpgroup_commit_batch();
}

}  // namespace jaxgemm::sm90
