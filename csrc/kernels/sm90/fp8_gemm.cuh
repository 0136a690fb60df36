// SM90 block-scaled FP8 GEMM: D[l] = C[l] + dequant(A[l]) @ dequant(B[l])^T.
//
// A is [M, K] e4m3 with one FP32 scale per row per 128 of K (1D). B is [N, K]
// e4m3 with either one FP32 scale per 128x128 block ("1D2D", DeepSeek-V3's
// forward and dgrad recipe) or, with SFB_PER_ROW, one per row per 128 of K
// ("1D1D", its weight-gradient recipe). Both are K-major, as the FP8 tensor
// cores need. D is BF16 or FP32 (OUT_BYTES); C, if any (C_BYTES), is added to
// the FP32 accumulators before D is rounded. L batches share one launch (B may
// be shared by all).
//
// Work per output tile (BLOCK_M x BLOCK_N, K deep): 2*BM*BN*K FLOPs, loading
// (BM + BN) * K bytes of operands (plus BM * K/32 of A scales) from L2 into
// shared memory, writing BM*BN*OUT_BYTES bytes. At 128 x 192 that is 154 FLOP per byte
// loaded: each SM needs ~26 B/clk from L2 at 1000 TFLOPS. DRAM sees far less,
// since the band rasterization below keeps the panels in flight in L2.
//
// Pipeline and warp roles (persistent: one CTA per SM walks tiles
// blockIdx.x, blockIdx.x + gridDim.x, ...):
//   - warpgroups 0..NUM_MATH_WG-1 (math, 64 rows of the tile each): per 128-deep
//     K block, wait for the stage, 4 WGMMA m64nNk32 into a fresh accumulator,
//     release the stage, then promote: final += accum * scale_a[row] * scale_b[col]
//     (1D1D reads its per-column scales from the stage, so it promotes first).
//     This FP32 promotion every 128 of K is what keeps FP8 accumulation accurate.
//     Epilogue (common/sm90_epilogue.cuh): + C, then BF16 or FP32 into swizzled
//     shared memory and TMA stores, which overlap the next tile's main loop.
//   - the last warpgroup (producer): one thread issues the TMA loads of A, B, the
//     A scales (and 1D1D's B scales) of each stage into a NUM_STAGES-deep ring
//     (common/sm90_pipeline.cuh).
// Registers are rebalanced with setmaxnreg: producer 56, math 224. The sum must
// equal what the CTA holds at entry (168 x 384): an increase waits for registers
// that a decrease has freed, so asking for more than that hangs.
//
// With CLUSTER_M = 2, two CTAs of a cluster take adjacent m-blocks of the same
// n-block: each loads half of the shared B tile and multicasts it to both, which
// cuts the L2->SM traffic per tile by BN*128/2 bytes per K block. A CTA then
// frees a stage only when both CTAs' math warps have released it, so "empty"
// counts the arrivals of both. (Measured on an H200: no faster at BN=192, so the
// heuristic leaves it off; the promotion, not L2, is what binds today.)
#pragma once

#include <cute/arch/cluster_sm90.hpp>
#include <cute/arch/copy_sm90_tma.hpp>
#include <cutlass/arch/barrier.h>
#include <cutlass/arch/reg_reconfig.h>

#include "../common/sm90_epilogue.cuh"
#include "../common/sm90_pipeline.cuh"
#include "../common/sm90_utils.cuh"
#include "../common/tile_scheduler.cuh"
#include "fp8_gemm_params.h"

namespace jaxgemm::sm90 {

// One 128-deep K block in flight: its pipeline stage and its scales.
struct KBlock {
  unsigned stage;
  float sa0, sa1;       // A scales of this thread's two rows
  float sb0, sb1, sb2;  // 1D2D: B scales of the (up to three) 128-row blocks the tile's columns cross
};

// The 4 WGMMAs (K = 4 x 32) of one K block into a fresh accumulator.
template <class Wgmma, unsigned NUM_ACC>
__device__ __forceinline__ void issue_wgmma_batch(uint64_t desc_a, uint64_t desc_b, float (&acc)[NUM_ACC]) {
  fence_accumulators(acc);
  cute::warpgroup_arrive();
#pragma unroll
  for (unsigned k = 0; k < 4; ++k) {
    // Advancing K by 32 bytes inside the 128B swizzle atom moves the start address.
    wgmma_fma<Wgmma>(desc_a + k * 2, desc_b + k * 2, acc, k > 0, cute::make_integer_sequence<int, NUM_ACC>{});
  }
  cute::warpgroup_commit_batch();
}

// final += acc * scale_a[row] * scale_b[col]. Accumulator i of m64nN sits at row
// row0 + 8 * ((i / 2) % 2), column (i / 4) * 8 + (lane % 4) * 2 + i % 2. Columns
// before `split` use sb0, the next 128 sb1, the rest sb2.
template <unsigned BLOCK_N>
constexpr bool tile_may_cross_three_scale_blocks() {
  // A tile starts at most 128 - gcd(BLOCK_N, 128) columns past a 128-boundary.
  unsigned g = 128, b = BLOCK_N;
  while (b) { const unsigned t = g % b; g = b; b = t; }
  return BLOCK_N - g > 128;  // e.g. 176; never 144, 160 or 192
}

template <unsigned BLOCK_N, unsigned NUM_ACC>
__device__ __forceinline__ void promote(float (&final_acc)[NUM_ACC], const float (&acc)[NUM_ACC],
                                        const KBlock& blk, unsigned split) {
  // The row x block scale products, once per K block; each column group then
  // selects its pair instead of multiplying again.
  const float s00 = blk.sa0 * blk.sb0, s10 = blk.sa1 * blk.sb0;
  const float s01 = blk.sa0 * blk.sb1, s11 = blk.sa1 * blk.sb1;
  const float s02 = blk.sa0 * blk.sb2, s12 = blk.sa1 * blk.sb2;
#pragma unroll
  for (unsigned j = 0; j < BLOCK_N / 8; ++j) {
    float s0 = s00, s1 = s10;
    if constexpr (128 % BLOCK_N != 0) {
      if (j * 8 >= split) s0 = s01, s1 = s11;
      if (tile_may_cross_three_scale_blocks<BLOCK_N>() && j * 8 >= split + 128) s0 = s02, s1 = s12;
    }
    final_acc[j * 4 + 0] += acc[j * 4 + 0] * s0;
    final_acc[j * 4 + 1] += acc[j * 4 + 1] * s0;
    final_acc[j * 4 + 2] += acc[j * 4 + 2] * s1;
    final_acc[j * 4 + 3] += acc[j * 4 + 3] * s1;
  }
}

// 1D1D: final += acc * scale_a[row] * scale_b[col], with one B scale per column
// (`sfb` is this K block's BLOCK_N column scales in shared memory).
template <unsigned BLOCK_N, unsigned NUM_ACC>
__device__ __forceinline__ void promote_per_column(float (&final_acc)[NUM_ACC], const float (&acc)[NUM_ACC],
                                                   const KBlock& blk, const float* sfb, unsigned lane) {
#pragma unroll
  for (unsigned j = 0; j < BLOCK_N / 8; ++j) {
    const float2 sb = *reinterpret_cast<const float2*>(sfb + j * 8 + (lane % 4) * 2);
    final_acc[j * 4 + 0] += acc[j * 4 + 0] * (blk.sa0 * sb.x);
    final_acc[j * 4 + 1] += acc[j * 4 + 1] * (blk.sa0 * sb.y);
    final_acc[j * 4 + 2] += acc[j * 4 + 2] * (blk.sa1 * sb.x);
    final_acc[j * 4 + 3] += acc[j * 4 + 3] * (blk.sa1 * sb.y);
  }
}

template <unsigned BLOCK_M, unsigned BLOCK_N, unsigned NUM_STAGES, bool SFB_PER_ROW, unsigned OUT_BYTES,
          bool EPILOGUE_RING>
struct Fp8GemmLayout {
  static constexpr unsigned BLOCK_K = 128;
  static constexpr unsigned SMEM_D = BLOCK_M / 64 * epilogue_smem_bytes<EPILOGUE_RING, BLOCK_N, OUT_BYTES>();
  static constexpr unsigned SMEM_A = BLOCK_M * BLOCK_K;
  static constexpr unsigned SMEM_B = BLOCK_N * BLOCK_K;
  static constexpr unsigned SMEM_SFA = BLOCK_M * 4;
  // TMA writes shared memory at 128-byte aligned addresses: pad each stage's B scales.
  static constexpr unsigned SMEM_SFB = SFB_PER_ROW ? (BLOCK_N * 4 + 127) / 128 * 128 : 0;
  static constexpr unsigned SMEM_BARRIERS = NUM_STAGES * 2 * 8;
  // +1024: the dynamic shared memory base is aligned up to 1024 at run time.
  static constexpr unsigned SMEM_TOTAL =
      1024 + SMEM_D + NUM_STAGES * (SMEM_A + SMEM_B + SMEM_SFA + SMEM_SFB) + SMEM_BARRIERS;
};

template <class Wgmma, unsigned BLOCK_M, unsigned BLOCK_N, unsigned NUM_STAGES, unsigned STORE_N,
          unsigned GROUP_N, unsigned CLUSTER_M, bool SFB_PER_ROW, unsigned OUT_BYTES, unsigned C_BYTES,
          bool EPILOGUE_RING>
__device__ __forceinline__ void fp8_gemm(const Fp8GemmParams& p) {
  using Layout = Fp8GemmLayout<BLOCK_M, BLOCK_N, NUM_STAGES, SFB_PER_ROW, OUT_BYTES, EPILOGUE_RING>;
  constexpr unsigned BLOCK_K = Layout::BLOCK_K;
  constexpr unsigned NUM_MATH_WG = BLOCK_M / 64;
  constexpr unsigned NUM_MATH_THREADS = NUM_MATH_WG * 128;
  constexpr unsigned NUM_ACC = BLOCK_N / 2;  // f32 accumulators per thread for m64nN
  static_assert(BLOCK_M == 64 || BLOCK_M == 128, "one or two math warpgroups of 64 rows");
  static_assert(BLOCK_N % 16 == 0 && BLOCK_N <= 256, "BLOCK_N must be a multiple of 16");
  static_assert(CLUSTER_M == 1 || CLUSTER_M == 2, "B is multicast to at most 2 CTAs");
  constexpr unsigned B_ROWS_PER_CTA = BLOCK_N / CLUSTER_M;  // rows of B this CTA loads
  static_assert(B_ROWS_PER_CTA % 8 == 0, "each multicast half of B keeps whole 8-row swizzle atoms");

  // Shared memory: [D staging][A x stages][B x stages][SFA x stages][SFB x stages][barriers]
  extern __shared__ uint8_t smem_raw[];
  uint8_t* smem = reinterpret_cast<uint8_t*>(
      (reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~static_cast<uintptr_t>(1023));
  uint8_t* smem_d = smem;
  uint8_t* smem_a = smem_d + Layout::SMEM_D;
  uint8_t* smem_b = smem_a + NUM_STAGES * Layout::SMEM_A;
  float* smem_sfa = reinterpret_cast<float*>(smem_b + NUM_STAGES * Layout::SMEM_B);
  float* smem_sfb = smem_sfa + NUM_STAGES * BLOCK_M;
  uint64_t* full = reinterpret_cast<uint64_t*>(reinterpret_cast<uint8_t*>(smem_sfb) + NUM_STAGES * Layout::SMEM_SFB);
  uint64_t* empty = full + NUM_STAGES;

  const unsigned warp_group = threadIdx.x / 128;
  const unsigned num_k_blocks = (p.k + BLOCK_K - 1) / BLOCK_K;
  const TileScheduler<GROUP_N, CLUSTER_M> sched(p.m, p.n, p.num_batches, BLOCK_M, BLOCK_N);
  const unsigned rank = CLUSTER_M > 1 ? cute::block_rank_in_cluster() : 0;
  const unsigned first_tile = blockIdx.x / CLUSTER_M, tile_stride = gridDim.x / CLUSTER_M;

  if (threadIdx.x == 0) {
    prefetch_tma(&p.tma_a);
    prefetch_tma(&p.tma_b);
    prefetch_tma(&p.tma_sfa);
    if constexpr (SFB_PER_ROW) prefetch_tma(&p.tma_sfb);
    prefetch_tma(&p.tma_d);
  }
  init_pipeline<NUM_STAGES, CLUSTER_M, NUM_MATH_WG>(full, empty);

  if (warp_group == NUM_MATH_WG) {
    // ---------------------------------------------------------------- producer
    if constexpr (NUM_MATH_WG > 1) cutlass::arch::warpgroup_reg_dealloc<kProducerRegs>();
    if (threadIdx.x == NUM_MATH_THREADS) {
      // What TMA delivers per stage (the B scales' padding is never written).
      constexpr unsigned STAGE_BYTES = Layout::SMEM_A + Layout::SMEM_B + Layout::SMEM_SFA + (SFB_PER_ROW ? BLOCK_N * 4 : 0);
      unsigned it = 0;
      for (unsigned tile = first_tile; tile < sched.num_tiles; tile += tile_stride) {
        unsigned l, m_block, n_block;
        sched.get(tile, rank, l, m_block, n_block);
        const int m0 = static_cast<int>(m_block * BLOCK_M);
        const int n0 = static_cast<int>(n_block * BLOCK_N);
        const int lb = p.b_batched ? static_cast<int>(l) : 0;
        for (unsigned kb = 0; kb < num_k_blocks; ++kb, ++it) {
          const unsigned s = it % NUM_STAGES;
          Barrier::wait(&empty[s], ((it / NUM_STAGES) & 1) ^ 1);
          Barrier::arrive_and_expect_tx(&full[s], STAGE_BYTES);
          const int k0 = static_cast<int>(kb * BLOCK_K);
          cute::SM90_TMA_LOAD_3D::copy(&p.tma_a, &full[s], 0, smem_a + s * Layout::SMEM_A, k0, m0,
                                       static_cast<int>(l));
          if constexpr (CLUSTER_M == 1) {
            cute::SM90_TMA_LOAD_3D::copy(&p.tma_b, &full[s], 0, smem_b + s * Layout::SMEM_B, k0, n0, lb);
          } else {
            // This CTA's half of B lands in both CTAs, at the same offset.
            cute::SM90_TMA_LOAD_MULTICAST_3D::copy(
                &p.tma_b, &full[s], static_cast<uint16_t>((1u << CLUSTER_M) - 1), 0,
                smem_b + s * Layout::SMEM_B + rank * B_ROWS_PER_CTA * BLOCK_K, k0,
                n0 + static_cast<int>(rank * B_ROWS_PER_CTA), lb);
          }
          cute::SM90_TMA_LOAD_3D::copy(&p.tma_sfa, &full[s], 0, smem_sfa + s * BLOCK_M, m0,
                                       static_cast<int>(kb), static_cast<int>(l));
          if constexpr (SFB_PER_ROW)  // each CTA loads its own copy: it is small
            cute::SM90_TMA_LOAD_3D::copy(&p.tma_sfb, &full[s], 0, smem_sfb + s * (Layout::SMEM_SFB / 4), n0,
                                         static_cast<int>(kb), lb);
        }
      }
      drain_pipeline<NUM_STAGES, CLUSTER_M>(empty, it);
    }
  } else {
    // ------------------------------------------------------------------- math
    if constexpr (NUM_MATH_WG > 1) cutlass::arch::warpgroup_reg_alloc<kMathRegs>();
    const unsigned t = threadIdx.x % 128;
    const unsigned warp = t / 32, lane = t % 32;
    const unsigned row0 = warp * 16 + lane / 4;  // this thread's rows: row0, row0 + 8 (of the WG's 64)
    const unsigned num_nb = (p.n + 127) / 128;
    uint8_t* smem_d_wg = smem_d + warp_group * epilogue_smem_bytes<EPILOGUE_RING, BLOCK_N, OUT_BYTES>();
    unsigned store_seq = 0;  // chunks stored by this warpgroup

    float final_acc[NUM_ACC];
    unsigned it = 0;
    for (unsigned tile = first_tile; tile < sched.num_tiles; tile += tile_stride) {
      unsigned l, m_block, n_block;
      sched.get(tile, rank, l, m_block, n_block);
      const unsigned n0 = n_block * BLOCK_N;
      // 1D2D: B's scale rows covering this tile. When BLOCK_N does not divide 128 a
      // tile crosses two 128-row blocks, or three when BLOCK_N > 128 (e.g. 176
      // columns from 112 past a boundary); columns before `split` use the first.
      const unsigned nb0 = n0 / 128;
      const unsigned nb1 = min(nb0 + 1, num_nb - 1);
      const unsigned nb2 = min(nb0 + 2, num_nb - 1);
      const unsigned split = (nb0 + 1) * 128 - n0;
      const float* sfb = p.sfb + (p.b_batched ? l : 0) * num_nb * num_k_blocks;

#pragma unroll
      for (unsigned i = 0; i < NUM_ACC; ++i) final_acc[i] = 0.0f;

      // Waits for K block kb's stage and issues its 4 WGMMAs into `acc`; returns
      // the block's scales (read now: in 1D2D the stage is released before promotion).
      auto issue = [&](unsigned kb, float(&acc)[NUM_ACC]) {
        KBlock blk;
        blk.stage = (it + kb) % NUM_STAGES;
        if constexpr (!SFB_PER_ROW) {
          blk.sb0 = __ldg(sfb + nb0 * num_k_blocks + kb);
          blk.sb1 = __ldg(sfb + nb1 * num_k_blocks + kb);
          blk.sb2 = tile_may_cross_three_scale_blocks<BLOCK_N>() ? __ldg(sfb + nb2 * num_k_blocks + kb) : blk.sb1;
        }
        Barrier::wait(&full[blk.stage], ((it + kb) / NUM_STAGES) & 1);
        blk.sa0 = smem_sfa[blk.stage * BLOCK_M + warp_group * 64 + row0];
        blk.sa1 = smem_sfa[blk.stage * BLOCK_M + warp_group * 64 + row0 + 8];
        issue_wgmma_batch<Wgmma>(
            smem_desc_k_major_sw128(smem_a + blk.stage * Layout::SMEM_A + warp_group * 64 * BLOCK_K),
            smem_desc_k_major_sw128(smem_b + blk.stage * Layout::SMEM_B), acc);
        return blk;
      };
      // One accumulator set: a second one, to run K block kb+1's WGMMAs while kb is
      // promoted, makes ptxas serialize every WGMMA (C7514: the promotion reads
      // accumulators while another batch is in flight), which costs far more.
      float acc[NUM_ACC];
      for (unsigned kb = 0; kb < num_k_blocks; ++kb) {
        const KBlock blk = issue(kb, acc);
        cute::warpgroup_wait<0>();
        fence_accumulators(acc);
        if constexpr (SFB_PER_ROW) {  // the column scales are read from the stage: promote first
          promote_per_column<BLOCK_N>(final_acc, acc, blk, smem_sfb + blk.stage * (Layout::SMEM_SFB / 4), lane);
          release_stage<CLUSTER_M>(empty, blk.stage, lane);
        } else {
          release_stage<CLUSTER_M>(empty, blk.stage, lane);
          promote<BLOCK_N>(final_acc, acc, blk, split);
        }
      }
      it += num_k_blocks;

      const EpilogueCoords at{p.m, p.n, l, m_block * BLOCK_M + warp_group * 64, n0};
      store_tile<EPILOGUE_RING, BLOCK_N, STORE_N, OUT_BYTES, C_BYTES>(final_acc, smem_d_wg, &p.tma_d, p.c, at, 1 + warp_group,
                                                      store_seq);
    }
    if (t == 0) cute::tma_store_wait<0>();
  }
}

}  // namespace jaxgemm::sm90
