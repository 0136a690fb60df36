// The nanobind module jaxgemm._C: FFI registrations, the JIT's settings and a
// few host-side entry points (heuristics, code generation, compilation) that
// Python uses at lowering time and that the CPU tests exercise.
//
// Importing it touches no GPU: the CUDA driver is loaded on first use.
#include <nanobind/nanobind.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>

#include "dense.h"
#include "../csrc/jit/compiler.hpp"
#include "../csrc/jit/device_runtime.hpp"
#include "../csrc/launchers/sm90_fp8_gemm_1d2d.hpp"

namespace nb = nanobind;
using namespace jaxgemm;

namespace {

template <typename T>
nb::capsule capsule(T* ptr) {
  return nb::capsule(reinterpret_cast<void*>(ptr));
}

nb::dict config_to_dict(const heuristics::Fp8GemmConfig& c) {
  nb::dict d;
  d["block_m"] = c.block_m;
  d["block_n"] = c.block_n;
  d["num_stages"] = c.num_stages;
  d["store_n"] = c.store_n;
  d["group_n"] = c.group_n;
  d["num_sms"] = c.num_sms;
  d["cluster_m"] = c.cluster_m;
  d["smem_bytes"] = c.smem_bytes;
  return d;
}

heuristics::Fp8GemmConfig config_from_dict(const nb::dict& d) {
  heuristics::Fp8GemmConfig c;
  c.block_m = nb::cast<int>(d["block_m"]);
  c.block_n = nb::cast<int>(d["block_n"]);
  c.num_stages = nb::cast<int>(d["num_stages"]);
  c.store_n = nb::cast<int>(d["store_n"]);
  c.group_n = nb::cast<int>(d["group_n"]);
  c.num_sms = nb::cast<int>(d["num_sms"]);
  c.cluster_m = d.contains("cluster_m") ? nb::cast<int>(d["cluster_m"]) : 1;
  c.smem_bytes = heuristics::fp8_gemm_smem_bytes(c.block_m, c.block_n, c.num_stages);
  return c;
}

}  // namespace

NB_MODULE(_C, m) {
  m.doc() = "jaxgemm's C++ core: XLA FFI handlers, JIT compiler and heuristics";

  // target name -> {stage name -> handler capsule}, for jax.ffi.register_ffi_target.
  m.def("registrations", []() {
    nb::dict regs;
    nb::dict fp8_gemm;
    fp8_gemm["instantiate"] = capsule(ffi_handlers::kFp8GemmInstantiate);
    fp8_gemm["execute"] = capsule(ffi_handlers::kFp8GemmExecute);
    regs["jaxgemm_fp8_gemm_1d2d"] = fp8_gemm;
    return regs;
  });

  // type name -> {"type_id", "type_info"}, for jax.ffi.register_ffi_type.
  m.def("state_types", []() {
    static XLA_FFI_TypeInfo fp8_info = xla::ffi::MakeTypeInfo<ffi_handlers::Fp8GemmState>();
    nb::dict types;
    nb::dict fp8;
    fp8["type_id"] = capsule(&ffi_handlers::Fp8GemmState::id);
    fp8["type_info"] = capsule(&fp8_info);
    types["jaxgemm_fp8_gemm_state"] = fp8;
    return types;
  });

  m.def(
      "set_paths",
      [](std::string kernel_include, std::string cutlass_include, std::string cuda_home,
         std::string version) {
        std::lock_guard<std::mutex> lock(jit::Settings::mutex());
        auto& s = jit::Settings::get();
        s.kernel_include = std::move(kernel_include);
        s.cutlass_include = std::move(cutlass_include);
        s.cuda_home = std::move(cuda_home);
        s.library_version = std::move(version);
      },
      nb::arg("kernel_include"), nb::arg("cutlass_include"), nb::arg("cuda_home"), nb::arg("version"));

  m.def(
      "device_info",
      [](int ordinal) {
        const auto& i = jit::DeviceRuntime::info(ordinal);
        nb::dict d;
        d["name"] = i.name;
        d["arch_major"] = i.arch_major;
        d["arch_minor"] = i.arch_minor;
        d["num_sms"] = i.num_sms;
        d["max_smem_per_block"] = i.max_smem_per_block;
        return d;
      },
      nb::arg("ordinal"));

  m.def(
      "fp8_gemm_config",
      [](int64_t m_, int64_t n, int64_t k, int64_t batches, int num_sms, int smem_capacity) {
        return config_to_dict(heuristics::select_fp8_gemm_config(m_, n, k, batches, num_sms, smem_capacity));
      },
      nb::arg("m"), nb::arg("n"), nb::arg("k"), nb::arg("batches"), nb::arg("num_sms"),
      nb::arg("smem_capacity") = 232448);

  m.def("fp8_gemm_smem_bytes", &heuristics::fp8_gemm_smem_bytes, nb::arg("block_m"), nb::arg("block_n"),
        nb::arg("num_stages"));

  m.def(
      "fp8_gemm_source",
      [](const nb::dict& config) { return launchers::Sm90Fp8Gemm1D2D::generate_source(config_from_dict(config)); },
      nb::arg("config"));

  // Compiles (or finds in the cache) a kernel; returns (cubin path, cache hit, seconds).
  m.def(
      "compile_kernel",
      [](const std::string& name, const std::string& source, const std::string& arch) {
        nb::gil_scoped_release release;
        auto r = jit::Compiler::build(name, source, arch);
        return std::make_tuple(r.cubin_path, r.cache_hit, r.seconds);
      },
      nb::arg("name"), nb::arg("source"), nb::arg("arch") = "90a");

  // Compiles and loads a kernel on every device, as the instantiate stage does.
  m.def(
      "load_fp8_gemm_kernel",
      [](const nb::dict& config) {
        auto c = config_from_dict(config);
        auto src = launchers::Sm90Fp8Gemm1D2D::generate_source(c);
        nb::gil_scoped_release release;
        auto r = jit::Compiler::build("sm90_fp8_gemm_1d2d", src, "90a");
        jit::KernelRuntime::load(r.cubin_path, launchers::Sm90Fp8Gemm1D2D::kSymbol, c.smem_bytes);
        return r.cubin_path;
      },
      nb::arg("config"));
}
