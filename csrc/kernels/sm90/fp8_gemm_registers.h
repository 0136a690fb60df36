// What the FP8 kernel's math warps can hold in registers, read by the kernel
// (fp8_gemm.cuh) and by its heuristic (heuristics/sm90_fp8_gemm.hpp). Plain C++: both
// NVCC/NVRTC and the host compiler read it.
#pragma once

namespace jaxgemm {

// Whether a math warpgroup keeps two accumulator sets (the next K block's WGMMAs run
// while the last is promoted): promoted, in flight and final take 3 x BLOCK_N / 2
// registers. Per-column scales (1D1D, or the swapped kernel's) are held while
// promoting: at 128 columns it spills; A from registers also holds two sets of A
// fragments (16 registers each): at 96 columns it spills, with column scales or without
// (checked in SASS).
constexpr bool fp8_two_accumulator_sets(unsigned block_n, bool column_scales, bool a_fragments) {
  return block_n <= (a_fragments ? 80u : column_scales ? 96u : 128u);
}

// The widest tile beside per-column scales (1D1D) or A fragments (a_regs): at 192
// columns ptxas spills (measured in SASS with FP32 output and C).
constexpr unsigned kFp8MaxBlockNBesideScalesOrFragments = 160;

}  // namespace jaxgemm
