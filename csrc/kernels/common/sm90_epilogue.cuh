// Epilogue of the SM90 GEMMs: one math warpgroup's 64 x BLOCK_N FP32
// accumulators (the m64nN WGMMA register layout) to D, optionally adding C.
//
// D leaves through shared memory and TMA stores of STORE_N-column chunks (each
// 64 rows x STORE_N * OUT_BYTES bytes, 16 to 128, swizzled as the TMA descriptor
// says), which drain while the next tile's main loop runs; TMA drops the rows and
// columns past the tensor's edge. Each math warpgroup stages either its whole
// 64 x BLOCK_N tile (two barriers per tile), or, with RING, its chunks in a ring of
// two 8 KiB slots (two barriers per chunk, a slot rewritten once the store issued
// two chunks earlier has read it): the launcher picks RING only where the whole
// tile would take a pipeline stage away.
//
// C is read straight from global memory into the accumulators before they are
// rounded, so D = C + A@B is rounded once. C may be the very buffer D is written to
// (XLA aliases them): each element is read by the thread that later writes it,
// before the store.
#pragma once

#include "sm90_utils.cuh"

namespace jaxgemm::sm90 {

// One ring slot: 64 rows x 128 bytes (the widest chunk), whatever the chunk width.
constexpr unsigned kEpilogueSlotBytes = 64 * 128;

// Shared memory one warpgroup stages its output in.
template <bool RING, unsigned BLOCK_N, unsigned OUT_BYTES>
constexpr unsigned epilogue_smem_bytes() {
  return RING ? 2 * kEpilogueSlotBytes : 64 * BLOCK_N * OUT_BYTES;
}

struct EpilogueCoords {
  unsigned m, n;         // D is [L, m, n], row-major
  unsigned l;            // batch of this tile
  unsigned row_base;     // first global row of this warpgroup's 64
  unsigned n0;           // first global column of the tile
};

// Two consecutive elements of C (bf16 or f32) at element index idx, as floats.
template <unsigned C_BYTES>
__device__ __forceinline__ float2 load_c_pair(const void* c, size_t idx) {
  if constexpr (C_BYTES == 4) {
    return __ldg(reinterpret_cast<const float2*>(static_cast<const float*>(c) + idx));
  } else {
    const uint32_t v = __ldg(reinterpret_cast<const unsigned int*>(static_cast<const uint16_t*>(c) + idx));
    return make_float2(__uint_as_float(v << 16), __uint_as_float(v & 0xFFFF0000u));
  }
}

// Two consecutive output elements (bf16 or f32) into the staging buffer.
template <unsigned OUT_BYTES>
__device__ __forceinline__ void stage_pair(uint32_t addr, float lo, float hi) {
  if constexpr (OUT_BYTES == 2) {
    asm volatile("st.shared.u32 [%0], %1;" ::"r"(addr), "r"(pack_bf16x2(lo, hi)));
  } else {
    asm volatile("st.shared.v2.f32 [%0], {%1, %2};" ::"r"(addr), "f"(lo), "f"(hi));
  }
}

// `seq` counts the chunks this warpgroup has stored so far (it picks the ring slot).
// PAIRED_ROWS: the accumulators' rows in the order of the MN-major A fragments
// (sm90_fp8_mn_major_a.cuh): a thread holds rows 2g and 2g + 1 of its warp's 16.
template <bool RING, unsigned BLOCK_N, unsigned STORE_N, unsigned OUT_BYTES, unsigned C_BYTES,
          bool PAIRED_ROWS = false, unsigned NUM_ACC>
__device__ __forceinline__ void store_tile(float (&acc)[NUM_ACC], uint8_t* smem_d_wg, const TmaDescriptor* tma_d,
                                           const void* c, const EpilogueCoords& at, unsigned barrier_id,
                                           unsigned& seq) {
  static_assert(OUT_BYTES == 2 || OUT_BYTES == 4, "D is bf16 or f32");
  static_assert(C_BYTES == 0 || C_BYTES == 2 || C_BYTES == 4, "C is absent, bf16 or f32");
  constexpr unsigned SPAN = STORE_N * OUT_BYTES;
  static_assert(BLOCK_N % STORE_N == 0 && (SPAN == 128 || SPAN == 64 || SPAN == 32 || SPAN == 16),
                "output chunks are 128, 64, 32 or 16 bytes wide");
  const unsigned t = threadIdx.x % 128, warp = t / 32, lane = t % 32;
  // This thread's rows: row0 and row0 + ROW_STEP.
  const unsigned row0 = PAIRED_ROWS ? warp * 16 + 2 * (lane / 4) : warp * 16 + lane / 4;
  constexpr unsigned ROW_STEP = PAIRED_ROWS ? 1 : 8;

  if constexpr (C_BYTES != 0) {
#pragma unroll
    for (unsigned j = 0; j < BLOCK_N / 8; ++j) {
      const unsigned col = at.n0 + j * 8 + (lane % 4) * 2;
#pragma unroll
      for (unsigned h = 0; h < 2; ++h) {
        const unsigned row = at.row_base + row0 + ROW_STEP * h;
        if (row < at.m && col < at.n) {
          const float2 v = load_c_pair<C_BYTES>(c, (static_cast<size_t>(at.l) * at.m + row) * at.n + col);
          acc[j * 4 + 2 * h] += v.x;
          acc[j * 4 + 2 * h + 1] += v.y;
        }
      }
    }
  }

  // 16-byte unit ^= (offset >> 7) & mask; a 16-byte chunk (8 BF16 columns) is unswizzled (its 8
  // rows of a warp's write are 128 consecutive bytes: no bank conflict either way).
  constexpr unsigned SWIZZLE_MASK = SPAN / 16 - 1;
  constexpr unsigned NUM_CHUNKS = BLOCK_N / STORE_N;
  // BF16 pairs (or FP32 pairs) of chunk `ch` into the staging buffer at `base`.
  auto write_chunk = [&](unsigned ch, uint32_t base) {
#pragma unroll
    for (unsigned j = ch * STORE_N / 8; j < (ch + 1) * STORE_N / 8; ++j) {
      const unsigned col = j * 8 + (lane % 4) * 2 - ch * STORE_N;
#pragma unroll
      for (unsigned h = 0; h < 2; ++h) {
        unsigned off = (row0 + ROW_STEP * h) * SPAN + col * OUT_BYTES;
        off ^= ((off >> 7) & SWIZZLE_MASK) << 4;
        stage_pair<OUT_BYTES>(base + off, acc[j * 4 + 2 * h], acc[j * 4 + 2 * h + 1]);
      }
    }
  };
  auto store_chunk = [&](unsigned ch, const uint8_t* buf) {
    tma_store_3d(tma_d, buf, static_cast<int>(at.n0 + ch * STORE_N), static_cast<int>(at.row_base),
                 static_cast<int>(at.l));
  };

  if constexpr (RING) {
#pragma unroll
    for (unsigned ch = 0; ch < NUM_CHUNKS; ++ch, ++seq) {
      uint8_t* buf = smem_d_wg + (seq % 2) * kEpilogueSlotBytes;
      // The store issued two chunks ago (from this slot) must have read it.
      if (t == 0) tma_store_wait<1>();
      named_barrier_sync(128, barrier_id);
      write_chunk(ch, smem_addr(buf));
      fence_view_async_shared();
      named_barrier_sync(128, barrier_id);
      if (t == 0) {
        store_chunk(ch, buf);
        tma_store_commit();
      }
    }
  } else {
    // The previous tile's stores must have read the staging buffer.
    if (t == 0) tma_store_wait<0>();
    named_barrier_sync(128, barrier_id);
#pragma unroll
    for (unsigned ch = 0; ch < NUM_CHUNKS; ++ch) write_chunk(ch, smem_addr(smem_d_wg + ch * 64 * SPAN));
    fence_view_async_shared();
    named_barrier_sync(128, barrier_id);
    if (t == 0) {
#pragma unroll
      for (unsigned ch = 0; ch < NUM_CHUNKS; ++ch) store_chunk(ch, smem_d_wg + ch * 64 * SPAN);
      tma_store_commit();
    }
  }
}

// SWAP_AB (fp8_gemm.cuh): the warpgroup's 64 x BLOCK_N accumulators are D^T, so its
// rows are D's columns and its columns D's rows (`at` is in the kernel's terms: D is
// [L, at.n, at.m]). The accumulator rows come in the order of the MN-major A
// fragments (sm90_fp8_mn_major_a.cuh): a thread holds rows 2g and 2g + 1 of its
// warp's 16, which are adjacent in D's rows. Staged as [BLOCK_N][128 bytes] per
// 128-byte chunk of D's row (64 BF16 or 32 FP32 columns), 128B-swizzled, then stored
// by TMA (box {128 / OUT_BYTES, BLOCK_N, 1}). The whole tile is staged.
template <unsigned OUT_BYTES, unsigned C_BYTES, unsigned NUM_ACC>
__device__ __forceinline__ void store_tile_transposed(float (&acc)[NUM_ACC], uint8_t* smem_d_wg,
                                                      const TmaDescriptor* tma_d, const void* c,
                                                      const EpilogueCoords& at, unsigned barrier_id) {
  static_assert(OUT_BYTES == 2 || OUT_BYTES == 4, "D is bf16 or f32");
  static_assert(C_BYTES == 0 || C_BYTES == 2 || C_BYTES == 4, "C is absent, bf16 or f32");
  constexpr unsigned BLOCK_N = NUM_ACC * 2;
  constexpr unsigned CHUNK_COLS = 128 / OUT_BYTES;  // D columns per 128-byte chunk
  constexpr unsigned CHUNK_BYTES = BLOCK_N * 128;
  const unsigned t = threadIdx.x % 128, warp = t / 32, lane = t % 32;
  const unsigned r0 = warp * 16 + 2 * (lane / 4);  // this thread's rows: r0 and r0 + 1 (D's columns)

  if constexpr (C_BYTES != 0) {
    const unsigned row = at.row_base + r0;  // at.m is even (a multiple of 16): row + 1 is in too
#pragma unroll
    for (unsigned j = 0; j < BLOCK_N / 8; ++j) {
#pragma unroll
      for (unsigned e = 0; e < 2; ++e) {
        const unsigned col = at.n0 + j * 8 + (lane % 4) * 2 + e;
        if (row < at.m && col < at.n) {
          const float2 v = load_c_pair<C_BYTES>(c, (static_cast<size_t>(at.l) * at.n + col) * at.m + row);
          acc[j * 4 + e] += v.x;
          acc[j * 4 + 2 + e] += v.y;
        }
      }
    }
  }

  // The previous tile's stores must have read the staging buffer.
  if (t == 0) tma_store_wait<0>();
  named_barrier_sync(128, barrier_id);
  const uint32_t base = smem_addr(smem_d_wg) + (r0 / CHUNK_COLS) * CHUNK_BYTES;
#pragma unroll
  for (unsigned j = 0; j < BLOCK_N / 8; ++j) {
#pragma unroll
    for (unsigned e = 0; e < 2; ++e) {
      // D row (tile column) j * 8 + (lane % 4) * 2 + e, D columns r0 and r0 + 1.
      unsigned off = (j * 8 + (lane % 4) * 2 + e) * 128 + (r0 % CHUNK_COLS) * OUT_BYTES;
      off ^= ((off >> 7) & 7) << 4;
      stage_pair<OUT_BYTES>(base + off, acc[j * 4 + e], acc[j * 4 + 2 + e]);
    }
  }
  fence_view_async_shared();
  named_barrier_sync(128, barrier_id);
  if (t == 0) {
#pragma unroll
    for (unsigned ch = 0; ch < 64 / CHUNK_COLS; ++ch)
      tma_store_3d(tma_d, smem_d_wg + ch * CHUNK_BYTES, static_cast<int>(at.row_base + ch * CHUNK_COLS),
                   static_cast<int>(at.n0), static_cast<int>(at.l));
    tma_store_commit();
  }
}

}  // namespace jaxgemm::sm90
