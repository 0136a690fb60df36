// The scale bytes of one pipeline stage of the FP8 kernel, part by part: its shared
// memory layout (Fp8GemmLayout, fp8_gemm.cuh) and its heuristic
// (heuristics/sm90_fp8_gemm.hpp) both size a stage with them. Plain C++: both
// NVCC/NVRTC and the host compiler read it.
#pragma once

namespace jaxgemm {

// A's scales of the stage's rows; with swap_ab, the caller's A scales of the tile's
// columns, in whole warps' worth (the scale warp's lanes each copy one).
constexpr unsigned fp8_stage_sfa_bytes(unsigned block_m, unsigned block_n, bool swap_ab) {
  return swap_ab ? (block_n + 31) / 32 * 32 * 4 : block_m * 4;
}

// 1D1D: B's scales of the stage's rows, padded to 128 bytes (TMA writes shared memory
// at 128-byte aligned addresses).
constexpr unsigned fp8_stage_sfb_rows_bytes(unsigned block_n, bool sfb_per_row) {
  return sfb_per_row ? (block_n * 4 + 127) / 128 * 128 : 0;
}

// 1D2D: the one to three 128x128 block scales of B that the tile's columns cross, in
// one 16-byte slot (the math warps read it with one 16-byte load).
constexpr unsigned fp8_stage_sfb_blocks_bytes(bool sfb_per_row) { return sfb_per_row ? 0 : 16; }

}  // namespace jaxgemm
