// SM90 BF16 GEMM: D[l] = C[l] + A[l] @ B[l]^T, FP32 accumulation, any major.
//
// Unlike FP8, the BF16 tensor cores read either operand K-major or MN-major
// from shared memory, so all four layouts run without a transpose:
//   A K-major  [M, K] (rows of K)   or MN-major [K, M] (A_MN_MAJOR)
//   B K-major  [N, K]               or MN-major [K, N] (B_MN_MAJOR)
// Each pipeline stage holds a 64-deep K slice (128 bytes of BF16 per row, one
// 128B swizzle atom). K-major tiles arrive in one TMA box of BLOCK x 64; MN-major
// ones in 64-wide chunks of 64 (MN) x 64 (K) elements, 8 KiB apart.
//
// Work per tile: 2*BM*BN*K FLOPs from 2*(BM + BN)*K bytes, half the FP8 kernel's
// intensity, but there is no promotion: each math warpgroup keeps its WGMMAs in
// flight across K blocks (waits for the previous batch only, to free its stage),
// so the tensor cores see back-to-back work.
//
// Warp roles and the epilogue are those of the FP8 kernel (fp8_gemm.cuh): one
// producer warpgroup issuing TMA loads, 1 or 2 math warpgroups of 64 rows each.
// With CLUSTER_M = 2, as there, the two CTAs of a cluster take adjacent m-blocks of
// one n-block and each loads half of the B tile, multicast to both: at 128 x 256
// tiles a stage is 48 KiB per 1024 tensor-core cycles, more than L2 feeds an SM, so
// sharing B matters here more than in the FP8 kernel.
//
// PINGPONG (BLOCK_M = 128): instead of splitting a tile's rows, each of the two
// math warpgroups owns whole tiles, every other tile of the CTA, and runs its 128
// rows as two m64 WGMMAs per k step. The producer still loads the tiles in order
// into the one ring of stages, and each warpgroup skips the other's stages. The
// warpgroups take turns on the tensor cores (a named barrier pair), so one's
// epilogue runs under the other's main loop: where K is short, the epilogue is a
// large part of a tile's time. The turns also make the parity waits sound: a
// warpgroup waits on a stage's "full" barrier only after the other has waited on
// all the stages it skipped.
#pragma once

#include <cutlass/arch/reg_reconfig.h>

#include "../common/sm90_epilogue.cuh"
#include "../common/sm90_pipeline.cuh"
#include "../common/sm90_utils.cuh"
#include "../common/tile_scheduler.cuh"
#include "bf16_gemm_params.h"

namespace jaxgemm::sm90 {

template <unsigned BLOCK_M, unsigned BLOCK_N, unsigned NUM_STAGES, unsigned OUT_BYTES, bool EPILOGUE_RING>
struct Bf16GemmLayout {
  static constexpr unsigned BLOCK_K = 64;
  static constexpr unsigned CHUNK = 64 * BLOCK_K * 2;  // one MN-major 64 x 64 box
  static constexpr unsigned SMEM_D = BLOCK_M / 64 * epilogue_smem_bytes<EPILOGUE_RING, BLOCK_N, OUT_BYTES>();
  static constexpr unsigned SMEM_A = BLOCK_M * BLOCK_K * 2;
  static constexpr unsigned SMEM_B = BLOCK_N * BLOCK_K * 2;
  static constexpr unsigned SMEM_BARRIERS = NUM_STAGES * 2 * 8;
  static constexpr unsigned SMEM_TOTAL = 1024 + SMEM_D + NUM_STAGES * (SMEM_A + SMEM_B) + SMEM_BARRIERS;
};

// The descriptor of a 64-row slice (m64 WGMMA operand, or all of B) of a stage's
// tile, and how far one k16 step moves it (in descriptor units of 16 bytes):
// K-major: 32 bytes along the swizzled row; MN-major: 16 rows of 128 bytes.
template <bool MN_MAJOR>
__device__ __forceinline__ uint64_t bf16_operand_desc(const uint8_t* tile) {
  if constexpr (MN_MAJOR) return smem_desc_sw128(tile, 64 * 64 * 2, 1024);
  else return smem_desc_k_major_sw128(tile);
}
template <bool MN_MAJOR>
constexpr uint64_t bf16_k16_step() { return MN_MAJOR ? 2048 >> 4 : 32 >> 4; }

template <class Wgmma, unsigned BLOCK_M, unsigned BLOCK_N, unsigned NUM_STAGES, unsigned STORE_N,
          unsigned GROUP_N, unsigned CLUSTER_M, bool A_MN_MAJOR, bool B_MN_MAJOR, unsigned OUT_BYTES,
          unsigned C_BYTES, bool EPILOGUE_RING, bool PINGPONG = false>
__device__ __forceinline__ void bf16_gemm(const Bf16GemmParams& p) {
  using Layout = Bf16GemmLayout<BLOCK_M, BLOCK_N, NUM_STAGES, OUT_BYTES, EPILOGUE_RING>;
  constexpr unsigned BLOCK_K = Layout::BLOCK_K;
  constexpr unsigned NUM_MATH_WG = BLOCK_M / 64;
  constexpr unsigned NUM_MATH_THREADS = NUM_MATH_WG * 128;
  constexpr unsigned NUM_ACC = BLOCK_N / 2;
  // 64-row slabs of a tile one math warpgroup computes, and math warpgroups that read each stage.
  constexpr unsigned SLABS = PINGPONG ? BLOCK_M / 64 : 1;
  constexpr unsigned READERS = PINGPONG ? 1 : NUM_MATH_WG;
  constexpr unsigned kTurnBarrier = 3;  // named barriers 3 and 4 (1 and 2 are the epilogue's)
  static_assert(BLOCK_M == 64 || BLOCK_M == 128, "one or two math warpgroups of 64 rows");
  static_assert(!PINGPONG || BLOCK_M == 128, "ping-pong runs two warpgroups of 128-row tiles");
  static_assert(BLOCK_N % 16 == 0 && BLOCK_N <= 256, "BLOCK_N must be a multiple of 16");
  static_assert(!B_MN_MAJOR || BLOCK_N % 64 == 0, "an MN-major B tile is whole 64-column chunks");
  static_assert(CLUSTER_M == 1 || CLUSTER_M == 2, "B is multicast to at most 2 CTAs");
  // This CTA's share of the B tile: rows of a K-major tile, or 64-column chunks.
  constexpr unsigned B_ROWS_PER_CTA = BLOCK_N / CLUSTER_M;
  constexpr unsigned B_CHUNKS_PER_CTA = BLOCK_N / 64 / CLUSTER_M;
  static_assert(B_ROWS_PER_CTA % 8 == 0, "each multicast half of B keeps whole 8-row swizzle atoms");
  static_assert(!B_MN_MAJOR || B_CHUNKS_PER_CTA * 64 * CLUSTER_M == BLOCK_N,
                "each CTA multicasts whole 64-column chunks of an MN-major B");

  extern __shared__ uint8_t smem_raw[];
  uint8_t* smem = reinterpret_cast<uint8_t*>(
      (reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~static_cast<uintptr_t>(1023));
  uint8_t* smem_d = smem;
  uint8_t* smem_a = smem_d + Layout::SMEM_D;
  uint8_t* smem_b = smem_a + NUM_STAGES * Layout::SMEM_A;
  uint64_t* full = reinterpret_cast<uint64_t*>(smem_b + NUM_STAGES * Layout::SMEM_B);
  uint64_t* empty = full + NUM_STAGES;

  // Broadcast from lane 0 so that ptxas knows it is warp-uniform (fp8_gemm.cuh says why).
  const unsigned warp_group = __shfl_sync(0xffffffffu, threadIdx.x / 128, 0);
  const unsigned num_k_blocks = (p.k + BLOCK_K - 1) / BLOCK_K;
  const TileScheduler<GROUP_N, CLUSTER_M> sched(p.m, p.n, p.num_batches, BLOCK_M, BLOCK_N);
  const unsigned rank = CLUSTER_M > 1 ? block_rank_in_cluster() : 0;
  const unsigned first_tile = blockIdx.x / CLUSTER_M, tile_stride = gridDim.x / CLUSTER_M;

  if (threadIdx.x == 0) {
    prefetch_tma(&p.tma_a);
    prefetch_tma(&p.tma_b);
    prefetch_tma(&p.tma_d);
  }
  init_pipeline<NUM_STAGES, CLUSTER_M, READERS>(full, empty);

  if (warp_group == NUM_MATH_WG) {
    // ---------------------------------------------------------------- producer
    if constexpr (NUM_MATH_WG > 1) cutlass::arch::warpgroup_reg_dealloc<kProducerRegs>();
    if (threadIdx.x == NUM_MATH_THREADS) {
      unsigned it = 0;
      for (unsigned tile = first_tile; tile < sched.num_tiles; tile += tile_stride) {
        unsigned l, m_block, n_block;
        sched.get(tile, rank, l, m_block, n_block);
        const int m0 = static_cast<int>(m_block * BLOCK_M), n0 = static_cast<int>(n_block * BLOCK_N);
        const int la = static_cast<int>(l), lb = p.b_batched ? la : 0;
        for (unsigned kb = 0; kb < num_k_blocks; ++kb, ++it) {
          const unsigned s = it % NUM_STAGES;
          Barrier::wait(&empty[s], ((it / NUM_STAGES) & 1) ^ 1);
          Barrier::arrive_and_expect_tx(&full[s], Layout::SMEM_A + Layout::SMEM_B);
          const int k0 = static_cast<int>(kb * BLOCK_K);
          uint8_t* a = smem_a + s * Layout::SMEM_A;
          uint8_t* b = smem_b + s * Layout::SMEM_B;
          if constexpr (A_MN_MAJOR) {
            for (unsigned c = 0; c < BLOCK_M / 64; ++c)
              tma_load_3d(&p.tma_a, &full[s], a + c * Layout::CHUNK, m0 + int(c * 64), k0, la);
          } else {
            tma_load_3d(&p.tma_a, &full[s], a, k0, m0, la);
          }
          if constexpr (CLUSTER_M == 1) {
            if constexpr (B_MN_MAJOR) {
              for (unsigned c = 0; c < BLOCK_N / 64; ++c)
                tma_load_3d(&p.tma_b, &full[s], b + c * Layout::CHUNK, n0 + int(c * 64), k0, lb);
            } else {
              tma_load_3d(&p.tma_b, &full[s], b, k0, n0, lb);
            }
          } else {
            // This CTA's share of B lands in both CTAs, at the same offset.
            constexpr uint16_t mask = (1u << CLUSTER_M) - 1;
            if constexpr (B_MN_MAJOR) {
              for (unsigned i = 0; i < B_CHUNKS_PER_CTA; ++i) {
                const unsigned c = rank * B_CHUNKS_PER_CTA + i;
                tma_load_3d_multicast(&p.tma_b, &full[s], mask, b + c * Layout::CHUNK,
                                                       n0 + int(c * 64), k0, lb);
              }
            } else {
              tma_load_3d_multicast(&p.tma_b, &full[s], mask, b + rank * B_ROWS_PER_CTA * BLOCK_K * 2, k0,
                                                     n0 + int(rank * B_ROWS_PER_CTA), lb);
            }
          }
        }
      }
      drain_pipeline<NUM_STAGES, CLUSTER_M>(empty, it);
    }
  } else {
    // ------------------------------------------------------------------- math
    if constexpr (NUM_MATH_WG > 1) cutlass::arch::warpgroup_reg_alloc<kMathRegs>();
    const unsigned t = threadIdx.x % 128, lane = t % 32;
    uint8_t* smem_d_wg = smem_d + warp_group * epilogue_smem_bytes<EPILOGUE_RING, BLOCK_N, OUT_BYTES>();
    unsigned store_seq = 0;  // chunks stored by this warpgroup
    // The A rows of slab `i` of this warpgroup's tile: a K-major 64-row slice, or one MN chunk.
    const auto a_offset = [&](unsigned i) {
      return (PINGPONG ? i : warp_group) * (A_MN_MAJOR ? Layout::CHUNK : 64 * BLOCK_K * 2);
    };
    float acc[SLABS][NUM_ACC];
    // Ping-pong: this warpgroup's tiles are every other one of the CTA's, and its
    // first stage comes after the other's first tile.
    const unsigned my_first = first_tile + (PINGPONG ? warp_group * tile_stride : 0);
    const unsigned my_stride = PINGPONG ? 2 * tile_stride : tile_stride;
    unsigned it = PINGPONG ? warp_group * num_k_blocks : 0;
    for (unsigned tile = my_first; tile < sched.num_tiles; tile += my_stride) {
      unsigned l, m_block, n_block;
      sched.get(tile, rank, l, m_block, n_block);
#pragma unroll
      for (unsigned i = 0; i < SLABS; ++i)
#pragma unroll
        for (unsigned j = 0; j < NUM_ACC; ++j) acc[i][j] = 0.0f;
      // Our turn: the other warpgroup has issued its main loop of the tile before ours.
      if constexpr (PINGPONG)
        if (tile != first_tile) named_barrier_sync(256, kTurnBarrier + warp_group);
      for (unsigned kb = 0; kb < num_k_blocks; ++kb) {
        const unsigned s = (it + kb) % NUM_STAGES;
        Barrier::wait(&full[s], ((it + kb) / NUM_STAGES) & 1);
        const uint64_t db = bf16_operand_desc<B_MN_MAJOR>(smem_b + s * Layout::SMEM_B);
        uint64_t da[SLABS];
#pragma unroll
        for (unsigned i = 0; i < SLABS; ++i) {
          da[i] = bf16_operand_desc<A_MN_MAJOR>(smem_a + s * Layout::SMEM_A + a_offset(i));
          fence_accumulators(acc[i]);
        }
        cute::warpgroup_arrive();
#pragma unroll
        for (unsigned k = 0; k < BLOCK_K / 16; ++k)
#pragma unroll
          for (unsigned i = 0; i < SLABS; ++i)
            wgmma_fma<Wgmma>(da[i] + k * bf16_k16_step<A_MN_MAJOR>(), db + k * bf16_k16_step<B_MN_MAJOR>(),
                             acc[i], true, typename MakeIndexSequence<NUM_ACC>::type{});
        cute::warpgroup_commit_batch();
        // Keep this batch in flight; the previous one is done once at most one is pending.
        cute::warpgroup_wait<1>();
#pragma unroll
        for (unsigned i = 0; i < SLABS; ++i) fence_accumulators(acc[i]);
        if (kb > 0) release_stage<CLUSTER_M>(empty, (it + kb - 1) % NUM_STAGES, lane);
      }
      // The other warpgroup's turn, if the CTA has a next tile.
      if constexpr (PINGPONG)
        if (tile + tile_stride < sched.num_tiles) named_barrier_arrive(256, kTurnBarrier + (warp_group ^ 1));
      cute::warpgroup_wait<0>();
#pragma unroll
      for (unsigned i = 0; i < SLABS; ++i) fence_accumulators(acc[i]);
      if (num_k_blocks > 0) release_stage<CLUSTER_M>(empty, (it + num_k_blocks - 1) % NUM_STAGES, lane);
      it += num_k_blocks * (PINGPONG ? 2 : 1);

#pragma unroll
      for (unsigned i = 0; i < SLABS; ++i) {
        const EpilogueCoords at{p.m, p.n, l, m_block * BLOCK_M + (PINGPONG ? i : warp_group) * 64,
                                n_block * BLOCK_N};
        store_tile<EPILOGUE_RING, BLOCK_N, STORE_N, OUT_BYTES, C_BYTES>(acc[i], smem_d_wg, &p.tma_d, p.c, at,
                                                                        1 + warp_group, store_seq);
      }
    }
    if (t == 0) tma_store_wait<0>();
  }
}

}  // namespace jaxgemm::sm90
