// XLA FFI handlers of the dense GEMMs (sm90_fp8_gemm and sm90_bf16_gemm).
//
// Two stages each:
//   instantiate: once per call site. Gets the config chosen at lowering time as
//     attributes, generates the template instance, compiles it (or finds it in
//     the on-disk cache) and loads it. The loaded kernel is the handler's state.
//   execute: per call, possibly under CUDA-graph capture. Checks buffer ranks and
//     dtypes, encodes the TMA descriptors (host-only work) and launches. No
//     compilation, no allocation, no synchronisation.
#include "dense.h"

#include <exception>
#include <optional>
#include <string>
#include <type_traits>

#include "../csrc/heuristics/sm90_bf16_gemm.hpp"
#include "../csrc/heuristics/sm90_fp8_gemm.hpp"
#include "../csrc/jit/build_and_load.hpp"
#include "../csrc/launchers/sm90_bf16_gemm.hpp"
#include "../csrc/launchers/sm90_fp8_gemm.hpp"

namespace jaxgemm::ffi_handlers {

// Every config key, as the lowering passes them (np.int32 attributes).
struct GemmAttrs {
  int32_t block_m, block_n, num_stages, store_n, group_n, num_sms, cluster_m, cluster_n, k_split, cluster_k, pingpong;
  int32_t sfb_per_row, a_mn_major, b_mn_major, out_bytes, c_bytes;
  int32_t swap_ab;       // FP8: the kernel computes D^T (GemmKind::swap_ab)
  int32_t a_regs;        // FP8: A MN-major read into register fragments (GemmKind::a_regs)
  int32_t sfa_mn_major;  // FP8: A's scales are [L, ceil(K/128), M] (a launch stride, not a kernel variant)
};

}  // namespace jaxgemm::ffi_handlers

XLA_FFI_REGISTER_STRUCT_ATTR_DECODING(
    jaxgemm::ffi_handlers::GemmAttrs, ::xla::ffi::StructMember<int32_t>("block_m"),
    ::xla::ffi::StructMember<int32_t>("block_n"), ::xla::ffi::StructMember<int32_t>("num_stages"),
    ::xla::ffi::StructMember<int32_t>("store_n"), ::xla::ffi::StructMember<int32_t>("group_n"),
    ::xla::ffi::StructMember<int32_t>("num_sms"), ::xla::ffi::StructMember<int32_t>("cluster_m"),
    ::xla::ffi::StructMember<int32_t>("cluster_n"), ::xla::ffi::StructMember<int32_t>("k_split"),
    ::xla::ffi::StructMember<int32_t>("cluster_k"), ::xla::ffi::StructMember<int32_t>("pingpong"),
    ::xla::ffi::StructMember<int32_t>("sfb_per_row"), ::xla::ffi::StructMember<int32_t>("a_mn_major"),
    ::xla::ffi::StructMember<int32_t>("b_mn_major"), ::xla::ffi::StructMember<int32_t>("out_bytes"),
    ::xla::ffi::StructMember<int32_t>("c_bytes"), ::xla::ffi::StructMember<int32_t>("swap_ab"),
    ::xla::ffi::StructMember<int32_t>("a_regs"), ::xla::ffi::StructMember<int32_t>("sfa_mn_major"));

namespace jaxgemm::ffi_handlers {

namespace ffi = xla::ffi;
using heuristics::GemmConfig;
using launchers::Sm90Bf16Gemm;
using launchers::Sm90Fp8Gemm;

ffi::TypeId GemmState::id = {};

namespace {

GemmConfig config_from_attrs(const GemmAttrs& a) {
  GemmConfig c;
  c.kind.sfb_per_row = a.sfb_per_row != 0;
  c.kind.a_mn_major = a.a_mn_major != 0;
  c.kind.b_mn_major = a.b_mn_major != 0;
  c.kind.out_bytes = a.out_bytes;
  c.kind.c_bytes = a.c_bytes;
  c.kind.swap_ab = a.swap_ab != 0;
  c.kind.a_regs = a.a_regs != 0;
  c.block_m = a.block_m;
  c.block_n = a.block_n;
  c.num_stages = a.num_stages;
  c.store_n = a.store_n;
  c.group_n = a.group_n;
  c.num_sms = a.num_sms;
  c.cluster_m = a.cluster_m;
  c.cluster_n = a.cluster_n;
  c.k_split = a.k_split;
  c.cluster_k = a.cluster_k;
  c.pingpong = a.pingpong;
  return c;
}

// Compiles (or finds in the cache) and loads the kernel of `config`.
template <class Launcher>
ffi::ErrorOr<std::unique_ptr<GemmState>> instantiate(GemmConfig config, bool sfa_mn_major, const char* op) {
  try {
    const bool split_k_cluster = config.cluster_k > 1;
    if (config.cluster_m < 1 || config.cluster_n < 1 || config.cluster_m * config.cluster_n > 2 ||
        !(config.cluster_k == 1 || config.cluster_k == 2 || config.cluster_k == 4 || config.cluster_k == 8) ||
        (split_k_cluster && config.cluster_m * config.cluster_n != 1) ||
        config.num_sms % config.cluster_size() != 0 || config.block_n % (8 * config.cluster_m) != 0 ||
        config.block_m % (8 * config.cluster_n) != 0 || config.block_n % (8 * config.cluster_k) != 0 ||
        config.store_n <= 0 || config.out_block_n() % config.store_n != 0 ||
        ((config.cluster_n > 1 || config.k_split > 1 || split_k_cluster) && std::is_same_v<Launcher, Sm90Bf16Gemm>))
      return ffi::Unexpected(ffi::Error::InvalidArgument(std::string(op) + ": inconsistent cluster config"));
    if (std::is_same_v<Launcher, Sm90Fp8Gemm> && ((config.kind.a_mn_major && config.cluster_n > 1) ||
                                                   (config.kind.b_mn_major && config.cluster_m > 1)))
      return ffi::Unexpected(ffi::Error::InvalidArgument(std::string(op) + ": an MN-major FP8 operand is not multicast"));
    if (config.kind.a_regs && !(config.kind.a_mn_major && !config.kind.swap_ab && std::is_same_v<Launcher, Sm90Fp8Gemm>))
      return ffi::Unexpected(ffi::Error::InvalidArgument(std::string(op) + ": a_regs needs FP8 with A MN-major, unswapped"));
    if (config.k_split != 1 && !(config.k_split == 2 && config.block_m == 64))
      return ffi::Unexpected(ffi::Error::InvalidArgument(std::string(op) + ": k_split=2 needs block_m=64"));
    if (config.pingpong != 0 &&
        !(config.pingpong == 1 && config.block_m == 128 && std::is_same_v<Launcher, Sm90Bf16Gemm>))
      return ffi::Unexpected(ffi::Error::InvalidArgument(std::string(op) + ": pingpong=1 needs bf16 and block_m=128"));
    auto state = std::make_unique<GemmState>();
    state->config = config;
    state->sfa_mn_major = sfa_mn_major;
    state->kernel =
        jit::build_and_load(Launcher::kName, Launcher::generate_source(config), Launcher::kSymbol, config.smem_bytes)
            .kernel;
    return state;
  } catch (const std::exception& e) {
    return ffi::Unexpected(ffi::Error::Internal(e.what()));
  }
}

ffi::ErrorOr<std::unique_ptr<GemmState>> Fp8GemmInstantiate(GemmAttrs attrs) {
  GemmConfig c = config_from_attrs(attrs);
  c.smem_bytes = heuristics::fp8_gemm_smem_bytes(c);
  return instantiate<Sm90Fp8Gemm>(c, attrs.sfa_mn_major != 0, "jaxgemm fp8_gemm");
}

ffi::ErrorOr<std::unique_ptr<GemmState>> Bf16GemmInstantiate(GemmAttrs attrs) {
  GemmConfig c = config_from_attrs(attrs);
  c.smem_bytes = heuristics::bf16_gemm_smem_bytes(c);
  return instantiate<Sm90Bf16Gemm>(c, false, "jaxgemm bf16_gemm");
}

ffi::DataType dtype_of_bytes(int bytes) { return bytes == 4 ? ffi::F32 : ffi::BF16; }

// D's dtype and C's (if any) must be what the kernel was built for.
ffi::Error check_out_and_c(const GemmConfig& c, const std::optional<ffi::AnyBuffer>& cbuf,
                           const ffi::AnyBuffer& d, const char* op) {
  if (d.element_type() != dtype_of_bytes(c.kind.out_bytes))
    return ffi::Error::InvalidArgument(std::string(op) + ": output dtype differs from the kernel's");
  if (cbuf.has_value() != (c.kind.c_bytes != 0) ||
      (cbuf && cbuf->element_type() != dtype_of_bytes(c.kind.c_bytes)))
    return ffi::Error::InvalidArgument(std::string(op) + ": c differs from the kernel's");
  if (cbuf && cbuf->dimensions().size() != 3)
    return ffi::Error::InvalidArgument(std::string(op) + ": c must be rank 3 [L, M, N]");
  return ffi::Error::Success();
}

template <class Params>
ffi::Error launch(GemmState* state, CUstream stream, const Params& params, const char* op) {
  const GemmConfig& c = state->config;
  jit::LaunchShape shape{static_cast<unsigned>(c.num_sms), static_cast<unsigned>(c.num_threads()),
                         static_cast<unsigned>(c.cluster_size())};
  if (CUresult r = jit::launch(*state->kernel, shape, stream, params); r != CUDA_SUCCESS)
    return ffi::Error::Internal(std::string(op) + ": launch failed: " + std::to_string(int(r)));
  return ffi::Error::Success();
}

ffi::Error Fp8GemmExecute(CUstream stream, GemmState* state, ffi::AnyBuffer a, ffi::Buffer<ffi::F32> sfa,
                          ffi::AnyBuffer b, ffi::Buffer<ffi::F32> sfb, std::optional<ffi::AnyBuffer> c,
                          ffi::Result<ffi::AnyBuffer> d, ffi::Dictionary /*config*/) {
  // Python validated everything at trace time; these checks guard the ABI.
  constexpr const char* op = "jaxgemm fp8_gemm";
  if (a.element_type() != ffi::F8E4M3FN || b.element_type() != ffi::F8E4M3FN)
    return ffi::Error::InvalidArgument("jaxgemm fp8_gemm: a and b must be float8_e4m3fn");
  const auto ad = a.dimensions(), bd = b.dimensions(), sd = sfa.dimensions(), fd = sfb.dimensions();
  if (ad.size() != 3 || bd.size() != 3 || sd.size() != 3 || fd.size() != 3 || d->dimensions().size() != 3)
    return ffi::Error::InvalidArgument("jaxgemm fp8_gemm: operands must be rank 3 [L, rows, K]");
  if (ffi::Error e = check_out_and_c(state->config, c, *d, op); e.failure()) return e;
  Sm90Fp8Gemm::Args x;
  x.a = a.untyped_data();
  x.sfa = sfa.untyped_data();
  x.sfa_mn_major = state->sfa_mn_major;
  x.b = b.untyped_data();
  x.sfb = sfb.untyped_data();
  x.c = c ? c->untyped_data() : nullptr;
  x.d = d->untyped_data();
  x.batches = static_cast<unsigned>(ad[0]);
  x.b_batched = bd[0] == ad[0] && ad[0] > 1 ? 1u : 0u;
  const auto& kind = state->config.kind;  // A [L, K, M] / B [Lb, K, N] where MN-major
  x.m = static_cast<unsigned>(kind.a_mn_major ? ad[2] : ad[1]);
  x.k = static_cast<unsigned>(kind.a_mn_major ? ad[1] : ad[2]);
  x.n = static_cast<unsigned>(kind.b_mn_major ? bd[2] : bd[1]);
  x.n_pad = static_cast<unsigned>(fd[2]);
  if (x.m == 0 || x.n == 0) return ffi::Error::Success();
  // The kernel reads A's scales with strides: their shape must be what they claim.
  const unsigned kb = (x.k + 127) / 128;
  if (sd[0] != ad[0] || sd[1] != (x.sfa_mn_major ? kb : x.m) || sd[2] != (x.sfa_mn_major ? x.m : kb))
    return ffi::Error::InvalidArgument("jaxgemm fp8_gemm: a's scales do not match a");

  Fp8GemmParams params;
  if (CUresult r = Sm90Fp8Gemm::make_params(state->config, x, &params); r != CUDA_SUCCESS)
    return ffi::Error::Internal("jaxgemm fp8_gemm: cuTensorMapEncodeTiled failed: " + std::to_string(int(r)));
  return launch(state, stream, params, op);
}

ffi::Error Bf16GemmExecute(CUstream stream, GemmState* state, ffi::Buffer<ffi::BF16> a, ffi::Buffer<ffi::BF16> b,
                           std::optional<ffi::AnyBuffer> c, ffi::Result<ffi::AnyBuffer> d,
                           ffi::Dictionary /*config*/) {
  constexpr const char* op = "jaxgemm bf16_gemm";
  const auto ad = a.dimensions(), bd = b.dimensions(), dd = d->dimensions();
  if (ad.size() != 3 || bd.size() != 3 || dd.size() != 3)
    return ffi::Error::InvalidArgument("jaxgemm bf16_gemm: operands must be rank 3");
  if (ffi::Error e = check_out_and_c(state->config, c, *d, op); e.failure()) return e;
  const auto& kind = state->config.kind;
  Sm90Bf16Gemm::Args x;
  x.a = a.untyped_data();
  x.b = b.untyped_data();
  x.c = c ? c->untyped_data() : nullptr;
  x.d = d->untyped_data();
  x.batches = static_cast<unsigned>(ad[0]);
  x.b_batched = bd[0] == ad[0] && ad[0] > 1 ? 1u : 0u;
  x.m = static_cast<unsigned>(dd[1]);
  x.n = static_cast<unsigned>(dd[2]);
  x.k = static_cast<unsigned>(kind.a_mn_major ? ad[1] : ad[2]);
  if (x.m == 0 || x.n == 0) return ffi::Error::Success();

  Bf16GemmParams params;
  if (CUresult r = Sm90Bf16Gemm::make_params(state->config, x, &params); r != CUDA_SUCCESS)
    return ffi::Error::Internal("jaxgemm bf16_gemm: cuTensorMapEncodeTiled failed: " + std::to_string(int(r)));
  return launch(state, stream, params, op);
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(kFp8GemmInstantiate, Fp8GemmInstantiate,
                              ffi::Ffi::BindInstantiate().Attrs<GemmAttrs>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(kFp8GemmExecute, Fp8GemmExecute,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::PlatformStream<CUstream>>()
                                  .Ctx<ffi::State<GemmState>>()
                                  .Arg<ffi::AnyBuffer>()            // a      [L, M, K] e4m3
                                  .Arg<ffi::Buffer<ffi::F32>>()     // sfa    [L, M, ceil(K/128)] or [L, ceil(K/128), M]
                                  .Arg<ffi::AnyBuffer>()            // b      [L or 1, N, K] e4m3
                                  .Arg<ffi::Buffer<ffi::F32>>()     // sfb    1D2D or 1D1D layout (launcher)
                                  .OptionalArg<ffi::AnyBuffer>()    // c      [L, M, N], may alias d
                                  .Ret<ffi::AnyBuffer>()            // d      [L, M, N] bf16 or f32
                                  .Attrs(),                         // the config (used at instantiate)
                              {ffi::Traits::kCmdBufferCompatible});

XLA_FFI_DEFINE_HANDLER_SYMBOL(kBf16GemmInstantiate, Bf16GemmInstantiate,
                              ffi::Ffi::BindInstantiate().Attrs<GemmAttrs>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(kBf16GemmExecute, Bf16GemmExecute,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::PlatformStream<CUstream>>()
                                  .Ctx<ffi::State<GemmState>>()
                                  .Arg<ffi::Buffer<ffi::BF16>>()    // a  [L, M, K] or [L, K, M]
                                  .Arg<ffi::Buffer<ffi::BF16>>()    // b  [L or 1, N, K] or [L or 1, K, N]
                                  .OptionalArg<ffi::AnyBuffer>()    // c  [L, M, N], may alias d
                                  .Ret<ffi::AnyBuffer>()            // d  [L, M, N] bf16 or f32
                                  .Attrs(),                         // the config (used at instantiate)
                              {ffi::Traits::kCmdBufferCompatible});

}  // namespace jaxgemm::ffi_handlers
