// Handlers of the dense GEMM family, registered by module.cc.
#pragma once

#include <memory>

#include "xla/ffi/api/ffi.h"
#include "../csrc/heuristics/sm90_fp8_gemm.hpp"
#include "../csrc/jit/kernel_runtime.hpp"

namespace jaxgemm::ffi_handlers {

// State of one fp8_gemm call site: its config and its loaded kernel.
struct Fp8GemmState {
  static xla::ffi::TypeId id;
  heuristics::Fp8GemmConfig config;
  const jit::LoadedKernel* kernel = nullptr;
};

XLA_FFI_DECLARE_HANDLER_SYMBOL(kFp8GemmInstantiate);
XLA_FFI_DECLARE_HANDLER_SYMBOL(kFp8GemmExecute);

}  // namespace jaxgemm::ffi_handlers
