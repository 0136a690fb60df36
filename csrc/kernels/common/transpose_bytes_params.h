// Kernel parameters of transpose_bytes, shared by the host launcher and the
// kernel. Plain C++: both NVCC/NVRTC and the host compiler read it.
#pragma once

namespace jaxgemm {

constexpr int kTransposeTile = 128;     // bytes either way, one tile per CTA
constexpr int kTransposeThreads = 256;

struct TransposeBytesParams {
  const void* in;            // [L, rows, cols] of 1-byte elements, row-major
  void* out;                 // [L, cols, rows]
  unsigned rows, cols;       // multiples of 16: 16-byte rows and whole 16-row groups
  unsigned tiles_r, tiles_c; // ceil(rows / 128), ceil(cols / 128)
};

}  // namespace jaxgemm
