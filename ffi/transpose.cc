// XLA FFI handler of transpose_bytes: [L, R, C] -> [L, C, R] for 1-byte dtypes.
//   instantiate: compiles (or finds in the on-disk cache) and loads the kernel;
//   execute: checks shapes and launches (graph-capture safe: no allocation, no sync).
#include "transpose.h"

#include <exception>
#include <string>

#include "../csrc/jit/build_and_load.hpp"
#include "../csrc/launchers/transpose_bytes.hpp"

namespace jaxgemm::ffi_handlers {

namespace ffi = xla::ffi;
using launchers::TransposeBytes;

ffi::TypeId KernelState::id = {};

namespace {

ffi::ErrorOr<std::unique_ptr<KernelState>> TransposeBytesInstantiate() {
  try {
    auto state = std::make_unique<KernelState>();
    state->kernel =
        jit::build_and_load(TransposeBytes::kName, TransposeBytes::generate_source(), TransposeBytes::kSymbol, 0)
            .kernel;
    return state;
  } catch (const std::exception& e) {
    return ffi::Unexpected(ffi::Error::Internal(e.what()));
  }
}

bool one_byte(ffi::DataType t) {
  return t == ffi::F8E4M3FN || t == ffi::F8E5M2 || t == ffi::U8 || t == ffi::S8;
}

ffi::Error TransposeBytesExecute(CUstream stream, KernelState* state, ffi::AnyBuffer in,
                                 ffi::Result<ffi::AnyBuffer> out) {
  // Python checked everything at trace time; these checks guard the ABI.
  const auto id = in.dimensions(), od = out->dimensions();
  if (!one_byte(in.element_type()) || out->element_type() != in.element_type())
    return ffi::Error::InvalidArgument("jaxgemm transpose_bytes: needs one 1-byte dtype in and out");
  if (id.size() != 3 || od.size() != 3 || od[0] != id[0] || od[1] != id[2] || od[2] != id[1])
    return ffi::Error::InvalidArgument("jaxgemm transpose_bytes: in is [L, R, C] and out [L, C, R]");
  if (!TransposeBytes::supports(id[1], id[2]))
    return ffi::Error::InvalidArgument("jaxgemm transpose_bytes: R and C must be multiples of 16");
  if (id[0] == 0 || id[1] == 0 || id[2] == 0) return ffi::Error::Success();
  TransposeBytesParams params;
  unsigned grid = 0;
  if (!TransposeBytes::make_params(in.untyped_data(), out->untyped_data(), id[0], id[1], id[2], &params, &grid))
    return ffi::Error::InvalidArgument("jaxgemm transpose_bytes: too large for one launch");
  jit::LaunchShape shape{grid, static_cast<unsigned>(kTransposeThreads), 1};
  if (CUresult r = jit::launch(*state->kernel, shape, stream, params); r != CUDA_SUCCESS)
    return ffi::Error::Internal("jaxgemm transpose_bytes: launch failed: " + std::to_string(int(r)));
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(kTransposeBytesInstantiate, TransposeBytesInstantiate, ffi::Ffi::BindInstantiate());

XLA_FFI_DEFINE_HANDLER_SYMBOL(kTransposeBytesExecute, TransposeBytesExecute,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::PlatformStream<CUstream>>()
                                  .Ctx<ffi::State<KernelState>>()
                                  .Arg<ffi::AnyBuffer>()   // in  [L, R, C], 1-byte elements
                                  .Ret<ffi::AnyBuffer>(),  // out [L, C, R]
                              {ffi::Traits::kCmdBufferCompatible});

}  // namespace jaxgemm::ffi_handlers
