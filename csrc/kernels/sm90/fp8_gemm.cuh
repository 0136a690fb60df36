// SM90 block-scaled FP8 GEMM: D[l] = C[l] + dequant(A[l]) @ dequant(B[l])^T.
//
// A is [M, K] e4m3 with one FP32 scale per row per 128 of K (1D). B is [N, K]
// e4m3 with either one FP32 scale per 128x128 block ("1D2D", DeepSeek-V3's
// forward and dgrad recipe) or, with SFB_PER_ROW, one per row per 128 of K
// ("1D1D", its weight-gradient recipe). The FP8 tensor cores need both K-major in
// shared memory; either may be stored MN-major (A_MN, B_MN: see below). D is BF16
// or FP32 (OUT_BYTES); C, if any (C_BYTES), is added to the FP32 accumulators
// before D is rounded. L batches share one launch (B may be shared by all).
//
// Work per output tile (BLOCK_M x BLOCK_N, K deep): 2*BM*BN*K FLOPs, loading
// (BM + BN) * K bytes of operands (plus BM * K/32 of A scales) from L2, the
// operands into shared memory, writing BM*BN*OUT_BYTES bytes. At 128 x 192 that is 154 FLOP per byte
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
//     At BLOCK_N <= 128 two accumulator sets alternate, so the next K block's
//     WGMMAs run during the promotion. The loop's instruction latency, not the
//     tensor cores, bounds this kernel (ncu stall samples): its shared addresses
//     stay in registers and each tile's scale-block split is a template case
//     (of the whole loop, or of the promotion alone: see kSplitPerLoop).
//     Epilogue (common/sm90_epilogue.cuh): + C, then BF16 or FP32 into swizzled
//     shared memory and TMA stores, which overlap the next tile's main loop.
//   - the last warpgroup (producer): one thread issues the TMA loads of A, B (and
//     1D1D's B scales) of each stage into a NUM_STAGES-deep ring
//     (common/sm90_pipeline.cuh); its second warp copies the stage's BLOCK_M A
//     scales with cp.async, which arrive on the same "full" barrier. A's scales
//     come in either major through two strides, so neither layout costs the caller
//     a transpose (at small M that separate kernel cost as much as a third of the
//     GEMM), and the math loop reads them from shared memory as it did from TMA
//     (reading them from global memory there cost ~5% at M = 4096).
//   1D2D's B scales (one to three per K block) come the same way: the scale warp's
//   first lanes copy them into the stage (BScaleRows).
// Registers are rebalanced with setmaxnreg: producer 56, math 224 (72 and 216 with a
// relayout, whose producer warps transpose in registers). The sum must
// equal what the CTA holds at entry (168 x 384): an increase waits for registers
// that a decrease has freed, so asking for more than that hangs.
//
// K_SPLIT = 2 (BLOCK_M = 64): two math warpgroups share one 64-row tile, each taking
// every other K block into its own accumulators; the second hands its sums to the
// first through shared memory, which stores the tile. At small M each SM has one
// narrow tile and its serial chain of K blocks; two chains per SM measured 5-19%
// faster on an H100 at M = 128 with a deeper pipeline (each warpgroup reads every
// other stage, so each needs its own lookahead): BENCHMARKS.md, session 5.
//
// CLUSTER_K = 2, 4 or 8 (no multicast): the CTAs of a cluster share one tile, each
// taking a consecutive range of its K blocks, and add up their FP32 partial sums
// through distributed shared memory, each storing BLOCK_N / CLUSTER_K columns
// (common/sm90_cluster_reduce.cuh).
//
// Clusters of 2 share an operand by TMA multicast: with CLUSTER_M = 2 the two CTAs
// take adjacent m-blocks of the same n-block and each loads half of the shared B
// tile into both; with CLUSTER_N = 2 they take adjacent n-blocks of the same
// m-block and share A. That halves the L2->SM traffic of the shared tile, which
// matters where small M leaves the tiles L2-bound: every n-block re-reads the
// whole A panel. A CTA then frees a stage only when both CTAs' math warps have
// released it, so "empty" counts the arrivals of both.
//
// A_MN / B_MN: the operand is stored MN-major ([L, K, M] / [Lb, K, N]). The TMA
// thread loads each of its K blocks as it is into a ring of NUM_RAW raw stages, and
// the producer's warps 1 to 3 transpose it into the pipeline stage, in the K-major
// 128B-swizzled layout the WGMMAs read (common/sm90_fp8_relayout.cuh); "full" then
// counts their arrivals too. Such an operand is never multicast.
//
// SWAP_AB: the kernel computes D^T = B^T A^T for a caller whose B is MN-major, at
// small M, instead of transposing B in shared memory. Its tile rows then run over
// the caller's N and its columns over M (p.m, p.n, the scheduler and the tiles are
// in those terms): its A operand is the caller's B ([Lb, K, N], loaded by TMA as
// stored and read into WGMMA A fragments by the math warps themselves,
// common/sm90_fp8_mn_major_a.cuh), its B operand the caller's A ([L, M, K],
// K-major). The caller's B scales (128x128 blocks) give each tile one row scale per
// K block, read from global memory as 1D2D's B scales are; the caller's A scales
// become per-column scales, copied into each stage by the scale warp; D is written
// transposed (store_tile_transposed). The shared-memory traffic per K block is then
// NT's, where the relayout adds a read and a write of the transposed operand.
//
// A_REGS: A is stored MN-major ([L, K, M]) and read the same way, into register
// fragments, without swapping: TMA loads its K blocks as stored, the math warps build
// the fragments, and everything else is NT's. The fragments order each warp's rows
// in pairs (sm90_fp8_mn_major_a.cuh), so a thread's two rows are 2g and 2g + 1 of
// its 16, not g and g + 8: its A scales and its rows in the epilogue follow.
#pragma once

#include <cutlass/arch/reg_reconfig.h>

#include "../common/sm90_cluster_reduce.cuh"
#include "../common/sm90_epilogue.cuh"
#include "../common/sm90_fp8_mn_major_a.cuh"
#include "../common/sm90_fp8_relayout.cuh"
#include "../common/sm90_pipeline.cuh"
#include "../common/sm90_utils.cuh"
#include "../common/tile_scheduler.cuh"
#include "fp8_gemm_params.h"
#include "fp8_gemm_registers.h"
#include "fp8_gemm_stage.h"

// JAXGEMM_EXP_TIMELINE builds (scripts/cta_timeline.py) keep timestamps in the kernel
// and print them; other builds compile these statements out.
#ifdef JAXGEMM_EXP_TIMELINE
#define JAXGEMM_TIMELINE(...) __VA_ARGS__
#else
#define JAXGEMM_TIMELINE(...)
#endif

namespace jaxgemm::sm90 {

// One 128-deep K block in flight: its pipeline stage and its scales.
struct KBlock {
  unsigned stage, phase;
  float sa0, sa1;       // A scales of this thread's two rows
  float sb0, sb1, sb2;  // 1D2D: B scales of the (up to three) 128-row blocks the tile's columns cross
};

// The 4 WGMMAs (K = 4 x 32) of one K block into a fresh accumulator. The operands
// are K-major 128B-swizzled tiles given by the low words of their descriptors.
template <class Wgmma, unsigned NUM_ACC>
__device__ __forceinline__ void issue_wgmma_batch(uint32_t desc_a_lo, uint32_t desc_b_lo, float (&acc)[NUM_ACC]) {
  fence_accumulators(acc);
  cute::warpgroup_arrive();
#pragma unroll
  for (unsigned k = 0; k < 4; ++k) {
    // Advancing K by 32 bytes inside the 128B swizzle atom moves the start address.
    wgmma_fma<Wgmma>(k_major_sw128_desc(desc_a_lo + k * 2), k_major_sw128_desc(desc_b_lo + k * 2), acc, k > 0,
                     typename MakeIndexSequence<NUM_ACC>::type{});
  }
  cute::warpgroup_commit_batch();
}

// gcd(BLOCK_N, 128): tiles start a multiple of this many columns past a 128-column
// boundary of B's scale blocks.
template <unsigned BLOCK_N>
constexpr unsigned scale_block_offset_step() {
  unsigned g = 128, b = BLOCK_N;
  while (b) { const unsigned t = g % b; g = b; b = t; }
  return g;
}

template <unsigned BLOCK_N>
constexpr bool tile_may_cross_three_scale_blocks() {
  return BLOCK_N - scale_block_offset_step<BLOCK_N>() > 128;  // e.g. 176; never 144, 160 or 192
}

// final += acc * scale_a[row] * scale_b[col]. Accumulator i of m64nN sits at row
// row0 + 8 * ((i / 2) % 2), column (i / 4) * 8 + (lane % 4) * 2 + i % 2. Tile
// columns before SPLIT use B scale block 0, then block 1 for 128 columns, then 2.
// SPLIT is a template argument so that each column group's scale is fixed at
// compile time: no per-group selects in the loop (they cost as much as the FFMAs).
template <unsigned BLOCK_N, unsigned SPLIT, unsigned NUM_ACC>
__device__ __forceinline__ void promote_at_split(float (&final_acc)[NUM_ACC], const float (&acc)[NUM_ACC],
                                                 const float (&s_row0)[3], const float (&s_row1)[3]) {
#pragma unroll
  for (unsigned j = 0; j < BLOCK_N / 8; ++j) {
    const unsigned b = j * 8 < SPLIT ? 0 : 1 + (j * 8 - SPLIT) / 128;
    final_acc[j * 4 + 0] += acc[j * 4 + 0] * s_row0[b];
    final_acc[j * 4 + 1] += acc[j * 4 + 1] * s_row0[b];
    final_acc[j * 4 + 2] += acc[j * 4 + 2] * s_row1[b];
    final_acc[j * 4 + 3] += acc[j * 4 + 3] * s_row1[b];
  }
}

template <unsigned V>
struct Constant {
  static constexpr unsigned value = V;
};

// Calls f(Constant<SPLIT>{}) for the tile's runtime `split` (128 minus the tile's
// offset into its first B scale block), so that the code inside f is compiled once
// per possible split, each with its scale choices fixed. Case I is
// split = 128 - I * gcd(BLOCK_N, 128); any split of BLOCK_N or more (the tile lies in
// one scale block) takes the last case, SPLIT = BLOCK_N.
template <unsigned BLOCK_N, unsigned I = 0, class F>
__device__ __forceinline__ void with_static_split(unsigned split, F&& f) {
  constexpr unsigned SPLIT = 128 - I * scale_block_offset_step<BLOCK_N>();
  if constexpr (SPLIT == 0) {
    f(Constant<BLOCK_N>{});
  } else if constexpr (SPLIT >= BLOCK_N) {
    with_static_split<BLOCK_N, I + 1>(split, f);
  } else if constexpr (BLOCK_N > 128 && SPLIT == scale_block_offset_step<BLOCK_N>()) {
    f(Constant<SPLIT>{});  // the last case: a tile wider than 128 columns always straddles
  } else {
    if (split == SPLIT) f(Constant<SPLIT>{});
    else with_static_split<BLOCK_N, I + 1>(split, f);
  }
}

// How many cases with_static_split has: the splits below BLOCK_N, plus the one-block
// case when a tile fits in one scale block.
template <unsigned BLOCK_N>
constexpr unsigned num_split_cases() {
  unsigned n = BLOCK_N <= 128 ? 1 : 0;
  for (unsigned s = 128; s > 0; s -= scale_block_offset_step<BLOCK_N>()) n += s < BLOCK_N;
  return n;
}

// Whether the whole K loop is compiled once per split case (the fastest loop: ~144
// instructions per K block at BLOCK_N = 160, against ~167 when the promotion picks
// its case per block), or only the promotion is. Each copy costs compile time
// (NVRTC: 64x112, with 7 cases and two accumulator sets, took 2.2 s against 1.2 s),
// so copies of the loop are made only while they number at most 4, counted in
// promotions: the two-set loop promotes in 5 places.
template <unsigned BLOCK_N, bool TWO_ACC>
constexpr bool kSplitPerLoop = num_split_cases<BLOCK_N>() * (TWO_ACC ? 5 : 1) <= 4;

// with_static_split(split, f) where the loop is split; else f(Constant<0>{}), and the
// promotion dispatches on the split itself.
template <bool PER_LOOP, unsigned BLOCK_N, class F>
__device__ __forceinline__ void with_loop_split(unsigned split, F&& f) {
  if constexpr (PER_LOOP) with_static_split<BLOCK_N>(split, f);
  else f(Constant<0>{});
}

// final += acc * sa[row] * sb[block of col], the products formed once per K block.
template <unsigned BLOCK_N, unsigned SPLIT, unsigned NUM_ACC>
__device__ __forceinline__ void promote(float (&final_acc)[NUM_ACC], const float (&acc)[NUM_ACC],
                                        const KBlock& blk) {
  const float s_row0[3] = {blk.sa0 * blk.sb0, blk.sa0 * blk.sb1, blk.sa0 * blk.sb2};
  const float s_row1[3] = {blk.sa1 * blk.sb0, blk.sa1 * blk.sb1, blk.sa1 * blk.sb2};
  promote_at_split<BLOCK_N, SPLIT>(final_acc, acc, s_row0, s_row1);
}

// 1D1D: final += acc * scale_a[row] * scale_b[col], with one B scale per column
// (`sfb`: the shared address of this K block's BLOCK_N column scales).
template <unsigned BLOCK_N, unsigned NUM_ACC>
__device__ __forceinline__ void promote_per_column(float (&final_acc)[NUM_ACC], const float (&acc)[NUM_ACC],
                                                   const KBlock& blk, uint32_t sfb, unsigned lane) {
#pragma unroll
  for (unsigned j = 0; j < BLOCK_N / 8; ++j) {
    const float2 sb = ld_shared_f32x2(sfb + (j * 8 + (lane % 4) * 2) * 4);
    final_acc[j * 4 + 0] += acc[j * 4 + 0] * (blk.sa0 * sb.x);
    final_acc[j * 4 + 1] += acc[j * 4 + 1] * (blk.sa0 * sb.y);
    final_acc[j * 4 + 2] += acc[j * 4 + 2] * (blk.sa1 * sb.x);
    final_acc[j * 4 + 3] += acc[j * 4 + 3] * (blk.sa1 * sb.y);
  }
}

// 1D2D: where a tile's B block scales are, K block kb's at rows[i][kb] for the COUNT
// 128-row blocks of B the tile's columns cross: one to three (a tile wider than 128
// columns, e.g. 176 from 112 past a boundary, crosses three). SWAP_AB: the caller's B
// scales of the tile's rows (of the caller's N), one block since rows come in 64s.
// They reach the math through shared memory, copied into each stage by the scale warp
// as its K block is loaded: read by the math from global memory one K block ahead,
// they waited on DRAM behind B's stream (~1.5 us at a tile's second K block, M = 128).
template <unsigned BLOCK_M, unsigned BLOCK_N, bool SWAP_AB>
struct BScaleRows {
  static constexpr unsigned COUNT = SWAP_AB ? 1 : tile_may_cross_three_scale_blocks<BLOCK_N>() ? 3 : 2;
  const float* first;      // the first block's row of K-block scales
  unsigned next1, next2;   // the second's and third's, floats past it

  // The block of B's rows that column n0 lies in (a dummy n-block past N reads the last).
  static __device__ __forceinline__ unsigned block_of(unsigned n0, unsigned num_nb) {
    return min(n0 / 128, num_nb - 1);
  }

  __device__ __forceinline__ BScaleRows(const Fp8GemmParams& p, unsigned l, unsigned m_block, unsigned n_block,
                                        unsigned num_k_blocks) {
    const unsigned batch = p.b_batched ? l : 0;
    if constexpr (SWAP_AB) {
      first = p.sfb + (batch * ((p.m + 127) / 128) + m_block * BLOCK_M / 128) * num_k_blocks;
      next1 = next2 = 0;
    } else {
      const unsigned num_nb = (p.n + 127) / 128;
      const unsigned nb0 = block_of(n_block * BLOCK_N, num_nb);
      first = p.sfb + (batch * num_nb + nb0) * num_k_blocks;
      next1 = (min(nb0 + 1, num_nb - 1) - nb0) * num_k_blocks;
      next2 = (min(nb0 + 2, num_nb - 1) - nb0) * num_k_blocks;
    }
  }
  // The scale lane i < COUNT copies for K block kb.
  __device__ __forceinline__ const float* at(unsigned i, unsigned kb) const {
    return first + (i == 0 ? 0 : i == 1 ? next1 : next2) + kb;
  }
};

template <unsigned BLOCK_M, unsigned BLOCK_N, unsigned NUM_STAGES, bool SFB_PER_ROW, unsigned OUT_BYTES,
          bool EPILOGUE_RING, unsigned K_SPLIT, unsigned CLUSTER_K, bool A_MN = false, bool B_MN = false,
          unsigned NUM_RAW = 0, bool SWAP_AB = false>
struct Fp8GemmLayout {
  static constexpr unsigned BLOCK_K = 128;
  static constexpr unsigned OUT_BLOCK_N = BLOCK_N / CLUSTER_K;  // the columns this CTA stores
  static constexpr unsigned SMEM_D = BLOCK_M / 64 * epilogue_smem_bytes<EPILOGUE_RING, OUT_BLOCK_N, OUT_BYTES>();
  static constexpr unsigned SMEM_A = BLOCK_M * BLOCK_K;
  static constexpr unsigned SMEM_B = BLOCK_N * BLOCK_K;
  // The stage's scales (fp8_gemm_stage.h): A's (SWAP_AB: of the tile's columns); B's
  // per row (1D1D) or its block scales (1D2D, BScaleRows, copied with A's by the
  // scale warp).
  static constexpr unsigned SMEM_SFA = fp8_stage_sfa_bytes(BLOCK_M, BLOCK_N, SWAP_AB);
  static constexpr unsigned SMEM_SFB = fp8_stage_sfb_rows_bytes(BLOCK_N, SFB_PER_ROW);
  static constexpr unsigned SMEM_SFB_BLOCKS = fp8_stage_sfb_blocks_bytes(SFB_PER_ROW);
  // A_MN / B_MN: the operand's K block as TMA brings it, MN-major, before its relayout.
  static constexpr unsigned SMEM_RAW_A = A_MN ? BLOCK_M * BLOCK_K : 0;
  static constexpr unsigned SMEM_RAW = SMEM_RAW_A + (B_MN ? BLOCK_N * BLOCK_K : 0);
  // K_SPLIT: the second warpgroup's FP32 sums, handed to the first.
  static constexpr unsigned SMEM_SUMS = K_SPLIT > 1 ? 64 * BLOCK_N * 4 : 0;
  // CLUSTER_K: the other CTAs' FP32 partials of this CTA's column slice (sm90_cluster_reduce.cuh).
  static constexpr unsigned SMEM_RECV = (CLUSTER_K - 1) * BLOCK_M * OUT_BLOCK_N * 4;
  // The stages' full and empty barriers, then (CLUSTER_K) the reduction's two, then
  // the raw stages' full and empty barriers.
  static constexpr unsigned SMEM_BARRIERS = NUM_STAGES * 2 * 8 + (CLUSTER_K > 1 ? 16 : 0) + NUM_RAW * 2 * 8;
  // +1024: the dynamic shared memory base is aligned up to 1024 at run time.
  static constexpr unsigned SMEM_TOTAL = 1024 + SMEM_D + SMEM_SUMS + SMEM_RECV +
                                         NUM_STAGES * (SMEM_A + SMEM_B + SMEM_SFA + SMEM_SFB + SMEM_SFB_BLOCKS) +
                                         NUM_RAW * SMEM_RAW +
                                         SMEM_BARRIERS;
};

template <class Wgmma, unsigned BLOCK_M, unsigned BLOCK_N, unsigned NUM_STAGES, unsigned STORE_N,
          unsigned GROUP_N, unsigned CLUSTER_M, unsigned CLUSTER_N, unsigned K_SPLIT, unsigned CLUSTER_K,
          bool SFB_PER_ROW, unsigned OUT_BYTES, unsigned C_BYTES, bool EPILOGUE_RING, bool A_MN = false,
          bool B_MN = false, unsigned NUM_RAW = 0, bool SWAP_AB = false, bool A_REGS = false>
__device__ __forceinline__ void fp8_gemm(const Fp8GemmParams& p) {
  using Layout = Fp8GemmLayout<BLOCK_M, BLOCK_N, NUM_STAGES, SFB_PER_ROW, OUT_BYTES, EPILOGUE_RING, K_SPLIT,
                               CLUSTER_K, A_MN, B_MN, NUM_RAW, SWAP_AB>;
  constexpr bool RELAYOUT = A_MN || B_MN;
  static_assert(RELAYOUT == (NUM_RAW > 0), "raw stages exactly for an MN-major operand");
  // Per-column scales: 1D1D's B scales, or SWAP_AB's (the caller's A scales).
  constexpr bool COLUMN_SCALES = SFB_PER_ROW || SWAP_AB;
  // WGMMA's A operand from registers, built from an MN-major K block.
  constexpr bool A_FRAGS = SWAP_AB || A_REGS;
  constexpr unsigned BLOCK_K = Layout::BLOCK_K;
  constexpr unsigned ROW_WG = BLOCK_M / 64;          // warpgroups across the tile's rows
  constexpr unsigned NUM_MATH_WG = ROW_WG * K_SPLIT;  // ... times those along K
  constexpr unsigned NUM_MATH_THREADS = NUM_MATH_WG * 128;
  constexpr unsigned NUM_ACC = BLOCK_N / 2;  // f32 accumulators per thread for m64nN
  static_assert(BLOCK_M == 64 || BLOCK_M == 128, "one or two math warpgroups of 64 rows");
  static_assert(K_SPLIT == 1 || (K_SPLIT == 2 && BLOCK_M == 64), "K is split over two warpgroups at BLOCK_M = 64");
  constexpr unsigned PRODUCER_REGS = RELAYOUT ? kRelayoutProducerRegs : kProducerRegs;
  constexpr unsigned MATH_REGS = RELAYOUT ? kRelayoutMathRegs : kMathRegs;
  // Two accumulator sets where the registers allow: promoted, in flight and final
  // take 3 x NUM_ACC of the MATH_REGS each math warpgroup gets (checked: no spills).
  constexpr bool TWO_ACC = fp8_two_accumulator_sets(BLOCK_N, COLUMN_SCALES, A_FRAGS);
  static_assert(BLOCK_N % 16 == 0 && BLOCK_N <= 256, "BLOCK_N must be a multiple of 16");
  static_assert((CLUSTER_M == 1 || CLUSTER_M == 2) && (CLUSTER_N == 1 || CLUSTER_N == 2) &&
                    CLUSTER_M * CLUSTER_N <= 2,
                "B (CLUSTER_M) or A (CLUSTER_N) is multicast to at most 2 CTAs");
  static_assert(CLUSTER_K == 1 || ((CLUSTER_K == 2 || CLUSTER_K == 4 || CLUSTER_K == 8) &&
                                     CLUSTER_M * CLUSTER_N == 1 && BLOCK_N % (8 * CLUSTER_K) == 0),
                "K is split over a cluster of 2, 4 or 8 CTAs, without multicast, into slices of 8 columns");
  constexpr unsigned CLUSTER = CLUSTER_M * CLUSTER_N;  // CTAs that multicast to each other
  constexpr uint16_t CLUSTER_MASK = (1u << CLUSTER) - 1;
  constexpr unsigned A_ROWS_PER_CTA = BLOCK_M / CLUSTER_N;  // rows of A this CTA loads
  constexpr unsigned B_ROWS_PER_CTA = BLOCK_N / CLUSTER_M;  // rows of B this CTA loads
  static_assert(A_ROWS_PER_CTA % 8 == 0, "each multicast half of A keeps whole 8-row swizzle atoms");
  static_assert(B_ROWS_PER_CTA % 8 == 0, "each multicast half of B keeps whole 8-row swizzle atoms");
  static_assert(!(A_MN && CLUSTER_N > 1) && !(B_MN && CLUSTER_M > 1),
                "an operand relaid out in shared memory is not multicast");
  static_assert(!SWAP_AB || (!RELAYOUT && !SFB_PER_ROW && CLUSTER == 1 && !EPILOGUE_RING && BLOCK_N <= 128),
                "SWAP_AB: 1D2D, no relayout, no multicast, the whole tile staged, at most 128 columns");
  static_assert(!A_REGS || (!SWAP_AB && !A_MN && CLUSTER_N == 1),
                "A_REGS: A read as stored, neither relaid out nor multicast");

  // Shared memory: [D staging][sums][recv][A x stages][B x stages][raw x NUM_RAW][SFA x stages]
  // [SFB x stages][barriers]
  // Aligned in the shared window (a link-time constant), not through the generic
  // pointer, which would cost the math loop a rebuild of the window base per K block.
  extern __shared__ __align__(1024) uint8_t smem_raw[];
  const uint32_t smem_raw_u32 = smem_addr(smem_raw);
  uint8_t* smem = smem_raw + (((smem_raw_u32 + 1023) & ~1023u) - smem_raw_u32);
  uint8_t* smem_d = smem;
  float* smem_sums = reinterpret_cast<float*>(smem_d + Layout::SMEM_D);
  uint8_t* smem_recv = smem_d + Layout::SMEM_D + Layout::SMEM_SUMS;
  uint8_t* smem_a = smem_recv + Layout::SMEM_RECV;
  uint8_t* smem_b = smem_a + NUM_STAGES * Layout::SMEM_A;
  uint8_t* smem_raw_stages = smem_b + NUM_STAGES * Layout::SMEM_B;
  float* smem_sfa = reinterpret_cast<float*>(smem_raw_stages + NUM_RAW * Layout::SMEM_RAW);
  float* smem_sfb = smem_sfa + NUM_STAGES * (Layout::SMEM_SFA / 4);
  uint8_t* smem_sfb_blocks = reinterpret_cast<uint8_t*>(smem_sfb) + NUM_STAGES * Layout::SMEM_SFB;
  uint64_t* full = reinterpret_cast<uint64_t*>(smem_sfb_blocks + NUM_STAGES * Layout::SMEM_SFB_BLOCKS);
  uint64_t* empty = full + NUM_STAGES;
  uint64_t* reduce_barriers = empty + NUM_STAGES;  // CLUSTER_K: received, free
  uint64_t* raw_full = reduce_barriers + (CLUSTER_K > 1 ? 2 : 0);  // RELAYOUT: a raw stage has landed
  uint64_t* raw_empty = raw_full + NUM_RAW;                         // ... and has been transposed

  // Broadcast from lane 0, so that ptxas knows it is warp-uniform: what derives from
  // it (stage offsets, WGMMA descriptors, barrier addresses) then lives in uniform
  // registers, not in per-thread ones moved over (R2UR) before every WGMMA.
  const unsigned warp_group = __shfl_sync(0xffffffffu, threadIdx.x / 128, 0);
  const unsigned num_k_blocks = (p.k + BLOCK_K - 1) / BLOCK_K;
  const TileScheduler<GROUP_N, CLUSTER_M, CLUSTER_N> sched(p.m, p.n, p.num_batches, BLOCK_M, BLOCK_N);
  const unsigned rank = CLUSTER > 1 ? block_rank_in_cluster() : 0;
  // With CLUSTER_K, the cluster's CTAs share each tile, CTA k_rank taking the K blocks
  // [kb_begin, kb_end) (possibly none, when K is short).
  const unsigned k_rank = CLUSTER_K > 1 ? block_rank_in_cluster() : 0;
  const unsigned k_blocks_per_cta = (num_k_blocks + CLUSTER_K - 1) / CLUSTER_K;
  const unsigned kb_begin = min(num_k_blocks, k_rank * k_blocks_per_cta);
  const unsigned kb_end = min(num_k_blocks, kb_begin + k_blocks_per_cta);
  const unsigned cta_k_blocks = kb_end - kb_begin;
  const unsigned first_tile = blockIdx.x / (CLUSTER * CLUSTER_K), tile_stride = gridDim.x / (CLUSTER * CLUSTER_K);

  // The timeline: entry, first stage, main-loop end and exit of each CTA (printed by its
  // first math thread), and when each K block's stage (and raw block) was ready.
  JAXGEMM_TIMELINE(const uint64_t tl_entry = global_timer_ns();)
  if (threadIdx.x == 0) {
    prefetch_tma(&p.tma_a);
    prefetch_tma(&p.tma_b);
    if constexpr (SFB_PER_ROW) prefetch_tma(&p.tma_sfb);
    prefetch_tma(&p.tma_d);
  }
  using Reduce = ClusterKReduce<CLUSTER_K, NUM_ACC, ROW_WG * 128>;
  static_assert(Reduce::SMEM_BYTES == Layout::SMEM_RECV, "the receive buffer's size");
  if constexpr (CLUSTER_K > 1) {
    if (threadIdx.x == 0) Reduce::init_barriers(&reduce_barriers[0], &reduce_barriers[1]);
  }
  constexpr unsigned kRelayoutWarps = 3;  // producer warps 1 to 3
  if constexpr (RELAYOUT) {
    if (threadIdx.x == 0)
      for (unsigned r = 0; r < NUM_RAW; ++r) {
        Barrier::init(&raw_full[r], 1);
        Barrier::init(&raw_empty[r], kRelayoutWarps);
      }
  }
  // A stage is filled by the TMA thread, the 32 scale-copying threads and (RELAYOUT)
  // each relayout warp, and read by one K slice's warpgroups.
  init_pipeline<NUM_STAGES, CLUSTER, ROW_WG, 32 + (RELAYOUT ? kRelayoutWarps : 0)>(full, empty);
  if constexpr (CLUSTER_K > 1) cluster_sync();  // the peers' reduction barriers are initialised

  if (warp_group == NUM_MATH_WG) {
    // ---------------------------------------------------------------- producer
    if constexpr (NUM_MATH_WG > 1) cutlass::arch::warpgroup_reg_dealloc<PRODUCER_REGS>();
    if (threadIdx.x == NUM_MATH_THREADS) {
      // What TMA delivers per stage (the B scales' padding is never written; an
      // MN-major operand arrives in a raw stage).
      constexpr unsigned STAGE_BYTES =
          (A_MN ? 0 : Layout::SMEM_A) + (B_MN ? 0 : Layout::SMEM_B) + (SFB_PER_ROW ? BLOCK_N * 4 : 0);
      // RELAYOUT: the MN-major operands' K blocks, into a ring of NUM_RAW raw stages
      // (a raw stage is reloaded once the relayout warps are done with it). Loaded here,
      // not by the relayout warps, whose time per K block is what binds (a TMA issue cost
      // them ~600 clocks a K block, H100, session 11).
      unsigned load_tile = first_tile, load_kb = kb_begin, load_it = 0;
      // Loads raw K block `load_it` once its raw stage is free; false when none is left.
      auto load_raw = [&]() -> bool {
        if (cta_k_blocks == 0 || load_tile >= sched.num_tiles) return false;
        const unsigned r = load_it % NUM_RAW;
        if (load_it >= NUM_RAW) Barrier::wait(&raw_empty[r], ((load_it / NUM_RAW) & 1) ^ 1);
        unsigned l, m_block, n_block;
        sched.get(load_tile, rank, l, m_block, n_block);
        const int k0 = static_cast<int>(load_kb * BLOCK_K);
        uint8_t* raw = smem_raw_stages + r * Layout::SMEM_RAW;
        Barrier::arrive_and_expect_tx(&raw_full[r], Layout::SMEM_RAW);
        if constexpr (A_MN)
          tma_load_3d(&p.tma_a, &raw_full[r], raw, static_cast<int>(m_block * BLOCK_M), k0, static_cast<int>(l));
        if constexpr (B_MN)
          tma_load_3d(&p.tma_b, &raw_full[r], raw + Layout::SMEM_RAW_A, static_cast<int>(n_block * BLOCK_N), k0,
                      p.b_batched ? static_cast<int>(l) : 0);
        ++load_it;
        if (++load_kb == kb_end) load_kb = kb_begin, load_tile += tile_stride;
        return true;
      };
      unsigned it = 0;
      for (unsigned tile = first_tile; tile < sched.num_tiles; tile += tile_stride) {
        unsigned l, m_block, n_block;
        sched.get(tile, rank, l, m_block, n_block);
        const int m0 = static_cast<int>(m_block * BLOCK_M);
        const int n0 = static_cast<int>(n_block * BLOCK_N);
        const int lb = p.b_batched ? static_cast<int>(l) : 0;
        for (unsigned kb = kb_begin; kb < kb_end; ++kb, ++it) {
          const unsigned s = it % NUM_STAGES;
          Barrier::wait(&empty[s], ((it / NUM_STAGES) & 1) ^ 1);
          Barrier::arrive_and_expect_tx(&full[s], STAGE_BYTES);
          const int k0 = static_cast<int>(kb * BLOCK_K);
          // With a cluster, this CTA's half of the shared operand lands in both CTAs, at
          // the same offset.
          uint8_t* a = smem_a + s * Layout::SMEM_A;
          uint8_t* b = smem_b + s * Layout::SMEM_B;
          if constexpr (SWAP_AB) {
            // The caller's B (shared by the batches unless b_batched), MN-major, as
            // stored; the caller's A, K-major.
            tma_load_3d(&p.tma_a, &full[s], a, m0, k0, lb);
            tma_load_3d(&p.tma_b, &full[s], b, k0, n0, static_cast<int>(l));
          } else if constexpr (A_REGS) {
            tma_load_3d(&p.tma_a, &full[s], a, m0, k0, static_cast<int>(l));  // MN-major, as stored
          } else if constexpr (A_MN) {
          } else if constexpr (CLUSTER_N == 1) {
            tma_load_3d(&p.tma_a, &full[s], a, k0, m0, static_cast<int>(l));
          } else {
            tma_load_3d_multicast(&p.tma_a, &full[s], CLUSTER_MASK, a + rank * A_ROWS_PER_CTA * BLOCK_K, k0,
                                  m0 + static_cast<int>(rank * A_ROWS_PER_CTA), static_cast<int>(l));
          }
          if constexpr (B_MN || SWAP_AB) {
          } else if constexpr (CLUSTER_M == 1) {
            tma_load_3d(&p.tma_b, &full[s], b, k0, n0, lb);
          } else {
            tma_load_3d_multicast(&p.tma_b, &full[s], CLUSTER_MASK, b + rank * B_ROWS_PER_CTA * BLOCK_K, k0,
                                  n0 + static_cast<int>(rank * B_ROWS_PER_CTA), lb);
          }
          // 1D1D's column scales: each CTA loads its own copy (they are small).
          if constexpr (SFB_PER_ROW)
            tma_load_3d(&p.tma_sfb, &full[s], smem_sfb + s * (Layout::SMEM_SFB / 4), n0, static_cast<int>(kb), lb);
          // Raw K blocks after this stage's own loads, which are needed as soon: one per
          // stage while the stages first fill, then NUM_RAW ahead. An SM's loads land
          // about in the order issued, so all raw stages first would queue the first
          // stage's A behind them (~3 us at M = 128, H100: session 13).
          if constexpr (RELAYOUT) {
            const unsigned raw_target = it + 1 < NUM_STAGES ? it + 1 : it + NUM_RAW;
            while (load_it < raw_target && load_raw()) {
            }
          }
        }
      }
      drain_pipeline<NUM_STAGES, CLUSTER>(empty, it);
    } else if (threadIdx.x / 32 == NUM_MATH_THREADS / 32 + 1 || (RELAYOUT && threadIdx.x >= NUM_MATH_THREADS + 64)) {
      // Warp 1 copies each stage's A scales, BLOCK_M / 32 per lane, by cp.async (rows
      // past M are zeros), and 1D2D's B block scales, one per lane of the first
      // BScaleRows::COUNT, then one arrival per lane on "full" once they land; many
      // stages' copies are in flight at once. With a relayout, warps 1 to 3 then
      // transpose their share of the stage's raw K block into it (warp 1 the smallest
      // share), and each arrives on "full" and on the raw stage's "empty" (the TMA
      // thread reloads it).
      const unsigned warp = threadIdx.x / 32 - NUM_MATH_THREADS / 32, lane = threadIdx.x % 32;
      const unsigned relayout_warp = warp == 1 ? kRelayoutWarps - 1 : warp - 2;
      const KBlockRelayout<BLOCK_M, kRelayoutWarps> relayout_a(relayout_warp, lane);
      const KBlockRelayout<BLOCK_N, kRelayoutWarps> relayout_b(relayout_warp, lane);
      const uint32_t sfa_smem0 = smem_addr(smem_sfa) + lane * 4;
      const uint32_t sfb_blocks_smem0 = smem_addr(smem_sfb_blocks) + lane * 4;
      const uint32_t raw0 = smem_addr(smem_raw_stages);
      unsigned it = 0;
#ifdef JAXGEMM_EXP_TIMELINE
      // Relayout warp 0 keeps, per K block, when its stage was free, its raw block had
      // landed and its transpose was done (the first 32 of the CTA).
      uint64_t tr_free[32], tr_raw[32], tr_done[32];
      const bool tr_keep = RELAYOUT && warp == 2 && lane == 0 && blockIdx.x % 8 == 0;
#endif
      for (unsigned tile = first_tile; tile < sched.num_tiles; tile += tile_stride) {
        unsigned l, m_block, n_block;
        sched.get(tile, rank, l, m_block, n_block);
        const float* sfa_l = p.sfa + size_t(l) * (SWAP_AB ? p.n : p.m) * num_k_blocks;
        const BScaleRows<BLOCK_M, BLOCK_N, SWAP_AB> sfb_rows(p, l, m_block, n_block, num_k_blocks);
        for (unsigned kb = kb_begin; kb < kb_end; ++kb, ++it) {
          const unsigned s = it % NUM_STAGES;
          Barrier::wait(&empty[s], ((it / NUM_STAGES) & 1) ^ 1);
          JAXGEMM_TIMELINE(if (tr_keep && it < 32) tr_free[it] = global_timer_ns();)
          if (!SFB_PER_ROW && warp == 1 && lane < sfb_rows.COUNT)
            cp_async_4(sfb_blocks_smem0 + s * Layout::SMEM_SFB_BLOCKS, sfb_rows.at(lane, kb), true);
          if (warp == 1 && SWAP_AB) {
            // The scales of the tile's columns (the caller's rows of A; lanes past
            // BLOCK_N write zeros into the stage's padding).
#pragma unroll
            for (unsigned i = 0; i < (BLOCK_N + 31) / 32; ++i) {
              const unsigned col = n_block * BLOCK_N + i * 32 + lane;
              const bool valid = col < p.n && (BLOCK_N % 32 == 0 || i * 32 + lane < BLOCK_N);
              cp_async_4(sfa_smem0 + (s * (Layout::SMEM_SFA / 4) + i * 32) * 4,
                         sfa_l + size_t(valid ? col : 0) * p.sfa_row_stride + size_t(kb) * p.sfa_kb_stride, valid);
            }
            cp_async_arrive(smem_addr(&full[s]));
          } else if (warp == 1) {
#pragma unroll
            for (unsigned i = 0; i < BLOCK_M / 32; ++i) {
              const unsigned row = m_block * BLOCK_M + i * 32 + lane;
              const unsigned safe_row = row < p.m ? row : 0;
              cp_async_4(sfa_smem0 + (s * BLOCK_M + i * 32) * 4,
                         sfa_l + size_t(safe_row) * p.sfa_row_stride + size_t(kb) * p.sfa_kb_stride, row < p.m);
            }
            cp_async_arrive(smem_addr(&full[s]));
          }
          if constexpr (RELAYOUT) {
            const unsigned r = it % NUM_RAW;
            const uint32_t raw = raw0 + r * Layout::SMEM_RAW;
            Barrier::wait(&raw_full[r], (it / NUM_RAW) & 1);
            JAXGEMM_TIMELINE(if (tr_keep && it < 32) tr_raw[it] = global_timer_ns();)
            if constexpr (A_MN) relayout_a(raw, smem_addr(smem_a + s * Layout::SMEM_A));
            if constexpr (B_MN) relayout_b(raw + Layout::SMEM_RAW_A, smem_addr(smem_b + s * Layout::SMEM_B));
            // The warp's generic-proxy writes, made visible to WGMMA (async proxy).
            fence_view_async_shared();
            __syncwarp();
            if (lane == 0) {
              Barrier::arrive(&full[s]);
              Barrier::arrive(&raw_empty[r]);
            }
            JAXGEMM_TIMELINE(if (tr_keep && it < 32) tr_done[it] = global_timer_ns();)
          }
        }
      }
#ifdef JAXGEMM_EXP_TIMELINE
      if (tr_keep)
        for (unsigned i = 0; i < min(it, 32u); ++i)
          printf("TR %u %u %llu %llu %llu\n", blockIdx.x, i, (unsigned long long)tr_free[i],
                 (unsigned long long)tr_raw[i], (unsigned long long)tr_done[i]);
#endif
    }
#ifdef JAXGEMM_EXP_TIMELINE
    else if (!RELAYOUT && threadIdx.x == NUM_MATH_THREADS + 64 && blockIdx.x % 8 == 0 &&
             first_tile < sched.num_tiles) {
      // An idle producer warp watches the first tile's first 32 stages land. (A relayout
      // kernel has no idle warp: its transposers keep their own times, below.)
      uint64_t landed[32];
      const unsigned n = min(cta_k_blocks, 32u);
      for (unsigned i = 0; i < n; ++i) {
        Barrier::wait(&full[i % NUM_STAGES], (i / NUM_STAGES) & 1);
        landed[i] = global_timer_ns();
      }
      for (unsigned i = 0; i < n; ++i) printf("TS %u %u %llu\n", blockIdx.x, i, (unsigned long long)landed[i]);
    }
#endif
  } else {
    // ------------------------------------------------------------------- math
    if constexpr (NUM_MATH_WG > 1) cutlass::arch::warpgroup_reg_alloc<MATH_REGS>();
    const unsigned t = threadIdx.x % 128;
    const unsigned warp = t / 32, lane = t % 32;
    const unsigned row_wg = warp_group % ROW_WG;  // this warpgroup's 64 rows of the tile
    const unsigned k_slice = warp_group / ROW_WG;  // its K blocks: k_slice, k_slice + K_SPLIT, ...
    const unsigned row0 = warp * 16 + lane / 4;  // this thread's rows: row0, row0 + 8 (of the WG's 64)
    const unsigned num_nb = (p.n + 127) / 128;
    uint8_t* smem_d_wg = smem_d + row_wg * epilogue_smem_bytes<EPILOGUE_RING, Layout::OUT_BLOCK_N, OUT_BYTES>();
    unsigned store_seq = 0;  // chunks stored by this warpgroup
    Reduce reduce;
    reduce.recv = smem_addr(smem_recv);
    reduce.received = smem_addr(&reduce_barriers[0]);
    reduce.free_ = smem_addr(&reduce_barriers[1]);

    // Stage 0's WGMMA descriptors and this thread's A-scale address; stage s is a
    // constant offset from them (the descriptor's start address counts 16 bytes),
    // which keeps the address work between two K blocks' WGMMAs short. (The pins on the
    // descriptors still matter with the warp-uniform index: without them the M = 4096
    // instances grow by 8 instructions; at M = 128 the kernels timed the same.)
    const uint32_t smem_u32 = keep_in_register(smem_addr(smem));
    const uint32_t desc_a0 =
        keep_in_register(k_major_sw128_desc_lo(smem_u32 + (smem_a - smem) + row_wg * 64 * BLOCK_K));
    const uint32_t desc_b0 = keep_in_register(k_major_sw128_desc_lo(smem_u32 + (smem_b - smem)));
    const uint32_t sfb_row0 = smem_u32 + (reinterpret_cast<uint8_t*>(smem_sfb) - smem);
    const uint32_t sfb_blocks0 = smem_u32 + (smem_sfb_blocks - smem);
    const uint32_t full0 = smem_u32 + (reinterpret_cast<uint8_t*>(full) - smem);
    const uint32_t empty0 = smem_u32 + (reinterpret_cast<uint8_t*>(empty) - smem);
    // This thread's rows of the tile: row0 and row0 + 8, or with A fragments (their
    // pair order) rows 2g and 2g + 1 of the warp's 16.
    const unsigned scale_row0 = A_REGS ? warp * 16 + 2 * (lane / 4) : row0;
    constexpr unsigned kScaleRow1 = A_REGS ? 1 : 8;  // ... and the second, that many on
    const uint32_t sfa0 =
        keep_in_register(smem_u32 + (reinterpret_cast<uint8_t*>(smem_sfa) - smem) + (row_wg * 64 + scale_row0) * 4);
    // Per-column scales of stage 0 (1D1D's B scales, SWAP_AB's A scales), and the
    // stride between stages.
    const uint32_t column_scales0 = SWAP_AB ? smem_u32 + (reinterpret_cast<uint8_t*>(smem_sfa) - smem) : sfb_row0;
    constexpr unsigned kColumnScaleStride = SWAP_AB ? Layout::SMEM_SFA : Layout::SMEM_SFB;
    // A_FRAGS: stage 0's MN-major A block, read into fragments by this warp's 16 rows.
    const uint32_t smem_a0 = keep_in_register(smem_u32 + (smem_a - smem));
    const MnMajorAFragments<A_FRAGS ? BLOCK_M : 64> a_fragments(row_wg * 64 + warp * 16, lane);
    constexpr unsigned FRAG = A_FRAGS ? 16 : 1;  // A fragment registers per K block in flight
    KBlock tile_pos{0, 0};  // pipeline position (stage, phase) of the tile's first K block
    // Moves a pipeline position n stages on (the phase flips once per wrap); the K
    // loop's step, K_SPLIT stages, wraps at most once.
    auto advance = [](KBlock& q, unsigned n) {
      const unsigned s = q.stage + n;
      q.phase ^= (s / NUM_STAGES) & 1;
      q.stage = s % NUM_STAGES;
    };
    auto advance_one_slice = [](KBlock& q) {
      q.stage += K_SPLIT;
      if (q.stage >= NUM_STAGES) q.stage -= NUM_STAGES, q.phase ^= 1;
    };

#ifdef JAXGEMM_EXP_TIMELINE
    uint64_t tl_loop = 0, tl_loop_clk = 0;
    if (first_tile < sched.num_tiles && cta_k_blocks > 0) wait_barrier(full0, 0);
    const uint64_t tl_first = global_timer_ns(), tl_first_clk = clock64();
    // When the first math thread found its first 32 K blocks' stages full.
    const bool tl_keep = warp_group == 0 && t == 0 && blockIdx.x % 8 == 0;
    // ... and when their WGMMAs were issued, found done and promoted.
    uint64_t tl_seen[32], tl_issued[32], tl_done[32], tl_promoted[32];
    unsigned tl_seen_n = 0, tl_promoted_n = 0;
#endif
    float final_acc[NUM_ACC];
    for (unsigned tile = first_tile; tile < sched.num_tiles; tile += tile_stride) {
      unsigned l, m_block, n_block;
      sched.get(tile, rank, l, m_block, n_block);
      const unsigned n0 = n_block * BLOCK_N;
      // 1D2D: the tile's columns before `split` take B's first scale block (BScaleRows).
      const unsigned split = (BScaleRows<BLOCK_M, BLOCK_N, SWAP_AB>::block_of(n0, num_nb) + 1) * 128 - n0;
      // This warpgroup's K blocks: kb_begin + k_slice + j * K_SPLIT for j < own_blocks.
      const unsigned own_blocks = cta_k_blocks > k_slice ? (cta_k_blocks - k_slice + K_SPLIT - 1) / K_SPLIT : 0;
      KBlock pos = tile_pos;
      advance(pos, k_slice);
      advance(tile_pos, cta_k_blocks);

#pragma unroll
      for (unsigned i = 0; i < NUM_ACC; ++i) final_acc[i] = 0.0f;

      // Waits for the next K block's stage and issues its 4 WGMMAs into `acc`; returns
      // the block's position and scales.
      auto issue = [&](float(&acc)[NUM_ACC], uint32_t(&frag)[FRAG]) {
        KBlock blk = pos;
        wait_barrier(full0 + blk.stage * 8, blk.phase);
        JAXGEMM_TIMELINE(const bool tl_rec = tl_keep && tl_seen_n < 32; if (tl_rec) tl_seen[tl_seen_n] = global_timer_ns();)
        if constexpr (!SFB_PER_ROW) {
          const float4 sb = ld_shared_f32x4(sfb_blocks0 + blk.stage * Layout::SMEM_SFB_BLOCKS);
          blk.sb0 = sb.x, blk.sb1 = sb.y, blk.sb2 = BScaleRows<BLOCK_M, BLOCK_N, SWAP_AB>::COUNT > 2 ? sb.z : sb.y;
        }
        if constexpr (SWAP_AB) {
          blk.sa0 = blk.sa1 = blk.sb0;  // the tile's rows share one scale block
        } else {
          blk.sa0 = ld_shared_f32(sfa0 + blk.stage * BLOCK_M * 4);
          blk.sa1 = ld_shared_f32(sfa0 + blk.stage * BLOCK_M * 4 + kScaleRow1 * 4);
        }
        if constexpr (A_FRAGS) {
          a_fragments.load(smem_a0 + blk.stage * Layout::SMEM_A, frag);
          issue_wgmma_batch_rs<Wgmma>(frag, desc_b0 + blk.stage * (Layout::SMEM_B / 16), acc);
        } else {
          issue_wgmma_batch<Wgmma>(desc_a0 + blk.stage * (Layout::SMEM_A / 16),
                                   desc_b0 + blk.stage * (Layout::SMEM_B / 16), acc);
        }
        JAXGEMM_TIMELINE(if (tl_rec) tl_issued[tl_seen_n++] = global_timer_ns();)
        advance_one_slice(pos);
        return blk;
      };
      // Per-column scales have no split: one instance of the loop.
      const unsigned static_split = COLUMN_SCALES ? BLOCK_N : split;
      // SPLIT: this copy's split, or 0 where the promotion dispatches per K block.
      with_loop_split<COLUMN_SCALES || kSplitPerLoop<BLOCK_N, TWO_ACC>, BLOCK_N>(static_split, [&](auto split_c) {
        [[maybe_unused]] constexpr unsigned SPLIT = decltype(split_c)::value;
        // After the block's WGMMAs completed: release its stage, promote its accumulators.
        auto finish = [&](const KBlock& blk, float(&acc)[NUM_ACC], uint32_t(&frag)[FRAG]) {
          JAXGEMM_TIMELINE(const bool tl_rec = tl_keep && tl_promoted_n < 32; if (tl_rec) tl_done[tl_promoted_n] = global_timer_ns();)
          fence_accumulators(acc);
          if constexpr (A_FRAGS) fence_fragments(frag);
          if constexpr (COLUMN_SCALES) {  // the column scales are read from the stage: promote first
            promote_per_column<BLOCK_N>(final_acc, acc, blk, column_scales0 + blk.stage * kColumnScaleStride, lane);
            release_stage<CLUSTER>(empty0 + blk.stage * 8, lane);
          } else {
            release_stage<CLUSTER>(empty0 + blk.stage * 8, lane);
            if constexpr (SPLIT > 0) {
              promote<BLOCK_N, SPLIT>(final_acc, acc, blk);
            } else {
              with_static_split<BLOCK_N>(static_split, [&](auto c) {
                promote<BLOCK_N, decltype(c)::value>(final_acc, acc, blk);
              });
            }
          }
          JAXGEMM_TIMELINE(if (tl_rec) tl_promoted[tl_promoted_n++] = global_timer_ns();)
        };
        if constexpr (TWO_ACC) {
          // Two accumulator sets: K block kb+1's WGMMAs run while kb is promoted.
          // Unrolled by two so that each set stays in its own registers.
          float acc0[NUM_ACC], acc1[NUM_ACC];
          uint32_t frag0[FRAG], frag1[FRAG];
          if (own_blocks > 0) {
            KBlock blk0 = issue(acc0, frag0), blk1;
            unsigned j = 1;
            for (; j + 1 < own_blocks; j += 2) {
              blk1 = issue(acc1, frag1);
              cute::warpgroup_wait<1>();
              finish(blk0, acc0, frag0);
              blk0 = issue(acc0, frag0);
              cute::warpgroup_wait<1>();
              finish(blk1, acc1, frag1);
            }
            if (j < own_blocks) {  // an even number of blocks: the last goes to acc1
              blk1 = issue(acc1, frag1);
              cute::warpgroup_wait<1>();
              finish(blk0, acc0, frag0);
              cute::warpgroup_wait<0>();
              finish(blk1, acc1, frag1);
            } else {
              cute::warpgroup_wait<0>();
              finish(blk0, acc0, frag0);
            }
          }
        } else {
          float acc[NUM_ACC];
          uint32_t frag[FRAG];
          for (unsigned j = 0; j < own_blocks; ++j) {
            const KBlock blk = issue(acc, frag);
            cute::warpgroup_wait<0>();
            finish(blk, acc, frag);
          }
        }
      });

      JAXGEMM_TIMELINE(tl_loop = global_timer_ns(); tl_loop_clk = clock64();)
      // The epilogue of this CTA's OUT_BLOCK_N columns from `first_col` (the whole tile
      // without CLUSTER_K).
      auto store = [&](auto& acc, unsigned first_col) {
        const EpilogueCoords at{p.m, p.n, l, m_block * BLOCK_M + row_wg * 64, first_col};
        if constexpr (SWAP_AB)
          store_tile_transposed<OUT_BYTES, C_BYTES>(acc, smem_d_wg, &p.tma_d, p.c, at, 1 + row_wg);
        else
          store_tile<EPILOGUE_RING, Layout::OUT_BLOCK_N, STORE_N, OUT_BYTES, C_BYTES, A_REGS>(
              acc, smem_d_wg, &p.tma_d, p.c, at, 1 + row_wg, store_seq);
      };
      if constexpr (K_SPLIT > 1) {
        // The K slices' sums meet in the first slice's registers; the second barrier
        // keeps the next tile from overwriting them before they are read.
        constexpr unsigned kSumsBarrier = 1 + ROW_WG;  // after the epilogue's (1 + row_wg)
        if (k_slice > 0) {
#pragma unroll
          for (unsigned i = 0; i < NUM_ACC; ++i) smem_sums[i * 128 + t] = final_acc[i];
        }
        named_barrier_sync(NUM_MATH_THREADS, kSumsBarrier);
        if (k_slice == 0) {
#pragma unroll
          for (unsigned i = 0; i < NUM_ACC; ++i) final_acc[i] += smem_sums[i * 128 + t];
        }
        named_barrier_sync(NUM_MATH_THREADS, kSumsBarrier);
        if (k_slice > 0) continue;
      }

      if constexpr (CLUSTER_K > 1) {
        // The cluster's partial sums meet; this CTA stores its column slice of the tile.
        constexpr unsigned kReduceBarrier = 2 + ROW_WG;  // after the K split's
        float slice[NUM_ACC / CLUSTER_K];
        reduce.reduce(final_acc, slice, k_rank, row_wg * 128 + t, kReduceBarrier);
        store(slice, n0 + k_rank * Layout::OUT_BLOCK_N);
      } else {
        store(final_acc, n0);
      }
    }
    if constexpr (CLUSTER_K > 1) {
      if (k_slice == 0) reduce.drain();
    }
    if (k_slice == 0 && t == 0) tma_store_wait<0>();
#ifdef JAXGEMM_EXP_TIMELINE
    if (warp_group == 0 && t == 0) {
      const uint64_t tl_exit = global_timer_ns();
      unsigned smid;
      asm volatile("mov.u32 %0, %%smid;" : "=r"(smid));
      printf("TL %u %u %llu %llu %llu %llu %llu\n", blockIdx.x, smid, (unsigned long long)tl_entry,
             (unsigned long long)tl_first, (unsigned long long)tl_loop, (unsigned long long)tl_exit,
             (unsigned long long)(tl_loop_clk - tl_first_clk));
      for (unsigned i = 0; i < tl_seen_n; ++i)
        printf("TM %u %u %llu %llu %llu %llu\n", blockIdx.x, i, (unsigned long long)tl_seen[i],
               (unsigned long long)tl_issued[i], (unsigned long long)tl_done[i], (unsigned long long)tl_promoted[i]);
    }
#endif
  }
}

}  // namespace jaxgemm::sm90
