// What every instantiate stage does with a generated kernel source: compile it (or
// find it in the on-disk cache), load it, and load it into the current context if
// there is one, so that the first launch (possibly under graph capture) loads nothing.
#pragma once

#include <string>

#include "compiler.hpp"
#include "kernel_runtime.hpp"

namespace jaxgemm::jit {

struct BuiltKernel {
  const LoadedKernel* kernel;
  std::string cubin_path;
};

inline BuiltKernel build_and_load(const std::string& name, const std::string& source, const std::string& symbol,
                                  int smem_bytes, const std::string& arch = "90a") {
  const CompileResult built = Compiler::build(name, source, arch);
  const LoadedKernel& kernel = KernelRuntime::load(built.cubin_path, symbol, smem_bytes);
  KernelRuntime::preload_in_current_context(kernel);
  return {&kernel, built.cubin_path};
}

}  // namespace jaxgemm::jit
