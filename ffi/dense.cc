// XLA FFI handler of the dense FP8 GEMM (sm90_fp8_gemm_1d2d).
//
// Two stages:
//   instantiate: once per call site. Gets the config chosen at lowering time as
//     attributes, generates the template instance, compiles it (or finds it in
//     the on-disk cache) and loads it. The loaded kernel is the handler's state.
//   execute: per call, possibly under CUDA-graph capture. Checks buffer shapes,
//     encodes the TMA descriptors (host-only work) and launches. No compilation,
//     no allocation, no synchronisation.
#include "dense.h"

#include <exception>
#include <string>

#include "../csrc/jit/compiler.hpp"
#include "../csrc/jit/kernel_runtime.hpp"
#include "../csrc/launchers/sm90_fp8_gemm_1d2d.hpp"

namespace jaxgemm::ffi_handlers {

namespace ffi = xla::ffi;
using heuristics::Fp8GemmConfig;
using launchers::Sm90Fp8Gemm1D2D;

ffi::TypeId Fp8GemmState::id = {};

namespace {

Fp8GemmConfig config_from_attrs(int32_t block_m, int32_t block_n, int32_t num_stages, int32_t store_n,
                                int32_t group_n, int32_t num_sms, int32_t cluster_m) {
  Fp8GemmConfig c;
  c.block_m = block_m;
  c.block_n = block_n;
  c.num_stages = num_stages;
  c.store_n = store_n;
  c.group_n = group_n;
  c.num_sms = num_sms;
  c.cluster_m = cluster_m;
  c.smem_bytes = heuristics::fp8_gemm_smem_bytes(block_m, block_n, num_stages);
  return c;
}

ffi::ErrorOr<std::unique_ptr<Fp8GemmState>> Fp8GemmInstantiate(int32_t block_m, int32_t block_n,
                                                               int32_t num_stages, int32_t store_n,
                                                               int32_t group_n, int32_t num_sms,
                                                               int32_t cluster_m) {
  try {
    auto state = std::make_unique<Fp8GemmState>();
    if (cluster_m < 1 || num_sms % cluster_m != 0 || block_n % (8 * cluster_m) != 0)
      return ffi::Unexpected(ffi::Error::InvalidArgument("jaxgemm fp8_gemm: inconsistent cluster config"));
    state->config = config_from_attrs(block_m, block_n, num_stages, store_n, group_n, num_sms, cluster_m);
    const std::string source = Sm90Fp8Gemm1D2D::generate_source(state->config);
    const auto built = jit::Compiler::build("sm90_fp8_gemm_1d2d", source, "90a");
    state->kernel = &jit::KernelRuntime::load(built.cubin_path, Sm90Fp8Gemm1D2D::kSymbol,
                                              state->config.smem_bytes);
    jit::KernelRuntime::preload_in_current_context(*state->kernel);
    return state;
  } catch (const std::exception& e) {
    return ffi::Unexpected(ffi::Error::Internal(e.what()));
  }
}

ffi::Error Fp8GemmExecute(CUstream stream, Fp8GemmState* state, ffi::AnyBuffer a, ffi::Buffer<ffi::F32> sfa_t,
                          ffi::AnyBuffer b, ffi::Buffer<ffi::F32> sfb, ffi::Result<ffi::Buffer<ffi::BF16>> d,
                          int32_t, int32_t, int32_t, int32_t, int32_t, int32_t, int32_t) {
  // Python validated everything at trace time; these checks guard the ABI.
  if (a.element_type() != ffi::F8E4M3FN || b.element_type() != ffi::F8E4M3FN)
    return ffi::Error::InvalidArgument("jaxgemm fp8_gemm: a and b must be float8_e4m3fn");
  const auto ad = a.dimensions(), bd = b.dimensions(), sd = sfa_t.dimensions(), dd = d->dimensions();
  if (ad.size() != 3 || bd.size() != 3 || sd.size() != 3 || dd.size() != 3)
    return ffi::Error::InvalidArgument("jaxgemm fp8_gemm: operands must be rank 3 [L, rows, K]");
  Sm90Fp8Gemm1D2D::Args x;
  x.a = a.untyped_data();
  x.sfa_t = sfa_t.untyped_data();
  x.b = b.untyped_data();
  x.sfb = sfb.typed_data();
  x.d = d->untyped_data();
  x.batches = static_cast<unsigned>(ad[0]);
  x.b_batched = bd[0] == ad[0] && ad[0] > 1 ? 1u : 0u;
  x.m = static_cast<unsigned>(ad[1]);
  x.k = static_cast<unsigned>(ad[2]);
  x.n = static_cast<unsigned>(bd[1]);
  x.m_pad = static_cast<unsigned>(sd[2]);
  if (x.m == 0 || x.n == 0) return ffi::Error::Success();

  jaxgemm::Fp8Gemm1D2DParams params;
  if (CUresult r = Sm90Fp8Gemm1D2D::make_params(state->config, x, &params); r != CUDA_SUCCESS)
    return ffi::Error::Internal("jaxgemm fp8_gemm: cuTensorMapEncodeTiled failed: " + std::to_string(int(r)));
  const heuristics::Fp8GemmConfig& c = state->config;
  jit::LaunchShape shape{static_cast<unsigned>(c.num_sms), static_cast<unsigned>(c.num_threads()),
                         static_cast<unsigned>(c.cluster_m)};
  if (CUresult r = jit::launch(*state->kernel, shape, stream, params); r != CUDA_SUCCESS)
    return ffi::Error::Internal("jaxgemm fp8_gemm: launch failed: " + std::to_string(int(r)));
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(kFp8GemmInstantiate, Fp8GemmInstantiate,
                       ffi::Ffi::BindInstantiate()
                           .Attr<int32_t>("block_m")
                           .Attr<int32_t>("block_n")
                           .Attr<int32_t>("num_stages")
                           .Attr<int32_t>("store_n")
                           .Attr<int32_t>("group_n")
                           .Attr<int32_t>("num_sms")
                           .Attr<int32_t>("cluster_m"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(kFp8GemmExecute, Fp8GemmExecute,
                       ffi::Ffi::Bind()
                           .Ctx<ffi::PlatformStream<CUstream>>()
                           .Ctx<ffi::State<Fp8GemmState>>()
                           .Arg<ffi::AnyBuffer>()              // a      [L, M, K] e4m3
                           .Arg<ffi::Buffer<ffi::F32>>()       // sfa_t  [L, ceil(K/128), m_pad]
                           .Arg<ffi::AnyBuffer>()              // b      [L or 1, N, K] e4m3
                           .Arg<ffi::Buffer<ffi::F32>>()       // sfb    [L or 1, ceil(N/128), ceil(K/128)]
                           .Ret<ffi::Buffer<ffi::BF16>>()      // d      [L, M, N]
                           .Attr<int32_t>("block_m")
                           .Attr<int32_t>("block_n")
                           .Attr<int32_t>("num_stages")
                           .Attr<int32_t>("store_n")
                           .Attr<int32_t>("group_n")
                           .Attr<int32_t>("num_sms")
                           .Attr<int32_t>("cluster_m"),
                       {ffi::Traits::kCmdBufferCompatible});

}  // namespace jaxgemm::ffi_handlers
