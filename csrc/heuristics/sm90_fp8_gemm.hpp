// Config selection for the SM90 block-scaled FP8 GEMM, from static shapes.
//
// Runs at lowering time (never per call). The model: a tile of BM x BN costs,
// per 128-deep K block, the largest of its tensor-core time, its math
// warpgroups' serial overhead and its TMA load time, plus an epilogue; tiles
// run in waves over the SMs; pick the config with the fewest estimated cycles,
// preferring larger tiles on ties.
#pragma once

#include <algorithm>
#include <cstdint>
#include <stdexcept>

#include "../kernels/sm90/fp8_gemm_registers.h"
#include "../kernels/sm90/fp8_gemm_stage.h"
#include "gemm_config.hpp"

namespace jaxgemm::heuristics {

// Bytes of one pipeline stage: A, B and their scales, as the kernel lays them out.
inline int fp8_gemm_stage_bytes(int block_m, int block_n, const GemmKind& kind) {
  return block_m * 128 + block_n * 128 + int(fp8_stage_sfa_bytes(block_m, block_n, kind.swap_ab)) +
         int(fp8_stage_sfb_rows_bytes(block_n, kind.sfb_per_row)) + int(fp8_stage_sfb_blocks_bytes(kind.sfb_per_row));
}

// Bytes of one raw stage: the K block of each MN-major operand as TMA brings it, before
// the kernel transposes it into a pipeline stage (0: nothing to transpose).
inline int fp8_gemm_raw_bytes(int block_m, int block_n, const GemmKind& kind) {
  return (kind.a_relaid_out() ? block_m * 128 : 0) + (kind.b_relaid_out() ? block_n * 128 : 0);
}

// The fewest K blocks for which the heuristic splits K over a cluster (each CTA keeps 16).
constexpr int kClusterKMinKBlocks = 32;

// B transposed in the kernel at M <= 128, where one row of tiles covers M (128 rows;
// 64 at M <= 64): each B tile is transposed once per K block (64-row tiles at M = 128
// transposed it once per row block), and the transposer, which binds there, stays
// near NT's time per K block. The widest tiles whose grid, with K split over a CTA
// pair if need be, fills 3/4 of the SMs without a second wave: 128 columns (whole
// 128-byte rows for TMA and the transposer), else 64. H100, nn TFLOPS
// (scripts/relayout_sweep.py, session 11), beside NT and the transpose first:
//   M = 128: 7168x16384 at 128x128, cluster_k = 2: 495 (128x64: 345; nt 600, tb 208);
//     4096x7168 at 128x64, cluster_k = 2: 294 (nt 390-430, tb 228); 7168x2048 at
//     128x128, cluster_k = 2: 242-247 (128x64: 198-236; nt 290-360, tb 196);
//   M = 64: 7168x16384 at 64x128, cluster_k = 2: 284 (64x64: 162-204; nt 302, tb 108);
//     4096x7168 at 64x64, cluster_k = 2: 155-177 (tb 117); 7168x2048 at 64x128,
//     cluster_k = 2: 138 (64x64 with k_split = 2: 127-137; tb 113).
// With more than a wave (24576x1536: 306 against 434 at M = 128), the wider tiles
// below. With fewer tiles at M = 128 and a long K (2112x7168: 17 of 128 columns), K
// split over 4 CTAs of 128-column tiles, which fills half the SMs: 210-213 TFLOPS
// against 173-190 for the transpose first, in two sessions (11, 12; 64 columns over
// 2 CTAs: 163-164, over 4: 130); at M <= 64 not measured.
struct NarrowRelayout {
  int block_n = 0;  // 0: no such grid
  int cluster_k = 1;
  int64_t ctas = 0;  // the grid: one row of tiles, cluster_k CTAs each
};
inline NarrowRelayout fp8_gemm_narrow_relayout(int64_t m, int64_t n, int64_t k, int64_t batches, int num_sms) {
  if (m > 128) return {};
  const int64_t k_blocks = ceil_div(k, 128);
  const auto grid = [&](int block_n, int cluster_k) {
    return NarrowRelayout{block_n, cluster_k, batches * ceil_div(n, block_n) * cluster_k};
  };
  for (int block_n : {128, 64}) {
    for (int cluster_k : {1, 2}) {
      // Each CTA of a pair keeps 8 K blocks at 128 columns (measured), 16 at 64.
      if (cluster_k == 2 && k_blocks < (block_n == 128 ? 16 : kClusterKMinKBlocks)) continue;
      const NarrowRelayout g = grid(block_n, cluster_k);
      if (g.ctas <= num_sms && 4 * g.ctas >= 3 * int64_t(num_sms)) return g;
    }
  }
  // The 4-way split keeps 8 K blocks per CTA, as the pair above.
  const NarrowRelayout g = grid(128, 4);
  if (m > 64 && k_blocks >= 32 && g.ctas <= num_sms && 2 * g.ctas >= int64_t(num_sms)) return g;
  return {};
}

// Whether the kernel transposes an operand stored MN-major (`stored`'s flags) in
// shared memory; otherwise it is transposed first (jaxgemm/ops/transpose.py; the
// returned kind is K-major there). The relayout needs TMA-readable rows (M or N a
// multiple of 16), and it is offered only where it measured faster than the
// transpose first: for B at small M, with short K or the narrow tiles above. Its 3
// warps transpose slower than NT's main loop consumes K blocks at large M (H100,
// DeepSeek-V3 shapes, scripts/relayout_perf.py, session 11: at M = 4096 NN ran at
// 0.66 of NT against 0.95 after jaxgemm's transpose, TN 0.46 against 0.91, TT 0.81
// against 0.98, so A never; at M = 128 NN with K <= 2048 at 435 / 265 / 248 TFLOPS
// against 220 / 198 / 194).
// `relayout` 0 or 1 pins it (1: every operand stored MN-major whose rows TMA can read).
constexpr int64_t kRelayoutMaxM = 256, kRelayoutMaxK = 2048;
// `narrow_fits`: the narrow tiles above fill the SMs.
inline GemmKind fp8_gemm_relayout_kind(GemmKind stored, int64_t m, int64_t n, int64_t k, bool narrow_fits,
                                       int relayout = -1) {
  const bool a_ok = stored.a_mn_major && m % 16 == 0, b_ok = stored.b_mn_major && n % 16 == 0;
  const bool b_pays = (m <= kRelayoutMaxM && k <= kRelayoutMaxK) || narrow_fits;
  stored.a_mn_major = relayout == 1 && a_ok;
  stored.b_mn_major = relayout == 1 ? b_ok : relayout < 0 && b_ok && b_pays;
  return stored;
}

// Where the heuristic splits K over two warpgroups, and how deep their pipeline goes.
constexpr int kMaxKSplitBlockN = 64;
constexpr int kKSplitMaxStages = 16;
// With a relayout, the pipeline stages only need to cover the transposes' time (the
// raw stages hide the memory latency): this many (with k_split, each warpgroup reads
// every other one), the raw stages taking the rest of shared memory, up to
// kMaxRawStages and at least kMinRawStages.
constexpr int kRelayoutStages = 3, kRelayoutKSplitStages = 6;
constexpr int kMinRawStages = 2, kMaxRawStages = 8;

// Shared memory outside the stages and the output staging: with k_split = 2, the FP32
// sums the second warpgroup hands to the first; with cluster_k > 1, the other CTAs'
// FP32 partials of this CTA's column slice and the reduction's two barriers; the raw
// stages and their two barriers each.
inline int fp8_gemm_fixed_bytes(int block_m, int block_n, int k_split, int cluster_k, int raw_stages = 0,
                                int raw_bytes = 0) {
  return (k_split > 1 ? 64 * block_n * 4 : 0) +
         (cluster_k > 1 ? (cluster_k - 1) * block_m * (block_n / cluster_k) * 4 + 16 : 0) +
         raw_stages * (raw_bytes + 16);
}

// The shared memory a config needs; mirrors Fp8GemmLayout in the kernel (with
// cluster_k, a CTA stages only its block_n / cluster_k columns of the output).
inline int fp8_gemm_smem_bytes(int block_m, int block_n, int stages, const GemmKind& kind = {}, int k_split = 1,
                               int cluster_k = 1, int raw_stages = 0) {
  const int per_stage = fp8_gemm_stage_bytes(block_m, block_n, kind);
  const int fixed =
      fp8_gemm_fixed_bytes(block_m, block_n, k_split, cluster_k, raw_stages, fp8_gemm_raw_bytes(block_m, block_n, kind));
  // swap_ab always stages the whole tile (its transposed store has no ring).
  if (kind.swap_ab) return 1024 + fixed + block_m * (block_n / cluster_k) * kind.out_bytes + stages * (per_stage + 16);
  return gemm_smem_bytes(block_m, block_n / cluster_k, stages, per_stage, kind.out_bytes, fixed);
}

// The raw stages of a config: as many as fit beside its pipeline stages (up to
// kMaxRawStages; at least 1 with a relayout, even where that does not fit, so that
// the shared memory check rejects it); 0 without a relayout.
inline int fp8_gemm_raw_stages(const GemmConfig& c) {
  if (fp8_gemm_raw_bytes(c.block_m, c.block_n, c.kind) == 0) return 0;
  int raw = 1;
  while (raw < kMaxRawStages && fp8_gemm_smem_bytes(c.block_m, c.block_n, c.num_stages, c.kind, c.k_split,
                                                    c.cluster_k, raw + 1) <= kSmemCapacity)
    ++raw;
  return raw;
}

// The same, for a config's own tiles, stages, kind, splits and raw stages.
inline int fp8_gemm_smem_bytes(const GemmConfig& c) {
  return fp8_gemm_smem_bytes(c.block_m, c.block_n, c.num_stages, c.kind, c.k_split, c.cluster_k,
                             fp8_gemm_raw_stages(c));
}

// The most pipeline stages that fit these tiles (up to 16 with k_split, each
// warpgroup keeping its own lookahead; else 8; with a relayout, up to
// kRelayoutStages, leaving room for kMinRawStages).
inline int fp8_gemm_max_stages(int block_m, int block_n, const GemmKind& kind, int k_split, int cluster_k,
                               int smem_capacity) {
  const bool relayout = fp8_gemm_raw_bytes(block_m, block_n, kind) > 0;
  const int limit = relayout ? (k_split > 1 ? kRelayoutKSplitStages : kRelayoutStages)
                             : (k_split > 1 ? kKSplitMaxStages : 8);
  const auto smem_at = [&](int stages) {
    return fp8_gemm_smem_bytes(block_m, block_n, stages, kind, k_split, cluster_k, relayout ? kMinRawStages : 0);
  };
  return max_stages(smem_at, smem_capacity, limit);
}

// Sets c's stages to the most that fit, and its shared memory to match.
inline void deepen_fp8_gemm(GemmConfig& c, int smem_capacity) {
  c.num_stages = fp8_gemm_max_stages(c.block_m, c.block_n, c.kind, c.k_split, c.cluster_k, smem_capacity);
  c.smem_bytes = fp8_gemm_smem_bytes(c);
}

inline bool fp8_gemm_epilogue_ring(const GemmConfig& c) {
  return !c.kind.swap_ab && epilogue_ring(c.block_m, c.out_block_n(), c.num_stages, fp8_gemm_stage_bytes(c.block_m, c.block_n, c.kind),
                       c.kind.out_bytes,
                       fp8_gemm_fixed_bytes(c.block_m, c.block_n, c.k_split, c.cluster_k, fp8_gemm_raw_stages(c),
                                            fp8_gemm_raw_bytes(c.block_m, c.block_n, c.kind)));
}

// The swapped kernel (GemmKind::swap_ab): for B stored [K, N] at M <= 128, D^T = B^T
// A^T with B in WGMMA's register operand, so B is never transposed. Its tiles are 64
// rows of N, K on two warpgroups, by M in two halves (rounded up to 16 columns) or all
// of M; the first grid that fills 3/4 of the SMs in one wave, of: halves, all of M,
// then each with K split over a CTA pair (which leaves each CTA 8 K blocks or more).
//
// The heuristic picks it (swap_ab = -1) at 64 < M <= 128 where such a grid exists.
// H100, M = 128, nn TFLOPS (scripts/relayout_sweep.py; swapped / relaid out in shared
// memory / NT). Session 14, tiles of all M: 4096x7168 385 / 304 / 464, 7168x2048 318 /
// 254 / 358, 7168x16384 478-532 / 503 / 607. Session 16, halves against all of M:
// 4096x7168 409 (all of M over a CTA pair: 346-369) / - / 472, 2112x7168 over a CTA pair
// 254 (all of M 248) / 208 / 339; 7168x2048 (halves would be two waves) 286 against 327,
// 7168x16384 471 against 561. 24576x1536 and 32768x512 (more than a wave) gained nothing
// (session 14: 434 / 439 and 272 / 272); 128-row tiles and 64-row tiles on one
// warpgroup lost almost everywhere. M <= 64 is not measured.
inline bool fp8_gemm_swap_fits(int64_t m, int64_t n, const GemmKind& stored) {
  return stored.b_mn_major && !stored.sfb_per_row && m <= 128 && n % 16 == 0;
}
struct SwapGrid {
  int block_n = 0;  // 0: no such grid
  int cluster_k = 1;
  int64_t ctas = 0;
};
inline SwapGrid fp8_gemm_swap_grid(int64_t m, int64_t n, int64_t k, int64_t batches, int num_sms) {
  const int all_m = ceil_div(m, 16) * 16, halves = ceil_div(ceil_div(m, 2), 16) * 16;
  for (int cluster_k : {1, 2}) {
    if (cluster_k == 2 && ceil_div(k, 128) < 16) continue;
    for (int block_n : {halves, all_m}) {
      // (Each CTA of a pair stores whole 16-column slices.)
      if ((block_n == halves && m <= 64) || block_n % (16 * cluster_k) != 0) continue;
      const int64_t ctas = batches * ceil_div(n, 64) * ceil_div(m, block_n) * cluster_k;
      if (ctas <= num_sms && 4 * ctas >= 3 * int64_t(num_sms)) return {block_n, cluster_k, ctas};
    }
  }
  return {};
}
inline bool fp8_gemm_swap_pays(int64_t m, int64_t n, int64_t k, int64_t batches, int num_sms) {
  return m > 64 && fp8_gemm_swap_grid(m, n, k, batches, num_sms).block_n > 0;
}
// A pinned swap where no grid fills the SMs: all of M, without a cluster.
inline GemmConfig select_fp8_gemm_swap_config(int64_t m, int64_t n, int64_t k, int64_t batches, int num_sms,
                                              GemmKind kind, int smem_capacity) {
  kind.swap_ab = true;
  kind.a_mn_major = false;  // A is transposed first where it is stored [K, M]
  kind.b_mn_major = true;
  SwapGrid grid = fp8_gemm_swap_grid(m, n, k, batches, num_sms);
  if (grid.block_n == 0) grid = {ceil_div(m, 16) * 16, 1, batches * ceil_div(n, 64)};
  GemmConfig c = candidate(kind, 64, grid.block_n, 1, 0, num_sms, grid.ctas);
  c.k_split = 2;
  c.cluster_k = grid.cluster_k;
  c.store_n = store_width(c.out_block_n(), kind.out_bytes);
  deepen_fp8_gemm(c, smem_capacity);
  return c;
}

// A stored [K, M] read as stored into WGMMA's register operand (GemmKind::a_regs),
// instead of transposed first: the fragment loads need TMA-readable rows (M a
// multiple of 16). The heuristic picks it at 64 < M <= 128 (not where the swapped
// kernel runs: A is its K-major operand there), on 128-row tiles: the narrow grid of
// the relayout above where one exists (K split over a cluster), else the tiles the
// model picks. H100, tt TFLOPS at M = 128 (scripts/relayout_sweep.py, session 15;
// A read into registers / transposed first / nt, runs on two machines): 4096x7168 at
// 128x64 over a CTA pair 438 (at 64x64 with K on two warpgroups 357) / 390-412 /
// 437-463, 2112x7168 at 128x128 over 4 CTAs 292 / 282-293 / 322-344, 7168x16384 at
// 128x128 over a pair 573 (128x64 alone: 570-592) / 515-552 / 520-604, 7168x2048 at
// 128x128 over a pair 311 (128x64 alone: 304-364) / 313-321 / 360-377; with no narrow
// grid, 24576x1536 473 / 440 / 470, 32768x512 327 / 302 / 337. With B relaid out
// too (tn) and no narrow grid, only where the tiles stay as wide as without A in
// registers: tn 24576x1536 at 128x96 355 against 396 for A transposed first and 128x192
// (session 15: 357 / 402-411), 32768x512 at 128x128 242 / 218 (session 16). Not at M = 4096,
// where the tiles NT picks run as fast with A transposed first (e.g. 4096x7168 943 /
// 939) and 192 columns do not fit beside the fragments (2112x7168 at 128x144: 736
// against 899), nor at M <= 64 (64-row tiles: their 64-byte TMA rows measured slow).
inline bool fp8_gemm_a_regs_fits(int64_t m, const GemmKind& stored) {
  return stored.a_mn_major && m % 16 == 0;
}

// At 64 < M <= 128 (one row of 128-row tiles), whether 128x64 tiles beat the model's
// pick. Their two math warpgroups run independent WGMMA chains side by side, where a
// 64-row tile's one warpgroup waits out each of its 4 dependent WGMMAs per K block
// (scripts/wgmma_rate.cu: 69% of the tensor cores against 42% at 64x112), and the
// model's per-block costs do not see that. Taken where their grid fills 3/4 of the
// SMs in its last wave and K has 8 blocks or more, with 1D2D scales and B K-major, A
// K-major or read into registers as stored (what was measured). H100, M = 128,
// session 18, against the picks before (in brackets). NT, kernel time alone
// (scripts/kernel_sweep.py, two runs): 24576x1536 522-523 TFLOPS against 490-492
// (128x192), 7168x16384 624-625 against 559-606 (64x112), 7168x2048 400-402 against
// 380-390 (64x112). tt with A in registers, whole calls (scripts/relayout_sweep.py):
// 7168x2048 372 against 307 (128x128 over a CTA pair), 7168x16384 590 against 580
// (same), 24576x1536 486 against 484 (128x96). Not where the rule does not fire: NT
// 32768x512 (4 K blocks) 352-354 against 357-359, 4096x7168 (64 tiles) 364 against
// 496-498, 2112x7168 (33 tiles) 195 against 369; tt 4096x7168 362 against 447. Nor
// with B relaid out in shared memory (nn 7168x2048 241 against 325 swapped).
inline bool fp8_gemm_two_warpgroup_narrow_pays(int64_t m, int64_t n, int64_t k, int64_t batches, int num_sms,
                                               const GemmKind& kind) {
  if (m <= 64 || m > 128 || ceil_div(k, 128) < 8) return false;
  if (kind.sfb_per_row || kind.swap_ab || kind.a_relaid_out() || kind.b_relaid_out()) return false;
  const int64_t tiles = batches * ceil_div(n, 64);
  const int64_t last_wave = tiles - (tiles - 1) / num_sms * num_sms;
  return 4 * last_wave >= 3 * int64_t(num_sms);
}

// The model's tiles for a kind (below), before the K splits.
inline GemmConfig fp8_gemm_model_config(int64_t m, int64_t n, int64_t k, int64_t batches, int num_sms,
                                        const GemmKind& kind, int smem_capacity) {
  const int num_k_blocks = ceil_div(k, 128);
  BestConfig best;
  // Multicast is not chosen here; a user can ask for it in `config`. B multicast
  // (cluster_m = 2) measured no faster than none on an H200 at the tiles picked
  // (BLOCK_N 192). A multicast (cluster_n = 2), on an H100 over the DeepSeek-V3
  // shapes: at M = 128 it is slower on 5 of 6 (e.g. 24576x1536 at 128x64: 461 ->
  // 312 TFLOPS), so re-reading A from L2 is not what binds there; at M = 4096 it is
  // within 2% either way except 7168x16384 at 128x128 (1029 -> 1112), and no
  // refit of this model to those sweeps picked it without losing elsewhere.
  for (int bm : {64, 128}) {
    if (bm == 128 && m <= 64) continue;
    // 176 is left out: its tiles can cross three 128-row scale blocks of B, and the
    // extra scale selection in the promotion measured slower than 160 or 192.
    for (int bn : {16, 32, 64, 96, 112, 128, 144, 160, 192}) {
      if ((kind.sfb_per_row || kind.a_regs) && bn > int(kFp8MaxBlockNBesideScalesOrFragments)) continue;
      const int stages = fp8_gemm_max_stages(bm, bn, kind, 1, 1, smem_capacity);
      if (stages < 3) continue;
      const int64_t tiles = batches * ceil_div(m, bm) * ceil_div(n, bn);
      const int64_t waves = (tiles + num_sms - 1) / num_sms;
      // Cycles per 128-deep K block of one tile on one SM. A warpgroup's 4 WGMMAs
      // (64 x BN x 128 MACs at 4096 FP8 MACs/clk) take 2*BN clks. With one
      // accumulator set it then waits, releases the stage and promotes (~160 + 2*BN
      // clks of issue) while the other math warpgroup (if any) keeps the tensor
      // cores busy. With two sets (BN <= 128; 96 for 1D1D, see the kernel) the next
      // block's WGMMAs run during the promotion, which leaves ~64 clks exposed.
      // TMA brings (BM + BN) * 128 bytes from L2 at ~48 B/clk per SM when all SMs
      // stream. (The constants are fitted to H100 sweeps of 5 configs at M = 4096
      // and 8 at M = 128 over the DeepSeek-V3 shapes: the picks at M = 4096 are
      // within 3% of the best swept; at M = 128 the model misses by up to 25%. There a
      // 64x112 K block takes ~870 clks, not 2*BN: its four dependent WGMMAs run at ~127
      // clks each and the second set barely hides the promotion (timeline, session 17).)
      const bool two_acc = fp8_two_accumulator_sets(bn, kind.sfb_per_row, kind.a_regs);
      const double wgmma = 2.0 * bn;
      const double load = (bm + bn) * 128.0 / 48.0;
      const double math = two_acc ? (bm / 64) * wgmma + 64
                                  : std::max((bm / 64) * wgmma, wgmma + 160.0 + 2 * bn);
      const double per_k_block = std::max(math, load);
      const double per_tile = num_k_blocks * per_k_block + bm * bn * double(kind.out_bytes) / 64 + 500;
      // Every SM that has a tile (shrinking the grid to the fewest SMs with the same
      // number of waves measured 2-5% slower on an H200).
      GemmConfig c = candidate(kind, bm, bn, stages, 0, num_sms, tiles);
      c.smem_bytes = fp8_gemm_smem_bytes(c);  // with as many raw stages as fit
      best.offer(c, double(waves) * per_tile);
    }
  }
  if (!best.found) throw std::runtime_error("select_fp8_gemm_config: no config fits shared memory");
  return best.config;
}

// `stored`: the operands' majors as the caller stored them; the returned config's
// kind says which of those the kernel transposes (fp8_gemm_relayout_kind; `relayout`
// 0 or 1 pins that choice), whether it computes D^T (`swap_ab` 0 or 1 pins that) and
// whether it reads A into registers as stored (`a_regs` 0 or 1 pins that; relayout = 0
// rules it out, relayout = 1 leaves it to a_regs = 1; a_regs = 1 rules out the swap).
inline GemmConfig select_fp8_gemm_config(int64_t m, int64_t n, int64_t k, int64_t batches, int num_sms,
                                         const GemmKind& stored = {}, int smem_capacity = kSmemCapacity,
                                         int relayout = -1, int swap_ab = -1, int a_regs = -1) {
  if (m <= 0 || n <= 0 || k <= 0 || batches <= 0 || num_sms <= 0)
    throw std::invalid_argument("select_fp8_gemm_config: sizes must be positive");
  const bool swap = swap_ab == 1 ? relayout != 0
                                 : swap_ab < 0 && relayout < 0 && a_regs != 1 &&
                                       fp8_gemm_swap_pays(m, n, k, batches, num_sms);
  if (swap && fp8_gemm_swap_fits(m, n, stored))
    return select_fp8_gemm_swap_config(m, n, k, batches, num_sms, stored, smem_capacity);
  const NarrowRelayout narrow = fp8_gemm_narrow_relayout(m, n, k, batches, num_sms);
  GemmKind kind = fp8_gemm_relayout_kind(stored, m, n, k, narrow.block_n > 0, relayout);
  const bool regs_auto = a_regs < 0 && relayout < 0 && m > 64 && m <= 128;
  // tn (B relaid out too) with no narrow grid: not where the model's tiles without
  // A fragments are wider than those beside them (fp8_gemm_a_regs_fits).
  const bool regs = a_regs == 1 ? relayout != 0
                                : regs_auto && !(kind.b_mn_major && narrow.block_n == 0 &&
                                                 fp8_gemm_model_config(m, n, k, batches, num_sms, kind, smem_capacity)
                                                         .block_n > int(kFp8MaxBlockNBesideScalesOrFragments));
  if (regs && fp8_gemm_a_regs_fits(m, stored)) kind.a_mn_major = kind.a_regs = true;
  const int num_k_blocks = ceil_div(k, 128);
  if (fp8_gemm_two_warpgroup_narrow_pays(m, n, k, batches, num_sms, kind)) {
    GemmConfig c = candidate(kind, 128, 64, 1, 0, num_sms, batches * ceil_div(n, 64));
    deepen_fp8_gemm(c, smem_capacity);
    return c;
  }
  if ((kind.b_mn_major || kind.a_regs) && !kind.a_relaid_out() && narrow.block_n > 0) {
    GemmConfig c = candidate(kind, m <= 64 ? 64 : 128, narrow.block_n, 1, 0, num_sms, narrow.ctas);
    c.cluster_k = narrow.cluster_k;
    // 64-row tiles without a cluster run K on two warpgroups (measured so; not 1D1D,
    // as below).
    c.k_split = c.block_m == 64 && c.cluster_k == 1 && !kind.sfb_per_row ? 2 : 1;
    c.store_n = store_width(c.out_block_n(), kind.out_bytes);
    deepen_fp8_gemm(c, smem_capacity);
    return c;
  }
  GemmConfig c = fp8_gemm_model_config(m, n, k, batches, num_sms, kind, smem_capacity);
  // Narrow 64-row tiles (what small M picks) run their K blocks on two warpgroups
  // (k_split = 2), each with its own lookahead: up to 16 stages. H100, kernel time
  // alone at M = 128: 2112x7168 at 64x32 296 -> 352 TFLOPS (14 stages; 309 with 8),
  // 4096x7168 at 64x64 450 -> 490 (10 stages). Wider tiles gained less than the
  // run-to-run spread (64x112: -3% to +3%), and more stages alone nothing.
  if (c.block_m == 64 && c.block_n <= kMaxKSplitBlockN && !kind.sfb_per_row) {
    c.k_split = 2;
    deepen_fp8_gemm(c, smem_capacity);
  }
  // Where even 32-column tiles leave SMs idle on a long K, twice as wide tiles with K
  // split over a pair of CTAs (cluster_k = 2) read A from L2 half as often. H100,
  // kernel time alone, M = 128, 2112x7168: 64x32 317 -> 64x64 over 2 CTAs 361 TFLOPS;
  // the same split of 64x64 tiles lost elsewhere (4096x7168: 503 -> 439), and so did
  // clusters of 4 and 8 (sm90_cluster_reduce.cuh).
  const int64_t wide_tiles = batches * ceil_div(m, 64) * ceil_div(n, 64);
  // (Measured with two 64-row blocks; a single row block, M <= 64, re-reads no A.)
  if (c.k_split == 2 && c.block_n == 32 && m > 64 && num_k_blocks >= kClusterKMinKBlocks &&
      wide_tiles * 2 <= num_sms) {
    c.block_n = 64;
    c.cluster_k = 2;
    c.store_n = store_width(c.out_block_n(), kind.out_bytes);
    deepen_fp8_gemm(c, smem_capacity);
    c.num_sms = static_cast<int>(wide_tiles * 2);
  }
  return c;
}

}  // namespace jaxgemm::heuristics
