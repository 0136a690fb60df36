// Epilogue of the SM90 GEMMs: one math warpgroup's 64 x BLOCK_N FP32
// accumulators (the m64nN WGMMA register layout) to D, optionally adding C.
//
// D leaves through shared memory and TMA stores of STORE_N-column chunks
// (each chunk 64 rows x STORE_N * OUT_BYTES bytes, at most 128, swizzled as the
// TMA descriptor says), which overlap the next tile's main loop; TMA drops the
// rows and columns past the tensor's edge. C is read straight from global
// memory into the accumulators before they are rounded, so D = C + A@B is
// rounded once. C may be the very buffer D is written to (XLA aliases them):
// each element is read by the thread that later writes it, before the store.
#pragma once

#include <cute/arch/copy_sm90_tma.hpp>
#include <cutlass/arch/barrier.h>

#include "sm90_utils.cuh"

namespace jaxgemm::sm90 {

struct EpilogueCoords {
  unsigned m, n;         // D is [L, m, n], row-major
  unsigned l;            // batch of this tile
  unsigned row_base;     // first global row of this warpgroup's 64
  unsigned n0;           // first global column of the tile
};

template <unsigned BLOCK_N, unsigned STORE_N, unsigned OUT_BYTES, unsigned C_BYTES, unsigned NUM_ACC>
__device__ __forceinline__ void store_tile(float (&acc)[NUM_ACC], uint8_t* smem_d_wg, const TmaDescriptor* tma_d,
                                           const void* c, const EpilogueCoords& at, unsigned barrier_id) {
  static_assert(OUT_BYTES == 2 || OUT_BYTES == 4, "D is bf16 or f32");
  static_assert(C_BYTES == 0 || C_BYTES == 2 || C_BYTES == 4, "C is absent, bf16 or f32");
  constexpr unsigned SPAN = STORE_N * OUT_BYTES;
  static_assert(BLOCK_N % STORE_N == 0 && (SPAN == 128 || SPAN == 64 || SPAN == 32),
                "output chunks are 128, 64 or 32 bytes wide");
  const unsigned t = threadIdx.x % 128, warp = t / 32, lane = t % 32;
  const unsigned row0 = warp * 16 + lane / 4;  // this thread's rows: row0 and row0 + 8

  if constexpr (C_BYTES != 0) {
#pragma unroll
    for (unsigned j = 0; j < BLOCK_N / 8; ++j) {
      const unsigned col = at.n0 + j * 8 + (lane % 4) * 2;
#pragma unroll
      for (unsigned h = 0; h < 2; ++h) {
        const unsigned row = at.row_base + row0 + 8 * h;
        if (row < at.m && col < at.n) {
          const size_t idx = (static_cast<size_t>(at.l) * at.m + row) * at.n + col;
          if constexpr (C_BYTES == 4) {
            const float2 v = __ldg(reinterpret_cast<const float2*>(static_cast<const float*>(c) + idx));
            acc[j * 4 + 2 * h] += v.x;
            acc[j * 4 + 2 * h + 1] += v.y;
          } else {
            const uint32_t v = __ldg(reinterpret_cast<const unsigned int*>(static_cast<const uint16_t*>(c) + idx));
            acc[j * 4 + 2 * h] += __uint_as_float(v << 16);
            acc[j * 4 + 2 * h + 1] += __uint_as_float(v & 0xFFFF0000u);
          }
        }
      }
    }
  }

  // The previous tile's TMA stores must have read the staging buffer.
  if (t == 0) cute::tma_store_wait<0>();
  cutlass::arch::NamedBarrier::sync(128, barrier_id);
  // Swizzle as TMA expects: 16-byte unit ^= (byte offset >> 7) & (SPAN / 16 - 1).
  constexpr unsigned SWIZZLE_MASK = SPAN / 16 - 1;
#pragma unroll
  for (unsigned j = 0; j < BLOCK_N / 8; ++j) {
    const unsigned col = j * 8 + (lane % 4) * 2;
    const uint32_t chunk = smem_addr(smem_d_wg + (col / STORE_N) * (64 * SPAN));
#pragma unroll
    for (unsigned h = 0; h < 2; ++h) {
      unsigned off = (row0 + 8 * h) * SPAN + (col % STORE_N) * OUT_BYTES;
      off ^= ((off >> 7) & SWIZZLE_MASK) << 4;
      const float lo = acc[j * 4 + 2 * h], hi = acc[j * 4 + 2 * h + 1];
      if constexpr (OUT_BYTES == 2) {
        asm volatile("st.shared.u32 [%0], %1;" ::"r"(chunk + off), "r"(pack_bf16x2(lo, hi)));
      } else {
        asm volatile("st.shared.v2.f32 [%0], {%1, %2};" ::"r"(chunk + off), "f"(lo), "f"(hi));
      }
    }
  }
  cutlass::arch::fence_view_async_shared();
  cutlass::arch::NamedBarrier::sync(128, barrier_id);
  if (t == 0) {
#pragma unroll
    for (unsigned ch = 0; ch < BLOCK_N / STORE_N; ++ch) {
      cute::SM90_TMA_STORE_3D::copy(tma_d, smem_d_wg + ch * 64 * SPAN, static_cast<int>(at.n0 + ch * STORE_N),
                                    static_cast<int>(at.row_base), static_cast<int>(at.l));
    }
    cute::tma_store_arrive();
  }
}

}  // namespace jaxgemm::sm90
