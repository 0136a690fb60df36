// Handler of transpose_bytes (FP8 operands made K-major before a GEMM), registered
// by module.cc.
#pragma once

#include "xla/ffi/api/ffi.h"
#include "../csrc/jit/kernel_runtime.hpp"

namespace jaxgemm::ffi_handlers {

// State of one call site of a kernel that has a single instance: the loaded kernel.
struct KernelState {
  static xla::ffi::TypeId id;
  const jit::LoadedKernel* kernel = nullptr;
};

XLA_FFI_DECLARE_HANDLER_SYMBOL(kTransposeBytesInstantiate);
XLA_FFI_DECLARE_HANDLER_SYMBOL(kTransposeBytesExecute);

}  // namespace jaxgemm::ffi_handlers
