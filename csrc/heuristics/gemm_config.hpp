// The config of one SM90 GEMM kernel instance: what the op asks for (GemmKind,
// fixed by the call) and how it is tiled (chosen by a heuristic or pinned by a
// user). Both become template arguments of the generated kernel.
#pragma once

#include <cstdint>
#include <sstream>
#include <string>

namespace jaxgemm::heuristics {

struct GemmKind {
  bool sfb_per_row = false;  // FP8: B has 1x128 scales (1D1D), else 128x128 blocks (1D2D)
  // A is [K, M] (M contiguous), else [M, K]; B is [K, N], else [N, K]. BF16 WGMMA
  // reads either; the FP8 kernel transposes an MN-major operand in shared memory.
  bool a_mn_major = false;
  bool b_mn_major = false;
  int out_bytes = 2;         // D: 2 = bf16, 4 = f32
  int c_bytes = 0;           // C: 0 = none, 2 = bf16, 4 = f32
  // FP8 with B MN-major: the kernel computes D^T = B^T A^T, B in WGMMA's register
  // operand (kernels/sm90/fp8_gemm.cuh, SWAP_AB). block_m then tiles N, block_n M.
  bool swap_ab = false;
  // FP8 with A MN-major (a_mn_major): A is read as stored into WGMMA's register operand
  // (kernels/sm90/fp8_gemm.cuh, A_REGS), not transposed in shared memory.
  bool a_regs = false;

  // FP8: the operands the kernel transposes in shared memory (the others are K-major,
  // or MN-major ones read into registers).
  bool a_relaid_out() const { return a_mn_major && !a_regs && !swap_ab; }
  bool b_relaid_out() const { return b_mn_major && !swap_ab; }
};

struct GemmConfig {
  GemmKind kind;
  int block_m = 128;
  int block_n = 128;
  int num_stages = 4;
  int store_n = 64;    // columns of one TMA store of the output (at most 128 bytes)
  int group_n = 8;     // rasterization band width in n-blocks
  int num_sms = 132;   // the persistent grid size (a multiple of cluster_m)
  int cluster_m = 1;   // 2: CTA pairs on adjacent m-blocks share B by TMA multicast
  int cluster_n = 1;   // 2: CTA pairs on adjacent n-blocks share A by TMA multicast (FP8)
  int k_split = 1;     // 2 (FP8, block_m = 64): two math warpgroups take alternate K blocks of a tile
  int cluster_k = 1;   // 2, 4 or 8 (FP8): the CTAs of a cluster split K of one tile, reduced in shared memory
  int pingpong = 0;    // 1 (BF16, block_m = 128): each math warpgroup owns whole tiles, one's epilogue under the other's main loop
  int smem_bytes = 0;

  int num_threads() const { return (block_m / 64) * k_split * 128 + 128; }
  // CTAs per cluster as launched.
  int cluster_size() const { return cluster_m * cluster_n * cluster_k; }
  // Output columns each CTA stores (with cluster_k, its slice of the tile).
  int out_block_n() const { return block_n / cluster_k; }

  std::string str() const {
    std::ostringstream s;
    s << "block_m=" << block_m << " block_n=" << block_n << " stages=" << num_stages << " store_n=" << store_n
      << " group_n=" << group_n << " sms=" << num_sms << " cluster_m=" << cluster_m << " cluster_n=" << cluster_n << " k_split=" << k_split << " cluster_k=" << cluster_k << " pingpong=" << pingpong << " smem=" << smem_bytes
      << " sfb_per_row=" << kind.sfb_per_row << " a_mn_major=" << kind.a_mn_major
      << " b_mn_major=" << kind.b_mn_major << " out_bytes=" << kind.out_bytes << " c_bytes=" << kind.c_bytes
      << " swap_ab=" << kind.swap_ab << " a_regs=" << kind.a_regs;
    return s.str();
  }
};

constexpr int kSmemCapacity = 232448;  // bytes of shared memory one SM90 block may use

// The shared memory of a GEMM kernel whose pipeline stage takes `per_stage` bytes,
// and how its epilogue stages the output (mirrors epilogue_smem_bytes in
// kernels/common/sm90_epilogue.cuh): the whole tile, unless that does not fit
// beside the stages, then a ring of two 8 KiB slots per math warpgroup. `fixed`:
// other bytes the kernel keeps outside the stages.
inline bool epilogue_ring(int block_m, int block_n, int stages, int per_stage, int out_bytes, int fixed = 0) {
  return 1024 + fixed + block_m * block_n * out_bytes + stages * (per_stage + 16) > kSmemCapacity;
}

inline int gemm_smem_bytes(int block_m, int block_n, int stages, int per_stage, int out_bytes, int fixed = 0) {
  const int staging = epilogue_ring(block_m, block_n, stages, per_stage, out_bytes, fixed)
                          ? block_m / 64 * 2 * 64 * 128
                          : block_m * block_n * out_bytes;
  return 1024 + fixed + staging + stages * (per_stage + 16);
}

inline int ceil_div(int64_t a, int64_t b) { return static_cast<int>((a + b - 1) / b); }

// The widest output chunk (columns) that divides block_n and spans at most 128 bytes.
inline int store_width(int block_n, int out_bytes) {
  for (int w : {64, 32, 16, 8})
    if (w * out_bytes <= 128 && block_n % w == 0) return w;
  return 0;
}

// The most pipeline stages (up to `limit`) whose shared memory, `smem_bytes(stages)`, fits.
template <class SmemBytes>
int max_stages(SmemBytes smem_bytes, int capacity, int limit = 8) {
  int stages = 0;
  while (stages < limit && smem_bytes(stages + 1) <= capacity) ++stages;
  return stages;
}

// A candidate config of the heuristics: BM x BN tiles, `stages` deep, no multicast,
// the persistent grid on every SM that has a tile.
inline GemmConfig candidate(const GemmKind& kind, int block_m, int block_n, int stages, int smem_bytes,
                            int num_sms, int64_t tiles) {
  GemmConfig c;
  c.kind = kind;
  c.block_m = block_m;
  c.block_n = block_n;
  c.num_stages = stages;
  c.store_n = store_width(block_n, kind.out_bytes);
  c.smem_bytes = smem_bytes;
  c.cluster_m = 1;
  c.cluster_n = 1;
  c.num_sms = static_cast<int>(tiles < num_sms ? tiles : num_sms);
  return c;
}

// Keeps the candidate with the fewest estimated cycles, the larger tile on a tie.
struct BestConfig {
  GemmConfig config;
  double cycles = 0;
  bool found = false;

  void offer(const GemmConfig& c, double estimated_cycles) {
    const bool better = !found || estimated_cycles < cycles * 0.999 ||
                        (estimated_cycles <= cycles * 1.001 &&
                         c.block_m * c.block_n > config.block_m * config.block_n);
    if (better) {
      config = c;
      cycles = estimated_cycles;
      found = true;
    }
  }
};

}  // namespace jaxgemm::heuristics
