// Handlers of the dense GEMM family (FP8 and BF16), registered by module.cc.
#pragma once

#include <memory>

#include "xla/ffi/api/ffi.h"
#include "../csrc/heuristics/gemm_config.hpp"
#include "../csrc/jit/kernel_runtime.hpp"

namespace jaxgemm::ffi_handlers {

// State of one GEMM call site: its config and its loaded kernel.
struct GemmState {
  static xla::ffi::TypeId id;
  heuristics::GemmConfig config;
  bool sfa_mn_major = false;  // FP8: A's scales are [L, ceil(K/128), M], not [L, M, ceil(K/128)]
  const jit::LoadedKernel* kernel = nullptr;
};

XLA_FFI_DECLARE_HANDLER_SYMBOL(kFp8GemmInstantiate);
XLA_FFI_DECLARE_HANDLER_SYMBOL(kFp8GemmExecute);
XLA_FFI_DECLARE_HANDLER_SYMBOL(kBf16GemmInstantiate);
XLA_FFI_DECLARE_HANDLER_SYMBOL(kBf16GemmExecute);

}  // namespace jaxgemm::ffi_handlers
