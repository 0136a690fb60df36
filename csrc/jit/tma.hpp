// TMA descriptors (CUtensorMap) for row-major tensors of rank 2..5.
//
// Built on the host in the execute stage (a pure host call, legal under graph
// capture) and passed to kernels by value as __grid_constant__ parameters.
// Reads outside the tensor fill zeros; stores outside it are dropped.
#pragma once

#include <array>
#include <cstdint>

#include "cuda_driver.hpp"

namespace jaxgemm::jit {

struct TmaTensor {
  CUtensorMapDataType dtype;
  void* ptr;
  int rank;                          // number of dimensions, innermost first
  std::array<uint64_t, 5> dims;      // elements, innermost first
  std::array<uint64_t, 5> strides;   // bytes of dims 1..rank-1 (stride of dim 0 is the element)
  std::array<uint32_t, 5> box;       // elements copied per dimension
  CUtensorMapSwizzle swizzle = CU_TENSOR_MAP_SWIZZLE_NONE;
};

inline CUresult encode_tma(CUtensorMap* out, const TmaTensor& t) {
  const std::array<uint32_t, 5> element_strides = {1, 1, 1, 1, 1};
  return CudaDriver::get().cuTensorMapEncodeTiled(
      out, t.dtype, static_cast<cuuint32_t>(t.rank), t.ptr, t.dims.data(), t.strides.data(),
      t.box.data(), element_strides.data(), CU_TENSOR_MAP_INTERLEAVE_NONE, t.swizzle,
      CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
}

// The swizzle mode whose span is `bytes` (the inner box size in bytes).
inline CUtensorMapSwizzle swizzle_for_span(uint32_t bytes) {
  switch (bytes) {
    case 128: return CU_TENSOR_MAP_SWIZZLE_128B;
    case 64: return CU_TENSOR_MAP_SWIZZLE_64B;
    case 32: return CU_TENSOR_MAP_SWIZZLE_32B;
    default: return CU_TENSOR_MAP_SWIZZLE_NONE;
  }
}

}  // namespace jaxgemm::jit
