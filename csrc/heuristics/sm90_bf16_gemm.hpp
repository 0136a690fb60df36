// Config selection for the SM90 BF16 GEMM, from static shapes (at lowering time).
//
// Same model as the FP8 heuristic: per 64-deep K block a BM x BN tile costs the
// larger of its tensor-core time (BM*BN*64 MACs at 2048 BF16 MACs/clk per SM)
// and its TMA load time ((BM + BN) * 128 bytes at ~26 B/clk per SM), plus an
// epilogue per tile; tiles run in waves over the SMs. There is no promotion,
// so one math warpgroup keeps the tensor cores as busy as two. With ping-pong
// (128-row tiles) only the last epilogue of a CTA is exposed.
#pragma once

#include <algorithm>
#include <cstdint>
#include <stdexcept>

#include "gemm_config.hpp"

namespace jaxgemm::heuristics {

// The shared memory a config needs; mirrors Bf16GemmLayout in the kernel.
inline int bf16_gemm_smem_bytes(int block_m, int block_n, int stages, const GemmKind& kind = {}) {
  return gemm_smem_bytes(block_m, block_n, stages, (block_m + block_n) * 128, kind.out_bytes);
}

// The same, for a config's own tiles, stages and kind.
inline int bf16_gemm_smem_bytes(const GemmConfig& c) {
  return bf16_gemm_smem_bytes(c.block_m, c.block_n, c.num_stages, c.kind);
}

// The most pipeline stages (up to 8) that fit these tiles.
inline int bf16_gemm_max_stages(int block_m, int block_n, const GemmKind& kind, int smem_capacity) {
  return max_stages([&](int s) { return bf16_gemm_smem_bytes(block_m, block_n, s, kind); }, smem_capacity);
}

// Sets c's stages to the most that fit, and its shared memory to match.
inline void deepen_bf16_gemm(GemmConfig& c, int smem_capacity) {
  c.num_stages = bf16_gemm_max_stages(c.block_m, c.block_n, c.kind, smem_capacity);
  c.smem_bytes = bf16_gemm_smem_bytes(c);
}

inline bool bf16_gemm_epilogue_ring(const GemmConfig& c) {
  return epilogue_ring(c.block_m, c.block_n, c.num_stages, (c.block_m + c.block_n) * 128, c.kind.out_bytes);
}

inline GemmConfig select_bf16_gemm_config(int64_t m, int64_t n, int64_t k, int64_t batches, int num_sms,
                                          const GemmKind& kind = {}, int smem_capacity = kSmemCapacity) {
  if (m <= 0 || n <= 0 || k <= 0 || batches <= 0 || num_sms <= 0)
    throw std::invalid_argument("select_bf16_gemm_config: sizes must be positive");
  const int num_k_blocks = ceil_div(k, 64);
  BestConfig best;
  for (int bm : {64, 128}) {
    if (bm == 128 && m <= 64) continue;
    for (int bn : {16, 32, 48, 64, 96, 112, 128, 144, 160, 176, 192, 208, 224, 240, 256}) {
      if (kind.b_mn_major && bn % 64 != 0) continue;  // MN-major B tiles are whole 64-column chunks
      const int stages = bf16_gemm_max_stages(bm, bn, kind, smem_capacity);
      if (stages < 3) continue;
      const int64_t tiles = batches * ceil_div(m, bm) * ceil_div(n, bn);
      const int64_t waves = (tiles + num_sms - 1) / num_sms;
      const double mma = bm * bn * 64.0 / 2048;
      const double load = (bm + bn) * 128.0 / 26.0;
      const double main_loop = num_k_blocks * (std::max(mma, load) + 32) + 500;
      // Staging the output and draining the last WGMMAs (fitted on H100: a 128x256
      // tile's epilogue costs about 2.5 K blocks).
      const double epilogue = bm * bn * double(kind.out_bytes) / 10;
      GemmConfig c = candidate(kind, bm, bn, stages, bf16_gemm_smem_bytes(bm, bn, stages, kind), num_sms, tiles);
      best.offer(c, double(waves) * (main_loop + epilogue));
      // Ping-pong hides every epilogue but the last under the other warpgroup's main
      // loop. Its 128 x BN accumulators per thread spill past 192 columns, or with C.
      if (bm == 128 && bn <= 192 && kind.c_bytes == 0) {
        c.pingpong = 1;
        best.offer(c, double(waves) * main_loop + epilogue);
      }
    }
  }
  if (!best.found) throw std::runtime_error("select_bf16_gemm_config: no config fits shared memory");
  return best.config;
}

}  // namespace jaxgemm::heuristics
