// The nanobind module jaxgemm._C: FFI registrations, the JIT's settings and a
// few host-side entry points (heuristics, code generation, compilation) that
// Python uses at lowering time and that the CPU tests exercise.
//
// Importing it touches no GPU: the CUDA driver is loaded on first use.
#include <nanobind/nanobind.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>

#include "dense.h"
#include "transpose.h"
#include "../csrc/jit/build_and_load.hpp"
#include "../csrc/jit/compiler.hpp"
#include "../csrc/jit/device_runtime.hpp"
#include "../csrc/launchers/sm90_bf16_gemm.hpp"
#include "../csrc/launchers/sm90_fp8_gemm.hpp"
#include "../csrc/launchers/transpose_bytes.hpp"

namespace nb = nanobind;
using namespace jaxgemm;

namespace {

template <typename T>
nb::capsule capsule(T* ptr) {
  return nb::capsule(reinterpret_cast<void*>(ptr));
}

nb::dict config_to_dict(const heuristics::GemmConfig& c) {
  nb::dict d;
  d["block_m"] = c.block_m;
  d["block_n"] = c.block_n;
  d["num_stages"] = c.num_stages;
  d["store_n"] = c.store_n;
  d["group_n"] = c.group_n;
  d["num_sms"] = c.num_sms;
  d["cluster_m"] = c.cluster_m;
  d["cluster_n"] = c.cluster_n;
  d["k_split"] = c.k_split;
  d["cluster_k"] = c.cluster_k;
  d["pingpong"] = c.pingpong;
  d["smem_bytes"] = c.smem_bytes;
  d["sfb_per_row"] = int(c.kind.sfb_per_row);
  d["a_mn_major"] = int(c.kind.a_mn_major);
  d["b_mn_major"] = int(c.kind.b_mn_major);
  d["out_bytes"] = c.kind.out_bytes;
  d["c_bytes"] = c.kind.c_bytes;
  d["swap_ab"] = int(c.kind.swap_ab);
  d["a_regs"] = int(c.kind.a_regs);
  return d;
}

int get_int(const nb::dict& d, const char* key, int fallback) {
  return d.contains(key) ? nb::cast<int>(d[key]) : fallback;
}

// A config dict as Python holds it (kind keys optional: defaults are the plain NT GEMM).
heuristics::GemmConfig config_from_dict(const nb::dict& d, bool bf16) {
  heuristics::GemmConfig c;
  c.kind.sfb_per_row = get_int(d, "sfb_per_row", 0) != 0;
  c.kind.a_mn_major = get_int(d, "a_mn_major", 0) != 0;
  c.kind.b_mn_major = get_int(d, "b_mn_major", 0) != 0;
  c.kind.out_bytes = get_int(d, "out_bytes", 2);
  c.kind.c_bytes = get_int(d, "c_bytes", 0);
  c.kind.swap_ab = get_int(d, "swap_ab", 0) != 0;
  c.kind.a_regs = get_int(d, "a_regs", 0) != 0;
  c.block_m = nb::cast<int>(d["block_m"]);
  c.block_n = nb::cast<int>(d["block_n"]);
  c.num_stages = nb::cast<int>(d["num_stages"]);
  c.store_n = nb::cast<int>(d["store_n"]);
  c.group_n = nb::cast<int>(d["group_n"]);
  c.num_sms = nb::cast<int>(d["num_sms"]);
  c.cluster_m = get_int(d, "cluster_m", 1);
  c.cluster_n = get_int(d, "cluster_n", 1);
  c.k_split = get_int(d, "k_split", 1);
  c.cluster_k = get_int(d, "cluster_k", 1);
  c.pingpong = get_int(d, "pingpong", 0);
  c.smem_bytes = bf16 ? heuristics::bf16_gemm_smem_bytes(c) : heuristics::fp8_gemm_smem_bytes(c);
  return c;
}

heuristics::GemmKind make_kind(bool sfb_per_row, bool a_mn_major, bool b_mn_major, int out_bytes, int c_bytes) {
  heuristics::GemmKind k;
  k.sfb_per_row = sfb_per_row;
  k.a_mn_major = a_mn_major;
  k.b_mn_major = b_mn_major;
  k.out_bytes = out_bytes;
  k.c_bytes = c_bytes;
  return k;
}

// Compiles (or finds in the cache) and loads one kernel, as the instantiate stage does.
template <class Launcher>
std::string load_kernel(const heuristics::GemmConfig& c) {
  const std::string source = Launcher::generate_source(c);
  nb::gil_scoped_release release;
  return jit::build_and_load(Launcher::kName, source, Launcher::kSymbol, c.smem_bytes).cubin_path;
}

}  // namespace

NB_MODULE(_C, m) {
  m.doc() = "jaxgemm's C++ core: XLA FFI handlers, JIT compiler and heuristics";

  // target name -> {stage name -> handler capsule}, for jax.ffi.register_ffi_target.
  m.def("registrations", []() {
    nb::dict regs;
    nb::dict fp8_gemm, bf16_gemm;
    fp8_gemm["instantiate"] = capsule(ffi_handlers::kFp8GemmInstantiate);
    fp8_gemm["execute"] = capsule(ffi_handlers::kFp8GemmExecute);
    regs["jaxgemm_fp8_gemm"] = fp8_gemm;
    bf16_gemm["instantiate"] = capsule(ffi_handlers::kBf16GemmInstantiate);
    bf16_gemm["execute"] = capsule(ffi_handlers::kBf16GemmExecute);
    regs["jaxgemm_bf16_gemm"] = bf16_gemm;
    nb::dict transpose_bytes;
    transpose_bytes["instantiate"] = capsule(ffi_handlers::kTransposeBytesInstantiate);
    transpose_bytes["execute"] = capsule(ffi_handlers::kTransposeBytesExecute);
    regs["jaxgemm_transpose_bytes"] = transpose_bytes;
    return regs;
  });

  // type name -> {"type_id", "type_info"}, for jax.ffi.register_ffi_type.
  m.def("state_types", []() {
    static XLA_FFI_TypeInfo gemm_info = xla::ffi::MakeTypeInfo<ffi_handlers::GemmState>();
    nb::dict types;
    nb::dict gemm;
    gemm["type_id"] = capsule(&ffi_handlers::GemmState::id);
    gemm["type_info"] = capsule(&gemm_info);
    types["jaxgemm_gemm_state"] = gemm;
    static XLA_FFI_TypeInfo kernel_info = xla::ffi::MakeTypeInfo<ffi_handlers::KernelState>();
    nb::dict kernel;
    kernel["type_id"] = capsule(&ffi_handlers::KernelState::id);
    kernel["type_info"] = capsule(&kernel_info);
    types["jaxgemm_kernel_state"] = kernel;
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
      [](int64_t m_, int64_t n, int64_t k, int64_t batches, int num_sms, bool sfb_per_row, int out_bytes,
         int c_bytes, int smem_capacity, bool a_mn_major, bool b_mn_major, int relayout, int swap_ab,
         int a_regs) {
        const auto kind = make_kind(sfb_per_row, a_mn_major, b_mn_major, out_bytes, c_bytes);
        return config_to_dict(heuristics::select_fp8_gemm_config(m_, n, k, batches, num_sms, kind, smem_capacity,
                                                                 relayout, swap_ab, a_regs));
      },
      nb::arg("m"), nb::arg("n"), nb::arg("k"), nb::arg("batches"), nb::arg("num_sms"),
      nb::arg("sfb_per_row") = false, nb::arg("out_bytes") = 2, nb::arg("c_bytes") = 0,
      nb::arg("smem_capacity") = 232448, nb::arg("a_mn_major") = false, nb::arg("b_mn_major") = false,
      nb::arg("relayout") = -1, nb::arg("swap_ab") = -1, nb::arg("a_regs") = -1);

  m.def(
      "bf16_gemm_config",
      [](int64_t m_, int64_t n, int64_t k, int64_t batches, int num_sms, bool a_mn_major, bool b_mn_major,
         int out_bytes, int c_bytes, int smem_capacity) {
        const auto kind = make_kind(false, a_mn_major, b_mn_major, out_bytes, c_bytes);
        return config_to_dict(heuristics::select_bf16_gemm_config(m_, n, k, batches, num_sms, kind, smem_capacity));
      },
      nb::arg("m"), nb::arg("n"), nb::arg("k"), nb::arg("batches"), nb::arg("num_sms"),
      nb::arg("a_mn_major") = false, nb::arg("b_mn_major") = false, nb::arg("out_bytes") = 2,
      nb::arg("c_bytes") = 0, nb::arg("smem_capacity") = 232448);

  m.def(
      "fp8_gemm_smem_bytes",
      [](int block_m, int block_n, int num_stages, bool sfb_per_row, int out_bytes, int k_split, int cluster_k) {
        return heuristics::fp8_gemm_smem_bytes(block_m, block_n, num_stages,
                                               make_kind(sfb_per_row, false, false, out_bytes, 0), k_split,
                                               cluster_k);
      },
      nb::arg("block_m"), nb::arg("block_n"), nb::arg("num_stages"), nb::arg("sfb_per_row") = false,
      nb::arg("out_bytes") = 2, nb::arg("k_split") = 1, nb::arg("cluster_k") = 1);

  m.def(
      "bf16_gemm_smem_bytes",
      [](int block_m, int block_n, int num_stages, int out_bytes) {
        return heuristics::bf16_gemm_smem_bytes(block_m, block_n, num_stages,
                                                make_kind(false, false, false, out_bytes, 0));
      },
      nb::arg("block_m"), nb::arg("block_n"), nb::arg("num_stages"), nb::arg("out_bytes") = 2);

  // A config's shared memory, and the most stages that fit (as the heuristics
  // deepen their picks), for configs a user pinned in part.
  m.def(
      "gemm_smem_bytes", [](const nb::dict& config, bool bf16) { return config_from_dict(config, bf16).smem_bytes; },
      nb::arg("config"), nb::arg("bf16"));
  m.def(
      "gemm_deepest_stages",
      [](const nb::dict& config, bool bf16) {
        nb::dict d;  // the caller's dict, with any stage count (replaced here)
        for (auto [key, value] : config) d[key] = value;
        d["num_stages"] = 1;
        heuristics::GemmConfig c = config_from_dict(d, bf16);
        if (bf16)
          heuristics::deepen_bf16_gemm(c, heuristics::kSmemCapacity);
        else
          heuristics::deepen_fp8_gemm(c, heuristics::kSmemCapacity);
        return c.num_stages;
      },
      nb::arg("config"), nb::arg("bf16"));

  m.def(
      "fp8_gemm_source",
      [](const nb::dict& config) { return launchers::Sm90Fp8Gemm::generate_source(config_from_dict(config, false)); },
      nb::arg("config"));

  m.def(
      "bf16_gemm_source",
      [](const nb::dict& config) { return launchers::Sm90Bf16Gemm::generate_source(config_from_dict(config, true)); },
      nb::arg("config"));

  m.def("transpose_bytes_source", []() { return launchers::TransposeBytes::generate_source(); });
  m.def(
      "transpose_bytes_supported", [](int64_t rows, int64_t cols) { return launchers::TransposeBytes::supports(rows, cols); },
      nb::arg("rows"), nb::arg("cols"));

  // Compiles (or finds in the cache) a kernel; returns (cubin path, cache hit, seconds).
  m.def(
      "compile_kernel",
      [](const std::string& name, const std::string& source, const std::string& arch) {
        nb::gil_scoped_release release;
        auto r = jit::Compiler::build(name, source, arch);
        return std::make_tuple(r.cubin_path, r.cache_hit, r.seconds);
      },
      nb::arg("name"), nb::arg("source"), nb::arg("arch") = "90a");

  // Compiles and loads a kernel, as the instantiate stage does; returns the cubin path.
  m.def(
      "load_fp8_gemm_kernel",
      [](const nb::dict& config) { return load_kernel<launchers::Sm90Fp8Gemm>(config_from_dict(config, false)); },
      nb::arg("config"));
  m.def(
      "load_bf16_gemm_kernel",
      [](const nb::dict& config) { return load_kernel<launchers::Sm90Bf16Gemm>(config_from_dict(config, true)); },
      nb::arg("config"));
}
