// JIT settings: the environment variables of the design and the include paths
// that Python finds (kernel headers, CuTe/CUTLASS, the CUDA toolkit).
#pragma once

#include <cstdlib>
#include <mutex>
#include <string>

namespace jaxgemm::jit {

inline std::string env_string(const char* name, const std::string& fallback = "") {
  const char* v = std::getenv(name);
  return (v && *v) ? std::string(v) : fallback;
}

inline bool env_flag(const char* name) {
  std::string v = env_string(name, "0");
  return !(v == "0" || v == "false" || v == "False" || v == "");
}

struct Settings {
  std::string kernel_include;   // folder holding jaxgemm/kernels/... (package data)
  std::string cutlass_include;  // folder holding cute/ and cutlass/
  std::string cuda_home;        // toolkit root: bin/nvcc, include/, lib64/
  std::string library_version;  // part of every cache key

  // Read each time: tests and users flip these at run time.
  static std::string cache_dir() {
    std::string home = env_string("HOME", "/tmp");
    return env_string("JAXGEMM_JIT_CACHE_DIR", home + "/.jaxgemm");
  }
  static bool debug() { return env_flag("JAXGEMM_JIT_DEBUG"); }
  // Space-separated macro definitions added to every kernel compile (development).
  static std::string extra_defines() { return env_string("JAXGEMM_JIT_DEFINES"); }
  static bool use_nvrtc() { return env_flag("JAXGEMM_JIT_USE_NVRTC"); }
  static bool ptxas_verbose() { return env_flag("JAXGEMM_JIT_PTXAS_VERBOSE"); }
  static bool print_compiler_command() {
    return env_flag("JAXGEMM_JIT_PRINT_COMPILER_COMMAND");
  }
  std::string nvcc_path() const {
    return env_string("JAXGEMM_JIT_NVCC_COMPILER", cuda_home + "/bin/nvcc");
  }

  static Settings& get() {
    static Settings s;
    return s;
  }
  static std::mutex& mutex() {
    static std::mutex m;
    return m;
  }
};

}  // namespace jaxgemm::jit
